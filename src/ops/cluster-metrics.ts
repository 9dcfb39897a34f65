import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

/**
 * /metrics of a node:cluster `serve` (`processes` > 1). Each server process counts its own requests, so a
 * scrape of the shared main port sees whichever process took the connection. With `metricsPort` the
 * primary serves /metrics instead: it asks every server process for its registry over the cluster's IPC
 * channel and merges the answers with prom-client's aggregation (counters and histograms summed; the
 * gauges read from the database, the same in every process, taken once: `aggregator: 'first'`).
 *
 * prom-client's own `AggregatorRegistry.clusterMetrics` asks every connected process, including one still
 * starting that has no registry to answer with yet, and such a scrape fails only after its 5 s timeout.
 * Here a process is asked once it has said it is ready, and one that exits is no longer waited for.
 */

const READY = 'conveyor:metrics-ready';
const REQUEST = 'conveyor:metrics-request';
const ANSWER = 'conveyor:metrics-answer';

/**
 * How long the primary waits for a process's metrics before the scrape fails (503): a process stuck for
 * longer has bigger problems, and Prometheus gives up on a scrape after 10 s by default.
 */
const ANSWER_TIMEOUT_MS = 5_000;

/** One metric as `Registry.getMetricsAsJSON` gives it, with the shared labels folded in. */
interface MetricJson {
  name: string;
  aggregator?: string;
  values: { labels: Record<string, string | number>; sharedLabels?: Record<string, string | number> }[];
}

interface Message {
  type: string;
  id?: number;
  metrics?: MetricJson[];
  error?: string;
}

const isMessage = (value: unknown): value is Message =>
  typeof value === 'object' && value !== null && typeof (value as Message).type === 'string';

/**
 * In a server process of the cluster: answers the primary's requests for this process's metrics, and
 * tells it that it may ask. Answers a function that stops answering.
 */
export function answerPrimary(registry: Registry): () => void {
  const onMessage = (message: unknown) => {
    if (!isMessage(message) || message.type !== REQUEST) return;
    registry.getMetricsAsJSON().then(
      (metrics) => process.send?.({ type: ANSWER, id: message.id, metrics: metrics.map(foldSharedLabels) }),
      (error: Error) => process.send?.({ type: ANSWER, id: message.id, error: error.message }),
    );
  };
  process.on('message', onMessage);
  process.send?.({ type: READY });
  return () => process.off('message', onMessage);
}

/**
 * Our histograms (src/ops/prom.ts) keep a child's labels in `sharedLabels`, as prom-client's do, which the
 * registry renders but the aggregation neither compares nor keeps: folded into `labels`, each route's
 * buckets stay its own.
 */
function foldSharedLabels(metric: object): MetricJson {
  const json = metric as MetricJson;
  return {
    ...json,
    values: json.values.map(({ sharedLabels, ...value }) =>
      sharedLabels ? { ...value, labels: { ...sharedLabels, ...value.labels } } : value,
    ),
  };
}

interface Scrape {
  waiting: Set<Worker>;
  answers: MetricJson[][];
  finish(error?: Error): void;
}

/** In the cluster primary: the metrics of every ready server process, merged. */
export class ClusterMetrics {
  readonly #ready = new Set<Worker>();
  readonly #scrapes = new Map<number, Scrape>();
  #next = 0;

  constructor() {
    cluster.on('message', (worker, message: unknown) => {
      if (!isMessage(message)) return;
      if (message.type === READY) this.#ready.add(worker);
      if (message.type !== ANSWER || message.id === undefined) return;
      const scrape = this.#scrapes.get(message.id);
      if (!scrape?.waiting.delete(worker)) return;
      if (message.error !== undefined) {
        scrape.finish(new Error(`server process ${worker.id}: ${message.error}`));
        return;
      }
      scrape.answers.push(message.metrics ?? []);
      if (scrape.waiting.size === 0) scrape.finish();
    });
    // A process that is gone has no counters left to add; it is not waited for.
    cluster.on('exit', (worker) => {
      this.#ready.delete(worker);
      for (const scrape of this.#scrapes.values()) {
        if (scrape.waiting.delete(worker) && scrape.waiting.size === 0) scrape.finish();
      }
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    const id = this.#next++;
    const workers = [...this.#ready].filter((worker) => worker.isConnected());
    const answers = await new Promise<MetricJson[][]>((resolve, reject) => {
      const timer = setTimeout(
        () => scrape.finish(new Error(`a server process did not answer in ${ANSWER_TIMEOUT_MS} ms`)),
        ANSWER_TIMEOUT_MS,
      );
      const scrape: Scrape = {
        waiting: new Set(workers),
        answers: [],
        finish: (error) => {
          clearTimeout(timer);
          this.#scrapes.delete(id);
          if (error) reject(error);
          else resolve(scrape.answers);
        },
      };
      this.#scrapes.set(id, scrape);
      if (workers.length === 0) scrape.finish();
      for (const worker of workers) {
        // With a callback a closed channel is reported here rather than as an 'error' event.
        worker.send({ type: REQUEST, id }, undefined, undefined, (error) => {
          if (error && scrape.waiting.delete(worker) && scrape.waiting.size === 0) scrape.finish();
        });
      }
    });
    const merged = AggregatorRegistry.aggregate(answers);
    return { contentType: merged.contentType, body: await merged.metrics() };
  }
}
