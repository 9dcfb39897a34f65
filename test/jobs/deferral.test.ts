import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JobRegistry, registerBuiltinTypes } from '../../src/jobs/registry.ts';
import { JobDeferral } from '../../src/jobs/types.ts';
import { skipIfNoPostgres } from '../helpers/conveyor.ts';
import { Clock, DATABASES, FAST_WORKER, quietLog, startEngine, waitFor } from '../helpers/jobs.ts';

const HOUR = 3_600_000;

for (const database of DATABASES) {
  describe(`deferred jobs on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('a deferral queues the job again without counting the attempt; a wake makes it due', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, {}, { clock });
      try {
        const tenant = await t.tenant();
        const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        const [claimed] = await t.claim(1);
        assert.equal(claimed.attempts, 1);
        clock.advance(5);
        assert.equal(await t.engine.outcomes.defer(claimed, 'wkr_test', HOUR), true);
        const waiting = await t.engine.admin.get(tenant, job.id);
        assert.equal(waiting.state, 'queued');
        assert.equal(waiting.attempts, 0);
        assert.equal(Date.parse(waiting.runAt), clock.now() + HOUR);
        assert.deepEqual(await t.claim(1), [], 'not due while it waits');
        // Only the lease holder defers.
        assert.equal(await t.engine.outcomes.defer(claimed, 'wkr_test', HOUR), false);

        clock.advance(5);
        assert.equal(await t.engine.wake(job.id), true);
        assert.equal(await t.engine.wake(job.id), false, 'a due job has nothing to wake');
        const [again] = await t.claim(1);
        assert.equal(again.id, job.id);
        assert.equal(again.attempts, 1, 'the deferred run did not use up an attempt');
      } finally {
        await t.close();
      }
    });

    test('a wake while the handler still runs is not lost: its deferral does not wait', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, {}, { clock });
      try {
        const tenant = await t.tenant();
        const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        const [claimed] = await t.claim(1);
        clock.advance(5);
        assert.equal(await t.engine.wake(job.id), true);
        clock.advance(5);
        assert.equal(await t.engine.outcomes.defer(claimed, 'wkr_test', HOUR), true);
        const [again] = await t.claim(1);
        assert.equal(again?.id, job.id, 'due at once');
        // The next run, not woken, waits its full delay.
        clock.advance(5);
        assert.equal(await t.engine.outcomes.defer(again, 'wkr_test', HOUR), true);
        assert.deepEqual(await t.claim(1), []);
      } finally {
        await t.close();
      }
    });

    test('a worker runs a handler that defers until its children wake it', { skip }, async () => {
      const registry = registerBuiltinTypes(new JobRegistry());
      let runs = 0;
      let child: string | undefined;
      const t = await startEngine(database, {}, { registry });
      registry.register({
        type: 'parent',
        schema: { type: 'object' },
        handler: async (_payload, context) => {
          runs++;
          if (child === undefined) {
            const { job } = await t.engine.enqueuer.enqueue(context.job.tenantId, {
              type: 'child',
              parentId: context.job.id,
            });
            child = job.id;
          }
          const state = (await t.engine.admin.get(context.job.tenantId, child)).state;
          // An hour: only the child's wake can bring the parent back within the test.
          if (state !== 'succeeded') throw new JobDeferral(HOUR, 'waiting for the child');
          return { runs };
        },
      });
      registry.register({
        type: 'child',
        schema: { type: 'object' },
        handler: async (_payload, context) => {
          // The parent must have deferred before the child wakes it, or the wake marks a running job.
          await waitFor('the parent to wait', async () => {
            const parent = await t.engine.admin.get(context.job.tenantId, context.job.parentId!);
            return parent.state === 'queued';
          });
          return 'ok';
        },
      });
      const worker = t.engine.createWorker(quietLog, { ...FAST_WORKER, concurrency: 2 });
      try {
        const tenant = await t.tenant();
        const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'parent' });
        worker.start();
        await waitFor('the child to succeed', async () => {
          const c = child && (await t.engine.admin.get(tenant, child));
          return c && c.state === 'succeeded';
        });
        assert.equal(await t.engine.wake(job.id), true);
        const done = await waitFor('the parent to succeed', async () => {
          const p = await t.engine.admin.get(tenant, job.id);
          return p.state === 'succeeded' && p;
        });
        assert.deepEqual(done.result, { runs: 2 });
        assert.equal(done.attempts, 1, 'waiting counted no attempt');
      } finally {
        await worker.stop(1000);
        await t.close();
      }
    });

    test('cancelling a job cancels its unfinished children, not its finished ones', { skip }, async () => {
      const t = await startEngine(database, {}, { clock: new Clock() });
      try {
        const tenant = await t.tenant();
        const { job: parent } = await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        const children: { id: string }[] = [];
        for (let i = 0; i < 3; i++) {
          const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'noop', parentId: parent.id });
          children.push(job);
        }
        const claimed = await t.claim(4);
        const first = claimed.find((j) => j.id === children[0]!.id)!;
        assert.equal(await t.engine.outcomes.succeed(first, 'wkr_test', 'done'), true);
        await t.engine.admin.cancel(tenant, parent.id);
        const states = await Promise.all(
          children.map(async (c) => (await t.engine.admin.get(tenant, c.id)).state),
        );
        assert.deepEqual(states, ['succeeded', 'cancelled', 'cancelled']);
      } finally {
        await t.close();
      }
    });
  });
}
