import { pino } from 'pino';
import { openAssets, openMigratedDatabase, openStore } from '../backends.ts';
import { type Config, publicBaseUrl } from '../config/config.ts';
import { parseLanes, parseList, unlessEmpty } from '../config/parsers.ts';
import type { JobEvent } from '../jobs/context.ts';
import { JobEngine } from '../jobs/engine.ts';
import { JobEventHub } from '../jobs/events.ts';
import { buildRegistry } from '../jobs/modules.ts';
import { encoderAvailability } from '../media/video/hwaccel-report.ts';
import { attachMedia, type Media } from '../media/wiring.ts';
import { Metrics } from '../ops/metrics.ts';
import { listenMetrics, type MetricsListener } from '../ops/metrics-endpoint.ts';
import { settleMemory } from '../runtime/settle-memory.ts';
import { keepTickObjectShape } from '../runtime/tick-shape.ts';

export interface WorkerFlags {
  lanes?: string;
  types?: string;
  concurrency?: number;
}

/**
 * `conveyor worker`: runs jobs, and nothing else (no HTTP). Several can run against one database, on
 * one host (sharing the SQLite file with `serve`) or many (PostgreSQL); `--lanes` and `--types` let heavy
 * and light work live in separate processes. SIGTERM or SIGINT stops it gracefully: no new claims,
 * running jobs get CONVEYOR_JOB_SHUTDOWN_GRACE_MS to finish, the rest go back to the queue; a second signal
 * sends them back at once.
 */
export async function runWorker(config: Config, flags: WorkerFlags): Promise<void> {
  keepTickObjectShape();
  const log = pino({ level: config.logLevel, base: { pid: process.pid, component: 'worker' } });
  const db = await openMigratedDatabase(config);
  const engine = new JobEngine(db, await buildRegistry(config), config);
  // The media job types need the stores the API process has, for the same data.
  const store = await openStore(config);
  const { ledger, assets } = openAssets(config, db.kysely, store, { baseUrl: () => publicBaseUrl(config) });
  const media = attachMedia({ config, db: db.kysely, store, ledger, assets, jobs: engine });
  // Publishes this process's job events (NOTIFY on PostgreSQL) for the servers' live streams; it
  // subscribes to nothing itself.
  const events = new JobEventHub({
    context: engine.context,
    db,
    pollMs: config.jobEventsPollMs,
    flushMs: config.jobEventsFlushMs,
    log,
  });
  // A flag that names nothing leaves the setting in force, as an unset flag does.
  const types = unlessEmpty(parseList(flags.types ?? '')) ?? config.workerTypes;
  const unknown = (types ?? []).filter((t) => !engine.registry.get(t));
  if (unknown.length > 0)
    throw new Error(`unknown job types ${unknown.join(', ')}; known: ${engine.registry.types().join(', ')}`);
  const worker = engine.createWorker(log, {
    lanes: unlessEmpty(parseLanes(flags.lanes ?? '')) ?? config.workerLanes ?? null,
    types: types ?? null,
    ...(flags.concurrency ? { concurrency: flags.concurrency } : {}),
  });
  const metrics = config.workerMetricsPort > 0 ? await serveMetrics(engine, media, config, log) : undefined;
  const settled = settleMemory();
  if (settled) log.debug(settled, 'start-up memory returned');
  await media.video.detectAtStart(types ?? null, log);
  await worker.start();
  log.info(
    {
      worker: worker.id,
      lanes: flags.lanes ?? 'all',
      types: types ?? 'all',
      database: db.dialect,
      ...(metrics ? { metrics: metrics.url } : {}),
    },
    'worker started',
  );
  const stop = async (signal: string) => {
    log.info({ signal, graceMs: config.jobShutdownGraceMs }, 'worker stopping');
    const result = await worker.stop(config.jobShutdownGraceMs);
    log.info(result, 'worker stopped');
    await metrics?.close();
    await events.close();
    await store.close();
    await db.close();
    process.exit(0);
  };
  // A second signal ends the grace period at once (the running jobs go back to the queue); a third exits
  // on the spot, should even that hang.
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) void stop(signal);
    else if (signals === 2) {
      log.warn({ signal }, 'stopping now: running jobs go back to the queue');
      worker.endGrace();
    } else process.exit(1);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/**
 * The worker's own Prometheus endpoint: the wait and run time histograms and failure counts of the jobs
 * this process runs, which no server sees. (The queue's gauges, depth and breakers, are the same from
 * every process and stay with the servers' /metrics.) Guarded by `metricsToken` as the servers' is.
 */
async function serveMetrics(
  engine: JobEngine,
  media: Media,
  config: Config,
  log: pino.Logger,
): Promise<MetricsListener> {
  const metrics = new Metrics({ hostLabels: config.metricsHostLabels });
  engine.context.events.on('job', (event: JobEvent) => metrics.observeJob(event));
  // The video encoders this worker proves (at start, or at its first video job), and its encode fallbacks.
  media.video.observe({
    detected: (report) => metrics.observeEncoders(encoderAvailability(report)),
    fellBack: (fallback) => metrics.countEncodeFallback(fallback),
  });
  return listenMetrics({
    host: config.metricsHost ?? config.host,
    port: config.workerMetricsPort,
    token: config.metricsToken,
    render: () => metrics.render(),
    log,
  });
}
