/**
 * Job engine benchmarks (issue 3), on this machine, one run, loopback only:
 *   throughput  100,000 no-op jobs enqueued in batches of 1,000, drained at concurrency 50: Conveyor on
 *               SQLite and PostgreSQL, pg-boss (PostgreSQL), BullMQ (Redis)
 *   latency     enqueue-to-start p50/p99 under a steady 200 jobs/s (open loop, after a 2 s warm-up at
 *               that rate), repeated (`--repeat`, 5) because PostgreSQL's tail varies from run to run
 *   http        POST /api/v1/jobs at 500 requests/s (open loop): p50/p99
 *   tenants     1,000 tenants enqueue 10 jobs each at once: slowest / fastest tenant completion
 *   depth       claim latency (50 jobs) with 10,000 / 100,000 / 1,000,000 queued, and the query plans
 *
 * Usage: node bench/jobs.ts [--only throughput,latency,http,tenants,depth] [--jobs N] [--depths a,b,c]
 *        [--databases sqlite,postgres] [--repeat N]
 * Results: stdout and bench/results/jobs-<time>.json.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { childEnv, freePort, MAIN, ROOT } from '../test/helpers/child.ts';
import { bullmqThroughput, pgBossThroughput } from './jobs-peers.ts';
import { countState, type Database, openBench, probes, quiet, silent, summary } from './jobs-setup.ts';

const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: 'throughput,latency,http,tenants,depth' },
    jobs: { type: 'string', default: '100000' },
    depths: { type: 'string', default: '10000,100000,1000000' },
    databases: { type: 'string', default: 'sqlite,postgres' },
    repeat: { type: 'string', default: '5' },
  },
});
const only = new Set(args.only!.split(','));
const databases = args.databases!.split(',') as Database[];
const results: Record<string, unknown> = {
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  },
  startedAt: new Date().toISOString(),
};
const log = (line: string) => process.stderr.write(`${line}\n`);
const waitUntil = async (check: () => Promise<boolean>) => {
  while (!(await check())) await new Promise((r) => setTimeout(r, 20));
};

async function conveyorThroughput(database: Database, jobs: number) {
  const bench = await openBench(database, { workerConcurrency: 50 });
  try {
    const tenant = await bench.tenant();
    const e0 = performance.now();
    for (let i = 0; i < jobs; i += 1000) {
      await bench.engine.enqueuer.enqueueMany(
        tenant,
        Array.from({ length: Math.min(1000, jobs - i) }, () => ({ type: 'noop' })),
      );
    }
    const e1 = performance.now();
    const worker = bench.engine.createWorker(silent, { concurrency: 50, pollMs: 200 });
    const d0 = performance.now();
    await worker.start();
    await waitUntil(async () => (await countState(bench.db, 'succeeded')) >= jobs);
    const d1 = performance.now();
    await worker.stop(0);
    return { enqueuePerSecond: jobs / ((e1 - e0) / 1000), drainPerSecond: jobs / ((d1 - d0) / 1000) };
  } finally {
    await bench.close();
  }
}

/**
 * Enqueue-to-start latency at a steady rate. The first `warmupSeconds` run at the same rate but are
 * reported apart (`cold`): they include the pool opening connections and V8 compiling the hot paths,
 * which a steady state does not.
 */
async function latency(database: Database, perSecond: number, seconds: number, warmupSeconds = 2) {
  const bench = await openBench(database, { workerConcurrency: 50 });
  try {
    const tenant = await bench.tenant();
    const worker = bench.engine.createWorker(silent, { concurrency: 50, pollMs: 1000 });
    await worker.start();
    const cold: number[] = [];
    const steady: number[] = [];
    const warmup = perSecond * warmupSeconds;
    probes.onStart = (ms, payload) => ((payload.n ?? 0) < warmup ? cold : steady).push(ms);
    const total = perSecond * (warmupSeconds + seconds);
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / perSecond;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      void bench.engine.enqueuer.enqueue(tenant, { type: 'probe', payload: { t: Date.now(), n: i } });
    }
    await waitUntil(async () => cold.length + steady.length >= total);
    await worker.stop(0);
    return { ...summary(steady), cold: summary(cold) };
  } finally {
    await bench.close();
  }
}

