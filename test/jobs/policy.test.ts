import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type Candidate,
  canonicalJson,
  effectiveRank,
  orderCandidates,
  payloadHash,
  rateScopes,
  retryDelay,
  retryDelayCap,
  secondsToNextUtcDay,
  selectClaims,
  takeStarts,
  utcDay,
} from '../../src/jobs/policy.ts';

const MIN = 60_000;
const now = Date.UTC(2026, 10, 24, 12, 0, 0);
let seq = 0;
const job = (over: Partial<Candidate>): Candidate => ({
  id: `job_${String(seq++).padStart(4, '0')}`,
  lane: 'normal',
  type: 'noop',
  tenantId: 'a',
  runAt: now,
  breakerKey: null,
  ...over,
});
const capacity = (
  slots: number,
  over: Partial<Record<'lanes' | 'types' | 'tenants' | 'rates' | 'breakers', [string, number][]>> = {},
) => ({
  slots,
  lanes: new Map(over.lanes ?? []),
  types: new Map(over.types ?? []),
  tenants: new Map(over.tenants ?? []),
  rates: new Map(over.rates ?? []),
  breakers: new Map(over.breakers ?? []),
});

test('aging lifts a waiting job one lane per aging period, never above critical', () => {
  assert.equal(effectiveRank('low', now, now, MIN), 3);
  assert.equal(effectiveRank('low', now - MIN + 1, now, MIN), 3);
  assert.equal(effectiveRank('low', now - MIN, now, MIN), 2);
  assert.equal(effectiveRank('low', now - 3 * MIN, now, MIN), 0);
  assert.equal(effectiveRank('low', now - 30 * MIN, now, MIN), 0);
  assert.equal(effectiveRank('critical', now, now, MIN), 0);
  // A job not yet due has not waited.
  assert.equal(effectiveRank('high', now + MIN, now, MIN), 1);
});

test('strict lane priority among jobs that became due together', () => {
  const low = job({ lane: 'low', runAt: now - 1000 });
  const normal = job({ lane: 'normal', runAt: now - 2000 });
  const critical = job({ lane: 'critical' });
  const high = job({ lane: 'high', runAt: now - 500 });
  const order = orderCandidates([low, normal, critical, high], now, MIN).map((c) => c.lane);
  assert.deepEqual(order, ['critical', 'high', 'normal', 'low']);
});

test('a low job that waited three aging periods goes before fresh critical work', () => {
  const starving = job({ lane: 'low', runAt: now - 3 * MIN });
  const fresh = job({ lane: 'critical' });
  assert.deepEqual(
    orderCandidates([fresh, starving], now, MIN).map((c) => c.id),
    [starving.id, fresh.id],
  );
});

test('tenants take turns within a lane: every tenant’s first job before anyone’s second', () => {
  const big = Array.from({ length: 5 }, (_, i) => job({ tenantId: 'big', runAt: now - 10_000 + i }));
  const small = job({ tenantId: 'small', runAt: now - 1 });
  const other = job({ tenantId: 'other', runAt: now - 2 });
  const order = orderCandidates([...big, small, other], now, MIN).map((c) => c.tenantId);
  assert.deepEqual(order.slice(0, 3).sort(), ['big', 'other', 'small']);
  assert.deepEqual(order.slice(3), ['big', 'big', 'big', 'big']);
});

test('turns never override lanes: a tenant’s second critical job beats another’s first normal one', () => {
  const c1 = job({ tenantId: 'a', lane: 'critical' });
  const c2 = job({ tenantId: 'a', lane: 'critical' });
  const n1 = job({ tenantId: 'b', lane: 'normal', runAt: now - 5000 });
  assert.deepEqual(
    orderCandidates([n1, c2, c1], now, MIN).map((c) => c.id),
    [c1.id, c2.id, n1.id],
  );
});

