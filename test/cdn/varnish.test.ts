import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { VarnishProvider } from '../../src/cdn/providers/varnish.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { type Recorder, startRecorder } from '../helpers/recorder.ts';
import { skipWithoutVarnish, startVarnish, type Varnish } from '../helpers/varnish.ts';

// The shipped VCL (deploy/varnish/conveyor.vcl) in a real varnishd, with Conveyor behind it, then in front
// of a small backend that sends xkey tags (Conveyor does not send them yet), then of one that speaks
// WebSocket.

const skip = skipWithoutVarnish();
/** How long `until` waits for a state before it calls the test hung. */
const UNTIL_GUARD_MS = 30_000;
/** Between two looks at a state that another process changes. */
const POLL_MS = 10;

/** One answer through Varnish, body read to the end. */
interface Got {
  status: number;
  headers: Headers;
  body: Buffer;
}

async function get(base: string, path: string, headers: Record<string, string> = {}): Promise<Got> {
  const res = await fetch(base + path, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

async function purge(base: string, path: string, headers: Record<string, string> = {}): Promise<Got> {
  const res = await fetch(base + path, { method: 'PURGE', headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/**
 * A PURGE sent from `localAddress` (any 127.0.0.0/8 address is loopback on Linux), so the ACL sees a
 * client that is not 127.0.0.1.
 */
function purgeFrom(
  varnish: Varnish,
  path: string,
  localAddress: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: IncomingMessage['headers'] }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: varnish.host, port: varnish.port, method: 'PURGE', path, headers, localAddress, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** How many requests for `path` (query included) reached the backend so far. */
function reached(recorder: Recorder, path: string): number {
  return recorder.requests.filter((line) => line === `GET ${path}`).length;
}

describe('Varnish with the shipped VCL in front of Conveyor', { skip }, () => {
  let server: TestServer;
  /** Between Varnish and Conveyor: counts what reaches the origin and forwards it. */
  let counter: Recorder;
  let varnish: Varnish;
  let edge: string;

  before(async () => {
    // A Varnish among the CDNs: public responses carry `xkey` tags (its purges go to the edge started
    // below, through a provider the test makes; the API URL here is never called).
    server = await startConveyor(undefined, {
      cdnProviders: JSON.stringify([
        { name: 'edge', kind: 'varnish', baseUrl: 'http://edge.invalid', apiUrl: 'http://127.0.0.1:9' },
      ]),
    });
    const origin = new URL(server.url);
    counter = await startRecorder('127.0.0.1', (req, res) => {
      const forward = httpRequest(
        { host: origin.hostname, port: origin.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode!, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
    varnish = await startVarnish({ backend: { host: counter.host, port: counter.port } });
    edge = varnish.url;
  });

  after(async () => {
    await varnish?.close();
    await counter?.close();
    await server?.close();
  });

  const bytes = (label: string) => Buffer.from(`${label}-${randomBytes(16).toString('hex')}`);

  it('caches a public asset: a MISS, then a HIT with the same bytes, cookies or not', async () => {
    const content = bytes('public');
    const asset = await upload(server, content);
    const path = `/a/${asset.id}`;
    const first = await get(edge, path);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    assert.deepEqual(first.body, content);
    const second = await get(edge, path, { cookie: 'session=abc' });
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('x-cache'), 'HIT');
    assert.deepEqual(second.body, content);
    assert.equal(second.headers.get('etag'), first.headers.get('etag'));
    // Conveyor's own Cache-Control reaches the client untouched.
    assert.equal(second.headers.get('cache-control'), first.headers.get('cache-control'));
    assert.match(first.headers.get('cache-control')!, /^public, /);
    assert.equal(reached(counter, path), 1);
  });

  it("tags public responses with xkey; a version's tag purges its URL and leaves the asset's", async () => {
    const asset = await upload(server, bytes('tagged'));
    const published = await server.json('POST', `/api/v1/assets/${asset.id}/publish`, {});
    assert.equal(published.status, 201, JSON.stringify(published.body));
    const version = published.body.id as string;
    const direct = await fetch(`${server.url}/v/${version}`);
    await direct.arrayBuffer();
    const tags = direct.headers.get('xkey')!.split(' ');
    assert.deepEqual(tags.slice(0, 2), [asset.id, version]);
    assert.match(tags[2]!, /^ten_/);
    const latestDirect = await fetch(`${server.url}/a/${asset.id}`);
    await latestDirect.arrayBuffer();
    assert.deepEqual(latestDirect.headers.get('xkey')!.split(' '), [asset.id, tags[2]]);

    const [latest, pinned] = [`/a/${asset.id}`, `/v/${version}`];
    for (const path of [latest, pinned]) {
      await get(edge, path);
      assert.equal((await get(edge, path)).headers.get('x-cache'), 'HIT', path);
    }
    const provider = new VarnishProvider({ name: 'edge', baseUrl: edge, apiUrl: edge, timeoutMs: 5_000 });
    await provider.purge({ kind: 'tags', items: [version] });
    assert.equal((await get(edge, pinned)).headers.get('x-cache'), 'MISS');
    assert.equal((await get(edge, latest)).headers.get('x-cache'), 'HIT');
    await provider.purge({ kind: 'tags', items: [asset.id] });
    assert.equal((await get(edge, latest)).headers.get('x-cache'), 'MISS');
    assert.equal((await get(edge, pinned)).headers.get('x-cache'), 'MISS');
  });

  it('serves new content after a replacement and a PURGE of the URL', async () => {
    const old = bytes('old');
    const asset = await upload(server, old);
    const path = `/a/${asset.id}`;
    assert.equal((await get(edge, path)).headers.get('x-cache'), 'MISS');
    const replacement = bytes('new');
    const put = await server.fetch(`/api/v1/assets/${asset.id}/content`, {
      method: 'PUT',
      body: replacement,
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(put.status, 200, await put.text());
    // The edge keeps what it has until it is told.
    const stale = await get(edge, path);
    assert.equal(stale.headers.get('x-cache'), 'HIT');
    assert.deepEqual(stale.body, old);

    const purged = await purge(edge, path);
    assert.equal(purged.status, 200, purged.body.toString());
    assert.equal(purged.headers.get('xkey-purged'), '1');

    const fresh = await get(edge, path);
    assert.equal(fresh.headers.get('x-cache'), 'MISS');
    assert.deepEqual(fresh.body, replacement);
    const again = await get(edge, path);
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.deepEqual(again.body, replacement);
    assert.equal(reached(counter, path), 2);
  });

  it('stops serving an asset switched to private once its URL is purged', async () => {
    const content = bytes('going-private');
    const asset = await upload(server, content);
    const path = `/a/${asset.id}`;
    await get(edge, path);
    assert.equal((await get(edge, path)).headers.get('x-cache'), 'HIT');
    const patch = await server.json('PATCH', `/api/v1/assets/${asset.id}`, { visibility: 'private' });
    assert.equal(patch.status, 200, JSON.stringify(patch.body));
    // Until the purge, the edge still holds the public copy: the purge is what ends it.
    const held = await get(edge, path);
    assert.equal(held.headers.get('x-cache'), 'HIT');
    assert.deepEqual(held.body, content);

    assert.equal((await purge(edge, path)).status, 200);

    const direct = await get(server.url, path);
    const through = await get(edge, path);
    assert.notEqual(through.headers.get('x-cache'), 'HIT');
    assert.equal(through.status, direct.status);
    assert.equal(through.status, 404);
    // The same problem document, but for the id each request got.
    const { requestId: _through, ...throughProblem } = JSON.parse(through.body.toString());
    const { requestId: _direct, ...directProblem } = JSON.parse(direct.body.toString());
    assert.deepEqual(throughProblem, directProblem);
    assert.equal(through.headers.get('cache-control'), direct.headers.get('cache-control'));
    assert.ok(!through.body.includes(content));
  });

  it('never caches private content fetched with a token or an API key', async () => {
    const content = bytes('private');
    const asset = await upload(server, content, { visibility: 'private' });
    const token = await server.json('POST', `/api/v1/assets/${asset.id}/tokens`, { ttlSeconds: 600 });
    assert.equal(token.status, 201, JSON.stringify(token.body));
    const tokenPath = `/a/${asset.id}?token=${encodeURIComponent(token.body.token)}`;
    for (let i = 0; i < 2; i++) {
      const got = await get(edge, tokenPath);
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, content);
      assert.equal(got.headers.get('x-cache'), 'PASS');
      assert.equal(got.headers.get('cache-control'), 'private, no-store');
    }
    assert.equal(reached(counter, tokenPath), 2);

    const keyPath = `/a/${asset.id}`;
    for (let i = 0; i < 2; i++) {
      const got = await get(edge, keyPath, { authorization: `Bearer ${server.adminKey}` });
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, content);
      assert.equal(got.headers.get('x-cache'), 'PASS');
    }
    assert.equal(reached(counter, keyPath), 2);
    // Nothing private was stored under the bare URL either.
    const anonymous = await get(edge, keyPath);
    assert.equal(anonymous.status, 404);
    assert.ok(!anonymous.body.includes(content));
  });

  it('refuses PURGE from a client outside the purgers ACL', async () => {
    const content = bytes('kept');
    const asset = await upload(server, content);
    const path = `/a/${asset.id}`;
    await get(edge, path);
    const refused = await purgeFrom(varnish, path, '127.0.0.2');
    assert.equal(refused.status, 403);
    assert.equal(refused.headers['xkey-purged'], undefined);
    const tagRefused = await purgeFrom(varnish, path, '127.0.0.2', { 'xkey-purge': `ast_${asset.id}` });
    assert.equal(tagRefused.status, 403);
    const still = await get(edge, path);
    assert.equal(still.headers.get('x-cache'), 'HIT');
    assert.deepEqual(still.body, content);
    // The same request from a listed client is obeyed.
    assert.equal((await purgeFrom(varnish, path, '127.0.0.1')).status, 200);
    assert.equal((await get(edge, path)).headers.get('x-cache'), 'MISS');
  });

  it('sends the API and health checks to Conveyor every time', async () => {
    for (let i = 0; i < 2; i++) {
      const got = await get(edge, '/healthz');
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('x-cache'), 'PASS');
    }
    assert.equal(reached(counter, '/healthz'), 2);
  });
});

describe('xkey tag purge with the shipped VCL', { skip }, () => {
  /** What the backend tags each URL with, as Conveyor's derived outputs would be tagged. */
  const TAGS: Record<string, string> = {
    '/v/ver_1': 'ver_1 ast_1',
    '/v/ver_1/thumb.webp': 'ver_1 ast_1',
    '/v/ver_1/hls/index.m3u8': 'ver_1 ast_1',
    '/v/ver_2': 'ver_2 ast_1',
    '/a/ast_1': 'ast_1',
    '/a/ast_2': 'ast_2',
    '/a/ast_3': 'ast_3',
  };
  /** Every answer names the URL and how many times the backend was asked for it, so a refetch shows. */
  const served = new Map<string, number>();
  let backend: Recorder;
  let varnish: Varnish;
  let edge: string;

  before(async () => {
    backend = await startRecorder('127.0.0.1', (req, res) => {
      const path = req.url!;
      const tags = TAGS[path];
      if (tags === undefined) {
        res.writeHead(404, { 'cache-control': 'no-store' }).end();
        return;
      }
      const count = (served.get(path) ?? 0) + 1;
      served.set(path, count);
      res
        .writeHead(200, {
          'content-type': 'text/plain',
          // A long grace, so a soft-purged object is certain to be served stale while it is refetched.
          'cache-control': 'public, max-age=3600, stale-while-revalidate=3600',
          xkey: tags,
        })
        .end(`${path} #${count}`);
    });
    varnish = await startVarnish({ backend: { host: backend.host, port: backend.port } });
    edge = varnish.url;
  });

  after(async () => {
    await varnish?.close();
    await backend?.close();
  });

  /** Fetches every URL until each is a HIT, and answers their bodies. */
  async function warm(): Promise<Record<string, string>> {
    const bodies: Record<string, string> = {};
    for (const path of Object.keys(TAGS)) {
      await get(edge, path);
      const hit = await get(edge, path);
      assert.equal(hit.headers.get('x-cache'), 'HIT', path);
      assert.equal(hit.headers.get('xkey'), null, 'the xkey header is hidden from clients');
      bodies[path] = hit.body.toString();
    }
    return bodies;
  }

  /** The URLs whose next request is a MISS, checked on every URL (each then becomes cached again). */
  async function misses(): Promise<string[]> {
    const missed: string[] = [];
    for (const path of Object.keys(TAGS)) {
      if ((await get(edge, path)).headers.get('x-cache') === 'MISS') missed.push(path);
    }
    return missed;
  }

  it('purges exactly the objects carrying a tag, and says how many', async () => {
    await warm();
    const purged = await purge(edge, '/', { 'xkey-purge': 'ver_1' });
    assert.equal(purged.status, 200);
    assert.equal(purged.headers.get('xkey-purged'), '3');
    assert.deepEqual(await misses(), ['/v/ver_1', '/v/ver_1/thumb.webp', '/v/ver_1/hls/index.m3u8']);

    const several = await purge(edge, '/', { 'xkey-purge': 'ver_2 ast_3' });
    assert.equal(several.headers.get('xkey-purged'), '2');
    assert.deepEqual(await misses(), ['/v/ver_2', '/a/ast_3']);

    const everything = await purge(edge, '/', { 'xkey-purge': 'ast_1' });
    assert.equal(everything.headers.get('xkey-purged'), '5');
    assert.deepEqual(await misses(), [
      '/v/ver_1',
      '/v/ver_1/thumb.webp',
      '/v/ver_1/hls/index.m3u8',
      '/v/ver_2',
      '/a/ast_1',
    ]);

    const none = await purge(edge, '/', { 'xkey-purge': 'ast_404' });
    assert.equal(none.headers.get('xkey-purged'), '0');
    assert.deepEqual(await misses(), []);
  });

  it("takes Conveyor's Varnish client's purges: a URL, and tags", async () => {
    await warm();
    // The client sends PURGE under the public host (its baseUrl), the Host viewers' requests were cached
    // under: here the edge itself.
    const provider = new VarnishProvider({
      name: 'edge',
      baseUrl: edge,
      apiUrl: edge,
      maxTags: 64,
      timeoutMs: 5_000,
    });
    await provider.purge({ kind: 'urls', items: [`${edge}/a/ast_2`] });
    assert.deepEqual(await misses(), ['/a/ast_2']);
    await provider.purge({ kind: 'tags', items: ['ver_2', 'ast_3'] });
    assert.deepEqual(await misses(), ['/v/ver_2', '/a/ast_3']);
  });

  it('soft-purges a tag: stale answers while Varnish refetches, then the new ones', async () => {
    const before = await warm();
    const soft = await purge(edge, '/', { 'xkey-softpurge': 'ver_1' });
    assert.equal(soft.status, 200);
    assert.equal(soft.headers.get('xkey-purged'), '3');
    const tagged = ['/v/ver_1', '/v/ver_1/thumb.webp', '/v/ver_1/hls/index.m3u8'];
    for (const path of tagged) {
      const counted = served.get(path)!;
      // In grace: the old object, and a background fetch of the new one.
      const stale = await get(edge, path);
      assert.equal(stale.headers.get('x-cache'), 'HIT');
      assert.equal(stale.body.toString(), before[path]);
      await until(() => served.get(path) === counted + 1, `${path} refetched`);
      // Wait for the refetched object to be the one delivered (the background fetch ends after sending).
      let body = '';
      await until(async () => {
        body = (await get(edge, path)).body.toString();
        return body !== before[path];
      }, `${path} renewed`);
      assert.equal(body, `${path} #${counted + 1}`);
    }
    // The others were left alone.
    assert.deepEqual(await misses(), []);
    for (const path of Object.keys(TAGS).filter((p) => !tagged.includes(p))) {
      assert.equal((await get(edge, path)).body.toString(), before[path]);
    }
  });
});

/** Waits until `check` holds; a guard against a hang, not a timing assumption. */
async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + UNTIL_GUARD_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}`);
    await sleep(POLL_MS);
  }
}

describe('WebSockets through the shipped VCL', { skip }, () => {
  let backend: Server;
  let varnish: Varnish;
  /** Upgraded sockets leave the server's bookkeeping, so closing it must end them itself. */
  const upgraded = new Set<Socket>();

  before(async () => {
    backend = createServer((_req, res) => res.writeHead(404).end());
    backend.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      upgraded.add(socket);
      // RFC 6455 §4.2.2: Sec-WebSocket-Accept is the base64 SHA-1 of the key joined with this GUID.
      const accept = createHash('sha1')
        .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      // RFC 6455 §5.2: one unmasked final text frame (opcode 0x1) with a payload under 126 bytes.
      const payload = Buffer.from(`hello ${req.url}`);
      socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
    });
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    const { port } = backend.address() as AddressInfo;
    varnish = await startVarnish({ backend: { host: '127.0.0.1', port } });
  });

  after(async () => {
    await varnish?.close();
    for (const socket of upgraded) socket.destroy();
    backend?.closeAllConnections();
    await new Promise((resolve) => backend?.close(resolve));
  });

  it('pipes an upgrade through to the backend (job events over WebSocket)', async () => {
    const socket = new WebSocket(`${varnish.url.replace(/^http/, 'ws')}/jobs/job_1/events`);
    const message = await new Promise<string>((resolve, reject) => {
      socket.addEventListener('message', (event) => resolve(String(event.data)));
      socket.addEventListener('error', () => reject(new Error('the WebSocket failed')));
    });
    socket.close();
    assert.equal(message, 'hello /jobs/job_1/events');
  });
});