async function httpEnqueue(database: Database, perSecond: number, seconds: number) {
  // The server runs as its own process (`conveyor serve`, with its in-process worker), so the load
  // generator does not share its event loop.
  const bench = await openBench(database);
  await bench.db.close();
  const port = await freePort();
  const key = 'cvk_bench_key_0123456789abcdef';
  const server = spawn(process.execPath, [MAIN, 'serve'], {
    cwd: ROOT,
    env: childEnv({
      CONVEYOR_DATA_DIR: bench.config.dataDir,
      ...(bench.config.databaseUrl ? { CONVEYOR_DATABASE_URL: bench.config.databaseUrl } : {}),
      CONVEYOR_HOST: '127.0.0.1',
      CONVEYOR_PORT: String(port),
      CONVEYOR_ADMIN_KEY: key,
      CONVEYOR_LOG_LEVEL: 'warn',
      CONVEYOR_RATE_LIMIT_PER_KEY: '0',
      CONVEYOR_RATE_LIMIT_PER_ADDRESS: '0',
      CONVEYOR_JOB_TIER_DAILY_LIMIT: 'enterprise=0',
    }),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitUntil(async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200);
    const url = `${base}/api/v1/jobs`;
    const latencies: number[] = [];
    const failures: number[] = [];
    // The first `warmup` requests (two seconds' worth) warm the JIT and the connections and are not counted.
    const warmup = perSecond * 2;
    const total = perSecond * seconds + warmup;
    const start = performance.now();
    const inflight: Promise<void>[] = [];
    // node:http with a keep-alive agent rather than fetch: on two shared cores the load generator's own
    // CPU lands in the latencies it measures, and undici's fetch costs several times more per request
    // (with fetch the PostgreSQL p99 read 30 ms where this client reads 9 ms, against the same server).
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    const post = (body: string) =>
      new Promise<number>((resolve) => {
        const request = http.request(
          url,
          {
            method: 'POST',
            agent,
            headers: {
              authorization: `Bearer ${key}`,
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(body),
            },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        request.on('error', () => resolve(0));
        request.end(body);
      });
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / perSecond;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      // Open loop: latency counts from when the request was due, so a stalled server is not flattered.
      inflight.push(
        post(JSON.stringify({ type: 'noop', payload: { i } })).then((status) => {
          if (i < warmup) return;
          if (status === 202) latencies.push(performance.now() - due);
          else failures.push(status);
        }),
      );
    }
    await Promise.all(inflight);
    agent.destroy();
    const inServer = serverPercentiles(await (await fetch(`${base}/metrics`)).text(), 'POST', '/api/v1/jobs');
    return { ...summary(latencies), failures: failures.length, inServer };
  } finally {
    server.kill('SIGTERM');
    await once(server, 'exit');
    await bench.close().catch(() => {});
  }
}

/**
 * 1,000 tenants with 10 jobs each, two ways: enqueued all at once while the worker runs (what the issue
 * asks), and as a backlog the worker finds when it starts (which isolates the claim's fairness from the
 * order in which 1,000 concurrent enqueue transactions happen to commit).
 */
/**
 * The server's own view of a route's latency (warm-up included), from its Prometheus histogram: the
 * upper bounds of the buckets holding p50 and p99. What a client measures adds its own queueing and,
 * on a 2-core machine shared with the load generator, its own scheduling delays.
 */
function serverPercentiles(metrics: string, method: string, route: string) {
  const buckets: [number, number][] = [];
  for (const line of metrics.split('\n')) {
    const match =
      /^conveyor_http_request_duration_seconds_bucket\{le="([^"]+)",method="([^"]+)",route="([^"]+)"\} (\d+)/.exec(
        line,
      );
    if (match && match[2] === method && match[3] === route)
      buckets.push([Number(match[1]), Number(match[4])]);
  }
  const total = buckets.at(-1)?.[1] ?? 0;
  const bound = (p: number) => (buckets.find(([, n]) => n >= total * p)?.[0] ?? Number.NaN) * 1000;
  return { requests: total, p50AtMostMs: bound(0.5), p99AtMostMs: bound(0.99), maxAtMostMs: bound(1) };
}

