import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JobRegistry, registerBuiltinTypes } from '../../src/jobs/registry.ts';
import { skipIfNoPostgres } from '../helpers/conveyor.ts';
import { Clock, DATABASES, FAST_WORKER, quietLog, startEngine, waitFor } from '../helpers/jobs.ts';

/** A type that fails while `failing` is set: the stand-in for a flaky origin host. */
function flaky(state: { failing: boolean; calls: number }) {
  return registerBuiltinTypes(new JobRegistry()).register<{ host: string }>({
    type: 'fetch',
    schema: { type: 'object', properties: { host: { type: 'string' } }, required: ['host'] },
    breakerKey: (p) => `host:${p.host}`,
    maxAttempts: 10,
    handler: async () => {
      state.calls++;
      if (state.failing) throw new Error('connection refused');
      return 'ok';
    },
  });
}

for (const database of DATABASES) {
  describe(`failures on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('failed attempts retry after a jittered exponential backoff, then the job is dead with every error', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(
        database,
        { jobMaxAttempts: 3, jobRetryBaseMs: 1000, jobRetryMaxMs: 1500 },
        { clock },
      );
      try {
        const tenant = await t.tenant();
        const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        for (let attempt = 1; attempt <= 3; attempt++) {
          const [claimed] = await t.claim(1);
          assert.equal(claimed.attempts, attempt);
          const outcome = await t.engine.outcomes.fail(claimed, 'wkr_test', {
            message: `failure ${attempt}`,
          });
          const row = await t.engine.admin.get(tenant, job.id);
          if (attempt < 3) {
            assert.equal(outcome, 'failed');
            assert.equal(row.state, 'failed');
            const wait = Date.parse(row.runAt) - clock.t;
            assert.ok(wait >= 0 && wait < Math.min(1500, 1000 * 2 ** (attempt - 1)), `backoff ${wait} ms`);
            clock.advance(wait);
          } else {
            assert.equal(outcome, 'dead');
            assert.equal(row.state, 'dead');
            assert.deepEqual(
              row.errors.map((e) => [e.attempt, e.message]),
              [
                [1, 'failure 1'],
                [2, 'failure 2'],
                [3, 'failure 3'],
              ],
            );
          }
        }
      } finally {
        await t.close();
      }
    });

    test('a permanent error goes straight to dead; dead letters replay and purge by filter', {
      skip,
    }, async () => {
      const t = await startEngine(database);
      try {
        const tenant = await t.tenant();
        await t.engine.enqueuer.enqueueMany(tenant, [
          { type: 'noop' },
          { type: 'noop' },
          { type: 'sleep', payload: { ms: 0 } },
        ]);
        for (const job of await t.claim(10)) {
          assert.equal(
            await t.engine.outcomes.fail(job, 'wkr_test', {
              message: 'bad input',
              permanent: true,
              code: 'validation_failed',
            }),
            'dead',
          );
        }
        const dead = await t.engine.admin.list(tenant, { state: 'dead', limit: 10 });
        assert.equal(dead.items.length, 3);
        assert.equal(dead.items[0]!.errors[0]!.code, 'validation_failed');
        assert.equal(await t.engine.admin.replayDead(tenant, { type: 'noop' }, 100), 2);
        const replayed = await t.engine.admin.list(tenant, { state: 'queued', limit: 10 });
        assert.deepEqual(
          replayed.items.map((j) => [j.attempts, j.errors.length]),
          [
            [0, 1],
            [0, 1],
          ],
        );
        assert.equal(await t.engine.admin.purgeDead(tenant, {}), 1);
        assert.equal((await t.engine.admin.list(tenant, { state: 'dead', limit: 10 })).items.length, 0);
      } finally {
        await t.close();
      }
    });

    test('a breaker opens after N failures, defers without consuming attempts, and recovers through one probe', {
      skip,
    }, async () => {
      const clock = new Clock();
      const state = { failing: true, calls: 0 };
      const t = await startEngine(
        database,
        { jobBreakerThreshold: 3, jobBreakerOpenSeconds: 30, jobRetryBaseMs: 0, jobRetryMaxMs: 0 },
        { clock, registry: flaky(state) },
      );
      try {
        const tenant = await t.tenant();
        const run = async () => {
          const claimed = await t.claim(50);
          for (const job of claimed) {
            try {
              await t.registry.get(job.type)!.handler(job.payload, {} as any);
              await t.engine.outcomes.succeed(job, 'wkr_test', 'ok');
            } catch (error) {
              await t.engine.outcomes.fail(job, 'wkr_test', { message: (error as Error).message });
            }
          }
          return claimed;
        };
        const jobs = await t.engine.enqueuer.enqueueMany(
          tenant,
          Array.from({ length: 3 }, () => ({ type: 'fetch', payload: { host: 'a.example' } })),
        );
        const other = await t.engine.enqueuer.enqueue(tenant, {
          type: 'fetch',
          payload: { host: 'b.example' },
        });
        state.failing = true;
        assert.equal((await run()).length, 4);
        const [breaker] = await t.engine.breakers.list(['host:a.example']);
        assert.equal(breaker!.state, 'open');
        // Deferred, not attempted: the jobs wait for the breaker with their attempts unchanged.
        for (const { job } of jobs) {
          const row = await t.engine.admin.get(tenant, job.id);
          assert.equal(row.state, 'failed');
          assert.equal(row.attempts, 1);
          assert.equal(Date.parse(row.runAt), clock.t + 30_000);
        }
        // A job enqueued while it is open waits too; the other host's breaker is unaffected (1 failure).
        const late = await t.engine.enqueuer.enqueue(tenant, {
          type: 'fetch',
          payload: { host: 'a.example' },
        });
        assert.equal(Date.parse(late.job.runAt), clock.t + 30_000);
        state.failing = false;
        clock.advance(1000);
        assert.deepEqual(
          (await run()).map((j) => j.id),
          [other.job.id],
        );
        clock.advance(29_000);
        // Half-open: exactly one probe runs; its success closes the breaker and the rest follow.
        const probe = await t.claim(50);
        assert.equal(probe.length, 1);
        assert.equal((await t.engine.breakers.list(['host:a.example']))[0]!.state, 'half_open');
        assert.deepEqual(await t.claim(50), []);
        await t.engine.outcomes.succeed(probe[0], 'wkr_test', 'ok');
        assert.equal((await t.engine.breakers.list(['host:a.example']))[0]!.state, 'closed');
        assert.equal((await run()).length, 3);
        const attempts = await t.db.kysely
          .selectFrom('jobs')
          .select(['attempts', 'state'])
          .where('tenant_id', '=', tenant)
          .execute();
        assert.ok(attempts.every((r) => r.state === 'succeeded'));
        assert.deepEqual(attempts.map((r) => r.attempts).sort(), [1, 2, 2, 2, 2]);
      } finally {
        await t.close();
      }
    });

    test('a failed probe opens the breaker again', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(
        database,
        { jobBreakerThreshold: 1, jobBreakerOpenSeconds: 10 },
        { clock, registry: flaky({ failing: true, calls: 0 }) },
      );
      try {
        const tenant = await t.tenant();
        await t.engine.enqueuer.enqueueMany(tenant, [
          { type: 'fetch', payload: { host: 'h' } },
          { type: 'fetch', payload: { host: 'h' } },
        ]);
        const [first] = await t.claim(1);
        await t.engine.outcomes.fail(first, 'wkr_test', { message: 'down' });
        assert.equal((await t.engine.breakers.list())[0]!.state, 'open');
        clock.advance(10_000);
        const [probe] = await t.claim(10);
        await t.engine.outcomes.fail(probe, 'wkr_test', { message: 'still down' });
        const [breaker] = await t.engine.breakers.list();
        assert.equal(breaker!.state, 'open');
        assert.equal(Date.parse(breaker!.openUntil!), clock.t + 10_000);
      } finally {
        await t.close();
      }
    });

    test('the rescuer returns jobs whose lease expired, counting the attempt', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, { jobLeaseMs: 5000, jobMaxAttempts: 2 }, { clock });
      try {
        const tenant = await t.tenant();
        const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        const [claimed] = await t.claim(1, { workerId: 'wkr_dead' });
        assert.equal(await t.engine.outcomes.rescue(), 0);
        clock.advance(5001);
        assert.equal(await t.engine.outcomes.rescue(), 1);
        const row = await t.engine.admin.get(tenant, job.id);
        assert.equal(row.state, 'failed');
        assert.equal(row.errors[0]!.code, 'lease_expired');
        // The dead worker coming back cannot record anything for the attempt it lost.
        assert.equal(await t.engine.outcomes.succeed(claimed, 'wkr_dead', 'late'), false);
        clock.advance(3_600_000);
        await t.claim(1);
        clock.advance(5001);
        assert.equal(await t.engine.outcomes.rescue(), 1);
        assert.equal((await t.engine.admin.get(tenant, job.id)).state, 'dead');
      } finally {
        await t.close();
      }
    });

    test('workers: timeouts abort the handler, cancel aborts a running job, shutdown releases the rest', {
      skip,
    }, async () => {
      const t = await startEngine(database, { jobMaxAttempts: 1, jobLaneTimeoutSeconds: { low: 1 } as any });
      const worker = t.engine.createWorker(quietLog, { ...FAST_WORKER, concurrency: 4 });
      try {
        const tenant = await t.tenant();
        await worker.start();
        const slow = await t.engine.enqueuer.enqueue(tenant, {
          type: 'sleep',
          lane: 'low',
          payload: { ms: 60_000 },
        });
        const cancel = await t.engine.enqueuer.enqueue(tenant, { type: 'sleep', payload: { ms: 60_000 } });
        const quick = await t.engine.enqueuer.enqueue(tenant, { type: 'sleep', payload: { ms: 10 } });
        const fail = await t.engine.enqueuer.enqueue(tenant, {
          type: 'sleep',
          payload: { ms: 0, fail: 'nope', permanent: true },
        });

        const timedOut = await waitFor('the timeout', async () => {
          const row = await t.engine.admin.get(tenant, slow.job.id);
          return row.state === 'dead' && row;
        });
        assert.equal(timedOut.errors[0]!.code, 'timeout');
        await waitFor(
          'the quick job',
          async () => (await t.engine.admin.get(tenant, quick.job.id)).state === 'succeeded',
        );
        const failed = await waitFor('the failing job', async () => {
          const row = await t.engine.admin.get(tenant, fail.job.id);
          return row.state === 'dead' && row;
        });
        assert.equal(failed.errors[0]!.message, 'nope');

        await waitFor(
          'the job to start',
          async () => (await t.engine.admin.get(tenant, cancel.job.id)).state === 'active',
        );
        await t.engine.admin.cancel(tenant, cancel.job.id);
        await waitFor('the slot to free', async () => worker.running === 0);
        assert.equal((await t.engine.admin.get(tenant, cancel.job.id)).state, 'cancelled');

        const held = await t.engine.enqueuer.enqueue(tenant, { type: 'sleep', payload: { ms: 60_000 } });
        await waitFor('the held job to start', async () => worker.running === 1);
        const stopped = await worker.stop(50);
        assert.deepEqual(stopped, { finished: 0, released: 1 });
        const released = await t.engine.admin.get(tenant, held.job.id);
        assert.equal(released.state, 'queued');
        assert.equal(released.attempts, 0);
      } finally {
        await worker.stop(0);
        await t.close();
      }
    });
  });
}
