import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JobRegistry, registerBuiltinTypes } from '../../src/jobs/registry.ts';
import { skipIfNoPostgres } from '../helpers/conveyor.ts';
import {
  Clock,
  DATABASES,
  FAST_WORKER,
  quietLog,
  startEngine,
  type TestEngine,
  waitFor,
} from '../helpers/jobs.ts';

const HOUR = 3_600_000;

/** Which of `ids` still exist. */
async function existing(t: TestEngine, ids: string[]): Promise<string[]> {
  const rows = await t.db.kysely.selectFrom('jobs').select('id').where('id', 'in', ids).execute();
  return rows.map((r) => r.id).sort();
}

/** Enqueues one job per wanted end state and brings it there: succeeded, cancelled, dead, and two unfinished. */
async function jobsInEveryState(t: TestEngine, tenant: string) {
  const enqueue = async () => (await t.engine.enqueuer.enqueue(tenant, { type: 'noop' })).job.id;
  const succeeded = await enqueue();
  const dead = await enqueue();
  const active = await enqueue();
  const claimed = await t.claim(3);
  const byId = new Map(claimed.map((j) => [j.id, j]));
  await t.engine.outcomes.succeedMany('wkr_test', [{ job: byId.get(succeeded), result: null }]);
  await t.engine.outcomes.fail(byId.get(dead), 'wkr_test', { message: 'broken', permanent: true });
  const cancelled = await enqueue();
  await t.engine.admin.cancel(tenant, cancelled);
  const queued = await enqueue();
  return { succeeded, cancelled, dead, active, queued };
}

for (const database of DATABASES) {
  describe(`retention on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('finished jobs go after their retention, dead ones after theirs, unfinished ones never', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, { jobRetentionHours: 24, jobDeadRetentionHours: 48 }, { clock });
      try {
        const tenant = await t.tenant();
        const jobs = await jobsInEveryState(t, tenant);
        const all = Object.values(jobs);

        clock.advance(24 * HOUR - 1);
        assert.deepEqual(await t.engine.retention.sweep(), { finished: 0, dead: 0, workers: 0 });
        assert.deepEqual(await existing(t, all), [...all].sort());

        clock.advance(2);
        assert.deepEqual(await t.engine.retention.sweep(), { finished: 2, dead: 0, workers: 0 });
        assert.deepEqual(await existing(t, all), [jobs.dead, jobs.active, jobs.queued].sort());

        clock.advance(24 * HOUR);
        assert.deepEqual(await t.engine.retention.sweep(), { finished: 0, dead: 1, workers: 0 });
        // However old, an active or queued job is never deleted.
        clock.advance(1000 * HOUR);
        await t.engine.retention.sweep();
        assert.deepEqual(await existing(t, all), [jobs.active, jobs.queued].sort());
      } finally {
        await t.close();
      }
    });

    test('a backlog larger than a batch is deleted in one sweep, a batch per statement', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, { jobCleanupBatch: 7 }, { clock });
      try {
        const tenant = await t.tenant();
        await t.engine.enqueuer.enqueueMany(
          tenant,
          Array.from({ length: 30 }, () => ({ type: 'noop' })),
        );
        // In rounds of 5, inside the lane's and the tier's concurrency limits.
        for (let round = 0; round < 6; round++) {
          const claimed = await t.claim(5);
          assert.equal(claimed.length, 5);
          await t.engine.outcomes.succeedMany(
            'wkr_test',
            claimed.map((job) => ({ job, result: null })),
          );
        }
        clock.advance(t.config.jobRetentionHours * HOUR + 1);
        assert.equal((await t.engine.retention.sweep()).finished, 30);
        assert.equal((await t.db.kysely.selectFrom('jobs').select('id').execute()).length, 0);
      } finally {
        await t.close();
      }
    });

    test('a freshness window keeps its succeeded jobs as long as it lasts', { skip }, async () => {
      const clock = new Clock();
      const registry = registerBuiltinTypes(new JobRegistry()).register({
        type: 'analysis',
        schema: { type: 'object' },
        freshnessMs: 48 * HOUR,
        handler: async () => ({ done: true }),
      });
      const t = await startEngine(database, { jobRetentionHours: 24 }, { clock, registry });
      try {
        const tenant = await t.tenant();
        const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'analysis', payload: { a: 1 } });
        const [claimed] = await t.claim(1);
        await t.engine.outcomes.succeedMany('wkr_test', [{ job: claimed, result: { done: true } }]);
        clock.advance(30 * HOUR);
        await t.engine.retention.sweep();
        const again = await t.engine.enqueuer.enqueue(tenant, { type: 'analysis', payload: { a: 1 } });
        assert.deepEqual([again.outcome, again.job.id], ['fresh', job.id]);
        clock.advance(19 * HOUR);
        assert.equal((await t.engine.retention.sweep()).finished, 1);
      } finally {
        await t.close();
      }
    });

    test('0 keeps jobs forever, and then workers do not sweep', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, { jobRetentionHours: 0, jobDeadRetentionHours: 0 }, { clock });
      try {
        const tenant = await t.tenant();
        const jobs = await jobsInEveryState(t, tenant);
        clock.advance(100_000 * HOUR);
        assert.equal(t.engine.retention.enabled, false);
        assert.deepEqual(await t.engine.retention.sweep(), { finished: 0, dead: 0, workers: 0 });
        assert.equal((await existing(t, Object.values(jobs))).length, 5);
      } finally {
        await t.close();
      }
    });

    test('a running worker sweeps by itself, stopped workers’ rows included', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, { jobCleanupIntervalMs: 100 }, { clock });
      try {
        const tenant = await t.tenant();
        const old = t.engine.createWorker(quietLog, FAST_WORKER);
        await old.start();
        const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        await waitFor(
          'the job to succeed',
          async () => (await t.engine.admin.get(tenant, job.id)).state === 'succeeded',
        );
        await old.stop(1000);
        clock.advance(t.config.jobRetentionHours * HOUR + 1);
        const worker = t.engine.createWorker(quietLog, FAST_WORKER);
        await worker.start();
        try {
          // A sweep deletes the jobs, then (in a statement of its own) the workers' rows: wait for both,
          // or a check between the two statements sees the stopped worker still listed.
          const workerIds = async () =>
            (await t.db.kysely.selectFrom('job_workers').select('id').execute()).map((w) => w.id);
          await waitFor(
            'the sweep',
            async () => (await existing(t, [job.id])).length === 0 && !(await workerIds()).includes(old.id),
          );
          const workers = await t.db.kysely.selectFrom('job_workers').select('id').execute();
          assert.deepEqual(
            workers.map((w) => w.id),
            [worker.id],
          );
        } finally {
          await worker.stop(1000);
        }
      } finally {
        await t.close();
      }
    });
  });
}
