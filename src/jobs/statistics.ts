/**
 * Throughput and latency statistics from job rows, as pure functions: time buckets of started,
 * succeeded, failed and dead jobs, success rates, and wait/run percentiles. The monitor reads the rows.
 */

import type { JobError } from './types.ts';

export interface Percentiles {
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface Bucket {
  start: string;
  started: number;
  succeeded: number;
  /** Failed attempts (each error recorded in the bucket, including the last one of a job that died). */
  failed: number;
  dead: number;
}

export interface WindowStats {
  from: string;
  to: string;
  bucketSeconds: number;
  totals: Omit<Bucket, 'start'> & { successRate: number | null };
  /** Time from `run_at` to the start of the last attempt, of jobs that finished in the window. */
  waitMs: Percentiles;
  /** Time from the start to the end of the last attempt, of jobs that finished in the window. */
  runMs: Percentiles;
  buckets: Bucket[];
}

/** The columns of a job that the statistics need (times as epoch ms). */
export type StatsRow = {
  state: string;
  run_at: number;
  started_at: number | null;
  finished_at: number | null;
  errors: string;
};

export interface Window {
  from: number;
  size: number;
  count: number;
}

/** `count` buckets of `size` ms, the last one holding `now`. */
export function windowOf(now: number, size: number, count: number): Window {
  return { from: Math.floor(now / size) * size - (count - 1) * size, size, count };
}

export function failuresSince(row: StatsRow, since: number): number[] {
  if (row.errors === '[]') return [];
  const times: number[] = [];
  for (const error of JSON.parse(row.errors) as JobError[]) {
    const at = Date.parse(error.at);
    if (at >= since) times.push(at);
  }
  return times;
}

export function summarise(rows: readonly StatsRow[], window: Window, now: number): WindowStats {
  const buckets: Bucket[] = Array.from({ length: window.count }, (_, i) => ({
    start: new Date(window.from + i * window.size).toISOString(),
    started: 0,
    succeeded: 0,
    failed: 0,
    dead: 0,
  }));
  const at = (ms: number | null) => {
    if (ms === null || ms < window.from) return undefined;
    return buckets[Math.min(window.count - 1, Math.floor((ms - window.from) / window.size))];
  };
  const waits: number[] = [];
  const runs: number[] = [];
  for (const row of rows) {
    const started = at(row.started_at);
    if (started) started.started++;
    for (const time of failuresSince(row, window.from)) at(time)!.failed++;
    if (row.state !== 'succeeded' && row.state !== 'dead') continue;
    const finished = at(row.finished_at);
    if (!finished) continue;
    finished[row.state]++;
    if (row.started_at !== null) {
      waits.push(Math.max(0, row.started_at - row.run_at));
      runs.push(Math.max(0, row.finished_at! - row.started_at));
    }
  }
  const totals = { started: 0, succeeded: 0, failed: 0, dead: 0 };
  for (const b of buckets) {
    totals.started += b.started;
    totals.succeeded += b.succeeded;
    totals.failed += b.failed;
    totals.dead += b.dead;
  }
  const attempts = totals.succeeded + totals.failed;
  return {
    from: new Date(window.from).toISOString(),
    to: new Date(now).toISOString(),
    bucketSeconds: window.size / 1000,
    totals: { ...totals, successRate: attempts === 0 ? null : totals.succeeded / attempts },
    waitMs: percentiles(waits),
    runMs: percentiles(runs),
    buckets,
  };
}

/** Nearest-rank percentiles. */
export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: null, p95: null, p99: null };
  const sorted = Float64Array.from(values).sort();
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { count: sorted.length, p50: rank(50), p95: rank(95), p99: rank(99) };
}
