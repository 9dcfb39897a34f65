import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { newId } from '../../src/db/ids.ts';
import { JobMonitor } from '../../src/jobs/monitor.ts';
import { JobRegistry, registerBuiltinTypes } from '../../src/jobs/registry.ts';
import { percentiles } from '../../src/jobs/statistics.ts';
import { Alerter } from '../../src/ops/alerts.ts';
import { classify } from '../../src/ops/health.ts';
import { breakerLabel } from '../../src/ops/metrics.ts';
import {
  BACKENDS,
  createTenant,
  skipIfNoPostgres,
  startConveyor,
  type TestServer,
} from '../helpers/conveyor.ts';
import { Clock, DATABASES, quietLog, startEngine, type TestEngine } from '../helpers/jobs.ts';

const monitorOf = (t: TestEngine) =>
  new JobMonitor(t.engine.context, t.engine.breakers, {
    heartbeatMs: t.config.jobHeartbeatMs,
    statsMaxRows: t.config.monitorStatsMaxRows,
  });

/** Inserts a job row with chosen times, as the engine would have left it. */
async function insertJob(
  t: TestEngine,
  tenantId: string,
  row: {
    state: string;
    type?: string;
    lane?: string;
    runAt: number;
    startedAt?: number;
    finishedAt?: number;
    errors?: unknown[];
  },
) {
  const type = row.type ?? 'noop';
  const lane = row.lane ?? 'normal';
  await t.db.kysely
    .insertInto('jobs')
    .values({
      id: newId('job', row.runAt),
      tenant_id: tenantId,
      type,
      lane,
      queue: `${lane}/${type}/${tenantId}`,
      state: row.state,
      payload: '{}',
      payload_hash: 'x',
      errors: JSON.stringify(row.errors ?? []),
      attempts: 1,
      max_attempts: 3,
      run_at: row.runAt,
      cost: 0,
      created_at: row.runAt,
      updated_at: row.finishedAt ?? row.startedAt ?? row.runAt,
      started_at: row.startedAt ?? null,
      finished_at: row.finishedAt ?? null,
    })
    .execute();
}

test('health classification boundaries: > 95 healthy, 80..95 degraded, < 80 unhealthy', () => {
  const thresholds = { healthyPercent: 95, degradedPercent: 80 };
  assert.equal(classify(null, thresholds), 'healthy');
  assert.equal(classify(1, thresholds), 'healthy');
  assert.equal(classify(0.951, thresholds), 'healthy');
  assert.equal(classify(0.95, thresholds), 'degraded');
  assert.equal(classify(0.8, thresholds), 'degraded');
  assert.equal(classify(0.799, thresholds), 'unhealthy');
  assert.equal(classify(0, thresholds), 'unhealthy');
});

test('percentiles are nearest-rank', () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.deepEqual(percentiles(values), { count: 100, p50: 50, p95: 95, p99: 99 });
  assert.deepEqual(percentiles([]), { count: 0, p50: null, p95: null, p99: null });
});

