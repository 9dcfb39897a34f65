import { createHash } from 'node:crypto';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { LANES, OPEN_STATES } from '../glossary.ts';
import type { JobEvent } from '../jobs/context.ts';
import { type CounterChild, FastCounter, FastHistogram, type HistogramChild } from './prom.ts';

/** Where the job gauges read their values on each scrape (set by the server once the engine exists). */
export interface JobGaugeSource {
  depthByLane(): Promise<{ lane: string; state: string; count: number }[]>;
  breakers(): Promise<{ key: string; state: 'closed' | 'open' | 'half_open' }[]>;
}

const JOB_SECONDS_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];
const BREAKER_VALUE = { closed: 0, half_open: 1, open: 2 } as const;

/** The breaker keys of remote ingest: `host:<name>` (src/media/ingest/ingest.ts). */
const HOST_KEY = 'host:';

/**
 * A circuit breaker key as a metric label. A key names a dependency of some tenant's jobs, for ingest the
 * host it fetches from, which whoever reads the metrics need not learn: unless `showHosts`, the host name
 * (or a key of any other form, whole) becomes `h-` and the first 12 hex digits of its SHA-256, the same in
 * every process and after restarts, so that series and alert rules can follow it. The hash keeps names
 * out of sight, not out of reach of someone who guesses one: /metrics itself stays private
 * (`metricsPort`, `metricsToken`).
 */
export function breakerLabel(key: string, showHosts: boolean): string {
  if (showHosts) return key;
  const prefix = key.startsWith(HOST_KEY) ? HOST_KEY : '';
  const digest = createHash('sha256').update(key.slice(prefix.length)).digest('hex');
  return `${prefix}h-${digest.slice(0, 12)}`;
}

