import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DownloadError,
  type DownloadErrorCode,
  DownloadTimeoutError,
  ForbiddenAddressError,
  HttpStatusError,
  isRetryableStatus,
  NetworkError,
  parseRetryAfter,
  TooManyRedirectsError,
} from '../../../src/media/ingest/download-errors.ts';
import {
  type DownloadOptions,
  type DownloadResponse,
  download,
  ifRangeValidator,
  parseContentRange,
} from '../../../src/media/ingest/downloader.ts';
import type { Resolver, SsrfPolicy } from '../../../src/media/ingest/ssrf.ts';

// A self-signed test-only certificate for 127.0.0.1, valid 2000-2100.
const TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgB+ZGoo5b2QwBF0lh
ujvaMSHCnxZ+KCGKHN37fGcHZ8OhRANCAAQHWXJBoFs43UlKyHqWy9corRvB7Lum
sQxdjU03nzemvWT4MWmtjJ+5MmrcTEZmsUX27GKhh6QH8X2CVxql2IbD
-----END PRIVATE KEY-----`;
const TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBYjCCAQegAwIBAgIBATAKBggqhkjOPQQDAjAYMRYwFAYDVQQDDA1jb252ZXlv
ci10ZXN0MCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjAYMRYwFAYD
VQQDDA1jb252ZXlvci10ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEB1ly
QaBbON1JSsh6lsvXKK0bwey7prEMXY1NN583pr1k+DFprYyfuTJq3ExGZrFF9uxi
oYekB/F9glcapdiGw6NAMD4wDwYDVR0RBAgwBocEfwAAATAMBgNVHRMBAf8EAjAA
MB0GA1UdDgQWBBR8y7MJetAXI+oubtPESBXHCobeKDAKBggqhkjOPQQDAgNJADBG
AiEA3sFpheAYo60kNECpexjnY5YGDDMlLmrqDHxtb+RZGNQCIQDY0g2fT5IyPOxD
sf2Ro2u2ZfZRWXS1uZ0axGdyP3X/sQ==
-----END CERTIFICATE-----`;

const LOOPBACK: SsrfPolicy = { allowAddresses: ['127.0.0.1/32'], denyHosts: [] };

function options(extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return {
    policy: LOOPBACK,
    maxBytes: 1 << 20,
    connectTimeoutMs: 5_000,
    idleTimeoutMs: 5_000,
    totalTimeoutMs: 20_000,
    maxRedirects: 5,
    maxResumes: 2,
    ...extra,
  };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Origin {
  url: string;
  port: number;
  hits: { url: string; headers: IncomingHttpHeaders }[];
}

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/** A recording origin on loopback, closed (connections included) when the test ends. */
async function origin(
  t: TestContext,
  handler: Handler,
  o: { host?: string; port?: number; tls?: boolean } = {},
) {
  const hits: Origin['hits'] = [];
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    hits.push({ url: req.url ?? '', headers: req.headers });
    handler(req, res, hits.length);
  };
  const server = o.tls
    ? https.createServer({ key: TLS_KEY, cert: TLS_CERT }, onRequest)
    : http.createServer(onRequest);
  const host = o.host ?? '127.0.0.1';
  server.listen(o.port ?? 0, host);
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const name = host.includes(':') ? `[${host}]` : host;
  return { url: `${o.tls ? 'https' : 'http'}://${name}:${port}`, port, hits } satisfies Origin;
}

