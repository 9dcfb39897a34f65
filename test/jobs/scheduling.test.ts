import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { skipIfNoPostgres } from '../helpers/conveyor.ts';
import { Clock, DATABASES, startEngine } from '../helpers/jobs.ts';

const unlimitedLanes = { critical: 0, high: 0, normal: 0, low: 0 } as any;

for (const database of DATABASES) {
  describe(`scheduling on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('lanes in strict priority; a waiting low job is aged past fresh critical work', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(
        database,
        { jobAgingSeconds: 60, jobLaneConcurrency: unlimitedLanes },
        { clock },
      );
      try {
        const tenant = await t.tenant();
        const order = ['low', 'normal', 'critical', 'high'] as const;
        for (const lane of order) {
          await t.engine.enqueuer.enqueue(tenant, { type: 'noop', lane });
          clock.advance(1);
        }
        const lanes = [];
        for (let i = 0; i < 4; i++) lanes.push((await t.claim(1))[0].lane);
        assert.deepEqual(lanes, ['critical', 'high', 'normal', 'low']);

        await t.engine.enqueuer.enqueue(tenant, { type: 'noop', lane: 'low', payload: { old: true } });
        clock.advance(3 * 60_000);
        await t.engine.enqueuer.enqueue(tenant, { type: 'noop', lane: 'critical' });
        const [first] = await t.claim(1);
        assert.deepEqual([first.lane, first.payload], ['low', { old: true }]);
      } finally {
        await t.close();
      }
    });

    test('one tenant’s 10,000 queued jobs do not delay another tenant’s first job', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, { jobLaneConcurrency: unlimitedLanes }, { clock });
      try {
        const big = await t.tenant('enterprise');
        const small = await t.tenant('free');
        for (let i = 0; i < 10; i++) {
          await t.engine.enqueuer.enqueueMany(
            big,
            Array.from({ length: 1000 }, (_, n) => ({ type: 'noop', payload: { n } })),
          );
          clock.advance(1);
        }
        clock.advance(10_000);
        const { job } = await t.engine.enqueuer.enqueue(small, { type: 'noop' });
        const claimed = await t.claim(2);
        assert.ok(
          claimed.some((j) => j.id === job.id),
          'the small tenant’s job is in the very next claim',
        );
        assert.ok(claimed.some((j) => j.tenantId === big));
      } finally {
        await t.close();
      }
    });

    test('a saturated tenant’s backlog does not block others (free tier: at most 2 active)', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(
        database,
        { jobLaneConcurrency: unlimitedLanes, jobTierDailyLimit: { free: 0 } as any },
        { clock },
      );
      try {
        const free = await t.tenant('free');
        const other = await t.tenant('standard');
        await t.engine.enqueuer.enqueueMany(
          free,
          Array.from({ length: 500 }, () => ({ type: 'noop' })),
        );
        clock.advance(1);
        const first = await t.claim(50);
        assert.equal(first.length, 2);
        assert.deepEqual(await t.claim(50), []);
        const { job } = await t.engine.enqueuer.enqueue(other, { type: 'noop' });
        assert.deepEqual(
          (await t.claim(50)).map((j) => j.id),
          [job.id],
        );
        await t.engine.outcomes.succeed(first[0], 'wkr_test', null);
        const next = await t.claim(50);
        assert.equal(next.length, 1);
        assert.equal(next[0].tenantId, free);
        const active = await t.db.kysely
          .selectFrom('jobs')
          .select('id')
          .where('tenant_id', '=', free)
          .where('state', '=', 'active')
          .execute();
        assert.equal(active.length, 2);
      } finally {
        await t.close();
      }
    });

    test('lane and type concurrency limits', { skip }, async () => {
      const t = await startEngine(database, {
        jobLaneConcurrency: { critical: 3, high: 0, normal: 0, low: 0 } as any,
        jobTypeConcurrency: { sleep: 2 } as any,
      });
      try {
        const tenant = await t.tenant();
        await t.engine.enqueuer.enqueueMany(
          tenant,
          Array.from({ length: 10 }, () => ({ type: 'noop', lane: 'critical' as const })),
        );
        await t.engine.enqueuer.enqueueMany(
          tenant,
          Array.from({ length: 10 }, () => ({ type: 'sleep', payload: { ms: 1 } })),
        );
        const claimed = await t.claim(100);
        assert.equal(claimed.filter((j) => j.lane === 'critical').length, 3);
        assert.equal(claimed.filter((j) => j.type === 'sleep').length, 2);
        assert.equal(claimed.length, 5);
      } finally {
        await t.close();
      }
    });

    test('a start rate of 5/s holds within 10 % over 10 s of greedy claiming', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(
        database,
        { jobTypeRatePerSecond: { noop: 5 } as any, jobLaneConcurrency: unlimitedLanes },
        { clock },
      );
      try {
        const tenant = await t.tenant();
        await t.engine.enqueuer.enqueueMany(
          tenant,
          Array.from({ length: 200 }, () => ({ type: 'noop' })),
        );
        const start = clock.t;
        let started = 0;
        // Claim every 20 ms of (simulated) time, as several eager workers would.
        while (clock.t < start + 10_000) {
          const workerId = `wkr_${clock.t % 3}`;
          for (const job of await t.claim(50, { workerId })) {
            await t.engine.outcomes.succeed(job, workerId, null);
            started++;
          }
          clock.advance(20);
        }
        assert.ok(started >= 45 && started <= 55, `${started} starts in 10 s`);
      } finally {
        await t.close();
      }
    });

    test('a worker claims only its lanes and its types', { skip }, async () => {
      const t = await startEngine(database, { jobLaneConcurrency: unlimitedLanes });
      try {
        const tenant = await t.tenant();
        await t.engine.enqueuer.enqueue(tenant, { type: 'noop', lane: 'low' });
        await t.engine.enqueuer.enqueue(tenant, { type: 'sleep', lane: 'critical', payload: { ms: 1 } });
        const critical = await t.claim(10, { lanes: ['critical', 'high'] });
        assert.deepEqual(
          critical.map((j) => j.lane),
          ['critical'],
        );
        const result = await t.engine.claimer.claim({
          workerId: 'w',
          slots: 10,
          lanes: null,
          types: ['sleep'],
        });
        assert.deepEqual(result.jobs, []);
        assert.equal((await t.claim(10)).length, 1);
      } finally {
        await t.close();
      }
    });

    test('delayed jobs wait for runAt and the claim says when to look again', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, {}, { clock });
      try {
        const tenant = await t.tenant();
        await t.engine.enqueuer.enqueue(tenant, { type: 'noop', runAt: clock.t + 5000 });
        const result = await t.engine.claimer.claim({
          workerId: 'w',
          slots: 10,
          lanes: null,
          types: ['noop'],
        });
        assert.deepEqual(result.jobs, []);
        assert.equal(result.nextWakeAt, clock.t + 5000);
        clock.advance(5000);
        assert.equal((await t.claim(10)).length, 1);
      } finally {
        await t.close();
      }
    });
  });
}

for (const database of DATABASES) {
  describe(`turns across claims on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('with more tenants than a claim can serve, every tenant’s first job starts before anyone’s second', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, { jobLaneConcurrency: unlimitedLanes }, { clock });
      try {
        const tenants: string[] = [];
        for (let i = 0; i < 30; i++) {
          const tenant = await t.tenant();
          tenants.push(tenant);
          await t.engine.enqueuer.enqueueMany(
            tenant,
            Array.from({ length: 5 }, () => ({ type: 'noop' })),
          );
          clock.advance(1);
        }
        const started: string[] = [];
        for (let round = 0; round < 6; round++) {
          clock.advance(1);
          for (const job of await t.claim(10)) {
            started.push(job.tenantId);
            await t.engine.outcomes.succeed(job, 'wkr_test', null);
          }
        }
        // 30 tenants, 10 slots a claim: the first three claims serve each tenant once, whatever order
        // they enqueued in; the next three serve each once more.
        assert.equal(new Set(started.slice(0, 30)).size, 30);
        assert.equal(new Set(started.slice(30, 60)).size, 30);
      } finally {
        await t.close();
      }
    });
  });
}
