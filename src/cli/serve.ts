import cluster from 'node:cluster';
import { openMigratedDatabase } from '../backends.ts';
import type { Config } from '../config/config.ts';
import { settleMemory } from '../runtime/settle-memory.ts';
import { keepTickObjectShape } from '../runtime/tick-shape.ts';
import { TenancyService } from '../tenancy/service.ts';

/** A worker that dies is restarted, but not more often than this, so a crash loop can't spin the CPU. */
const RESTART_DELAY_MS = 1000;
const WORKER_INDEX = 'CONVEYOR_WORKER_INDEX';

/**
 * `conveyor serve`. With `CONVEYOR_PROCESSES` = 1 the server runs in this process. With more, this
 * process migrates and bootstraps once, then forks that many server processes sharing the port
 * (node:cluster), restarts any that die, and passes SIGTERM/SIGINT on for a graceful stop. Each process is
 * stateless apart from its caches, exactly as separate hosts behind a load balancer would be.
 */
export async function serve(config: Config): Promise<void> {
  keepTickObjectShape();
  if (cluster.isPrimary && config.processes > 1) return runPrimary(config);
  const index = Number(process.env[WORKER_INDEX] ?? 0);
  // Loaded here, not at the top: the cluster primary never serves, and the HTTP stack is most of a
  // process's memory.
  const { createConveyor } = await import('../server.ts');
  const conveyor = await createConveyor(config, {
    runCollector: index === 0,
    metricsViaPrimary: cluster.isWorker,
  });
  if (cluster.isPrimary) await bootstrap(config, conveyor.tenancy);
  // Start-up's garbage goes back to the system before the port opens, so no request waits for it.
  await conveyor.app.ready();
  const settled = settleMemory();
  if (settled) conveyor.app.log.debug(settled, 'start-up memory returned');
  const url = await conveyor.listen();
  conveyor.app.log.info(
    {
      url,
      ...(conveyor.metricsUrl() ? { metrics: conveyor.metricsUrl() } : {}),
      storage: config.storage,
      database: conveyor.db.dialect,
      pid: process.pid,
    },
    'listening',
  );
  // The first SIGTERM or SIGINT stops gracefully (running jobs get CONVEYOR_JOB_SHUTDOWN_GRACE_MS,
  // requests in flight their answers); a second cuts that short: the jobs go back to the queue and the
  // connections close at once. A third exits on the spot, should even that hang.
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      conveyor.app.log.info({ signal }, 'shutting down');
      void conveyor.close().then(() => process.exit(0));
    } else if (signals === 2) {
      conveyor.app.log.warn({ signal }, 'shutting down now: running jobs go back to the queue');
      conveyor.hurry();
    } else {
      process.exit(1);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function runPrimary(config: Config): Promise<void> {
  const db = await openMigratedDatabase(config);
  try {
    await bootstrap(config, new TenancyService(db.kysely));
  } finally {
    await db.close();
  }
  let stopping = false;
  const fork = (index: number) => {
    const worker = cluster.fork({ [WORKER_INDEX]: String(index) });
    worker.on('exit', (code, signal) => {
      if (stopping) return;
      console.error(`conveyor: server process ${index} exited (${signal ?? code}); restarting`);
      setTimeout(() => fork(index), RESTART_DELAY_MS);
    });
  };
  const metrics =
    config.metricsPort === undefined ? undefined : await listenClusterMetrics(config, config.metricsPort);
  for (let i = 0; i < config.processes; i++) fork(i);
  // Every signal is passed on, so that a second one reaches the servers as their second (see serve()).
  const stop = (signal: NodeJS.Signals) => {
    stopping = true;
    // The primary exits once its children have and nothing else holds its event loop.
    void metrics?.close();
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/**
 * /metrics of every server process, summed, on `metricsPort`: each process counts only the requests it
 * took, so the primary asks them all (src/ops/cluster-metrics.ts). Loaded only then: the primary is meant
 * to stay small.
 */
async function listenClusterMetrics(config: Config, port: number) {
  const { ClusterMetrics } = await import('../ops/cluster-metrics.ts');
  const { listenMetrics } = await import('../ops/metrics-endpoint.ts');
  const cluster = new ClusterMetrics();
  const listener = await listenMetrics({
    host: config.metricsHost ?? config.host,
    port,
    token: config.metricsToken,
    render: () => cluster.render(),
    log: { error: (obj, msg) => console.error(`conveyor: ${msg}:`, (obj as { err?: unknown }).err) },
  });
  console.error(`conveyor: metrics of every server process at ${listener.url}`);
  return listener;
}

/** On an empty database: the default tenant and its operator key, printed once if we generated it. */
async function bootstrap(config: Config, tenancy: TenancyService): Promise<void> {
  const result = await tenancy.bootstrap(config.adminKey);
  if (result?.generatedKey) {
    // To the terminal only, never the log: the key is stored hashed and cannot be shown again.
    process.stderr.write(
      `\nCreated the default tenant ${result.tenantId} and its operator key:\n\n  ${result.generatedKey}\n\n` +
        'Keep it now; it is stored hashed and will not be shown again.\n\n',
    );
  }
}