/** A TCP server that accepts connections and never says anything. */
async function silent(t: TestContext): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => sockets.add(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function body(res: DownloadResponse) {
  assert.equal(res.notModified, false);
  if (res.notModified) throw new Error('unreachable');
  return res;
}

async function fetchAll(url: string, o: DownloadOptions) {
  const res = body(await download(url, o));
  const chunks: Buffer[] = [];
  for await (const chunk of res.body) chunks.push(chunk);
  return { res, bytes: Buffer.concat(chunks), result: await res.done };
}

function isCode(code: DownloadErrorCode, check?: (err: any) => void) {
  return (err: unknown) => {
    assert.ok(err instanceof DownloadError, String(err));
    assert.equal(err.code, code, err.message);
    check?.(err);
    return true;
  };
}

/** The body stream and `done` both fail, with the same error. */
async function bodyFails(
  url: string,
  o: DownloadOptions,
  code: DownloadErrorCode,
  check?: (err: any) => void,
) {
  const res = body(await download(url, o));
  const drained = (async () => {
    for await (const _ of res.body);
  })();
  await assert.rejects(drained, isCode(code, check));
  await assert.rejects(res.done, isCode(code, check));
  return res;
}

/** Serves `data` with the given headers; answers Range requests with 206 when `ranges`. */
function file(data: Buffer, headers: Record<string, string> = {}, dropFirstAt?: number): Handler {
  return (req, res, n) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      const start = Number(m[1]);
      res.writeHead(206, {
        ...headers,
        'content-length': data.length - start,
        'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
      });
      res.end(data.subarray(start));
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': data.length });
    if (dropFirstAt !== undefined && n === 1) {
      // Half the body, then the connection dies: everything written reaches the client before the FIN.
      res.write(data.subarray(0, dropFirstAt), () => res.socket?.destroy());
    } else {
      res.end(data);
    }
  };
}

describe('download: the happy path', () => {
  it('streams the body with the right SHA-256, metadata and progress', async (t) => {
    const data = randomBytes(200_000);
    const o = await origin(
      t,
      file(data, {
        'content-type': 'image/png',
        etag: '"abc"',
        'last-modified': 'Sun, 06 Nov 1994 08:49:37 GMT',
      }),
    );
    const progress: [number, number | undefined][] = [];
    const { res, bytes, result } = await fetchAll(
      `${o.url}/a.png`,
      options({ onProgress: (b, total) => progress.push([b, total]) }),
    );
    assert.ok(bytes.equals(data));
    assert.equal(result.sha256, sha256(data));
    assert.equal(result.bytes, data.length);
    assert.equal(result.resumes, 0);
    assert.deepEqual(result.redirects, []);
    assert.equal(result.url, `${o.url}/a.png`);
    assert.equal(res.status, 200);
    assert.equal(res.contentType, 'image/png');
    assert.equal(res.contentLength, data.length);
    assert.equal(res.etag, '"abc"');
    assert.equal(res.lastModified, 'Sun, 06 Nov 1994 08:49:37 GMT');
    assert.deepEqual(progress.at(-1), [data.length, data.length]);
    assert.ok(progress.every(([b], i) => i === 0 || b > progress[i - 1]![0]));
    const sent = o.hits[0]!.headers;
    assert.match(sent['user-agent'] ?? '', /^Conveyor\//);
    assert.equal(sent['accept-encoding'], 'identity');
    assert.equal(sent.range, undefined);
  });

  it('streams a chunked body without Content-Length, and sends the configured User-Agent', async (t) => {
    const parts = [randomBytes(5000), randomBytes(7000), randomBytes(1)];
    const o = await origin(t, (_req, res) => {
      for (const p of parts) res.write(p);
      res.end();
    });
    const { res, bytes, result } = await fetchAll(o.url, options({ userAgent: 'test-agent/1' }));
    assert.equal(res.contentLength, undefined);
    assert.ok(bytes.equals(Buffer.concat(parts)));
    assert.equal(result.sha256, sha256(Buffer.concat(parts)));
    assert.equal(o.hits[0]!.headers['user-agent'], 'test-agent/1');
  });

  it('accepts exactly maxBytes', async (t) => {
    const data = randomBytes(1000);
    const o = await origin(t, file(data));
    assert.equal((await fetchAll(o.url, options({ maxBytes: 1000 }))).result.bytes, 1000);
  });

  it('keeps the body until a late consumer reads it, buffering only a bounded part', async (t) => {
    const data = randomBytes(100_000);
    let sent!: Promise<unknown>;
    const o = await origin(t, (_req, res) => {
      sent = once(res, 'finish');
      file(data)(_req, res, 1);
    });
    const res = body(await download(o.url, options()));
    await sent; // the origin has handed everything to the kernel and closes the connection
    assert.ok(res.body.readableLength < data.length);
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) chunks.push(chunk);
    assert.equal((await res.done).sha256, sha256(data));
  });

  it('downloads over https with a trusted certificate', async (t) => {
    const data = randomBytes(3000);
    const o = await origin(t, file(data), { tls: true });
    const { result } = await fetchAll(o.url, options({ ca: TLS_CERT }));
    assert.equal(result.sha256, sha256(data));
  });

  it('resolves names through the guarded lookup and connects to the checked address', async (t) => {
    const o = await origin(t, file(Buffer.from('hi')));
    const resolver: Resolver = async () => [{ address: '127.0.0.1', family: 4 }];
    const { result } = await fetchAll(`http://media.test:${o.port}/x`, options({ resolver }));
    assert.equal(result.bytes, 2);
    assert.equal(o.hits[0]!.headers.host, `media.test:${o.port}`);
  });
});

