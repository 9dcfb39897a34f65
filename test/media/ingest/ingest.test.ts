import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { BACKENDS, skipIfNoPostgres, startConveyor, type TestServer } from '../../helpers/conveyor.ts';
import { FAST_WORKER, quietLog, waitFor } from '../../helpers/jobs.ts';

/** A loopback origin that records every request it receives. */
async function startOrigin(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  host = '127.0.0.1',
): Promise<{ url: string; hits: string[]; server: Server; close(): Promise<void> }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(host === '127.0.0.1' ? req.url! : `${req.socket.localAddress} ${req.url}`);
    handler(req, res);
  });
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    server,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function finished(server: TestServer, jobId: string): Promise<any> {
  return waitFor(
    `job ${jobId}`,
    async () => {
      const { body } = await server.json('GET', `/api/v1/jobs/${jobId}`);
      return ['succeeded', 'dead', 'cancelled'].includes(body.state) ? body : null;
    },
    20_000,
  );
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

for (const backend of BACKENDS) {
  describe(`remote ingest (${backend.database} + ${backend.storage})`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    let origin: Awaited<ReturnType<typeof startOrigin>>;
    const body = randomBytes(300_000);
    let served = 0;

    before(async () => {
      if (skip) return;
      origin = await startOrigin((req, res) => {
        if (req.url === '/file.bin') {
          served++;
          if (req.headers['if-none-match'] === '"v1"') {
            res.writeHead(304, { etag: '"v1"' }).end();
            return;
          }
          res.writeHead(200, { 'content-type': 'application/octet-stream', etag: '"v1"' }).end(body);
          return;
        }
        if (req.url === '/missing') {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain' }).end(req.url);
      });
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        ingestAllowAddresses: '127.0.0.1/32',
        ingestConnectTimeoutMs: 2000,
        ingestIdleTimeoutMs: 2000,
      });
    });
    after(async () => {
      await server?.close();
      await origin?.close();
    });

    test('fetches a URL into an asset with the same bytes, and re-ingests conditionally', {
      skip,
    }, async () => {
      const res = await server.json('POST', '/api/v1/ingest', {
        url: `${origin.url}/file.bin`,
        kind: 'post',
        filename: 'remote.bin',
      });
      assert.equal(res.status, 202);
      assert.equal(res.body.type, 'ingest.fetch');
      assert.equal(res.body.priority, 'high');
      const job = await finished(server, res.body.id);
      assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
      assert.equal(job.result.sha256, sha256(body));
      const asset = await server.json('GET', `/api/v1/assets/${job.result.assetId}`);
      assert.equal(asset.body.filename, 'remote.bin');
      assert.equal(asset.body.size, body.length);
      const delivered = Buffer.from(await (await fetch(asset.body.url)).arrayBuffer());
      assert.ok(delivered.equals(body));

      // The origin host is a start-rate scope of its own, visible in the queue status.
      const status = await server.json('GET', '/api/v1/queue/status');
      const host = status.body.rateLimits.find((r: any) => r.scope === 'key:host:127.0.0.1');
      assert.equal(host?.ratePerSecond, server.config.ingestHostRatePerSecond);

      const again = await server.json('POST', '/api/v1/ingest', {
        url: `${origin.url}/file.bin`,
        assetId: asset.body.id,
      });
      const second = await finished(server, again.body.id);
      assert.equal(second.state, 'succeeded');
      assert.deepEqual(second.result, { assetId: asset.body.id, notModified: true });
    });

    test('a 404 at the origin ends the job dead at once, with no asset', { skip }, async () => {
      const before = await server.json('GET', '/api/v1/assets?limit=100');
      const res = await server.json('POST', '/api/v1/ingest', { url: `${origin.url}/missing` });
      const job = await finished(server, res.body.id);
      assert.equal(job.state, 'dead');
      assert.equal(job.attempts, 1);
      assert.match(job.errors[0].code, /http_status/);
      const afterList = await server.json('GET', '/api/v1/assets?limit=100');
      assert.equal(afterList.body.items.length, before.body.items.length);
    });

    test('bad requests are refused before anything is queued', { skip }, async () => {
      for (const url of ['ftp://example.com/x', 'not a url', 'http://user:pw@example.com/']) {
        const res = await server.json('POST', '/api/v1/ingest', { url });
        assert.equal(res.status, 400, url);
        assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      }
      const kind = await server.json('POST', '/api/v1/ingest', { url: 'http://example.com/', kind: 'nope' });
      assert.equal(kind.status, 400);
      assert.match(kind.body.detail, /unknown kind/);
      const batch = await server.json('POST', '/api/v1/ingest/batch', {
        items: [{ url: 'http://example.com/a' }, { url: 'gopher://example.com/' }],
      });
      assert.equal(batch.status, 400);
      assert.match(batch.body.detail, /^Item 1:/);
    });

    test('a batch of mixed kinds is processed in lane order', { skip }, async () => {
      // Queue everything while no worker runs, then let one worker with one slot drain it.
      await server.conveyor.worker()!.stop(1000);
      const kinds = ['backfill', 'default', 'post', 'avatar', 'backfill', 'avatar'];
      const res = await server.json('POST', '/api/v1/ingest/batch', {
        items: kinds.map((kind, i) => ({ url: `${origin.url}/lane/${kind}/${i}`, kind })),
      });
      assert.equal(res.status, 202);
      assert.deepEqual(
        res.body.items.map((j: any) => j.priority),
        ['low', 'normal', 'high', 'critical', 'low', 'critical'],
      );
      origin.hits.length = 0;
      const worker = server.conveyor.jobs.createWorker(quietLog, { ...FAST_WORKER, concurrency: 1 });
      await worker.start();
      try {
        for (const job of res.body.items) assert.equal((await finished(server, job.id)).state, 'succeeded');
      } finally {
        await worker.stop(1000);
      }
      const order = origin.hits.filter((h) => h.startsWith('/lane/')).map((h) => h.split('/')[2]);
      assert.deepEqual(order, ['avatar', 'avatar', 'post', 'default', 'backfill', 'backfill']);
      assert.ok(served >= 1);
    });
  });
}

