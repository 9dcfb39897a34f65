import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JobEngine } from '../../src/jobs/engine.ts';
import { JobRegistry, registerBuiltinTypes } from '../../src/jobs/registry.ts';
import { skipIfNoPostgres } from '../helpers/conveyor.ts';
import { DATABASES, FAST_WORKER, quietLog, startEngine, waitFor } from '../helpers/jobs.ts';

/** A job type that runs until the test releases it by name: how long a job runs is up to the test. */
function latches() {
  const waiting = new Map<string, () => void>();
  const registry = registerBuiltinTypes(new JobRegistry()).register<{ name: string }>({
    type: 'latch',
    schema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] },
    lane: 'critical',
    handler: (payload, context) =>
      new Promise((resolve, reject) => {
        waiting.set(payload.name, () => resolve({ released: payload.name }));
        context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true });
      }),
  });
  return {
    registry,
    /** Lets the named job finish once its handler runs. */
    async release(name: string) {
      await waitFor(`latch ${name} to be held`, async () => waiting.has(name));
      waiting.get(name)!();
      waiting.delete(name);
    },
  };
}

for (const database of DATABASES) {
  describe(`tenant fair share of a lane on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test('a tenant holding its share of the critical lane is passed over while another tenant waits; alone it may use the whole lane', {
      skip,
    }, async () => {
      const latch = latches();
      const t = await startEngine(
        database,
        {
          jobLaneConcurrency: { critical: 4, high: 0, normal: 0, low: 0 },
          jobLaneTenantSharePercent: { critical: 50 } as never,
          jobPollMs: 20,
        },
        { registry: latch.registry },
      );
      // Two engines on one database, as two processes would be: the counts can only come from it.
      const other = new JobEngine(t.db, latch.registry, t.config);
      const workers = [
        t.engine.createWorker(quietLog, { ...FAST_WORKER, concurrency: 3 }),
        other.createWorker(quietLog, { ...FAST_WORKER, concurrency: 3 }),
      ];
      const name = new Map<string, string>();
      const enqueue = async (tenant: string, names: string[]) => {
        for (const n of names) {
          const { job } = await t.engine.enqueuer.enqueue(tenant, { type: 'latch', payload: { name: n } });
          name.set(job.id, n);
        }
      };
      const active = async () => {
        const rows = await t.db.kysely
          .selectFrom('jobs')
          .select('id')
          .where('state', '=', 'active')
          .where('lane', '=', 'critical')
          .execute();
        return rows.map((r) => name.get(r.id)!).sort();
      };
      const succeeded = async (n: string) => {
        const id = [...name].find(([, v]) => v === n)![0];
        const row = await t.db.kysely
          .selectFrom('jobs')
          .select('state')
          .where('id', '=', id)
          .executeTakeFirst();
        return row?.state === 'succeeded';
      };
      /** Finishes `n`, then waits for the claim that fills its slot again, and answers what is active. */
      const finish = async (n: string) => {
        await latch.release(n);
        return waitFor(`${n}'s slot to be taken`, async () => {
          // In this order: once n is seen succeeded, the lane holds 3 jobs until the claim fills it.
          if (!(await succeeded(n))) return false;
          const now = await active();
          return now.length === 4 && now;
        });
      };
      try {
        const a = await t.tenant();
        const b = await t.tenant();
        for (const worker of workers) await worker.start();

        // Alone, tenant a may take the whole lane.
        await enqueue(a, ['a1', 'a2', 'a3', 'a4']);
        assert.deepEqual(
          await waitFor('a to fill the lane', async () => {
            const now = await active();
            return now.length === 4 && now;
          }),
          ['a1', 'a2', 'a3', 'a4'],
        );
        // b arrives; a queues more. Nothing can start until a slot frees (a running job is not preempted).
        // (Which of a tenant's jobs starts first is not the point: jobs enqueued in the same millisecond
        // start in id order, so the steps below look at whose jobs run.)
        await enqueue(b, ['b1', 'b2']);
        await enqueue(a, ['a5', 'a6']);
        const whose = (names: string[]) => names.map((n) => n[0]).join('');
        assert.equal(whose(await finish('a1')), 'aaab');
        // a holds 2 of 4 (its share), b holds 1 and waits with another job: b's starts, although a's turn
        // came first (b had the last slot) and a's jobs are still running.
        assert.deepEqual(await finish('a2'), ['a3', 'a4', 'b1', 'b2']);
        // Below its share a takes the next slot; and with nobody else waiting it may go past it.
        assert.equal(whose(await finish('a3')), 'aabb');
        const last = await finish('b1');
        assert.equal(whose(last), 'aaab');
        for (const n of last) await latch.release(n);
        await waitFor('every job to finish', async () => (await active()).length === 0);
      } finally {
        for (const worker of workers) await worker.stop(0);
        await t.close();
      }
    });
  });
}