describe('download: size limits', () => {
  it('refuses at once when Content-Length exceeds maxBytes', async (t) => {
    const o = await origin(t, file(randomBytes(2000)));
    await assert.rejects(
      download(o.url, options({ maxBytes: 1999 })),
      isCode('download_too_large', (e) => assert.equal(e.limit, 1999)),
    );
    assert.equal(o.hits.length, 1);
  });

  it('cuts a chunked body as soon as it passes maxBytes, and hangs up', async (t) => {
    let served!: ServerResponse;
    const o = await origin(t, (_req, res) => {
      served = res;
      res.write(randomBytes(800));
      res.write(randomBytes(800)); // 1600 > 1000, and the origin would go on forever
    });
    await bodyFails(o.url, options({ maxBytes: 1000 }), 'download_too_large', (e) =>
      assert.equal(e.retryable, false),
    );
    if (!served.destroyed) await once(served, 'close');
  });
});

describe('download: timeouts', () => {
  it('times out in the connect phase when the name never resolves', async () => {
    const resolver: Resolver = () => new Promise(() => {});
    await assert.rejects(
      download('http://hang.test:8080/', options({ resolver, connectTimeoutMs: 100 })),
      isCode('download_timeout', (e) => {
        assert.ok(e instanceof DownloadTimeoutError);
        assert.equal(e.phase, 'connect');
        assert.equal(e.retryable, true);
      }),
    );
  });

  it('times out (idle) when the origin accepts the connection and never answers', async (t) => {
    const url = await silent(t);
    await assert.rejects(
      download(url, options({ idleTimeoutMs: 200 })),
      isCode('download_timeout', (e) => assert.equal(e.phase, 'idle')),
    );
  });

  it('times out (idle) when the origin sends headers and then nothing', async (t) => {
    const o = await origin(t, (_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write(Buffer.alloc(10));
    });
    await bodyFails(o.url, options({ idleTimeoutMs: 200 }), 'download_timeout', (e) =>
      assert.equal(e.phase, 'idle'),
    );
  });

  it('treats a stall as a drop: resumes, and fails with the idle timeout when the origin stalls again', async (t) => {
    const o = await origin(t, (req, res) => {
      if (req.headers.range === undefined) {
        res.writeHead(200, { 'content-length': 1000, etag: '"s"', 'accept-ranges': 'bytes' });
        res.write(Buffer.alloc(10));
      } else {
        res.writeHead(206, { 'content-length': 990, 'content-range': 'bytes 10-999/1000', etag: '"s"' });
        res.flushHeaders();
      }
    });
    await bodyFails(o.url, options({ idleTimeoutMs: 150, maxResumes: 1 }), 'download_timeout', (e) =>
      assert.equal(e.phase, 'idle'),
    );
    assert.equal(o.hits.length, 2);
    assert.equal(o.hits[1]!.headers.range, 'bytes=10-');
  });

  it('bounds the whole download with the total timeout, before and after the headers', async (t) => {
    const url = await silent(t);
    await assert.rejects(
      download(url, options({ totalTimeoutMs: 150 })),
      isCode('download_timeout', (e) => assert.equal(e.phase, 'total')),
    );
    const o = await origin(t, (_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write(Buffer.alloc(10));
    });
    await bodyFails(o.url, options({ totalTimeoutMs: 150 }), 'download_timeout', (e) =>
      assert.equal(e.phase, 'total'),
    );
  });
});

