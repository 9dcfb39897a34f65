import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { head, RawConnection } from '../helpers/raw.ts';

/** Another loopback address: its connections count apart from the test's own requests (127.0.0.1). */
const OTHER_ADDRESS = '127.0.0.2';

/** Opens `count` connections that begin a request and never finish its headers. */
function slowClients(server: TestServer, count: number, localAddress?: string): RawConnection[] {
  return Array.from({ length: count }, () => {
    const client = new RawConnection(server.url, localAddress ? { localAddress } : {});
    void client.write('GET /healthz HTTP/1.1\r\nHost: slow\r\n');
    return client;
  });
}

/** The value of one sample of the server's /metrics, 0 when absent. */
async function metric(server: TestServer, sample: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}

/** One GET /healthz on a fresh connection from `localAddress`: its status, or null when refused. */
async function healthzFrom(server: TestServer, localAddress: string): Promise<number | null> {
  const client = new RawConnection(server.url, { localAddress });
  await client.write(head(server.url, 'GET /healthz HTTP/1.1', { Connection: 'close' }));
  await client.closed;
  return client.response()?.status ?? null;
}

describe('connection limits', () => {
  it('closes connections past the per-address limit at once, and /healthz answers while the others are held', {
    timeout: 180_000,
  }, async () => {
    const server = await startConveyor(undefined, { httpMaxConnectionsPerAddress: 50 });
    const slow = slowClients(server, 200, OTHER_ADDRESS);
    try {
      // The 150 past the limit are closed without a byte of answer; the first 50 wait for their headers
      // (the headers timeout, 20 s, is far beyond this test).
      await waitFor('150 connections closed', async () => slow.filter((c) => c.isClosed).length >= 150);
      const closed = slow.filter((c) => c.isClosed);
      assert.equal(closed.length, 150);
      for (const client of closed) assert.equal(client.received, '');
      const held = slow.filter((c) => !c.isClosed);
      const res = await fetch(`${server.url}/healthz`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: 'ok' });
      assert.ok(
        held.every((c) => !c.isClosed),
        'the 50 slow connections were held while /healthz answered',
      );
      assert.equal(
        await metric(server, 'conveyor_http_connections_closed_total{reason="max_connections_per_address"}'),
        150,
      );
      // A connection that closes makes room for another from the same address.
      held[0]!.destroy();
      await waitFor('a new connection from the full address', async () => {
        return (await healthzFrom(server, OTHER_ADDRESS)) === 200;
      });
    } finally {
      for (const client of slow) client.destroy();
      await server.close();
    }
  });

  it('closes connections past the per-process limit at once', { timeout: 180_000 }, async () => {
    const server = await startConveyor(undefined, {
      httpMaxConnections: 20,
      httpMaxConnectionsPerAddress: 0,
    });
    const open: RawConnection[] = [];
    try {
      // Twenty keep-alive connections, each known to be accepted because it was answered.
      for (let i = 0; i < 20; i++) {
        const client = new RawConnection(server.url);
        open.push(client);
        await client.write(head(server.url, 'GET /healthz HTTP/1.1'));
        await waitFor('an answer', async () => client.response()?.status === 200);
      }
      const refused = new RawConnection(server.url);
      await refused.write(head(server.url, 'GET /healthz HTTP/1.1'));
      await refused.closed;
      assert.equal(refused.received, '');
      assert.ok(open.every((c) => !c.isClosed));
      open.shift()!.destroy();
      await waitFor(
        'room for a new connection',
        async () => (await healthzFrom(server, '127.0.0.1')) === 200,
      );
      assert.ok(
        (await metric(server, 'conveyor_http_connections_closed_total{reason="max_connections"}')) >= 1,
      );
    } finally {
      for (const client of open) client.destroy();
      await server.close();
    }
  });
});