describe('remote ingest: SSRF (nothing reaches a recording loopback server)', () => {
  let open: TestServer;
  let guarded: TestServer;
  let recorder: Awaited<ReturnType<typeof startOrigin>>;
  let redirector: Awaited<ReturnType<typeof startOrigin>>;
  let port: number;

  before(async () => {
    // The recorder listens on every loopback address (127.0.0.1, 127.0.0.2, ::1 ...).
    recorder = await startOrigin((_req, res) => res.end('secret'), '::');
    port = Number(new URL(recorder.url).port);
    redirector = await startOrigin((req, res) => {
      res.writeHead(302, { location: decodeURIComponent(req.url!.slice(1)) }).end();
    });
    const settings = { serveWorkers: true, jobPollMs: 20, jobHeartbeatMs: 50, jobMaxAttempts: 1 };
    guarded = await startConveyor(undefined, settings);
    // Only the redirector's address is allowed here; where it points must be checked again.
    open = await startConveyor(undefined, { ...settings, ingestAllowAddresses: '127.0.0.1/32' });
  });
  after(async () => {
    await guarded?.close();
    await open?.close();
    await recorder?.close();
    await redirector?.close();
  });

  test('literal addresses in every spelling are refused at enqueue (400)', async () => {
    const hosts = [
      '127.0.0.1',
      'localhost',
      'LOCALHOST.',
      'foo.localhost',
      '[::1]',
      '10.0.0.1',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '0.0.0.0',
      '[::]',
      '[::ffff:127.0.0.1]',
      '[::ffff:7f00:1]',
      '2130706433',
      '0177.0.0.1',
      '0x7f.0.0.1',
      '0x7f000001',
      '127.1',
      '[fd00:ec2::254]',
      '[fe80::1]',
      '100.100.100.200',
      'metadata.google.internal',
    ];
    for (const host of hosts) {
      const res = await guarded.json('POST', '/api/v1/ingest', { url: `http://${host}:${port}/x` });
      assert.equal(res.status, 400, `${host}: ${JSON.stringify(res.body)}`);
      // The code and title a job would record for the same refusal after a redirect.
      assert.equal(res.body.code, 'ssrf_forbidden', host);
      assert.equal(res.body.title, 'The destination is refused by policy');
      assert.equal(res.body.index, 0);
    }
    const batch = await guarded.json('POST', '/api/v1/ingest/batch', {
      items: [{ url: 'https://example.com/a.png' }, { url: `http://10.0.0.1:${port}/x` }],
    });
    assert.equal(batch.status, 400);
    assert.deepEqual([batch.body.code, batch.body.index], ['ssrf_forbidden', 1]);
    const credentials = await guarded.json('POST', '/api/v1/ingest', {
      url: 'https://user:pw@example.com/x',
    });
    assert.equal(credentials.status, 400);
    assert.equal(credentials.body.code, 'bad_url');
    assert.deepEqual(recorder.hits, []);
  });

  // (Not `localhost`: it means 127.0.0.1, which this server's allow-list permits on every port.)
  test('a redirect from an allowed host to a forbidden one is refused hop by hop', async () => {
    const targets = [
      `http://127.0.0.2:${port}/a`,
      `http://[::1]:${port}/b`,
      `http://[::ffff:127.0.0.2]:${port}/d`,
      `http://2130706434:${port}/e`,
    ];
    for (const target of targets) {
      const res = await open.json('POST', '/api/v1/ingest', {
        url: `${redirector.url}/${encodeURIComponent(target)}`,
      });
      assert.equal(res.status, 202);
      const job = await finished(open, res.body.id);
      assert.equal(job.state, 'dead', target);
      assert.equal(job.errors.at(-1).code, 'ssrf_forbidden', target);
    }
    assert.equal(redirector.hits.length, targets.length);
    assert.deepEqual(recorder.hits, []);
  });
});