/** Headers, then one byte every `everyMs` until the client hangs up: an origin that never goes idle. */
function trickle(length: number, everyMs: number, headers: Record<string, string> = {}): Handler {
  return (_req, res) => {
    res.writeHead(200, { ...headers, 'content-length': length });
    res.write(Buffer.alloc(1));
    const timer = setInterval(() => res.write(Buffer.alloc(1)), everyMs);
    res.on('close', () => clearInterval(timer));
  };
}

describe('download: minimum transfer rate', () => {
  it('fails a trickling origin as too slow (retryable) within about a window, without resuming it', async (t) => {
    // About 50 B/s against a minimum of 1000 B/s; a validator and resumes on offer, and an idle timeout
    // the trickle never reaches.
    const o = await origin(t, trickle(100_000, 20, { etag: '"t"', 'accept-ranges': 'bytes' }));
    await bodyFails(
      o.url,
      options({ minBytesPerSecond: 1000, rateWindowMs: 200, idleTimeoutMs: 5000, maxResumes: 2 }),
      'download_too_slow',
      (e) => {
        assert.equal(e.retryable, true);
        assert.ok(e.bytesPerSecond < 1000, String(e.bytesPerSecond));
        assert.ok(e.windowMs >= 200);
        assert.match(e.message, /^too slow: [\d.]+ B\/s over [\d.]+ s, minimum 1000 B\/s$/);
      },
    );
    assert.equal(o.hits.length, 1);
  });

  it('is off by default: the same trickle runs on until the total timeout', async (t) => {
    const o = await origin(t, trickle(100_000, 20));
    await bodyFails(o.url, options({ totalTimeoutMs: 400 }), 'download_timeout', (e) =>
      assert.equal(e.phase, 'total'),
    );
  });

  it('resumes a dropped fast download as before', async (t) => {
    const data = randomBytes(100_000);
    const o = await origin(t, file(data, { etag: '"v1"', 'accept-ranges': 'bytes' }, 30_000));
    const { result } = await fetchAll(
      o.url,
      options({ maxResumes: 1, minBytesPerSecond: 1000, rateWindowMs: 5000 }),
    );
    assert.equal(result.sha256, sha256(data));
    assert.equal(result.resumes, 1);
    assert.equal(o.hits[1]!.headers.range, 'bytes=30000-');
  });

  it('does not count the time a slow consumer holds the download back', async (t) => {
    const data = randomBytes(4 << 20);
    const o = await origin(t, file(data));
    const res = body(
      await download(o.url, options({ maxBytes: 8 << 20, minBytesPerSecond: 1000, rateWindowMs: 200 })),
    );
    // The consumer reads nothing until the body is full (the download then pauses the socket), and then
    // waits several windows before reading: in that time no byte arrives, which is not the origin's doing.
    while (res.body.readableLength < res.body.readableHighWaterMark) await sleep(5);
    await sleep(1000);
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) chunks.push(chunk);
    assert.equal((await res.done).sha256, sha256(data));
  });
});