for (const database of DATABASES) {
  describe(`job monitor on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('status: depth by lane, type and state, oldest due age, workers, scope', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, {}, { clock });
      try {
        const a = await t.tenant();
        const b = await t.tenant();
        const monitor = monitorOf(t);
        await t.engine.enqueuer.enqueue(a, { type: 'noop', lane: 'high' });
        await t.engine.enqueuer.enqueue(a, { type: 'noop', lane: 'low' });
        await t.engine.enqueuer.enqueue(a, { type: 'sleep', payload: { ms: 1 }, lane: 'low' });
        await t.engine.enqueuer.enqueue(a, { type: 'noop', lane: 'low', runAt: clock.t + 60_000 });
        await t.engine.enqueuer.enqueue(b, { type: 'noop', lane: 'normal' });
        clock.advance(10_000);
        const claimed = await t.claim(1, { lanes: ['high'] });
        assert.equal(claimed.length, 1);
        await t.db.kysely
          .insertInto('job_workers')
          .values([
            {
              id: 'wkr_live',
              host: 'h1',
              pid: 1,
              lanes: '[]',
              types: '[]',
              concurrency: 4,
              running: 1,
              started_at: clock.t,
              seen_at: clock.t,
            },
            {
              id: 'wkr_gone',
              host: 'h2',
              pid: 2,
              lanes: '[]',
              types: '[]',
              concurrency: 4,
              running: 0,
              started_at: 0,
              seen_at: clock.t - 3 * t.config.jobHeartbeatMs - 1,
            },
          ])
          .execute();

        const mine = await monitor.status({ tenantId: a });
        assert.equal(mine.scope, 'tenant');
        assert.deepEqual(mine.totals, { queued: 3, failed: 0, active: 1 });
        const lanes = Object.fromEntries(mine.lanes.map((l) => [l.lane, l]));
        assert.equal(lanes['high']!.active, 1);
        assert.equal(lanes['high']!.oldestDueAgeSeconds, null);
        assert.equal(lanes['low']!.queued, 3);
        // The delayed job is not due; the others have been due for 10 s.
        assert.equal(lanes['low']!.oldestDueAgeSeconds, 10);
        assert.deepEqual(
          mine.types.map((x) => [x.type, x.queued, x.active]),
          [
            ['noop', 2, 1],
            ['sleep', 1, 0],
          ],
        );
        assert.equal(mine.active.length, 1);
        assert.equal(mine.active[0]!.id, claimed[0].id);
        assert.equal(mine.liveWorkers, 1);
        assert.deepEqual(mine.workers, [], 'worker details are for operators');

        const all = await monitor.status('all');
        assert.deepEqual(all.totals, { queued: 4, failed: 0, active: 1 });
        assert.deepEqual(
          all.workers.map((w) => w.id),
          ['wkr_live'],
        );
        assert.deepEqual(await monitor.depthByLane().then((r) => r.reduce((n, x) => n + x.count, 0)), 5);
      } finally {
        await t.close();
      }
    });

    test('statistics: buckets, success rate and percentiles from known rows', { skip }, async () => {
      const clock = new Clock();
      const t = await startEngine(database, {}, { clock });
      try {
        const tenant = await t.tenant();
        const other = await t.tenant();
        const now = clock.t; // 12:00:00 exactly
        // 100 succeeded jobs in the last hour: wait i*10 ms, run i ms (i = 1..100).
        for (let i = 1; i <= 100; i++) {
          const runAt = now - 30 * 60_000 + i * 1000;
          await insertJob(t, tenant, {
            state: 'succeeded',
            runAt,
            startedAt: runAt + i * 10,
            finishedAt: runAt + i * 10 + i,
          });
        }
        // One dead job 3 hours ago with two failed attempts; one retrying job with a failure 5 min ago.
        const old = now - 3 * 3600_000;
        await insertJob(t, tenant, {
          state: 'dead',
          runAt: old,
          startedAt: old + 1000,
          finishedAt: old + 2000,
          errors: [
            { attempt: 1, at: new Date(old).toISOString(), message: 'x' },
            { attempt: 2, at: new Date(old + 2000).toISOString(), message: 'x' },
          ],
        });
        await insertJob(t, tenant, {
          state: 'failed',
          runAt: now + 60_000,
          startedAt: now - 5 * 60_000,
          errors: [{ attempt: 1, at: new Date(now - 5 * 60_000).toISOString(), message: 'x' }],
        });
        // Another tenant's job: outside the tenant's scope.
        await insertJob(t, other, {
          state: 'succeeded',
          runAt: now - 1000,
          startedAt: now - 900,
          finishedAt: now - 800,
        });

        const stats = await monitorOf(t).statistics({ tenantId: tenant });
        assert.equal(stats.truncated, false);
        assert.equal(stats.hour.buckets.length, 60);
        assert.equal(stats.day.buckets.length, 24);
        assert.deepEqual(stats.hour.totals, {
          started: 101,
          succeeded: 100,
          failed: 1,
          dead: 0,
          successRate: 100 / 101,
        });
        assert.deepEqual(stats.hour.waitMs, { count: 100, p50: 500, p95: 950, p99: 990 });
        assert.deepEqual(stats.hour.runMs, { count: 100, p50: 50, p95: 95, p99: 99 });
        assert.equal(stats.day.totals.dead, 1);
        assert.equal(stats.day.totals.failed, 3);
        assert.equal(stats.day.totals.succeeded, 100);
        // The dead job's hour bucket (09:00) holds its death and both failures.
        const nine = stats.day.buckets.find((b) => b.start === new Date(old).toISOString())!;
        assert.deepEqual([nine.dead, nine.failed, nine.started], [1, 2, 1]);
        // Minute buckets: the first succeeded job finished at 11:30:01.
        const minute = stats.hour.buckets.find((b) => b.start === new Date(now - 30 * 60_000).toISOString())!;
        assert.equal(minute.succeeded, 59);

        const all = await monitorOf(t).statistics('all');
        assert.equal(all.hour.totals.succeeded, 101);
        const attempts = await monitorOf(t).attempts(now - 10 * 60_000);
        assert.deepEqual(attempts, { succeeded: 1, failed: 1, successRate: 0.5 });
      } finally {
        await t.close();
      }
    });

    test('clear cancels waiting jobs of the tenant matching the filter and refunds credits', {
      skip,
    }, async () => {
      const registry = registerBuiltinTypes(new JobRegistry());
      registry.register({ type: 'billed', schema: { type: 'object' }, cost: 3, handler: async () => ({}) });
      const t = await startEngine(database, {}, { registry });
      try {
        const tenant = await t.tenant('enterprise', 10);
        const other = await t.tenant('enterprise', 10);
        await t.engine.enqueuer.enqueue(tenant, { type: 'billed' });
        await t.engine.enqueuer.enqueue(tenant, { type: 'billed', lane: 'low' });
        await t.engine.enqueuer.enqueue(tenant, { type: 'noop' });
        await t.engine.enqueuer.enqueue(other, { type: 'billed' });
        const balance = async (id: string) =>
          Number(
            (
              await t.db.kysely
                .selectFrom('tenants')
                .select('credit_balance')
                .where('id', '=', id)
                .executeTakeFirstOrThrow()
            ).credit_balance,
          );
        assert.equal(await balance(tenant), 4);

        const monitor = monitorOf(t);
        assert.equal(await monitor.clear(tenant, { type: 'billed', lane: 'low' }), 1);
        assert.equal(await balance(tenant), 7);
        assert.equal(await monitor.clear(tenant, { type: 'billed' }), 1);
        assert.equal(await balance(tenant), 10);
        assert.deepEqual((await monitor.status({ tenantId: tenant })).totals, {
          queued: 1,
          failed: 0,
          active: 0,
        });
        assert.equal(await balance(other), 7, 'another tenant is untouched');
        const refunds = await t.db.kysely
          .selectFrom('credit_ledger')
          .select(['amount', 'reason'])
          .where('tenant_id', '=', tenant)
          .where('amount', '>', 0)
          .execute();
        assert.deepEqual(
          refunds.map((r) => [Number(r.amount), r.reason]),
          [
            [3, 'refund billed: cancelled'],
            [3, 'refund billed: cancelled'],
          ],
        );
      } finally {
        await t.close();
      }
    });

    test('alerts: POSTed to the webhook, once per cooldown across processes; failures are logged', {
      skip,
    }, async () => {
      const received: any[] = [];
      let answer = 200;
      const hook: Server = createServer((req, res) => {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          received.push(JSON.parse(body));
          res.writeHead(answer).end();
        });
      });
      await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
      const port = (hook.address() as { port: number }).port;
      const clock = new Clock();
      const t = await startEngine(
        database,
        {
          alertWebhookUrl: `http://127.0.0.1:${port}/alerts`,
          alertCooldownSeconds: 60,
          alertQueueDepth: 2,
          alertOldestQueuedSeconds: 30,
          alertBreakerOpenSeconds: 300,
        },
        { clock },
      );
      try {
        const tenant = await t.tenant();
        for (let i = 0; i < 3; i++) await t.engine.enqueuer.enqueue(tenant, { type: 'noop', lane: 'low' });
        const errors: unknown[] = [];
        const alerterOf = () =>
          new Alerter({
            config: t.config,
            db: t.db.kysely,
            monitor: monitorOf(t),
            log: { ...quietLog, error: (obj: unknown) => errors.push(obj) },
            now: clock.now,
          });
        const alerter = alerterOf();
        // Another process evaluating the same rules on the same database.
        const other = alerterOf();
        let sent = await alerter.evaluate();
        assert.deepEqual(
          sent.map((a) => `${a.rule}/${a.subject}`),
          ['queue_depth/low'],
        );
        assert.deepEqual(await other.evaluate(), [], 'the cooldown holds across processes');
        assert.equal(received.length, 1);
        assert.equal(received[0].rule, 'queue_depth');
        assert.equal(received[0].value, 3);

        clock.advance(40_000);
        sent = await alerter.evaluate();
        assert.deepEqual(
          sent.map((a) => `${a.rule}/${a.subject}`),
          ['oldest_queued_age/low'],
          'depth is cooling down',
        );

        // A breaker open for more than 5 minutes.
        await t.db.kysely
          .insertInto('job_breakers')
          .values({
            key: 'host:down.example',
            state: 'open',
            failures: 5,
            opened_at: clock.t,
            open_until: clock.t + 3600_000,
            updated_at: clock.t,
          })
          .execute();
        assert.deepEqual(await alerter.evaluate(), []);
        clock.advance(301_000);
        answer = 500;
        sent = await alerter.evaluate();
        assert.deepEqual(sent, [], 'the webhook failed');
        assert.ok(errors.length >= 1, 'the failure was logged');
        answer = 200;
        sent = await alerter.evaluate();
        assert.deepEqual(sent.map((a) => `${a.rule}/${a.subject}`).sort(), [
          'breaker_open/host:down.example',
          'oldest_queued_age/low',
          'queue_depth/low',
        ]);
      } finally {
        await t.close();
        await new Promise((resolve) => hook.close(resolve));
      }
    });
  });
}

