import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { BACKENDS, skipIfNoPostgres, startConveyor, type TestServer } from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';

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
      }
    });
  });
}
