/**
 * The peers of the throughput benchmark, driven the way their docs recommend for throughput: pg-boss on
 * the machine's PostgreSQL (its own schema), BullMQ on the machine's Redis. Each enqueues `jobs` no-op
 * jobs in batches of 1,000 and drains them at concurrency 50.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, Worker } from 'bullmq';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { POSTGRES_URL } from './jobs-setup.ts';

export interface Throughput {
  enqueuePerSecond: number;
  drainPerSecond: number;
}

/**
 * pg-boss's worker fetches a batch, runs it, and then sleeps out the rest of its polling interval (at
 * least 0.5 s) whatever it found, so one worker with `batchSize` 50 (50 jobs in flight) peaks at 100 jobs/s.
 * `workers` runs several such loops, as its docs suggest for throughput.
 */
export async function pgBossThroughput(jobs: number, workers = 1, batchSize = 50): Promise<Throughput> {
  const schema = `bench_pgboss_${process.pid}`;
  const boss = new PgBoss({
    connectionString: POSTGRES_URL,
    schema,
    max: 10,
    supervise: false,
    schedule: false,
  });
  boss.on('error', () => {});
  await boss.start();
  try {
    await boss.createQueue('noop');
    const e0 = performance.now();
    for (let i = 0; i < jobs; i += 1000) {
      await boss.insert(Array.from({ length: Math.min(1000, jobs - i) }, () => ({ name: 'noop', data: {} })));
    }
    const e1 = performance.now();
    let done = 0;
    const d0 = performance.now();
    for (let w = 0; w < workers; w++) {
      await boss.work('noop', { batchSize, pollingIntervalSeconds: 0.5 }, async (batch) => {
        done += batch.length;
      });
    }
    while (done < jobs) await sleep(20);
    const d1 = performance.now();
    return { enqueuePerSecond: jobs / ((e1 - e0) / 1000), drainPerSecond: jobs / ((d1 - d0) / 1000) };
  } finally {
    await boss.stop({ graceful: false, wait: true }).catch(() => {});
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    await client.query(`drop schema if exists ${schema} cascade`);
    await client.end();
  }
}

export async function bullmqThroughput(jobs: number): Promise<Throughput> {
  const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null };
  const name = `bench-${process.pid}`;
  const queue = new Queue(name, { connection });
  try {
    await queue.obliterate({ force: true });
    const e0 = performance.now();
    for (let i = 0; i < jobs; i += 1000) {
      await queue.addBulk(
        Array.from({ length: Math.min(1000, jobs - i) }, () => ({
          name: 'noop',
          data: {},
          opts: { removeOnComplete: true },
        })),
      );
    }
    const e1 = performance.now();
    let done = 0;
    const d0 = performance.now();
    const worker = new Worker(
      name,
      async () => {
        done++;
      },
      { connection, concurrency: 50 },
    );
    while (done < jobs) await sleep(20);
    const d1 = performance.now();
    await worker.close();
    return { enqueuePerSecond: jobs / ((e1 - e0) / 1000), drainPerSecond: jobs / ((d1 - d0) / 1000) };
  } finally {
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}