async function tenantsAtOnce(database: Database, tenants: number, each: number, backlog: boolean) {
  const bench = await openBench(database, {
    jobTierConcurrency: { free: 0, standard: 0, premium: 0, enterprise: 20 },
  });
  try {
    const ids: string[] = [];
    for (let i = 0; i < tenants; i++) ids.push(await bench.tenant());
    const finished = new Map<string, number[]>();
    probes.onStart = (_ms, payload) => {
      const list = finished.get(payload.tenant!) ?? [];
      list.push(performance.now());
      finished.set(payload.tenant!, list);
    };
    const worker = bench.engine.createWorker(silent, { concurrency: 50, pollMs: 200 });
    const enqueue = () =>
      Promise.all(
        ids.map((tenant) =>
          bench.engine.enqueuer.enqueueMany(
            tenant,
            Array.from({ length: each }, () => ({ type: 'probe', payload: { t: Date.now(), tenant } })),
          ),
        ),
      );
    let start: number;
    if (backlog) {
      await enqueue();
      start = performance.now();
      await worker.start();
    } else {
      await worker.start();
      start = performance.now();
      await enqueue();
    }
    await waitUntil(async () => [...finished.values()].reduce((n, l) => n + l.length, 0) >= tenants * each);
    await worker.stop(0);
    const completion = ids.map((id) => Math.max(...finished.get(id)!) - start).sort((a, b) => a - b);
    const firstStart = ids.map((id) => Math.min(...finished.get(id)!) - start).sort((a, b) => a - b);
    return {
      fastestMs: completion[0],
      slowestMs: completion.at(-1),
      ratio: completion.at(-1)! / completion[0]!,
      firstJobStartMs: { fastest: firstStart[0], slowest: firstStart.at(-1) },
    };
  } finally {
    await bench.close();
  }
}

async function claimAtDepth(database: Database, depths: number[]) {
  const bench = await openBench(database);
  const out: Record<string, unknown> = {};
  try {
    const tenants = await Promise.all(Array.from({ length: 10 }, () => bench.tenant()));
    let depth = 0;
    for (const target of depths) {
      for (; depth < target; depth += 1000) {
        await bench.engine.enqueuer.enqueueMany(
          tenants[(depth / 1000) % 10]!,
          Array.from({ length: 1000 }, () => ({ type: 'noop' })),
        );
      }
      if (database === 'postgres') await sql`analyze jobs`.execute(bench.db.kysely);
      const times: number[] = [];
      for (let i = 0; i < 40; i++) {
        const t0 = performance.now();
        const { jobs } = await bench.engine.claimer.claim({
          workerId: 'bench',
          slots: 50,
          lanes: null,
          types: ['noop'],
        });
        times.push(performance.now() - t0);
        await bench.engine.outcomes.succeedMany(
          'bench',
          jobs.map((job) => ({ job, result: null })),
        );
      }
      out[String(target)] = { claimMs: summary(times.slice(5)), plan: await plans(bench, database) };
      log(`  depth ${target}: ${JSON.stringify((out[String(target)] as { claimMs: unknown }).claimMs)}`);
    }
    return out;
  } finally {
    await bench.close();
  }
}