describe('slow clients', () => {
  it('answers 408 and closes connections whose headers do not arrive within the headers timeout', {
    timeout: 180_000,
  }, async () => {
    const server = await startConveyor(undefined, { httpHeadersTimeoutMs: 500 });
    const silent = new RawConnection(server.url);
    const slow = slowClients(server, 200);
    // A header line every 100 ms: each keeps the connection busy, none finishes the request.
    const trickle = setInterval(() => {
      for (const client of slow) if (!client.isClosed) void client.write('X-Slow: 1\r\n');
    }, 100);
    try {
      await Promise.all([silent.closed, ...slow.map((c) => c.closed)]);
      for (const client of [silent, ...slow]) {
        const response = client.response();
        assert.equal(response?.status, 408, client.received);
        assert.equal(response.headers['connection'], 'close');
        assert.match(response.headers['content-type'] ?? '', /^application\/problem\+json/);
        assert.equal(JSON.parse(response.body).code, 'request_timeout');
      }
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
      assert.equal(
        await metric(server, 'conveyor_http_connections_closed_total{reason="headers_timeout"}'),
        201,
      );
    } finally {
      clearInterval(trickle);
      for (const client of [silent, ...slow]) client.destroy();
      await server.close();
    }
  });

  it('cuts off a request body that stops arriving', { timeout: 180_000 }, async () => {
    const server = await startConveyor(undefined, { httpBodyIdleTimeoutMs: 1000 });
    try {
      const client = new RawConnection(server.url);
      await client.write(
        head(server.url, 'POST /api/v1/assets?filename=stalled.bin HTTP/1.1', {
          Authorization: `Bearer ${server.adminKey}`,
          'Content-Length': 1000,
        }),
      );
      await client.write(Buffer.alloc(100, 1));
      // Nothing more is sent: the server must end it (the test's timeout is the failure guard).
      await client.closed;
      assert.equal(await metric(server, 'conveyor_http_connections_closed_total{reason="body_idle"}'), 1);
      const list = await server.json('GET', '/api/v1/assets');
      assert.deepEqual(list.body.items, []);
    } finally {
      await server.close();
    }
  });

  it('takes an upload that trickles in for longer than the body idle timeout', {
    timeout: 180_000,
  }, async () => {
    const server = await startConveyor(undefined, { httpBodyIdleTimeoutMs: 2000 });
    try {
      // 30 pieces 100 ms apart: 3 s in all, each piece well within the 2 s the body may idle. The pacing is
      // real time, but only its gaps matter, and a loaded machine makes them longer by far less than 2 s.
      const pieces = 30;
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent === pieces) {
            controller.close();
            return;
          }
          if (sent > 0) await sleep(100);
          controller.enqueue(new Uint8Array(1024).fill(sent));
          sent++;
        },
      });
      const res = await server.fetch('/api/v1/assets?filename=trickle.bin', {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/octet-stream' },
        duplex: 'half',
      } as RequestInit);
      const asset = (await res.json()) as { size: number };
      assert.equal(res.status, 201, JSON.stringify(asset));
      assert.equal(asset.size, pieces * 1024);
    } finally {
      await server.close();
    }
  });

  it('does not cut a response to a slow reader with the body timer', { timeout: 180_000 }, async () => {
    const server = await startConveyor(undefined, { httpBodyIdleTimeoutMs: 500 });
    try {
      const size = 32 * 1024 * 1024;
      const asset = await upload(server, Buffer.alloc(size, 7), { filename: 'large.bin' });
      // A request with a (one-byte) body arms the body timer; its response is more than the socket
      // buffers hold, so the server stalls writing while the client reads nothing.
      const { hostname, port } = new URL(server.url);
      const socket = connect(Number(port), hostname);
      socket.pause();
      socket.write(`${head(server.url, `GET /a/${asset.id} HTTP/1.1`, { 'Content-Length': 1 })}x`);
      let bytes = 0;
      let ended = false;
      socket.on('data', (data: Buffer) => {
        bytes += data.length;
      });
      socket.on('end', () => {
        ended = true;
      });
      socket.on('error', () => {});
      // Longer than the timer: a wait for time by nature, and the assertion below holds however long it is.
      await sleep(2000);
      socket.resume();
      await waitFor('the whole response', async () => bytes > size || ended, 120_000);
      assert.ok(bytes > size, `${bytes} bytes`);
      assert.equal(ended, false, 'the connection stays open');
      socket.destroy();
      await once(socket, 'close');
    } finally {
      await server.close();
    }
  });
});