describe('download: redirects', () => {
  function chain(t: TestContext) {
    return origin(t, (req, res) => {
      const port = (req.socket.address() as AddressInfo).port;
      const to: Record<string, [number, string]> = {
        '/r1': [301, '/r2'],
        '/r2': [302, `http://127.0.0.1:${port}/dir/r3`],
        '/dir/r3': [303, 'r4'], // relative to /dir/
        '/dir/r4': [307, `//127.0.0.1:${port}/r5`],
        '/r5': [308, '/final?x=1'],
        '/loop': [302, '/loop'],
        '/nowhere': [302, ''],
      };
      const hop = to[req.url ?? ''];
      if (hop === undefined) return void res.end('done');
      res.writeHead(hop[0], hop[1] ? { location: hop[1] } : {});
      res.end();
    });
  }

  it('follows 301, 302, 303, 307 and 308 with relative Locations, within the limit', async (t) => {
    const o = await chain(t);
    const { bytes, result } = await fetchAll(`${o.url}/r1`, options({ maxRedirects: 5 }));
    assert.equal(bytes.toString(), 'done');
    assert.equal(result.url, `${o.url}/final?x=1`);
    assert.deepEqual(
      result.redirects,
      ['/r1', '/r2', '/dir/r3', '/dir/r4', '/r5'].map((p) => o.url + p),
    );
  });

  it('refuses one redirect more than maxRedirects without following it', async (t) => {
    const o = await chain(t);
    await assert.rejects(
      download(`${o.url}/r1`, options({ maxRedirects: 4 })),
      isCode('download_too_many_redirects', (e) => {
        assert.ok(e instanceof TooManyRedirectsError);
        assert.equal(e.chain.length, 5);
        assert.equal(e.retryable, false);
      }),
    );
    assert.equal(o.hits.length, 5);
    await assert.rejects(
      download(`${o.url}/loop`, options({ maxRedirects: 0 })),
      isCode('download_too_many_redirects'),
    );
  });

  it('refuses a redirect without a Location', async (t) => {
    const o = await chain(t);
    await assert.rejects(
      download(`${o.url}/nowhere`, options()),
      isCode('download_http_status', (e) => assert.equal(e.status, 302)),
    );
  });

  it('refuses a redirect from https to http, and does not follow it', async (t) => {
    const plain = await origin(t, file(Buffer.from('x')));
    const secure = await origin(
      t,
      (_req, res) => {
        res.writeHead(302, { location: `${plain.url}/x` });
        res.end();
      },
      { tls: true },
    );
    await assert.rejects(download(secure.url, options({ ca: TLS_CERT })), isCode('bad_url'));
    assert.equal(plain.hits.length, 0);
  });
});

describe('download: SSRF', () => {
  const redirector = (t: TestContext, location: string) =>
    origin(t, (_req, res) => {
      res.writeHead(302, { location });
      res.end();
    });

  it('never connects to a loopback origin that is not allow-listed', async (t) => {
    const target = await origin(t, file(Buffer.from('secret')));
    const open: SsrfPolicy = { allowAddresses: [], denyHosts: [] };
    await assert.rejects(download(target.url, options({ policy: open })), isCode('ssrf_forbidden'));
    const resolver: Resolver = async () => [{ address: '127.0.0.1', family: 4 }];
    await assert.rejects(
      download(`http://innocent.test:${target.port}/`, options({ policy: open, resolver })),
      isCode('ssrf_forbidden', (e) => assert.ok(e instanceof ForbiddenAddressError)),
    );
    assert.equal(target.hits.length, 0);
  });

  it('re-checks every redirect target: literals, resolved names and IPv6 loopback all get zero hits', async (t) => {
    const v4 = await origin(t, file(Buffer.from('secret')), { host: '127.0.0.2' });
    const v6 = await origin(t, file(Buffer.from('secret')), { host: '::1' });
    const resolver: Resolver = async (host) => [
      { address: host === 'internal.test' ? '127.0.0.2' : '127.0.0.1', family: 4 },
    ];
    for (const target of [
      `${v4.url}/`,
      `http://internal.test:${v4.port}/`,
      `${v6.url}/`,
      `http://[::ffff:127.0.0.2]:${v4.port}/`,
    ]) {
      const start = await redirector(t, target);
      await assert.rejects(
        download(`${start.url}/`, options({ resolver })),
        isCode('ssrf_forbidden'),
        target,
      );
      assert.equal(start.hits.length, 1);
    }
    assert.equal(v4.hits.length + v6.hits.length, 0);
  });

  it('resolves the name again for every connection, so DNS rebinding is caught', async (t) => {
    const allowed = await origin(t, (req, res) => {
      res.writeHead(302, { location: `http://cdn.test:${(req.socket.address() as AddressInfo).port}/next` });
      res.end();
    });
    const forbidden = await origin(t, file(Buffer.from('secret')), { host: '127.0.0.2', port: allowed.port });
    const answers = ['127.0.0.1', '127.0.0.2'];
    const resolver: Resolver = async () => [{ address: answers.shift() ?? '127.0.0.2', family: 4 }];
    await assert.rejects(
      download(`http://cdn.test:${allowed.port}/`, options({ resolver })),
      isCode('ssrf_forbidden', (e) => assert.equal(e.address, '127.0.0.2')),
    );
    assert.equal(allowed.hits.length, 1);
    assert.equal(forbidden.hits.length, 0);
  });

  it('refuses unusable URLs before any traffic', async () => {
    for (const u of ['ftp://127.0.0.1/', 'http://user:pw@127.0.0.1/', 'nope']) {
      await assert.rejects(
        download(u, options()),
        isCode('bad_url', (e) => assert.equal(e.retryable, false)),
      );
    }
  });
});

