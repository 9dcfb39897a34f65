import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import { CHILD_GUARD_MS, startServerProcess } from '../helpers/child.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir } from '../helpers/tmp.ts';

describe('conveyor serve with CONVEYOR_PROCESSES=2', () => {
  it('serves from two processes sharing the port, bootstraps once, and stops cleanly on SIGTERM', async () => {
    const dir = await makeTempDir('conveyor-serve-');
    const key = generateApiKey();
    const server = await startServerProcess({
      CONVEYOR_DATA_DIR: dir.path,
      CONVEYOR_PROCESSES: '2',
      CONVEYOR_ADMIN_KEY: key,
      CONVEYOR_LOG_LEVEL: 'info',
    });
    const { url } = server;
    const listening = () => (server.output().match(/"msg":"listening"/g) ?? []).length;
    try {
      // /readyz answers once the first process listens; wait for the second before counting on it.
      await waitFor('the second process to listen', async () => listening() >= 2, CHILD_GUARD_MS).catch(
        (error: Error) => assert.fail(`${error.message}:\n${server.output()}`),
      );
      const uploaded = await fetch(`${url}/api/v1/assets?filename=a.txt`, {
        method: 'POST',
        body: 'shared by both processes',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'text/plain' },
      });
      assert.equal(uploaded.status, 201);
      const { id } = (await uploaded.json()) as { id: string };
      // Whichever process takes each connection, every one sees the same database and blobs.
      for (let i = 0; i < 10; i++) {
        const res = await fetch(`${url}/a/${id}`, { headers: { connection: 'close' } });
        assert.equal(await res.text(), 'shared by both processes');
      }
      const tenants = await fetch(`${url}/api/v1/tenants`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(((await tenants.json()) as { items: unknown[] }).items.length, 1, 'bootstrapped once');
    } finally {
      await server.stop('SIGTERM');
    }
    const output = server.output();
    assert.equal(server.process.exitCode, 0, output);
    assert.equal(listening(), 2, output);
    await dir.cleanup();
  });
});

describe('conveyor serve with CONVEYOR_PROCESSES=2 and CONVEYOR_METRICS_PORT', () => {
  it('serves the metrics of both processes, summed, from the primary; none on the main port', async () => {
    const dir = await makeTempDir('conveyor-serve-');
    const key = generateApiKey();
    const token = 'metrics-token-of-this-test';
    const server = await startServerProcess({
      CONVEYOR_DATA_DIR: dir.path,
      CONVEYOR_PROCESSES: '2',
      CONVEYOR_ADMIN_KEY: key,
      CONVEYOR_LOG_LEVEL: 'info',
      CONVEYOR_METRICS_PORT: '0',
      CONVEYOR_METRICS_TOKEN: token,
    });
    const { url } = server;
    const listening = () => (server.output().match(/"msg":"listening"/g) ?? []).length;
    const metricsUrl = () => /metrics of every server process at (\S+)/.exec(server.output())?.[1];
    const waitFor = async (what: string, ready: () => boolean) => {
      for (const deadline = Date.now() + CHILD_GUARD_MS; !ready(); ) {
        assert.ok(Date.now() < deadline, `${what} never happened:\n${server.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    try {
      await waitFor('both processes listening', () => listening() === 2 && metricsUrl() !== undefined);
      const auth = { authorization: `Bearer ${key}` };
      // A job due in an hour stays queued: the depth gauge, read from the database, must count it once.
      const job = await fetch(`${url}/api/v1/jobs`, {
        method: 'POST',
        body: JSON.stringify({ type: 'noop', runAt: Date.now() + 3_600_000 }),
        headers: { ...auth, 'content-type': 'application/json' },
      });
      assert.equal(job.status, 202);
      const uploaded = await fetch(`${url}/api/v1/assets?filename=a.txt`, {
        method: 'POST',
        body: 'counted by both processes',
        headers: { ...auth, 'content-type': 'text/plain' },
      });
      const { id } = (await uploaded.json()) as { id: string };
      // New connections go to the processes in turn.
      for (let i = 0; i < 10; i++) {
        const res = await fetch(`${url}/a/${id}`, { headers: { connection: 'close' } });
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
      const scrape = async (authorization?: string) =>
        fetch(metricsUrl()!, authorization ? { headers: { authorization } } : {});
      // Each process says it is ready to answer the primary after it listens: wait for the sum to be whole.
      let text = '';
      for (const deadline = Date.now() + CHILD_GUARD_MS; ; ) {
        const res = await scrape(`Bearer ${token}`);
        assert.equal(res.status, 200);
        text = await res.text();
        if (/^conveyor_http_requests_total\{method="GET",route="\/a\/:id",status="200"\} 10$/m.test(text))
          break;
        assert.ok(Date.now() < deadline, `the counts never summed to 10:\n${text}\n${server.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.match(
        text,
        /^conveyor_http_request_duration_seconds_count\{method="GET",route="\/a\/:id"\} 10$/m,
      );
      assert.match(text, /^conveyor_job_queue_depth\{lane="normal",state="queued"\} 1$/m);
      assert.equal((await scrape()).status, 401);
      assert.equal(
        (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status,
        404,
      );
    } finally {
      await server.stop('SIGTERM');
    }
    assert.equal(server.process.exitCode, 0, server.output());
    await dir.cleanup();
  });
});
