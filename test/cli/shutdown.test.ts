import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import { CHILD_GUARD_MS, spawnConveyor, startServerProcess } from '../helpers/child.ts';
import { startEngine, waitFor } from '../helpers/jobs.ts';
import { makeTempDir } from '../helpers/tmp.ts';

describe('shutdown on a second signal', () => {
  it('waits for a running job on SIGTERM, and hands it back to the queue at once on a second one', {
    timeout: 2 * CHILD_GUARD_MS,
  }, async () => {
    const dir = await makeTempDir('conveyor-shutdown-');
    const key = generateApiKey();
    const server = await startServerProcess({
      CONVEYOR_DATA_DIR: dir.path,
      CONVEYOR_ADMIN_KEY: key,
      CONVEYOR_LOG_LEVEL: 'info',
      // Longer than the test's own timeout: only the second signal can end this shutdown in time.
      CONVEYOR_JOB_SHUTDOWN_GRACE_MS: '600000',
    });
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${server.url}/api/v1${path}`, {
        ...init,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      });
    const jobState = async (id: string) =>
      ((await (await api(`/jobs/${id}`)).json()) as { state: string }).state;
    try {
      const enqueued = await api('/jobs', {
        method: 'POST',
        body: JSON.stringify({ type: 'sleep', payload: { ms: 3_600_000 } }),
      });
      assert.equal(enqueued.status, 202);
      const { id } = (await enqueued.json()) as { id: string };
      await waitFor('the job to run', async () => (await jobState(id)) === 'active', CHILD_GUARD_MS);

      const exited = once(server.process, 'exit');
      server.process.kill('SIGTERM');
      await waitFor('the shutdown to begin', async () => server.output().includes('"msg":"shutting down"'));
      // Within its grace period the process still serves, and the job still runs.
      assert.equal(await jobState(id), 'active');
      assert.equal(server.process.exitCode, null);

      server.process.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, server.output());
      assert.match(server.output(), /shutting down now/);

      const db = openDatabase(loadConfig({}, { dataDir: dir.path }));
      try {
        const row = await db.kysely
          .selectFrom('jobs')
          .select(['state', 'attempts', 'lease_owner'])
          .where('id', '=', id)
          .executeTakeFirstOrThrow();
        assert.deepEqual({ ...row }, { state: 'queued', attempts: 0, lease_owner: null });
      } finally {
        await db.close();
      }
    } finally {
      await server.stop('SIGKILL');
      await dir.cleanup();
    }
  });

  it('conveyor worker hands its running job back at once on a second SIGTERM', {
    timeout: 2 * CHILD_GUARD_MS,
  }, async () => {
    const t = await startEngine('sqlite');
    const { child, output } = spawnConveyor('worker', {
      CONVEYOR_DATA_DIR: t.config.dataDir,
      CONVEYOR_LOG_LEVEL: 'info',
      CONVEYOR_JOB_SHUTDOWN_GRACE_MS: '600000',
      CONVEYOR_JOB_POLL_MS: '50',
    });
    const exited = once(child, 'exit');
    const row = (id: string) =>
      t.db.kysely
        .selectFrom('jobs')
        .select(['state', 'attempts', 'lease_owner'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
    try {
      const { job } = await t.engine.enqueuer.enqueue(await t.tenant(), {
        type: 'sleep',
        payload: { ms: 3_600_000 },
      });
      await waitFor('the job to run', async () => (await row(job.id)).state === 'active', CHILD_GUARD_MS);
      child.kill('SIGTERM');
      await waitFor('the worker to begin stopping', async () => output().includes('"msg":"worker stopping"'));
      assert.equal((await row(job.id)).state, 'active');
      assert.equal(child.exitCode, null);
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, output());
      assert.deepEqual({ ...(await row(job.id)) }, { state: 'queued', attempts: 0, lease_owner: null });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await t.close();
    }
  });
});
