import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  BACKENDS,
  createTenant,
  skipIfNoPostgres,
  startConveyor,
  type TestServer,
} from '../../helpers/conveyor.ts';
import { FAST_WORKER, quietLog, waitFor } from '../../helpers/jobs.ts';

/** A loopback origin that records the path of every request it receives, in order. */
async function startOrigin(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; hits: string[]; server: Server; close(): Promise<void> }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url!);
    handler(req, res);
  });
  server.listen(0, '127.0.0.1');
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

/** Sends `bytes` every `everyMs` until the client hangs up, under a Content-Length it never reaches. */
function stream(res: ServerResponse, bytes: number, everyMs: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1 << 30 });
  res.write(Buffer.alloc(bytes));
  const timer = setInterval(() => res.write(Buffer.alloc(bytes)), everyMs);
  res.on('close', () => clearInterval(timer));
}

/** The job once its first attempt has failed. */
async function firstFailure(server: TestServer, jobId: string, key?: string): Promise<any> {
  return waitFor(
    `job ${jobId} to fail an attempt`,
    async () => {
      const { body } = await server.json('GET', `/api/v1/jobs/${jobId}`, undefined, key);
      return body.errors.length > 0 && body;
    },
    20_000,
  );
}

for (const backend of BACKENDS) {
  describe(`ingest: total timeouts per kind (${backend.database} + ${backend.storage})`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    let origin: Awaited<ReturnType<typeof startOrigin>>;

    before(async () => {
      if (skip) return;
      origin = await startOrigin((_req, res) => stream(res, 1024, 50));
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        ingestAllowAddresses: '127.0.0.1/32',
        ingestKindTimeoutSeconds: { post: 1, backfill: 2 },
        ingestTotalTimeoutMs: 3000,
        // Only the timeouts are under test here.
        ingestMinBytesPerSecond: 0,
        jobBreakerThreshold: 1000,
      });
    });
    after(async () => {
      await server?.close();
      await origin?.close();
    });

    test('a download that never ends stops at its kind’s limit; other kinds take the general one', {
      skip,
    }, async () => {
      const ingest = server.conveyor.media.ingest;
      assert.equal(ingest.timeoutOf('post'), 1000);
      assert.equal(ingest.timeoutOf('backfill'), 2000);
      assert.equal(ingest.timeoutOf('avatar'), 60_000, 'the default keeps its entry');
      assert.equal(ingest.timeoutOf('default'), 3000);
      // Own entries only: a kind named like a member of Object.prototype is simply not in the table.
      for (const kind of ['constructor', '__proto__', 'toString', 'hasOwnProperty'])
        assert.equal(ingest.timeoutOf(kind), 3000, kind);
      // A timeout for a kind that CONVEYOR_INGEST_KINDS does not define is a start-up error, not ignored.
      await assert.rejects(
        startConveyor(backend, { ingestKindTimeoutSeconds: { avatr: 30 } }),
        /CONVEYOR_INGEST_KIND_TIMEOUT_SECONDS names avatr, which CONVEYOR_INGEST_KINDS does not define/,
      );
      // The attempt's own limit follows the kind too, a minute above the download's.
      const attempt = (kind: string) =>
        server.conveyor.jobs.context.timeoutOf({
          type: 'ingest.fetch',
          lane: 'high',
          payload: { url: `${origin.url}/x`, kind, visibility: 'public' },
        });
      assert.equal(attempt('post'), 61_000);
      assert.equal(attempt('default'), 63_000);

      const jobs = new Map<string, string>();
      for (const kind of ['post', 'backfill', 'default']) {
        const res = await server.json('POST', '/api/v1/ingest', { url: `${origin.url}/${kind}`, kind });
        assert.equal(res.status, 202);
        jobs.set(kind, res.body.id);
      }
      for (const [kind, ms] of [
        ['post', 1000],
        ['backfill', 2000],
        ['default', 3000],
      ] as const) {
        const job = await firstFailure(server, jobs.get(kind)!);
        assert.equal(
          job.errors[0].message,
          `total timeout: the download did not finish within ${ms} ms`,
          kind,
        );
        assert.notEqual(job.state, 'dead', 'a timeout is retried');
        // A retried attempt records its catalog code too, not only its message.
        assert.equal(job.errors[0].code, 'download_timeout', kind);
      }
    });
  });
}

