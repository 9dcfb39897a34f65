import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  BACKENDS,
  createTenant,
  skipIfNoPostgres,
  startConveyor,
  type TestServer,
} from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';

for (const backend of BACKENDS) {
  describe(`jobs API on ${backend.database}`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    before(async () => {
      if (skip) return;
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        jobMaxPayloadBytes: 1024,
      });
    });
    after(() => server?.close());

    test('enqueue answers 202 at once; the in-process worker runs the job', { skip }, async () => {
      const res = await server.json('POST', '/api/v1/jobs', {
        type: 'sleep',
        payload: { ms: 5 },
        priority: 'high',
      });
      assert.equal(res.status, 202);
      assert.equal(res.headers.get('location'), `/api/v1/jobs/${res.body.id}`);
      assert.equal(res.body.priority, 'high');
      assert.equal(res.body.links.events, `/api/v1/jobs/${res.body.id}/events`);
      const done = await waitFor('the job to succeed', async () => {
        const job = await server.json('GET', `/api/v1/jobs/${res.body.id}`);
        return job.body.state === 'succeeded' && job.body;
      });
      assert.deepEqual(done.result, { slept: 5 });
      assert.equal(done.progress.percent, 100);
      // The seed's job API shape: /status is the same view.
      const status = await server.json('GET', `/api/v1/jobs/${res.body.id}/status`);
      assert.equal(status.status, 200);
      assert.deepEqual(status.body, (await server.json('GET', `/api/v1/jobs/${res.body.id}`)).body);
    });

    test('idempotency: the same key answers 200 with the same job', { skip }, async () => {
      const body = { type: 'noop', idempotencyKey: `k-${backend.database}` };
      const first = await server.json('POST', '/api/v1/jobs', body);
      const again = await server.json('POST', '/api/v1/jobs', body);
      assert.deepEqual([first.status, again.status], [202, 200]);
      assert.equal(again.body.id, first.body.id);
    });

    test('bad input answers 400 problem+json and enqueues nothing', { skip }, async () => {
      const before = await server.json('GET', '/api/v1/jobs?limit=1000');
      for (const body of [
        { type: 'no-such-type' },
        { type: 'noop', payload: { big: 'x'.repeat(2000) } },
        { type: 'noop', priority: 'urgent' },
        { type: 'noop', runAt: 'tomorrow' },
        { type: 'sleep', payload: { ms: -1 } },
        { type: 'noop', extra: 1 },
      ]) {
        const res = await server.json('POST', '/api/v1/jobs', body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
      }
      const batch = await server.json('POST', '/api/v1/jobs/batch', {
        jobs: [{ type: 'noop' }, { type: 'nope' }],
      });
      assert.equal(batch.status, 400);
      assert.equal(batch.body.index, 1);
      const after = await server.json('GET', '/api/v1/jobs?limit=1000');
      assert.equal(after.body.items.length, before.body.items.length);
    });

    test('batch, list with filters, cancel, retry, dead letters', { skip }, async () => {
      const batch = await server.json('POST', '/api/v1/jobs/batch', {
        jobs: [
          { type: 'sleep', payload: { ms: 60_000 }, priority: 'low' },
          { type: 'sleep', payload: { ms: 0, fail: 'broken', permanent: true } },
        ],
      });
      assert.equal(batch.status, 202);
      assert.equal(batch.body.created, 2);
      const [long, broken] = batch.body.items;
      await waitFor(
        'the broken job to die',
        async () => (await server.json('GET', `/api/v1/jobs/${broken.id}`)).body.state === 'dead',
      );
      const dead = await server.json('GET', '/api/v1/dead-letters');
      assert.ok(dead.body.items.some((j: any) => j.id === broken.id && j.errors[0].message === 'broken'));
      const listed = await server.json('GET', '/api/v1/jobs?state=dead&type=sleep');
      assert.ok(listed.body.items.every((j: any) => j.state === 'dead' && j.type === 'sleep'));

      await waitFor(
        'the long job to start',
        async () => (await server.json('GET', `/api/v1/jobs/${long.id}`)).body.state === 'active',
      );
      const cancelled = await server.json('POST', `/api/v1/jobs/${long.id}/cancel`);
      assert.equal(cancelled.body.state, 'cancelled');
      assert.equal((await server.json('POST', `/api/v1/jobs/${long.id}/cancel`)).status, 409);

      const replay = await server.json('POST', '/api/v1/dead-letters/replay', { type: 'sleep' });
      assert.ok(replay.body.replayed >= 1);
      await waitFor('the replay to die again', async () => {
        const job = (await server.json('GET', `/api/v1/jobs/${broken.id}`)).body;
        return job.state === 'dead' && job.errors.length === 2;
      });
      const purge = await server.json('POST', '/api/v1/dead-letters/purge', {});
      assert.ok(purge.body.purged >= 1);
      assert.equal((await server.json('GET', `/api/v1/jobs/${broken.id}`)).status, 404);
      assert.equal((await server.json('POST', `/api/v1/jobs/${long.id}/retry`)).body.state, 'queued');
      await server.json('POST', `/api/v1/jobs/${long.id}/cancel`);
    });

    test('tenants cannot see or touch each other’s jobs; viewers cannot enqueue', { skip }, async () => {
      const mine = await server.json('POST', '/api/v1/jobs', { type: 'noop' });
      const other = await createTenant(server, 'other');
      for (const [method, path] of [
        ['GET', `/api/v1/jobs/${mine.body.id}`],
        ['GET', `/api/v1/jobs/${mine.body.id}/status`],
        ['POST', `/api/v1/jobs/${mine.body.id}/cancel`],
        ['POST', `/api/v1/jobs/${mine.body.id}/retry`],
      ] as const) {
        assert.equal((await server.json(method, path, undefined, other.key)).status, 404, path);
      }
      const theirs = await server.json('GET', '/api/v1/jobs?limit=1000', undefined, other.key);
      assert.deepEqual(theirs.body.items, []);
      assert.equal((await server.json('GET', '/api/v1/jobs/job_malformed', undefined)).status, 404);
      // A parent must be a job of the caller's tenant: another tenant's job is as unknown as one never made.
      const children = (parentId: string, key?: string) => [
        server.json('POST', '/api/v1/jobs', { type: 'noop', parentId }, key),
        server.json(
          'POST',
          '/api/v1/jobs/batch',
          { jobs: [{ type: 'noop' }, { type: 'noop', parentId }] },
          key,
        ),
      ];
      const before = (await server.json('GET', '/api/v1/jobs?limit=1000', undefined, other.key)).body.items;
      for (const parentId of [mine.body.id, 'job_01ARZ3NDEKTSV4RRFFQ69G5FAV', 'job_malformed']) {
        for (const pending of children(parentId, other.key)) {
          const answer = await pending;
          assert.equal(answer.status, 404, `${parentId}: ${JSON.stringify(answer.body)}`);
          assert.equal(answer.body.code, 'not_found');
        }
      }
      const after = (await server.json('GET', '/api/v1/jobs?limit=1000', undefined, other.key)).body.items;
      assert.deepEqual(after, before, 'nothing was enqueued');
      for (const pending of children(mine.body.id)) {
        const answer = await pending;
        assert.ok([200, 202].includes(answer.status), JSON.stringify(answer.body));
      }
      const child = await server.json('POST', '/api/v1/jobs', { type: 'noop', parentId: mine.body.id });
      assert.equal(child.body.parentId, mine.body.id);
      const viewer = await server.json('POST', '/api/v1/keys', { tenantId: other.tenantId, role: 'viewer' });
      assert.equal(
        (await server.json('POST', '/api/v1/jobs', { type: 'noop' }, viewer.body.key)).status,
        403,
      );
    });
  });
}
