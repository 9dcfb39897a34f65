import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http, { type IncomingHttpHeaders } from 'node:http';
import net, { type Socket } from 'node:net';
import { after, before, describe, it, type TestContext } from 'node:test';
import { DEFAULT_DENY_HOSTS } from '../../../src/config/ingest-settings.ts';
import { GuardedProxy, type ProxyOptions } from '../../../src/media/ingest/proxy.ts';
import type { Resolver } from '../../../src/media/ingest/ssrf.ts';
import { type Recorder, startRecorder } from '../../helpers/recorder.ts';

// Only the origin's address is allowed, as CONVEYOR_INGEST_ALLOW_ADDRESSES=127.0.0.1/32 would.
const POLICY = { allowAddresses: ['127.0.0.1/32'], denyHosts: DEFAULT_DENY_HOSTS };

const resolver: Resolver = async (name) => {
  if (name === 'origin.test') return [{ address: '127.0.0.1', family: 4 }];
  if (name === 'evil.test') return [{ address: '127.0.0.2', family: 4 }];
  // Both a public address and a forbidden one: judged as a whole, so refused.
  if (name === 'mixed.test') {
    return [
      { address: '93.184.215.14', family: 4 },
      { address: '127.0.0.2', family: 4 },
    ];
  }
  if (name === 'localhost') {
    return [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ];
  }
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
};

async function startProxy(t: TestContext, options: Partial<ProxyOptions> = {}): Promise<GuardedProxy> {
  const proxy = await GuardedProxy.start({
    policy: POLICY,
    resolver,
    connectTimeoutMs: 5000,
    idleTimeoutMs: 10_000,
    maxConnections: 8,
    maxBytes: 64 * 1024 * 1024,
    ...options,
  });
  t.after(() => proxy.close());
  return proxy;
}

function credential(proxy: GuardedProxy): string {
  const { username, password } = new URL(proxy.url);
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** An absolute-form request through the proxy. */
async function viaProxy(
  proxy: GuardedProxy,
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer; auth?: boolean } = {},
): Promise<Answer> {
  const headers = { ...(options.auth === false ? {} : { 'proxy-authorization': credential(proxy) }) };
  const req = http.request({
    host: '127.0.0.1',
    port: proxy.port,
    path: url,
    method: options.method ?? 'GET',
    headers: { ...headers, ...options.headers },
    agent: false,
  });
  req.end(options.body);
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return { status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) };
}