async function plans(bench: Awaited<ReturnType<typeof openBench>>, database: Database): Promise<string[]> {
  const jobs = sql.raw(database === 'sqlite' ? 'jobs indexed by jobs_ready' : 'jobs');
  const explain = sql.raw(database === 'sqlite' ? 'explain query plan' : 'explain');
  const { rows } = await sql<Record<string, string>>`${explain}
    with recursive groups(queue) as (
      select (select queue from ${jobs} where state in ('queued', 'failed') order by queue limit 1)
      union all
      select (select queue from ${jobs} where state in ('queued', 'failed') and queue > groups.queue order by queue limit 1)
      from groups where groups.queue is not null)
    select queue, (select run_at from ${jobs} where state in ('queued', 'failed') and queue = groups.queue
                   order by run_at limit 1) as head from groups where queue is not null`.execute(
    bench.db.kysely,
  );
  return rows.map((r) => r['detail'] ?? r['QUERY PLAN'] ?? JSON.stringify(r));
}

const jobs = Number(args.jobs);
if (only.has('throughput')) {
  const throughput: Record<string, unknown> = {};
  for (const database of databases) {
    await quiet(log);
    log(`throughput: conveyor on ${database}`);
    throughput[`conveyor-${database}`] = await conveyorThroughput(database, jobs);
  }
  await quiet(log);
  // One pg-boss worker peaks at 100 jobs/s by design (see jobs-peers.ts): 5,000 jobs measure it.
  log('throughput: pg-boss, one worker, batches of 50 (50 in flight), 5,000 jobs');
  throughput['pg-boss'] = await pgBossThroughput(Math.min(jobs, 5000));
  await quiet(log);
  log('throughput: pg-boss, 50 workers, batches of 50');
  throughput['pg-boss-50x50'] = await pgBossThroughput(jobs, 50, 50);
  await quiet(log);
  log('throughput: bullmq');
  throughput['bullmq'] = await bullmqThroughput(jobs);
  results['throughput'] = throughput;
  log(JSON.stringify(throughput));
}
for (const database of databases) {
  if (only.has('latency')) {
    await quiet(log);
    log(`latency at 200 jobs/s on ${database}`);
    // PostgreSQL's tail varies from run to run on this shared machine, so the scenario is repeated.
    const runs = [];
    for (let run = 0; run < Number(args.repeat); run++) {
      if (run > 0) await quiet(log);
      runs.push(await latency(database, 200, 10));
      log(JSON.stringify(runs.at(-1)));
    }
    const p99s = runs.map((r) => r.p99).sort((a, b) => a - b);
    results[`latency-${database}`] = { runs, medianP99: p99s[Math.floor(p99s.length / 2)] };
  }
  if (only.has('http')) {
    await quiet(log);
    log(`POST /api/v1/jobs at 500/s on ${database}`);
    results[`http-${database}`] = await httpEnqueue(database, 500, 10);
    log(JSON.stringify(results[`http-${database}`]));
  }
  if (only.has('tenants')) {
    await quiet(log);
    log(`1,000 tenants at once on ${database}`);
    results[`tenants-${database}`] = await tenantsAtOnce(database, 1000, 10, false);
    log(JSON.stringify(results[`tenants-${database}`]));
    await quiet(log);
    log(`1,000 tenants' backlog on ${database}`);
    results[`tenants-backlog-${database}`] = await tenantsAtOnce(database, 1000, 10, true);
    log(JSON.stringify(results[`tenants-backlog-${database}`]));
  }
  if (only.has('depth')) {
    await quiet(log);
    log(`claim latency by depth on ${database}`);
    results[`depth-${database}`] = await claimAtDepth(database, args.depths!.split(',').map(Number));
  }
}
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(
  `./results/jobs-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
  import.meta.url,
);
writeFileSync(file, JSON.stringify(results, null, 2));
console.log(JSON.stringify(results, null, 2));
log(`written to ${file.pathname}`);
process.exit(0);