/**
 * Prometheus metrics of one Conveyor instance. Each instance owns its registry (not prom-client's global
 * one), so several servers in one test process never mix their counts.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new FastCounter({
    name: 'conveyor_http_requests_total',
    help: 'HTTP requests by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly duration = new FastHistogram({
    name: 'conveyor_http_request_duration_seconds',
    help: 'Time from request to the end of the response, by route pattern',
    labelNames: ['method', 'route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly deliveryBytes = new FastCounter({
    name: 'conveyor_delivery_bytes_sent_total',
    help: 'Body bytes sent by delivery routes',
    registers: [this.registry],
  });
  readonly deliveryResponses = new FastCounter({
    name: 'conveyor_delivery_responses_total',
    help: 'Delivery responses by kind (full, partial, multipart, not_modified, precondition_failed, unsatisfiable)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly connectionsClosed = new FastCounter({
    name: 'conveyor_http_connections_closed_total',
    help: 'Connections the server closed to protect itself, by reason (max_connections, max_connections_per_address, headers_timeout, body_idle)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly uploadedBytes = new FastCounter({
    name: 'conveyor_upload_bytes_total',
    help: 'Bytes received and stored by uploads',
    registers: [this.registry],
  });

  readonly jobQueueDepth: Gauge<'lane' | 'state'>;
  readonly jobBreakerState: Gauge<'key'>;
  readonly jobWait = new FastHistogram({
    name: 'conveyor_job_wait_seconds',
    help: 'Time from a job being due (run_at) to the start of its attempt, by type and lane (jobs run in this process)',
    labelNames: ['type', 'lane'] as const,
    buckets: JOB_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly jobRun = new FastHistogram({
    name: 'conveyor_job_run_seconds',
    help: 'Run time of job attempts, by type and lane (attempts run in this process)',
    labelNames: ['type', 'lane'] as const,
    buckets: JOB_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly jobFailures = new FastCounter({
    name: 'conveyor_job_failures_total',
    help: 'Failed job attempts by type and error code (attempts run in this process)',
    labelNames: ['type', 'code'] as const,
    registers: [this.registry],
  });
  #jobSource: JobGaugeSource | undefined;

  // --- Video encoders (src/media/video/hwaccel.ts and fallback.ts) ---
  /**
   * Each candidate encoder of this process's detection: 1 proven by its trial encode, 0 listed by ffmpeg
   * but failed. Every process of a cluster detects for itself; the smallest value is shown, so an
   * encoder reads 1 only where every process can use it.
   */
  readonly videoEncoderAvailable = new Gauge({
    name: 'conveyor_video_encoder_available',
    help: 'Video encoders ffmpeg lists, by encoder, family and codec: 1 proven by a trial encode, 0 failed it',
    labelNames: ['encoder', 'family', 'codec'] as const,
    registers: [this.registry],
    aggregator: 'min',
  });
  readonly videoEncodeFallbacks = new FastCounter({
    name: 'conveyor_video_encode_fallbacks_total',
    help: 'Encodes that fell back from one attempt to the next (hardware decode, software decode, CPU), by attempt',
    labelNames: ['from', 'to'] as const,
    registers: [this.registry],
  });

  /**
   * Shows a detection's candidates in conveyor_video_encoder_available, replacing an earlier one's
   * (src/media/video/hwaccel-report.ts, `encoderAvailability`).
   */
  observeEncoders(
    candidates: readonly { encoder: string; family: string; codec: string; available: boolean }[],
  ): void {
    this.videoEncoderAvailable.reset();
    for (const { encoder, family, codec, available } of candidates)
      this.videoEncoderAvailable.set({ encoder, family, codec }, available ? 1 : 0);
  }

  /** Counts one fallback of an encode (encodeWithFallback's `onFallback`). */
  countEncodeFallback(fallback: { from: string; to: string }): void {
    this.videoEncodeFallbacks.labels(fallback.from, fallback.to).inc();
  }
  // --- end of video encoders ---

  /** `hostLabels`: show breaker keys, which hold host names, as they are (`metricsHostLabels`). */
  constructor(options: { hostLabels?: boolean } = {}) {
    const showHosts = options.hostLabels ?? false;
    // The standard process_* and nodejs_* metrics every Node exporter has (CPU, memory, open files,
    // heap, event-loop lag, GC): read when scraped, nothing on the request path.
    collectDefaultMetrics({ register: this.registry });
    const self = this;
    this.jobQueueDepth = new Gauge({
      name: 'conveyor_job_queue_depth',
      help: 'Unfinished jobs of every tenant by lane and state (queued, failed = awaiting a retry, active)',
      labelNames: ['lane', 'state'] as const,
      registers: [this.registry],
      // Read from the database: every process of a cluster has the same, which must not be summed.
      aggregator: 'first',
      async collect() {
        const source = self.#jobSource;
        if (!source) return;
        this.reset();
        const rows = await source.depthByLane();
        for (const lane of LANES) {
          for (const state of OPEN_STATES) this.set({ lane, state }, 0);
        }
        for (const row of rows) this.set({ lane: row.lane, state: row.state }, row.count);
      },
    });
    this.jobBreakerState = new Gauge({
      name: 'conveyor_job_breaker_state',
      help: 'Circuit breaker state by key (host names hashed unless metricsHostLabels): 0 closed, 1 half-open, 2 open',
      labelNames: ['key'] as const,
      registers: [this.registry],
      aggregator: 'first',
      async collect() {
        const source = self.#jobSource;
        if (!source) return;
        this.reset();
        for (const breaker of await source.breakers())
          this.set({ key: breakerLabel(breaker.key, showHosts) }, BREAKER_VALUE[breaker.state]);
      },
    });
  }

  /** Lets the job gauges read the queue on each scrape. */
  attachJobs(source: JobGaugeSource): void {
    this.#jobSource = source;
  }

  /** Observes a job event of this process: wait time at start, run time and failures at the end. */
  observeJob(event: JobEvent): void {
    const { job } = event;
    const seconds = (from: string | null, to: string | null) =>
      from === null || to === null ? null : Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000);
    switch (event.kind) {
      case 'started': {
        const wait = seconds(job.runAt, job.startedAt);
        if (wait !== null) this.jobWait.labels(job.type, job.lane).observe(wait);
        return;
      }
      case 'succeeded':
      case 'failed':
      case 'dead': {
        // A retrying job has no finished_at; its attempt ended when it was last updated.
        const run = seconds(job.startedAt, job.finishedAt ?? job.updatedAt);
        if (run !== null) this.jobRun.labels(job.type, job.lane).observe(run);
        if (event.kind !== 'succeeded') {
          this.jobFailures.labels(job.type, job.errors.at(-1)?.code ?? 'error').inc();
        }
        return;
      }
      default:
        return;
    }
  }

  // The set of (method, route, status) is small and fixed by the routes, so each one's children are
  // looked up once and kept.
  readonly #requestChildren = new Map<string, { count: CounterChild; duration: HistogramChild }>();

  /** Counts one finished HTTP request and its duration. */
  recordRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let child = this.#requestChildren.get(key);
    if (!child) {
      child = {
        count: this.requests.labels(method, route, String(status)),
        duration: this.duration.labels(method, route),
      };
      this.#requestChildren.set(key, child);
    }
    child.count.inc();
    child.duration.observe(seconds);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
