import { Counter, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics of one Conveyor instance. Each instance owns its registry (not prom-client's global
 * one), so several servers in one test process never mix their counts.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'conveyor_http_requests_total',
    help: 'HTTP requests by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'conveyor_http_request_duration_seconds',
    help: 'Time from request to the end of the response, by route pattern',
    labelNames: ['method', 'route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly deliveryBytes = new Counter({
    name: 'conveyor_delivery_bytes_sent_total',
    help: 'Body bytes sent by delivery routes',
    registers: [this.registry],
  });
  readonly deliveryResponses = new Counter({
    name: 'conveyor_delivery_responses_total',
    help: 'Delivery responses by kind (full, partial, multipart, not_modified, precondition_failed, unsatisfiable)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly uploadedBytes = new Counter({
    name: 'conveyor_upload_bytes_total',
    help: 'Bytes received and stored by uploads',
    registers: [this.registry],
  });

  // prom-client hashes the label object on every call; the set of (method, route, status) is small and
  // fixed by the routes, so the labelled children are looked up once and kept.
  readonly #requestChildren = new Map<string, { count: () => void; observe: (seconds: number) => void }>();

  /** Counts one finished HTTP request and its duration. */
  recordRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let child = this.#requestChildren.get(key);
    if (!child) {
      const counter = this.requests.labels(method, route, String(status));
      const histogram = this.duration.labels(method, route);
      child = { count: () => counter.inc(), observe: (s) => histogram.observe(s) };
      this.#requestChildren.set(key, child);
    }
    child.count();
    child.observe(seconds);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
