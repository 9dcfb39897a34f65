import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConveyorError } from '../../src/errors.ts';
import { JobRegistry, registerBuiltinTypes } from '../../src/jobs/registry.ts';
import { skipIfNoPostgres } from '../helpers/conveyor.ts';
import { Clock, DATABASES, startEngine } from '../helpers/jobs.ts';

/** Built-ins plus a billable type and one whose results stay fresh for an hour. */
function registry(): JobRegistry {
  return registerBuiltinTypes(new JobRegistry())
    .register({ type: 'billable', schema: { type: 'object' }, cost: 3, handler: async () => 'done' })
    .register({
      type: 'analysis',
      schema: { type: 'object' },
      freshnessMs: 3_600_000,
      handler: async () => 'fresh',
    });
}

const rejects = (promise: Promise<unknown>, code: string, status: number) =>
  assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConveyorError, String(error));
    assert.equal(error.code, code);
    assert.equal(error.status, status);
    return true;
  });

for (const database of DATABASES) {
  describe(`job basics on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('enqueue, claim, succeed', { skip }, async () => {
      const t = await startEngine(database, {}, { clock: new Clock() });
      try {
        const tenant = await t.tenant();
        const { job, outcome } = await t.engine.enqueuer.enqueue(tenant, { type: 'noop', payload: { a: 1 } });
        assert.equal(outcome, 'created');
        assert.equal(job.state, 'queued');
        assert.equal(job.lane, 'normal');
        const [claimed] = await t.claim(10);
        assert.equal(claimed.id, job.id);
        assert.equal(claimed.state, 'active');
        assert.equal(claimed.attempts, 1);
        assert.deepEqual(await t.claim(10), []);
        assert.equal(await t.engine.outcomes.succeed(claimed, 'wkr_test', { ok: true }), true);
        const done = await t.engine.admin.get(tenant, job.id);
        assert.equal(done.state, 'succeeded');
        assert.deepEqual(done.result, { ok: true });
        // Another worker's (or a stale) outcome for the same attempt is refused.
        assert.equal(await t.engine.outcomes.succeed(claimed, 'wkr_other', 1), false);
      } finally {
        await t.close();
      }
    });

    test('a payload that cannot become JSON (circular, nested past the stack) is a 400', {
      skip,
    }, async () => {
      const t = await startEngine(database);
      try {
        const tenant = await t.tenant();
        const circular: Record<string, unknown> = {};
        circular['self'] = circular;
        let deep: unknown = 1;
        for (let i = 0; i < 100_000; i++) deep = [deep];
        for (const payload of [circular, deep]) {
          await rejects(
            t.engine.enqueuer.enqueue(tenant, { type: 'noop', payload }),
            'validation_failed',
            400,
          );
        }
        assert.deepEqual(await t.db.kysely.selectFrom('jobs').select('id').execute(), []);
      } finally {
        await t.close();
      }
    });

    test('100 concurrent enqueues with one idempotency key make one job', { skip }, async () => {
      const t = await startEngine(database);
      try {
        const tenant = await t.tenant();
        const results = await Promise.all(
          Array.from({ length: 100 }, () =>
            t.engine.enqueuer.enqueue(tenant, { type: 'noop', idempotencyKey: 'once', payload: { n: 1 } }),
          ),
        );
        assert.equal(new Set(results.map((r) => r.job.id)).size, 1);
        assert.equal(results.filter((r) => r.outcome === 'created').length, 1);
        assert.equal(results.filter((r) => r.outcome === 'existing').length, 99);
        const other = await t.tenant();
        const theirs = await t.engine.enqueuer.enqueue(other, { type: 'noop', idempotencyKey: 'once' });
        assert.equal(theirs.outcome, 'created', 'keys are per tenant');
      } finally {
        await t.close();
      }
    });

    test('an enqueue inside a rolled-back transaction leaves nothing', { skip }, async () => {
      const t = await startEngine(database);
      try {
        const tenant = await t.tenant();
        await assert.rejects(
          t.db.kysely.transaction().execute(async (trx) => {
            await t.engine.enqueuer.enqueue(tenant, { type: 'noop' }, { trx });
            throw new Error('the caller changes its mind');
          }),
          /changes its mind/,
        );
        const { count } = await t.db.kysely
          .selectFrom('jobs')
          .select((eb) => eb.fn.countAll<number>().as('count'))
          .executeTakeFirstOrThrow();
        assert.equal(Number(count), 0);
        const kept = await t.db.kysely
          .transaction()
          .execute((trx) => t.engine.enqueuer.enqueue(tenant, { type: 'noop' }, { trx }));
        assert.equal((await t.engine.admin.get(tenant, kept.job.id)).state, 'queued');
      } finally {
        await t.close();
      }
    });

    test('bad input is refused before anything is written', { skip }, async () => {
      const t = await startEngine(database, { jobMaxPayloadBytes: 100, jobMaxDelaySeconds: 3600 });
      try {
        const tenant = await t.tenant();
        const enqueue = (input: any) => t.engine.enqueuer.enqueue(tenant, input);
        await rejects(enqueue({ type: 'nope' }), 'validation_failed', 400);
        await rejects(enqueue({ type: 'noop', payload: { big: 'x'.repeat(200) } }), 'validation_failed', 400);
        await rejects(enqueue({ type: 'sleep', payload: { ms: 'long' } }), 'validation_failed', 400);
        await rejects(enqueue({ type: 'sleep', payload: {} }), 'validation_failed', 400);
        await rejects(enqueue({ type: 'noop', runAt: Number.NaN }), 'validation_failed', 400);
        await rejects(enqueue({ type: 'noop', runAt: Date.now() + 7_200_000 }), 'validation_failed', 400);
        // One bad item fails the whole batch, naming its index.
        await assert.rejects(
          t.engine.enqueuer.enqueueMany(tenant, [{ type: 'noop' }, { type: 'nope' }]),
          (error: ConveyorError) => error.extra['index'] === 1,
        );
        const rows = await t.db.kysely.selectFrom('jobs').select('id').execute();
        assert.deepEqual(rows, []);
      } finally {
        await t.close();
      }
    });

    test('an identical request inside the freshness window returns the earlier result', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, {}, { registry: registry(), clock });
      try {
        const tenant = await t.tenant();
        const first = await t.engine.enqueuer.enqueue(tenant, {
          type: 'analysis',
          payload: { user: 'x', depth: 2 },
        });
        // Not fresh while it has not succeeded.
        const second = await t.engine.enqueuer.enqueue(tenant, {
          type: 'analysis',
          payload: { depth: 2, user: 'x' },
        });
        assert.equal(second.outcome, 'created');
        const claimed = await t.claim(10);
        for (const job of claimed) await t.engine.outcomes.succeed(job, 'wkr_test', 'result');
        clock.advance(3_000_000);
        const fresh = await t.engine.enqueuer.enqueue(tenant, {
          type: 'analysis',
          payload: { depth: 2, user: 'x' },
        });
        assert.equal(fresh.outcome, 'fresh');
        assert.equal(fresh.job.state, 'succeeded');
        assert.equal(fresh.job.result, 'result');
        assert.equal(
          (await t.engine.enqueuer.enqueue(tenant, { type: 'analysis', payload: { user: 'y', depth: 2 } }))
            .outcome,
          'created',
        );
        const other = await t.tenant();
        assert.equal(
          (await t.engine.enqueuer.enqueue(other, { type: 'analysis', payload: { user: 'x', depth: 2 } }))
            .outcome,
          'created',
        );
        clock.advance(700_000);
        assert.equal(
          (await t.engine.enqueuer.enqueue(tenant, { type: 'analysis', payload: { user: 'x', depth: 2 } }))
            .outcome,
          'created',
        );
        assert.ok(first.job.id);
      } finally {
        await t.close();
      }
    });

    test('daily limits by tier: 429 with Retry-After past the limit, counted per UTC day', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, { jobTierDailyLimit: { free: 3 } as any }, { clock });
      try {
        const free = await t.tenant('free');
        await t.engine.enqueuer.enqueueMany(free, [{ type: 'noop' }, { type: 'noop' }]);
        await t.engine.enqueuer.enqueue(free, { type: 'noop', idempotencyKey: 'k' });
        // An idempotent repeat creates nothing, so it is not refused.
        assert.equal(
          (await t.engine.enqueuer.enqueue(free, { type: 'noop', idempotencyKey: 'k' })).outcome,
          'existing',
        );
        await assert.rejects(t.engine.enqueuer.enqueue(free, { type: 'noop' }), (error: ConveyorError) => {
          assert.equal(error.status, 429);
          assert.equal(error.headers['retry-after'], String(12 * 3600));
          return true;
        });
        const enterprise = await t.tenant('enterprise');
        await t.engine.enqueuer.enqueueMany(
          enterprise,
          Array.from({ length: 10 }, () => ({ type: 'noop' })),
        );
        clock.advance(12 * 3600 * 1000);
        await t.engine.enqueuer.enqueue(free, { type: 'noop' });
        const { count } = await t.db.kysely
          .selectFrom('jobs')
          .where('tenant_id', '=', free)
          .select((eb) => eb.fn.countAll<number>().as('count'))
          .executeTakeFirstOrThrow();
        assert.equal(Number(count), 4);
      } finally {
        await t.close();
      }
    });

    test('what enqueue remembers of a tenant (PostgreSQL’s one-statement path) is checked again each time', {
      skip,
    }, async () => {
      const t = await startEngine(
        database,
        { jobTierDailyLimit: { free: 2 } as any },
        { registry: registry() },
      );
      try {
        const tenant = await t.tenant('enterprise', null);
        const set = (values: { tier?: string; credit_balance?: number | null }) =>
          t.db.kysely.updateTable('tenants').set(values).where('id', '=', tenant).execute();
        await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        assert.equal((await t.engine.enqueuer.enqueue(tenant, { type: 'billable' })).job.cost, 0);
        // Another process gives the tenant a balance: the next billable job must be charged (402 here).
        await set({ credit_balance: 2 });
        await rejects(t.engine.enqueuer.enqueue(tenant, { type: 'billable' }), 'insufficient_credit', 402);
        // ...and a lower tier: its daily limit applies from the next enqueue on.
        await set({ credit_balance: null, tier: 'free' });
        await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        await assert.rejects(t.engine.enqueuer.enqueue(tenant, { type: 'noop' }), (error: ConveyorError) => {
          assert.equal(error.status, 429);
          return true;
        });
        assert.deepEqual(await t.engine.enqueuer.enqueueMany(tenant, []), []);
        const jobs = await t.db.kysely
          .selectFrom('jobs')
          .select('id')
          .where('tenant_id', '=', tenant)
          .execute();
        assert.equal(jobs.length, 4);
      } finally {
        await t.close();
      }
    });

    test('credits: reserved at enqueue, 402 when short, refunded when the job dies or is cancelled', {
      skip,
    }, async () => {
      const t = await startEngine(database, { jobMaxAttempts: 1 }, { registry: registry() });
      try {
        const tenant = await t.tenant('standard', 7);
        const balance = async () =>
          (
            await t.db.kysely
              .selectFrom('tenants')
              .select('credit_balance')
              .where('id', '=', tenant)
              .executeTakeFirstOrThrow()
          ).credit_balance;
        const a = await t.engine.enqueuer.enqueue(tenant, { type: 'billable' });
        const b = await t.engine.enqueuer.enqueue(tenant, { type: 'billable' });
        assert.equal(a.job.cost, 3);
        assert.equal(await balance(), 1);
        await rejects(t.engine.enqueuer.enqueue(tenant, { type: 'billable' }), 'insufficient_credit', 402);
        assert.equal(await balance(), 1);
        // Free types and tenants without a balance are not charged.
        await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        const unmetered = await t.tenant('standard', null);
        assert.equal((await t.engine.enqueuer.enqueue(unmetered, { type: 'billable' })).job.cost, 0);

        await t.engine.admin.cancel(tenant, b.job.id);
        assert.equal(await balance(), 4);
        const [claimed] = (await t.claim(10)).filter((j: any) => j.id === a.job.id);
        assert.equal(await t.engine.outcomes.fail(claimed, 'wkr_test', { message: 'boom' }), 'dead');
        assert.equal(await balance(), 7);
        const ledger = await t.db.kysely
          .selectFrom('credit_ledger')
          .selectAll()
          .where('tenant_id', '=', tenant)
          .orderBy('id')
          .execute();
        // (Two movements can share a millisecond, so compare them as a set.)
        assert.deepEqual(ledger.map((r) => `${r.amount}=>${r.balance}`).sort(), [
          '-3=>1',
          '-3=>4',
          '3=>4',
          '3=>7',
        ]);
        // Running a dead job again reserves its cost again.
        await t.engine.admin.retry(tenant, a.job.id);
        assert.equal(await balance(), 4);
      } finally {
        await t.close();
      }
    });
  });
}
