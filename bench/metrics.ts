/**
 * The per-request metrics work, prom-client's counters and histograms against ours (src/ops/prom.ts), in
 * one process and one run: one counter increment and one histogram observation per request, through
 * children looked up once and kept, as `Metrics.recordRequest` does. Run:
 *
 *   node_modules/.bin/node bench/metrics.ts [requests per round, default 2000000] [rounds, default 7]
 *
 * Prints nanoseconds per request for each, the median of the rounds (alternating which goes first).
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { FastCounter, FastHistogram } from '../src/ops/prom.ts';

const REQUESTS = Number(process.argv[2] ?? 2_000_000);
const ROUNDS = Number(process.argv[3] ?? 7);
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const ROUTES = ['/a/:id', '/a/:id/v/:version', '/api/v1/assets'];
const STATUSES = ['200', '304', '206'];

interface Recorder {
  record(i: number, seconds: number): void;
}

/** The children a request's recording goes through, looked up once as `Metrics.recordRequest` keeps them. */
interface Child {
  count: { inc(): void };
  time: { observe(seconds: number): void };
}

function recorder(implementation: 'prom-client' | 'ours'): Recorder {
  const registers = [new Registry()];
  const counter = { name: 'r', help: 'r', labelNames: ['method', 'route', 'status'], registers };
  const histogram = { name: 'd', help: 'd', labelNames: ['method', 'route'], buckets: BUCKETS, registers };
  const [requests, duration] =
    implementation === 'ours'
      ? [new FastCounter(counter), new FastHistogram(histogram)]
      : [new Counter(counter), new Histogram(histogram)];
  const children: Child[] = ROUTES.flatMap((route) =>
    STATUSES.map((status) => ({
      count: requests.labels('GET', route, status),
      time: duration.labels('GET', route),
    })),
  );
  return {
    record(i, seconds) {
      const child = children[i % children.length] as Child;
      child.count.inc();
      child.time.observe(seconds);
    },
  };
}

function nsPerRequest(recorder: Recorder): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < REQUESTS; i++) recorder.record(i, 0.0001 + (i % 1000) * 0.00002);
  return Number(process.hrtime.bigint() - started) / REQUESTS;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const results = { 'prom-client': [] as number[], ours: [] as number[] };
const recorders = { 'prom-client': recorder('prom-client'), ours: recorder('ours') };
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? (['prom-client', 'ours'] as const) : (['ours', 'prom-client'] as const);
  for (const name of order) results[name].push(nsPerRequest(recorders[name]));
}
for (const [name, values] of Object.entries(results)) {
  console.log(
    `${name.padEnd(12)} ${median(values).toFixed(0)} ns per request (rounds: ${values.map((v) => v.toFixed(0)).join(', ')})`,
  );
}