describe('download: resume after a dropped connection', () => {
  const data = randomBytes(100_000);

  it('resumes with Range and If-Range and stitches one body with the right SHA-256', async (t) => {
    const o = await origin(t, file(data, { etag: '"v1"', 'accept-ranges': 'bytes' }, 30_000));
    const { bytes, result } = await fetchAll(o.url, options({ maxResumes: 1 }));
    assert.ok(bytes.equals(data));
    assert.equal(result.sha256, sha256(data));
    assert.equal(result.resumes, 1);
    assert.equal(o.hits.length, 2);
    assert.equal(o.hits[1]!.headers.range, 'bytes=30000-');
    assert.equal(o.hits[1]!.headers['if-range'], '"v1"');
  });

  it('uses a strong Last-Modified when there is no ETag, and learns the total from Content-Range', async (t) => {
    const lm = 'Sun, 06 Nov 1994 08:49:37 GMT';
    const chunked: Handler = (req, res, n) => {
      if (n === 1) {
        res.writeHead(200, { 'last-modified': lm, date: 'Mon, 07 Nov 1994 08:49:37 GMT' });
        res.write(data.subarray(0, 12_345), () => res.socket?.destroy());
      } else file(data)(req, res, n);
    };
    const o = await origin(t, chunked);
    const { result } = await fetchAll(o.url, options());
    assert.equal(result.sha256, sha256(data));
    assert.equal(o.hits[1]!.headers['if-range'], lm);
  });

  it('does not resume without a validator, with Accept-Ranges: none, or with maxResumes 0', async (t) => {
    for (const [headers, max] of [
      [{}, 2],
      [{ etag: 'W/"weak"' }, 2],
      [{ etag: '"v1"', 'accept-ranges': 'none' }, 2],
      [{ etag: '"v1"' }, 0],
    ] as const) {
      const o = await origin(t, file(data, headers, 50_000));
      await bodyFails(o.url, options({ maxResumes: max }), 'download_network', (e) =>
        assert.equal(e.retryable, true),
      );
      assert.equal(o.hits.length, 1, JSON.stringify(headers));
    }
  });

  it('fails (retryable) when the origin answers the resume with 200 or a wrong Content-Range', async (t) => {
    const whole = await origin(t, (_req, res, n) => {
      res.writeHead(200, { etag: '"v1"', 'content-length': data.length });
      if (n === 1) res.write(data.subarray(0, 10), () => res.socket?.destroy());
      else res.end(data);
    });
    await bodyFails(whole.url, options(), 'download_network', (e) =>
      assert.match(e.message, /whole representation/),
    );
    const skewed = await origin(t, (req, res, n) => {
      if (n === 1) return file(data, { etag: '"v1"' }, 10)(req, res, n);
      res.writeHead(206, { 'content-range': `bytes 11-${data.length - 1}/${data.length}` });
      res.end(data.subarray(11));
    });
    await bodyFails(skewed.url, options(), 'download_network', (e) =>
      assert.match(e.message, /Content-Range/),
    );
  });

  it('checks the address again for the resume, and does not retry an SSRF refusal', async (t) => {
    const o = await origin(t, file(data, { etag: '"v1"' }, 20_000));
    const answers = ['127.0.0.1'];
    let calls = 0;
    const resolver: Resolver = async () => {
      calls += 1;
      return [{ address: answers.shift() ?? '127.0.0.2', family: 4 }];
    };
    await bodyFails(`http://cdn.test:${o.port}/`, options({ resolver, maxResumes: 3 }), 'ssrf_forbidden');
    assert.equal(o.hits.length, 1);
    assert.equal(calls, 2);
  });

  it('gives up after maxResumes drops', async (t) => {
    const flaky: Handler = (req, res) => {
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const headers: Record<string, string> = { etag: '"v1"', 'content-length': String(data.length - start) };
      if (start > 0) headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
      res.writeHead(start > 0 ? 206 : 200, headers);
      res.write(data.subarray(start, start + 1000), () => res.socket?.destroy());
    };
    const o = await origin(t, flaky);
    await bodyFails(o.url, options({ maxResumes: 2 }), 'download_network');
    assert.deepEqual(
      o.hits.map((h) => h.headers.range),
      [undefined, 'bytes=1000-', 'bytes=2000-'],
    );
  });
});