for (const backend of BACKENDS) {
  describe(`monitoring API on ${backend.database}`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    before(async () => {
      if (skip) return;
      server = await startConveyor(backend, { serveWorkers: false });
    });
    after(() => server?.close());

    test('status, statistics and health; tenant scope vs operator', { skip }, async () => {
      const other = await createTenant(server, 'monitored');
      await server.json('POST', '/api/v1/jobs', { type: 'noop', priority: 'high' });
      await server.json('POST', '/api/v1/jobs', { type: 'noop' }, other.key);
      await server.json('POST', '/api/v1/jobs', { type: 'noop' }, other.key);

      const mine = await server.json('GET', '/api/v1/queue/status', undefined, other.key);
      assert.equal(mine.status, 200);
      assert.equal(mine.body.scope, 'tenant');
      assert.deepEqual(mine.body.totals, { queued: 2, failed: 0, active: 0 });
      const all = await server.json('GET', '/api/v1/queue/status');
      assert.equal(all.body.scope, 'all');
      assert.equal(all.body.totals.queued, 3);

      const stats = await server.json('GET', '/api/v1/statistics');
      assert.equal(stats.status, 200);
      assert.equal(stats.body.hour.buckets.length, 60);
      assert.equal(stats.body.maxRows, server.config.monitorStatsMaxRows);

      const health = await server.json('GET', '/api/v1/health', undefined, other.key);
      assert.equal(health.status, 200);
      assert.equal(health.body.status, 'healthy');
      assert.deepEqual(
        health.body.components.map((c: any) => c.name),
        ['database', 'storage', 'jobs'],
      );
    });

    test('clear needs admin and confirmation, and is audit-logged', { skip }, async () => {
      const other = await createTenant(server, 'clearing');
      await server.json('POST', '/api/v1/jobs', { type: 'noop', priority: 'low' }, other.key);
      await server.json('POST', '/api/v1/jobs', { type: 'noop' }, other.key);
      const refused = await server.json('POST', '/api/v1/queue/clear', { priority: 'low' }, other.key);
      assert.equal(refused.status, 400);
      assert.match(refused.headers.get('content-type') ?? '', /application\/problem\+json/);
      const viewer = await server.json('POST', '/api/v1/keys', { tenantId: other.tenantId, role: 'viewer' });
      const forbidden = await server.json(
        'POST',
        '/api/v1/queue/clear?confirm=true',
        undefined,
        viewer.body.key,
      );
      assert.equal(forbidden.status, 403, JSON.stringify([viewer.body, forbidden.body]));

      const cleared = await server.json(
        'POST',
        '/api/v1/queue/clear',
        { confirm: true, priority: 'low' },
        other.key,
      );
      assert.deepEqual([cleared.status, cleared.body], [200, { cleared: 1 }]);
      const rest = await server.json('POST', '/api/v1/queue/clear?confirm=true', undefined, other.key);
      assert.deepEqual(rest.body, { cleared: 1 });
      const entries = await server.conveyor.db.kysely
        .selectFrom('audit_log')
        .select(['action', 'details'])
        .where('tenant_id', '=', other.tenantId)
        .where('action', '=', 'queue.clear')
        .orderBy('id')
        .execute();
      assert.deepEqual(
        entries.map((e) => JSON.parse(e.details!)),
        [{ lane: 'low', cleared: 1 }, { cleared: 1 }],
      );
      const status = await server.json('GET', '/api/v1/queue/status', undefined, other.key);
      assert.equal(status.body.totals.queued, 0);
    });

    test('/metrics exposes queue depth, breaker state and job histograms', { skip }, async () => {
      await server.conveyor.db.kysely
        .insertInto('job_breakers')
        .values({
          key: 'host:metrics.example',
          state: 'open',
          failures: 5,
          opened_at: Date.now(),
          open_until: Date.now() + 3600_000,
          updated_at: Date.now(),
        })
        .execute();
      // Run one failing and one succeeding job in this process so the histograms have samples.
      await server.json('POST', '/api/v1/jobs', {
        type: 'sleep',
        payload: { ms: 0, fail: 'boom', permanent: true },
      });
      const worker = server.conveyor.jobs.createWorker(quietLog as never, {
        pollMs: 20,
        heartbeatMs: 50,
        progressIntervalMs: 0,
      });
      await worker.start();
      try {
        const { waitFor } = await import('../helpers/jobs.ts');
        await waitFor('the job to die', async () => {
          const text = await (await server.fetch('/metrics', { key: null })).text();
          return text.includes('conveyor_job_failures_total{type="sleep",code="permanent"} 1') && text;
        });
      } finally {
        await worker.stop(1000);
      }
      const text = await (await server.fetch('/metrics', { key: null })).text();
      assert.match(text, /conveyor_job_queue_depth\{lane="low",state="queued"\} \d+/);
      // The host name is hashed in the label (metricsHostLabels is off by default).
      const label = breakerLabel('host:metrics.example', false);
      assert.match(label, /^host:h-[0-9a-f]{12}$/);
      assert.ok(text.includes(`conveyor_job_breaker_state{key="${label}"} 2`), text);
      assert.ok(!text.includes('metrics.example'), 'the host name shows in the metrics');
      assert.match(text, /conveyor_job_wait_seconds_count\{type="sleep",lane="normal"\} 1/);
      assert.match(text, /conveyor_job_run_seconds_count\{type="sleep",lane="normal"\} 1/);
      const health = await server.json('GET', '/api/v1/health');
      assert.equal(health.body.status, 'unhealthy');
      assert.equal(
        health.body.components.find((c: any) => c.name === 'breaker:host:metrics.example').status,
        'unhealthy',
      );
    });

    test("health shows a tenant only its own jobs' breakers, an operator all of them", { skip }, async () => {
      const a = await createTenant(server, 'ingesting');
      const b = await createTenant(server, 'curious');
      // Tenant A ingests from a host of its own: the job waits (no worker runs here) under the host's key.
      const ingest = await server.json(
        'POST',
        '/api/v1/ingest',
        { url: 'https://cdn.tenant-a.example/x.jpg' },
        a.key,
      );
      assert.equal(ingest.status, 202, JSON.stringify(ingest.body));
      assert.equal(ingest.body.breakerKey, 'host:cdn.tenant-a.example');
      // The host failed: the breaker opens, as after a failed fetch.
      await server.conveyor.jobs.breakers.record(
        server.conveyor.db.kysely,
        'host:cdn.tenant-a.example',
        { success: false, jobId: ingest.body.id, threshold: 1 },
        Date.now(),
      );
      const names = async (key: string) =>
        (await server.json('GET', '/api/v1/health', undefined, key)).body.components.map((c: any) => c.name);
      assert.ok((await names(a.key)).includes('breaker:host:cdn.tenant-a.example'), 'its own breaker');
      assert.ok((await names(server.adminKey)).includes('breaker:host:cdn.tenant-a.example'), 'the operator');
      const seenByB = await server.json('GET', '/api/v1/health', undefined, b.key);
      assert.equal(seenByB.status, 200);
      assert.ok(!JSON.stringify(seenByB.body).includes('tenant-a'), JSON.stringify(seenByB.body));
      assert.deepEqual(
        seenByB.body.components.map((c: any) => c.name),
        ['database', 'storage', 'jobs'],
      );
      // Nor does another tenant's job volume count in its engine's success rate.
      const jobs = seenByB.body.components.find((c: any) => c.name === 'jobs');
      assert.equal(jobs.successRate, null, JSON.stringify(jobs));
      const status = await server.json('GET', '/api/v1/queue/status', undefined, b.key);
      assert.ok(!JSON.stringify(status.body).includes('tenant-a'), 'nor in the queue status');
    });
  });
}