test('selectClaims respects slots and every limit, skipping what is full', () => {
  const jobs = [
    job({ tenantId: 'a', lane: 'critical' }),
    job({ tenantId: 'a', lane: 'critical' }),
    job({ tenantId: 'a', lane: 'critical' }),
    job({ tenantId: 'b', lane: 'normal', type: 'slow' }),
    job({ tenantId: 'b', lane: 'normal', type: 'slow' }),
    job({ tenantId: 'c', lane: 'normal', breakerKey: 'host:x' }),
    job({ tenantId: 'c', lane: 'normal', breakerKey: 'host:y' }),
  ];
  const chosen = selectClaims(
    jobs,
    capacity(10, { tenants: [['a', 2]], types: [['slow', 1]], breakers: [['host:x', 0]] }),
  );
  assert.deepEqual(
    chosen.map((c) => c.id),
    [jobs[0]!.id, jobs[1]!.id, jobs[3]!.id, jobs[6]!.id],
  );
  assert.equal(selectClaims(jobs, capacity(2)).length, 2);
  assert.equal(
    selectClaims(
      jobs,
      capacity(10, {
        lanes: [
          ['critical', 0],
          ['normal', 1],
        ],
      }),
    ).length,
    1,
  );
  assert.equal(
    selectClaims(jobs, capacity(10, { rates: [['type:noop', 1]] })).filter((c) => c.type === 'noop').length,
    1,
  );
});

test('retry delays: exponential caps with full jitter, bounded by the maximum', () => {
  const backoff = { baseMs: 1000, maxMs: 10_000 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => retryDelayCap(a, backoff)),
    [1000, 2000, 4000, 8000, 10_000, 10_000],
  );
  for (let attempt = 1; attempt <= 6; attempt++) {
    const cap = retryDelayCap(attempt, backoff);
    const samples = Array.from({ length: 500 }, () => retryDelay(attempt, backoff));
    assert.ok(
      samples.every((d) => d >= 0 && d < cap),
      `attempt ${attempt} within [0, ${cap})`,
    );
    // Full jitter spreads over the whole range, not around the cap.
    assert.ok(Math.min(...samples) < cap * 0.1 && Math.max(...samples) > cap * 0.9);
  }
});

test('a breaker key is a rate scope shared by every type and tenant that names it', () => {
  assert.deepEqual(rateScopes(job({ type: 'ingest.fetch', breakerKey: null })), ['type:ingest.fetch']);
  assert.deepEqual(rateScopes(job({ type: 'ingest.fetch', breakerKey: 'host:a.example' })), [
    'type:ingest.fetch',
    'key:host:a.example',
  ]);
  const jobs = [
    job({ type: 'ingest.fetch', tenantId: 'a', breakerKey: 'host:a.example' }),
    job({ type: 'other', tenantId: 'b', breakerKey: 'host:a.example' }),
    job({ type: 'ingest.fetch', tenantId: 'b', breakerKey: 'host:b.example' }),
  ];
  const chosen = selectClaims(jobs, capacity(10, { rates: [['key:host:a.example', 1]] }));
  assert.deepEqual(
    chosen.map((c) => c.breakerKey),
    ['host:a.example', 'host:b.example'],
  );
});

test('start rates: GCRA spacing with a tenth of a second of burst', () => {
  // 5/s: one start at a time, 200 ms apart.
  let state = takeStarts(0, now, 5, 3);
  assert.equal(state.granted, 1);
  assert.equal(state.nextAt, now + 200);
  assert.equal(takeStarts(state.tat, now + 100, 5, 3).granted, 0);
  state = takeStarts(state.tat, now + 200, 5, 3);
  assert.equal(state.granted, 1);
  // 100/s: a burst of 10, then 10 ms apart.
  const fast = takeStarts(0, now, 100, 50);
  assert.equal(fast.granted, 10);
  assert.equal(takeStarts(fast.tat, now, 100, 50).granted, 0);
  assert.equal(takeStarts(fast.tat, now + 10, 100, 50).granted, 1);
  // Over 10 s of greedy claims every millisecond, 5/s allows 50 or 51 starts.
  let tat = 0;
  let starts = 0;
  for (let t = now; t < now + 10_000; t++) {
    const r = takeStarts(tat, t, 5, 100);
    tat = r.tat;
    starts += r.granted;
  }
  assert.ok(starts >= 50 && starts <= 51, `${starts} starts`);
});

test('canonical payloads: key order does not matter, values do', () => {
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: 1 }] }), '{"a":[{"c":1,"d":2}],"b":1}');
  assert.equal(payloadHash('t', { a: 1, b: 2 }), payloadHash('t', { b: 2, a: 1 }));
  assert.notEqual(payloadHash('t', { a: 1 }), payloadHash('t', { a: 2 }));
  assert.notEqual(payloadHash('t', { a: 1 }), payloadHash('u', { a: 1 }));
});

test('daily limits reset at midnight UTC', () => {
  assert.equal(utcDay(now), '2026-11-24');
  assert.equal(secondsToNextUtcDay(now), 12 * 3600);
  assert.equal(secondsToNextUtcDay(Date.UTC(2026, 10, 24, 23, 59, 59, 500)), 1);
});