describe('download: statuses and conditional requests', () => {
  it('reports a 304 to a conditional request as notModified', async (t) => {
    const o = await origin(t, (req, res) => {
      res.writeHead(req.headers['if-none-match'] === '"v1"' ? 304 : 200, { etag: '"v1"' });
      res.end();
    });
    const res = await download(
      o.url,
      options({ ifNoneMatch: '"v1"', ifModifiedSince: new Date(Date.UTC(1994, 10, 6, 8, 49, 37)) }),
    );
    assert.equal(res.notModified, true);
    assert.equal(res.status, 304);
    assert.equal(res.etag, '"v1"');
    assert.equal(o.hits[0]!.headers['if-modified-since'], 'Sun, 06 Nov 1994 08:49:37 GMT');
  });

  it('treats a 304 to an unconditional request as an error', async (t) => {
    const o = await origin(t, (_req, res) => {
      res.writeHead(304);
      res.end();
    });
    await assert.rejects(
      download(o.url, options()),
      isCode('download_http_status', (e) => assert.equal(e.retryable, false)),
    );
  });

  it('marks 4xx permanent and 5xx, 408 and 429 retryable, with Retry-After', async (t) => {
    const cases: [number, boolean, string | undefined, number | undefined][] = [
      [404, false, undefined, undefined],
      [410, false, undefined, undefined],
      [403, false, undefined, undefined],
      [204, false, undefined, undefined],
      [503, true, '120', 120_000],
      [429, true, '7', 7_000],
      [408, true, undefined, undefined],
      [500, true, 'soon', undefined],
    ];
    for (const [status, retryable, retryAfter, ms] of cases) {
      const o = await origin(t, (_req, res) => {
        res.writeHead(status, retryAfter ? { 'retry-after': retryAfter } : {});
        res.end();
      });
      await assert.rejects(
        download(o.url, options()),
        isCode('download_http_status', (e) => {
          assert.ok(e instanceof HttpStatusError);
          assert.equal(e.status, status);
          assert.equal(e.retryable, retryable, String(status));
          assert.equal(e.retryAfterMs, ms);
        }),
      );
    }
  });

  it('reports refused and reset connections as retryable network errors', async (t) => {
    const gone = await origin(t, () => {});
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const closedPort = (probe.address() as AddressInfo).port;
    probe.close();
    await once(probe, 'close');
    await assert.rejects(
      download(`http://127.0.0.1:${closedPort}/`, options()),
      isCode('download_network', (e) => {
        assert.ok(e instanceof NetworkError);
        assert.equal(e.errno, 'ECONNREFUSED');
        assert.equal(e.retryable, true);
      }),
    );
    const reset = await origin(t, (req) => req.socket.destroy());
    await assert.rejects(
      download(reset.url, options()),
      isCode('download_network', (e) => assert.equal(e.retryable, true)),
    );
    await assert.rejects(
      download(`http://nowhere.test:${gone.port}/`, options({ resolver: async () => [] })),
      isCode('download_network', (e) => assert.equal(e.errno, 'ENOTFOUND')),
    );
  });
});