for (const backend of BACKENDS) {
  describe(`ingest: one tenant's trickling origin does not hold the critical lane (${backend.database} + ${backend.storage})`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    let origin: Awaited<ReturnType<typeof startOrigin>>;
    // /slow/*: tenant a's origin. It holds its answers until the test opens it, then sends headers and a
    // byte every 100 ms (10 B/s) for ever. /fast/*: tenant b's, which answers a request (1000 bytes at
    // once) when the test releases it, in order of arrival.
    let open = false;
    const parkedSlow: ServerResponse[] = [];
    const parkedFast: ServerResponse[] = [];
    const trickle = (res: ServerResponse) => {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': 100_000,
        etag: '"s"',
      });
      res.write(Buffer.alloc(1));
      const timer = setInterval(() => res.write(Buffer.alloc(1)), 100);
      res.on('close', () => clearInterval(timer));
    };
    const releaseFast = () =>
      parkedFast
        .shift()!
        .writeHead(200, { 'content-type': 'application/octet-stream' })
        .end(Buffer.alloc(1000, 7));

    before(async () => {
      if (skip) return;
      origin = await startOrigin((req, res) => {
        if (req.url!.startsWith('/fast/')) parkedFast.push(res);
        else if (open) trickle(res);
        else parkedSlow.push(res);
      });
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        ingestAllowAddresses: '127.0.0.1/32',
        // The parked answers must not time out while the test looks at the lane.
        ingestIdleTimeoutMs: 60_000,
        ingestMinBytesPerSecond: 1000,
        ingestMinRateWindowMs: 1000,
        jobLaneConcurrency: { critical: 2, high: 5, normal: 8, low: 4 },
        jobLaneTenantSharePercent: { critical: 50, high: 50, normal: 50, low: 50 },
        // Every slow attempt fails: no breaker may defer the jobs still to be tried.
        jobBreakerThreshold: 1000,
      });
    });
    after(async () => {
      await server?.close();
      await origin?.close();
    });

    test('the other tenant’s avatars run while the first holds its share, and the trickles fail as too slow and are retried', {
      skip,
    }, async () => {
      const b = await createTenant(server, 'b');
      // Everything is queued before a worker looks, so the first claim sees both tenants.
      await server.conveyor.worker()!.stop(1000);
      const ingest = async (path: string, key?: string) => {
        const res = await server.json(
          'POST',
          '/api/v1/ingest',
          { url: `${origin.url}${path}`, kind: 'avatar' },
          key,
        );
        assert.equal(res.status, 202);
        assert.equal(res.body.priority, 'critical');
        return res.body.id as string;
      };
      const slow: string[] = [];
      for (let i = 1; i <= 4; i++) slow.push(await ingest(`/slow/a${i}`));
      const fast = [await ingest('/fast/b1', b.key), await ingest('/fast/b2', b.key)];
      const job = async (id: string, key?: string) =>
        (await server.json('GET', `/api/v1/jobs/${id}`, undefined, key)).body;
      const requests = async (n: number) => {
        await waitFor(`${n} requests at the origins`, async () => origin.hits.length >= n);
        return origin.hits.map((h) => h.split('/')[1]);
      };

      const worker = server.conveyor.jobs.createWorker(quietLog, FAST_WORKER);
      await worker.start();
      try {
        // The lane holds 2, a tenant's share is 1: one of a's avatars and one of b's start.
        assert.deepEqual((await requests(2)).sort(), ['fast', 'slow']);
        releaseFast();
        // b's first avatar is done. a holds its share and b has one waiting: b's starts, not a's (a's
        // jobs are older and both tenants had their turn in the same claim). a's first avatar still
        // holds its slot, waiting on its origin; the lane is full, so a's others wait.
        assert.deepEqual((await requests(3))[2], 'fast');
        const states = await Promise.all(slow.map(async (id) => (await job(id)).state));
        assert.deepEqual(states.sort(), ['active', 'queued', 'queued', 'queued']);
        releaseFast();
        for (const id of fast) {
          const done = await waitFor(`b's ${id}`, async () => {
            const row = await job(id, b.key);
            return ['succeeded', 'dead', 'cancelled'].includes(row.state) && row;
          });
          assert.equal(done.state, 'succeeded', JSON.stringify(done.errors));
        }
        // With nobody else waiting, a may take the whole lane again.
        assert.deepEqual((await requests(4))[3], 'slow');

        // Now a's origin trickles: 10 B/s against a minimum of 1000 B/s over 1 s. Each attempt fails as
        // too slow, its slot frees for the next, and the job waits for its retry.
        open = true;
        for (const res of parkedSlow.splice(0)) trickle(res);
        for (const id of slow) {
          const row = await waitFor(
            `a's ${id} to fail an attempt`,
            async () => {
              const r = await job(id);
              return r.errors.length > 0 && r;
            },
            20_000,
          );
          assert.match(row.errors[0].message, /^too slow: [\d.]+ B\/s over [\d.]+ s, minimum 1000 B\/s$/);
          assert.equal(row.errors[0].code, 'download_too_slow');
          assert.ok(['failed', 'active', 'queued'].includes(row.state), row.state);
          assert.ok(
            Date.parse(row.runAt) >= Date.parse(row.errors[0].at),
            'the retry is scheduled after the failure',
          );
        }
      } finally {
        await worker.stop(0);
      }
    });
  });
}
