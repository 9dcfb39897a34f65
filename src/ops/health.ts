import type { Config } from '../config/config.ts';
import type { JobMonitor, Scope } from '../jobs/monitor.ts';
import type { FreeSpace, VolumeSpace } from '../storage/free-space.ts';

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

/** One readiness check: `degraded` when a dependency answers but is short of something (free space). */
export type ReadyCheck = 'ok' | 'degraded' | 'failed';

/**
 * What /api/v1/health shows of the video encoders a process proved (src/media/video/hwaccel-report.ts
 * builds it from a detection; ops only shows it).
 */
export interface EncoderSummary {
  mode: string;
  source: 'trials' | 'cache';
  detectedAt: string;
  proven: string[];
  failed: { encoder: string; reason: string }[];
  /** The encoder each codec uses, e.g. `{h264: 'libx264'}`. */
  best: Record<string, string>;
}

export interface ComponentHealth {
  name: string;
  kind: 'database' | 'storage' | 'jobs' | 'breaker' | 'encoders';
  status: HealthStatus;
  /** 0..1 where the status comes from a success rate; null when nothing was measured (no attempts). */
  successRate: number | null;
  detail: string;
  /** The video encoders this process proved and the ones that failed their trial (kind `encoders`). */
  encoders?: EncoderSummary;
}

export interface HealthReport {
  status: HealthStatus;
  checkedAt: string;
  windowMinutes: number;
  thresholds: { healthyPercent: number; degradedPercent: number };
  components: ComponentHealth[];
}

export interface Thresholds {
  healthyPercent: number;
  degradedPercent: number;
}

/**
 * A success rate's status: above `healthyPercent` healthy, from `degradedPercent` up to it degraded,
 * below it unhealthy. No measurement (null) is healthy: an idle engine is not a sick one.
 */
export function classify(rate: number | null, thresholds: Thresholds): HealthStatus {
  if (rate === null) return 'healthy';
  const percent = rate * 100;
  if (percent > thresholds.healthyPercent) return 'healthy';
  if (percent >= thresholds.degradedPercent) return 'degraded';
  return 'unhealthy';
}

const RANK: Record<HealthStatus, number> = { healthy: 0, degraded: 1, unhealthy: 2 };

export function worst(statuses: readonly HealthStatus[]): HealthStatus {
  return statuses.reduce<HealthStatus>((a, b) => (RANK[b] > RANK[a] ? b : a), 'healthy');
}

/**
 * Every component's health: the database and storage by a ping (the readiness checks; storage is degraded
 * while a local filesystem is under the free-space reserve), the video encoders by this process's
 * detection (unhealthy when nothing can encode H.264), the job engine by the success rate of
 * attempts that ended in the last `healthWindowMinutes`, each breaker by its state (open unhealthy,
 * half-open degraded). The jobs and breakers are those of `scope`, as in the queue status: a tenant sees
 * its own jobs' attempts and the breakers they name, never another tenant's volume or the hosts it
 * ingests from.
 */
export async function checkHealth(deps: {
  config: Config;
  monitor: JobMonitor;
  ready: () => Promise<Record<string, ReadyCheck>>;
  scope: Scope;
  /** Describes the filesystems that made storage degraded. */
  space?: FreeSpace;
  /** The `encoders` component of this process's detection; none (no video, not detected yet): absent. */
  encoders?: () => ComponentHealth | undefined;
  now?: () => number;
}): Promise<HealthReport> {
  const { config, monitor } = deps;
  const now = (deps.now ?? Date.now)();
  const thresholds = {
    healthyPercent: config.healthHealthyPercent,
    degradedPercent: config.healthDegradedPercent,
  };
  const components: ComponentHealth[] = [];
  const checks = await deps.ready();
  for (const [name, result] of Object.entries(checks)) {
    const low = result === 'degraded' ? ((await deps.space?.low()) ?? []) : [];
    components.push({
      name,
      kind: name === 'storage' ? 'storage' : 'database',
      status: result === 'ok' ? 'healthy' : result === 'degraded' ? 'degraded' : 'unhealthy',
      successRate: null,
      detail:
        result === 'failed'
          ? 'ping failed'
          : ['ping ok', ...low.map((v) => describeLow(v, deps.space!.minFreeBytes))].join('; '),
    });
  }
  const encoders = deps.encoders?.();
  if (encoders) components.push(encoders);
  // Without the database there is nothing to read the job engine's state from.
  if (checks['database'] === 'ok') {
    const windowMs = config.healthWindowMinutes * 60_000;
    const attempts = await monitor.attempts(now - windowMs, deps.scope);
    components.push({
      name: 'jobs',
      kind: 'jobs',
      status: classify(attempts.successRate, thresholds),
      successRate: attempts.successRate,
      detail: `${attempts.succeeded} succeeded, ${attempts.failed} failed attempts in ${config.healthWindowMinutes} min`,
    });
    for (const breaker of await monitor.breakers(deps.scope)) {
      components.push({
        name: `breaker:${breaker.key}`,
        kind: 'breaker',
        status:
          breaker.state === 'open' ? 'unhealthy' : breaker.state === 'half_open' ? 'degraded' : 'healthy',
        successRate: null,
        detail: `${breaker.state}, ${breaker.failures} consecutive failures`,
      });
    }
  }
  return {
    status: worst(components.map((c) => c.status)),
    checkedAt: new Date(now).toISOString(),
    windowMinutes: config.healthWindowMinutes,
    thresholds,
    components,
  };
}

/** "blobs, database: 3.0 MiB free of 16.0 MiB, under the 4.0 MiB reserve". */
function describeLow(volume: VolumeSpace, reserve: number): string {
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${volume.names.join(', ')}: ${mib(volume.freeBytes)} free of ${mib(volume.totalBytes)}, under the ${mib(reserve)} reserve`;
}