describe('download: cancellation', () => {
  const data = randomBytes(50_000);

  it('aborts before any traffic when the signal has already fired', async (t) => {
    const o = await origin(t, file(data));
    await assert.rejects(
      download(o.url, options({ signal: AbortSignal.abort('stop') })),
      isCode('download_aborted'),
    );
    assert.equal(o.hits.length, 0);
  });

  it('aborts mid-body when the signal fires', async (t) => {
    const o = await origin(t, (_req, res) => {
      res.writeHead(200, { 'content-length': data.length });
      res.write(data.subarray(0, 1000)); // and then wait
    });
    const controller = new AbortController();
    await bodyFails(
      o.url,
      options({ signal: controller.signal, onProgress: () => controller.abort('stop') }),
      'download_aborted',
      (e) => assert.equal(e.cause, 'stop'),
    );
  });

  it('cancels the download when the consumer fails, and when onProgress throws', async (t) => {
    let served!: ServerResponse;
    const o = await origin(t, (_req, res) => {
      served = res;
      res.writeHead(200, { 'content-length': data.length });
      res.write(data.subarray(0, 1000)); // and then wait, so the download cannot finish first
    });
    const res = body(await download(o.url, options()));
    const sink = new Writable({ write: (_chunk, _enc, cb) => cb(new Error('disk full')) });
    await assert.rejects(pipeline(res.body, sink), /disk full/);
    await assert.rejects(res.done, isCode('download_aborted'));
    if (!served.destroyed) await once(served, 'close');
    await bodyFails(
      o.url,
      options({
        onProgress: () => {
          throw new Error('boom');
        },
      }),
      'download_aborted',
    );
  });
});

describe('protocol helpers', () => {
  it('parseContentRange', () => {
    assert.deepEqual(parseContentRange('bytes 0-9/10'), { first: 0, last: 9, complete: 10 });
    assert.deepEqual(parseContentRange('bytes 5-9/*'), { first: 5, last: 9, complete: undefined });
    for (const bad of [
      undefined,
      '',
      'bytes 5-4/10',
      'bytes 0-10/10',
      'bytes */10',
      'items 0-1/2',
      'bytes 0-1/2, 3',
    ]) {
      assert.equal(parseContentRange(bad), undefined, String(bad));
    }
  });

  it('ifRangeValidator prefers a strong ETag and refuses weak validators', () => {
    assert.equal(ifRangeValidator({ etag: '"a"' }), '"a"');
    assert.equal(
      ifRangeValidator({
        etag: 'W/"a"',
        'last-modified': 'Sun, 06 Nov 1994 08:49:37 GMT',
        date: 'Mon, 07 Nov 1994 08:49:37 GMT',
      }),
      undefined,
    );
    const lm = 'Sun, 06 Nov 1994 08:49:37 GMT';
    assert.equal(ifRangeValidator({ 'last-modified': lm, date: 'Sun, 06 Nov 1994 08:49:38 GMT' }), lm);
    assert.equal(ifRangeValidator({ 'last-modified': lm, date: lm }), undefined);
    assert.equal(ifRangeValidator({ 'last-modified': lm }), undefined);
    assert.equal(ifRangeValidator({}), undefined);
  });

  it('parseRetryAfter reads delay-seconds and HTTP-dates', () => {
    const now = new Date(Date.UTC(2025, 0, 1, 0, 0, 0));
    assert.equal(parseRetryAfter('0', now), 0);
    assert.equal(parseRetryAfter(' 30 ', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 01 Jan 2025 00:01:00 GMT', now), 60_000);
    assert.equal(parseRetryAfter('Tue, 31 Dec 2024 00:00:00 GMT', now), 0);
    for (const bad of [undefined, '', '-1', '1.5', 'tomorrow'])
      assert.equal(parseRetryAfter(bad, now), undefined);
  });

  it('isRetryableStatus', () => {
    assert.deepEqual([400, 401, 403, 404, 408, 410, 429, 499, 500, 502, 503, 504].map(isRetryableStatus), [
      false,
      false,
      false,
      false,
      true,
      false,
      true,
      false,
      true,
      true,
      true,
      true,
    ]);
  });

  it('download refuses nonsensical limits', async () => {
    for (const bad of [
      { maxBytes: 0 },
      { idleTimeoutMs: -1 },
      { totalTimeoutMs: 1.5 },
      { maxRedirects: -1 },
      { minBytesPerSecond: -1 },
      { minBytesPerSecond: 1000 },
      { minBytesPerSecond: 1000, rateWindowMs: 0 },
    ]) {
      await assert.rejects(download('http://127.0.0.1/', options(bad)), RangeError);
    }
  });
});
