import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import type { ConveyorError } from '../../src/errors.ts';
import { nextTick } from '../../src/jobs/schedules.ts';
import { CHILD_GUARD_MS, childEnv, MAIN, ROOT } from '../helpers/child.ts';
import { skipIfNoPostgres, startConveyor } from '../helpers/conveyor.ts';
import { Clock, DATABASES, startEngine, waitFor } from '../helpers/jobs.ts';

test('cron ticks: five and six fields, nicknames, time zones; bad expressions are 400s', () => {
  const t = Date.UTC(2026, 10, 24, 12, 0, 30);
  assert.equal(nextTick('*/5 * * * *', 'UTC', t), Date.UTC(2026, 10, 24, 12, 5, 0));
  assert.equal(nextTick('* * * * * *', 'UTC', t), t + 1000);
  assert.equal(nextTick('@hourly', 'UTC', t), Date.UTC(2026, 10, 24, 13, 0, 0));
  assert.equal(nextTick('0 9 * * *', 'Europe/Paris', t), Date.UTC(2026, 10, 25, 8, 0, 0));
  for (const bad of ['not cron', '61 * * * *']) {
    assert.throws(
      () => nextTick(bad, 'UTC', t),
      (e: ConveyorError) => e.status === 400,
    );
  }
  assert.throws(
    () => nextTick('* * * * *', 'Mars/Olympus', t),
    (e: ConveyorError) => e.status === 400,
  );
});

for (const database of DATABASES) {
  describe(`recurring jobs on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('each tick fires once however many processes fire; missed ticks are not made up', {
      skip,
    }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, {}, { clock });
      try {
        const tenant = await t.tenant();
        const schedule = await t.engine.schedules.create(tenant, {
          name: 'minutely',
          cron: '* * * * *',
          type: 'noop',
        });
        assert.equal(Date.parse(schedule.nextRunAt), clock.t + 60_000);
        assert.equal(await t.engine.schedules.fire(), 0);
        clock.advance(60_000);
        const fired = await Promise.all(Array.from({ length: 5 }, () => t.engine.schedules.fire()));
        assert.equal(
          fired.reduce((a, b) => a + b, 0),
          1,
        );
        clock.advance(10 * 60_000);
        assert.equal(await t.engine.schedules.fire(), 1);
        const jobs = await t.db.kysely.selectFrom('jobs').select('idempotency_key').execute();
        assert.equal(jobs.length, 2);
        const [listed] = await t.engine.schedules.list(tenant);
        assert.equal(Date.parse(listed!.nextRunAt), clock.t + 60_000);
      } finally {
        await t.close();
      }
    });

    test('three worker processes fire a every-second schedule once per tick', {
      skip,
      timeout: 2 * CHILD_GUARD_MS,
    }, async () => {
      const t = await startEngine(database);
      const workers: ChildProcess[] = [];
      try {
        const tenant = await t.tenant();
        await t.engine.schedules.create(tenant, { name: 'every-second', cron: '* * * * * *', type: 'noop' });
        const env = childEnv({
          CONVEYOR_DATA_DIR: t.config.dataDir,
          ...(t.config.databaseUrl ? { CONVEYOR_DATABASE_URL: t.config.databaseUrl } : {}),
          CONVEYOR_LOG_LEVEL: 'warn',
          CONVEYOR_JOB_SCHEDULE_INTERVAL_MS: '20',
          CONVEYOR_JOB_POLL_MS: '50',
        });
        for (let i = 0; i < 3; i++) {
          workers.push(
            spawn(process.execPath, [MAIN, 'worker'], {
              cwd: ROOT,
              env,
              stdio: ['ignore', 'ignore', 'inherit'],
            }),
          );
        }
        const ticks = async () =>
          (await t.db.kysely.selectFrom('jobs').select(['idempotency_key', 'created_at']).execute()).map(
            (r) => ({ tick: Number(r.idempotency_key!.split(':')[2]), firedAt: r.created_at }),
          );
        // Includes the workers' start, which takes 20 s or more on a busy machine.
        await waitFor('six ticks', async () => (await ticks()).length >= 6, CHILD_GUARD_MS);
        for (const w of workers) w.kill('SIGTERM');
        const fired = (await ticks()).sort((a, b) => a.tick - b.tick);
        assert.equal(new Set(fired.map((f) => f.tick)).size, fired.length, 'no tick fired twice');
        // Each firing moves the schedule to the first tick after the moment it fires, so a tick is left
        // out only when the firing before it came over a second late (the workers were starting, or the
        // machine was too busy to run any of them): never while they kept up.
        for (let i = 1; i < fired.length; i++) {
          const [before, tick] = [fired[i - 1]!, fired[i]!.tick];
          const firstAfterFiring = Math.floor(before.firedAt / 1000) * 1000 + 1000;
          assert.ok(
            tick >= before.tick + 1000 && tick <= Math.max(before.tick + 1000, firstAfterFiring),
            `tick ${tick} after tick ${before.tick}, which fired at ${before.firedAt}`,
          );
        }
      } finally {
        for (const w of workers) w.kill('SIGKILL');
        await t.close();
      }
    });
  });
}

describe('schedules API', () => {
  test('create, list, delete; admin only; bad cron, unknown type and duplicate names refused', async () => {
    const server = await startConveyor();
    try {
      const created = await server.json('POST', '/api/v1/schedules', {
        name: 'nightly',
        cron: '0 3 * * *',
        type: 'noop',
        priority: 'low',
      });
      assert.equal(created.status, 201);
      assert.equal(created.body.priority, 'low');
      assert.equal(
        (await server.json('POST', '/api/v1/schedules', { name: 'nightly', cron: '0 3 * * *', type: 'noop' }))
          .status,
        409,
      );
      assert.equal(
        (await server.json('POST', '/api/v1/schedules', { name: 'x', cron: 'often', type: 'noop' })).status,
        400,
      );
      assert.equal(
        (await server.json('POST', '/api/v1/schedules', { name: 'y', cron: '@daily', type: 'nope' })).status,
        400,
      );
      assert.equal(
        (
          await server.json('POST', '/api/v1/schedules', {
            name: 'z',
            cron: '@daily',
            type: 'sleep',
            payload: {},
          })
        ).status,
        400,
      );
      const list = await server.json('GET', '/api/v1/schedules');
      assert.deepEqual(
        list.body.items.map((s: any) => s.name),
        ['nightly'],
      );
      assert.equal((await server.json('DELETE', `/api/v1/schedules/${created.body.id}`)).status, 204);
      assert.equal((await server.json('DELETE', `/api/v1/schedules/${created.body.id}`)).status, 404);
    } finally {
      await server.close();
    }
  });
});