/** CONNECT on a raw socket: the status, the whole answer when refused, the open socket when 200. */
async function connect(
  proxy: GuardedProxy,
  target: string,
  auth: string | null = credential(proxy),
): Promise<{ status: number; text: string; socket: Socket }> {
  const socket = net.connect(proxy.port, '127.0.0.1');
  await once(socket, 'connect');
  const authLine = auth === null ? '' : `Proxy-Authorization: ${auth}\r\n`;
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${authLine}\r\n`);
  // Read the answer's head; a refusal is read to its end, a tunnel is handed back still flowing.
  const text = await new Promise<string>((resolve) => {
    let got = '';
    const onData = (chunk: Buffer) => {
      got += chunk.toString('latin1');
      if (got.startsWith('HTTP/1.1 200') && got.includes('\r\n\r\n')) {
        socket.off('data', onData);
        socket.pause();
        resolve(got);
      }
    };
    socket.on('data', onData);
    socket.once('end', () => resolve(got));
  });
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
  return { status, text, socket };
}

describe('guarded forward proxy', () => {
  let origin: Recorder;
  let forbidden: Recorder; // 127.0.0.2: loopback, not in the allowed /32
  let forbidden6: Recorder | undefined; // ::1, when this host has IPv6 loopback
  let seen: IncomingHttpHeaders[] = [];

  before(async () => {
    origin = await startRecorder('127.0.0.1', (req, res) => {
      seen.push(req.headers);
      if (req.url === '/echo') {
        const hash = createHash('sha256');
        let length = 0;
        req.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          length += chunk.length;
        });
        req.on('end', () => res.end(JSON.stringify({ length, sha256: hash.digest('hex') })));
        return;
      }
      if (req.url === '/big') {
        res.writeHead(200, { 'content-length': String(4 * 1024 * 1024) });
        res.end(Buffer.alloc(4 * 1024 * 1024, 7));
        return;
      }
      if (!req.url!.startsWith('/page')) {
        res.end(`hello ${req.url}`);
        return;
      }
      res.writeHead(200, {
        'content-type': 'text/plain',
        connection: 'X-Hop-Response',
        'x-hop-response': 'secret',
        'keep-alive': 'timeout=77, max=3',
        'x-end-to-end': 'kept',
      });
      res.end(`hello ${req.url}`);
    });
    forbidden = await startRecorder('127.0.0.2');
    forbidden6 = await startRecorder('::1').catch(() => undefined);
  });
  after(async () => {
    await origin?.close();
    await forbidden?.close();
    await forbidden6?.close();
  });

  it('forwards an absolute-form GET to an allowed origin, without hop-by-hop fields either way', async (t) => {
    const proxy = await startProxy(t);
    seen = [];
    const res = await viaProxy(proxy, `${origin.url}/page?q=1`, {
      headers: {
        connection: 'X-Hop-Request, keep-alive',
        'x-hop-request': 'secret',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'proxy-connection': 'keep-alive',
        'x-end-to-end': 'kept',
        host: 'wrong.example',
      },
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'hello /page?q=1');
    assert.equal(res.headers['x-end-to-end'], 'kept');
    assert.equal(res.headers['x-hop-response'], undefined);
    assert.notEqual(res.headers['keep-alive'], 'timeout=77, max=3'); // Node may add its own

    assert.equal(seen.length, 1);
    const forwarded = seen[0]!;
    for (const name of ['x-hop-request', 'keep-alive', 'te', 'proxy-connection', 'proxy-authorization']) {
      assert.equal(forwarded[name], undefined, name);
    }
    assert.notEqual(forwarded.connection, 'X-Hop-Request, keep-alive');
    assert.equal(forwarded['x-end-to-end'], 'kept');
    assert.equal(forwarded.host, new URL(origin.url).host, 'Host comes from the request-target');
    assert.equal(proxy.stats.refused, 0);
    assert.equal(proxy.stats.connections, 1);
  });

  it('streams a request body to the origin and counts the bytes', async (t) => {
    const proxy = await startProxy(t);
    const body = randomBytes(1024 * 1024);
    const res = await viaProxy(proxy, `${origin.url}/echo`, { method: 'POST', body });
    assert.equal(res.status, 200);
    const echoed = JSON.parse(res.body.toString());
    assert.equal(echoed.length, body.length);
    assert.equal(echoed.sha256, createHash('sha256').update(body).digest('hex'));
    assert.ok(proxy.stats.bytes >= body.length);
  });

  it('asks for the credential (407) and serves nobody without it', async (t) => {
    const proxy = await startProxy(t);
    const before = origin.connections;
    const plain = await viaProxy(proxy, `${origin.url}/x`, { auth: false });
    assert.equal(plain.status, 407);
    assert.equal(plain.headers['proxy-authenticate'], 'Basic realm="conveyor"');
    const wrong = await viaProxy(proxy, `${origin.url}/x`, {
      auth: false,
      headers: { 'proxy-authorization': `Basic ${Buffer.from('conveyor:guess').toString('base64')}` },
    });
    assert.equal(wrong.status, 407);
    const tunnel = await connect(proxy, `127.0.0.1:${origin.port}`, null);
    assert.equal(tunnel.status, 407);
    assert.match(tunnel.text, /\r\nProxy-Authenticate: Basic realm="conveyor"\r\n/);
    assert.equal(origin.connections, before);
  });

  it('tunnels CONNECT to an allowed address, by name through the resolver too', async (t) => {
    const proxy = await startProxy(t);
    for (const host of ['127.0.0.1', 'origin.test']) {
      const { status, socket } = await connect(proxy, `${host}:${origin.port}`);
      assert.equal(status, 200, host);
      socket.write(`GET /through-tunnel HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      let text = '';
      for await (const chunk of socket) text += (chunk as Buffer).toString();
      assert.match(text, /^HTTP\/1\.1 200 OK/);
      assert.ok(text.endsWith('hello /through-tunnel'));
    }
    assert.equal(proxy.stats.refused, 0);
  });

  it('refuses CONNECT to forbidden addresses with 403, connecting nowhere', async (t) => {
    const proxy = await startProxy(t);
    const targets: [string, RegExp][] = [
      [`127.0.0.2:${forbidden.port}`, /loopback/],
      [`2130706434:${forbidden.port}`, /127\.0\.0\.2.*loopback/], // 127.0.0.2 spelled as an integer
      [`[::1]:${forbidden6?.port ?? 443}`, /loopback/],
      ['10.1.2.3:443', /private/],
      ['169.254.169.254:80', /cloud-metadata/],
      [`evil.test:${forbidden.port}`, /resolved to 127\.0\.0\.2.*loopback/],
      [`mixed.test:${forbidden.port}`, /127\.0\.0\.2/],
      [`localhost:${origin.port}`, /resolved to ::1.*loopback/], // 127.0.0.1 is allowed, ::1 is not
      ['metadata.google.internal:80', /host-denied/],
    ];
    let refused = 0;
    for (const [target, reason] of targets) {
      const answer = await connect(proxy, target);
      refused++;
      assert.equal(answer.status, 403, target);
      assert.match(answer.text, /\r\n\r\nrefused: /, target);
      assert.match(proxy.stats.lastRefusal ?? '', reason, target);
      assert.equal(proxy.stats.refused, refused, target);
    }
    assert.equal(forbidden.connections, 0);
    assert.equal(forbidden6?.connections ?? 0, 0);
    if (forbidden6 === undefined)
      t.diagnostic('no IPv6 loopback here: [::1] refused without a recorder on it');
  });

  it('refuses absolute-form requests to forbidden addresses and other schemes', async (t) => {
    const proxy = await startProxy(t);
    for (const url of [
      `http://127.0.0.2:${forbidden.port}/x.mp4`,
      `http://evil.test:${forbidden.port}/x.mp4`,
      `ftp://127.0.0.2:${forbidden.port}/x.mp4`,
      `https://127.0.0.1:${origin.port}/absolute-https`,
    ]) {
      const res = await viaProxy(proxy, url);
      assert.equal(res.status, 403, url);
      assert.match(res.body.toString(), /^refused: /, url);
    }
    assert.equal(proxy.stats.refused, 4);
    assert.match(proxy.stats.lastRefusal!, /https: .*scheme not allowed/);
    assert.equal(forbidden.connections, 0);
    assert.ok(!origin.requests.includes('GET /absolute-https'));
  });

  it('cuts every connection once the byte cap is passed, and refuses new ones', async (t) => {
    const proxy = await startProxy(t, { maxBytes: 1024 * 1024 });
    const req = http.request({
      host: '127.0.0.1',
      port: proxy.port,
      path: `${origin.url}/big`,
      headers: { 'proxy-authorization': credential(proxy) },
      agent: false,
    });
    req.end();
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    let received = 0;
    await assert.rejects(
      (async () => {
        for await (const chunk of res) received += (chunk as Buffer).length;
      })(),
    );
    assert.ok(received < 4 * 1024 * 1024);
    assert.equal(proxy.stats.overLimit, true);
    const again = await viaProxy(proxy, `${origin.url}/x`);
    assert.equal(again.status, 403);
    assert.match(again.body.toString(), /byte limit/);
  });

  it('survives clients that vanish mid-CONNECT', async (t) => {
    const proxy = await startProxy(t);
    for (const target of [`127.0.0.1:${origin.port}`, '10.1.2.3:443', `evil.test:${forbidden.port}`]) {
      const socket = net.connect(proxy.port, '127.0.0.1');
      await once(socket, 'connect');
      socket.write(`CONNECT ${target} HTTP/1.1\r\nProxy-Authorization: ${credential(proxy)}\r\n\r\n`);
      socket.resetAndDestroy();
      await once(socket, 'close');
    }
    const after = await connect(proxy, `127.0.0.1:${origin.port}`);
    assert.equal(after.status, 200);
    after.socket.destroy();
  });

  it('answers 503 past the connection limit', async (t) => {
    const proxy = await startProxy(t, { maxConnections: 1 });
    const first = await connect(proxy, `127.0.0.1:${origin.port}`);
    assert.equal(first.status, 200);
    const second = await connect(proxy, `127.0.0.1:${origin.port}`);
    assert.equal(second.status, 503);
    first.socket.destroy();
  });

  it('closes a silent tunnel after the idle timeout', async (t) => {
    const proxy = await startProxy(t, { idleTimeoutMs: 100 });
    const { status, socket } = await connect(proxy, `127.0.0.1:${origin.port}`);
    assert.equal(status, 200);
    socket.resume();
    await once(socket, 'close');
  });

  it('close() tears down open tunnels on both sides', async (t) => {
    const proxy = await startProxy(t);
    const before = origin.open;
    const { status, socket } = await connect(proxy, `127.0.0.1:${origin.port}`);
    assert.equal(status, 200);
    socket.resume();
    const closed = once(socket, 'close');
    await proxy.close();
    await closed;
    // The origin's side of the tunnel goes too (its close can lag the client's by a tick).
    while (origin.open > before) await new Promise((resolve) => setImmediate(resolve));
  });
});
