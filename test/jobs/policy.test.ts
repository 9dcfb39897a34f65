import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type Candidate,
  canonicalJson,
  effectiveRank,
  orderCandidates,
  payloadHash,
  queueKey,
  rateScopes,
  retryDelay,
  retryDelayCap,
  secondsToNextUtcDay,
  selectClaims,
  takeStarts,
  tenantShareCap,
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
  over: Partial<Record<'lanes' | 'types' | 'tenants' | 'rates' | 'breakers', [string, number][]>> & {
    /** lane -> [cap, held per tenant] */
    shares?: [string, number, [string, number][]][];
    moreDue?: string[];
  } = {},
) => ({
  slots,
  lanes: new Map(over.lanes ?? []),
  types: new Map(over.types ?? []),
  tenants: new Map(over.tenants ?? []),
  rates: new Map(over.rates ?? []),
  breakers: new Map(over.breakers ?? []),
  shares: new Map((over.shares ?? []).map(([lane, cap, held]) => [lane, { cap, held: new Map(held) }])),
  moreDue: new Set(over.moreDue ?? []),
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

test('a tenant’s fair share of a lane: a percentage of its slots, rounded down, at least one', () => {
  assert.equal(tenantShareCap(4, 50), 2);
  assert.equal(tenantShareCap(3, 50), 1);
  assert.equal(tenantShareCap(10, 33), 3);
  assert.equal(tenantShareCap(8, 99), 7);
  assert.equal(tenantShareCap(1, 50), 1);
  assert.equal(tenantShareCap(3, 1), 1);
  // Off: an unlimited lane, a share of 0, or the whole lane.
  assert.equal(tenantShareCap(0, 50), undefined);
  assert.equal(tenantShareCap(4, 0), undefined);
  assert.equal(tenantShareCap(4, 100), undefined);
});

describe('fair share in selectClaims', () => {
  const ids = (chosen: Candidate[]) => chosen.map((c) => c.id);
  const crit = (tenantId: string, type = 'noop') => job({ tenantId, lane: 'critical', type });
  const b = queueKey('critical', 'noop', 'b');

  test('alone in the lane, a tenant may use all of it (work-conserving)', () => {
    const a = [crit('a'), crit('a'), crit('a'), crit('a')];
    const chosen = selectClaims(a, capacity(10, { lanes: [['critical', 4]], shares: [['critical', 2, []]] }));
    assert.deepEqual(ids(chosen), ids(a));
  });

  test('a tenant at its share is passed over for another tenant’s candidate later in the order', () => {
    // a holds 2 of 4 (its share), b holds 1; one slot is free. Without the share a's job, first in
    // order, would take it.
    const a1 = crit('a');
    const b1 = crit('b');
    const cap = capacity(10, {
      lanes: [['critical', 1]],
      shares: [
        [
          'critical',
          2,
          [
            ['a', 2],
            ['b', 1],
          ],
        ],
      ],
    });
    assert.deepEqual(ids(selectClaims([a1, b1], cap)), [b1.id]);
    // Off (no share for the lane): order decides.
    assert.deepEqual(ids(selectClaims([a1, b1], capacity(10, { lanes: [['critical', 1]] }))), [a1.id]);
  });

  test('jobs taken in the same claim count toward the share', () => {
    const a = [crit('a'), crit('a'), crit('a'), crit('a')];
    const b1 = crit('b');
    const chosen = selectClaims(
      [...a, b1],
      capacity(10, { lanes: [['critical', 4]], shares: [['critical', 2, []]], moreDue: [b] }),
    );
    // a gets its 2, b its one candidate; b may have more due (its group gave all it was asked for), so
    // the fourth slot stays free for b's next claim.
    assert.deepEqual(ids(chosen), [a[0]!.id, a[1]!.id, b1.id]);
  });

  test('when the waiting tenant’s candidates are all taken and it has no more, the rest go to the others', () => {
    const a = [crit('a'), crit('a'), crit('a'), crit('a')];
    const b1 = crit('b');
    const chosen = selectClaims(
      [...a, b1],
      capacity(10, { lanes: [['critical', 4]], shares: [['critical', 2, []]] }),
    );
    assert.deepEqual(ids(chosen), [a[0]!.id, a[1]!.id, b1.id, a[2]!.id]);
  });

  test('a tenant with due jobs that were not fetched waits for the lane: others stop at their share', () => {
    const a = [crit('a'), crit('a'), crit('a')];
    const cap = capacity(10, {
      lanes: [['critical', 4]],
      shares: [['critical', 2, [['a', 1]]]],
      moreDue: [b],
    });
    assert.deepEqual(ids(selectClaims(a, cap)), [a[0]!.id]);
  });

  test('a waiting tenant that could not use a slot does not hold the others back', () => {
    const a = [crit('a'), crit('a'), crit('a')];
    const b1 = crit('b');
    const lanes: [string, number][] = [['critical', 4]];
    const shares: [string, number, [string, number][]][] = [['critical', 2, [['a', 2]]]];
    // Its tier is full: its candidate is refused, so it is not waiting for the lane.
    assert.deepEqual(
      ids(selectClaims([...a, b1], capacity(10, { lanes, shares, moreDue: [b], tenants: [['b', 0]] }))),
      ids(a),
    );
    // Its only candidate is refused by its type's limit (shared with nobody here).
    const slow = crit('b', 'slow');
    const bSlow = queueKey('critical', 'slow', 'b');
    assert.deepEqual(
      ids(
        selectClaims([...a, slow], capacity(10, { lanes, shares, moreDue: [bSlow], types: [['slow', 0]] })),
      ),
      ids(a),
    );
    // Its group was not fetched, and its tier or its type has no room.
    assert.deepEqual(
      ids(selectClaims(a, capacity(10, { lanes, shares, moreDue: [b], tenants: [['b', 0]] }))),
      ids(a),
    );
    assert.deepEqual(
      ids(selectClaims(a, capacity(10, { lanes, shares, moreDue: [bSlow], types: [['slow', 0]] }))),
      ids(a),
    );
    // Its candidate is held back by a breaker.
    const probe = job({ tenantId: 'b', lane: 'critical', breakerKey: 'host:x' });
    assert.deepEqual(
      ids(
        selectClaims([...a, probe], capacity(10, { lanes, shares, moreDue: [b], breakers: [['host:x', 0]] })),
      ),
      ids(a),
    );
  });

  test('a tenant at or over its share does not count as waiting: two of them share what is left', () => {
    const a = [crit('a'), crit('a')];
    const bs = [crit('b'), crit('b')];
    const chosen = selectClaims(
      [a[0]!, bs[0]!, a[1]!, bs[1]!],
      capacity(10, {
        lanes: [['critical', 3]],
        shares: [
          [
            'critical',
            2,
            [
              ['a', 2],
              ['b', 3],
            ],
          ],
        ],
        moreDue: [b, queueKey('critical', 'noop', 'a')],
      }),
    );
    assert.deepEqual(ids(chosen), [a[0]!.id, bs[0]!.id, a[1]!.id]);
  });

  test('shares are per lane: waiting in one lane holds nobody back in another', () => {
    const n = [job({ tenantId: 'a' }), job({ tenantId: 'a' }), job({ tenantId: 'a' })];
    const chosen = selectClaims(
      n,
      capacity(10, {
        lanes: [
          ['critical', 0],
          ['normal', 4],
        ],
        shares: [
          ['critical', 1, []],
          ['normal', 2, [['a', 2]]],
        ],
        moreDue: [b],
      }),
    );
    assert.deepEqual(ids(chosen), ids(n));
  });

  test('the second pass keeps to the slots and the other limits', () => {
    const a = [crit('a'), crit('a'), crit('a'), crit('a')];
    const shares: [string, number, [string, number][]][] = [['critical', 1, [['a', 1]]]];
    assert.deepEqual(
      ids(selectClaims(a, capacity(2, { lanes: [['critical', 4]], shares }))),
      ids(a.slice(0, 2)),
    );
    assert.deepEqual(
      ids(selectClaims(a, capacity(10, { lanes: [['critical', 4]], shares, tenants: [['a', 3]] }))),
      ids(a.slice(0, 3)),
    );
    assert.deepEqual(
      ids(selectClaims(a, capacity(10, { lanes: [['critical', 1]], shares }))),
      ids(a.slice(0, 1)),
    );
  });
});

test('fair share, 3,000 random claims: every limit holds, nobody passes its share while someone under it waits, and no usable slot is left', () => {
  // A small deterministic generator (mulberry32), so a failure is reproducible.
  let seed = 0x5eed;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const int = (max: number) => Math.floor(random() * (max + 1));
  const tenants = ['a', 'b', 'c'];
  const lanes = ['critical', 'normal'] as const;
  const types = ['noop', 'slow'];
  for (let round = 0; round < 3000; round++) {
    const candidates = Array.from({ length: int(12) }, () =>
      job({
        tenantId: pick(tenants),
        lane: pick(lanes),
        type: pick(types),
        breakerKey: pick([null, 'host:x']),
      }),
    );
    const cap = capacity(1 + int(10), {
      lanes: lanes.map((lane) => [lane, int(6)]),
      tenants: tenants.filter(() => random() < 0.3).map((t) => [t, int(3)]),
      types: random() < 0.3 ? [['slow', int(2)]] : [],
      breakers: random() < 0.3 ? [['host:x', int(1)]] : [],
      shares: lanes
        .filter(() => random() < 0.8)
        .map((lane) => [lane, 1 + int(3), tenants.map((t) => [t, int(4)] as [string, number])]),
      moreDue: lanes.flatMap((lane) =>
        tenants.flatMap((t) => types.filter(() => random() < 0.2).map((type) => queueKey(lane, type, t))),
      ),
    });
    const chosen = selectClaims(candidates, cap);
    const what = `round ${round}`;

    // Every limit holds.
    assert.ok(chosen.length <= cap.slots, what);
    assert.equal(new Set(chosen).size, chosen.length, what);
    const used = (key: (c: Candidate) => string | null, name: string) => {
      const n = chosen.filter((c) => key(c) === name).length;
      return n;
    };
    const room = (map: Map<string, number>, key: (c: Candidate) => string | null) => {
      for (const [name, left] of map) assert.ok(used(key, name) <= left, `${what}: ${name}`);
    };
    room(cap.lanes, (c) => c.lane);
    room(cap.tenants, (c) => c.tenantId);
    room(cap.types, (c) => c.type);
    room(cap.breakers, (c) => c.breakerKey);

    // Who waits under the share at the end (the definition selectClaims documents).
    const held = (lane: string, tenant: string) =>
      (cap.shares.get(lane)?.held.get(tenant) ?? 0) +
      chosen.filter((c) => c.lane === lane && c.tenantId === tenant).length;
    const leftOf = (map: Map<string, number>, name: string, usedNow: number) =>
      (map.get(name) ?? Infinity) - usedNow;
    const waiting = (lane: string) =>
      [...cap.moreDue].some((queue) => {
        const [l, type, tenant] = queue.split('/') as [string, string, string];
        const share = cap.shares.get(l);
        return (
          l === lane &&
          share !== undefined &&
          held(l, tenant) < share.cap &&
          candidates.every((c) => queueKey(c.lane, c.type, c.tenantId) !== queue || chosen.includes(c)) &&
          leftOf(
            cap.types,
            type,
            used((c) => c.type, type),
          ) > 0 &&
          leftOf(
            cap.tenants,
            tenant,
            used((c) => c.tenantId, tenant),
          ) > 0
        );
      });

    // Nobody went past its share (or past what it already held) while someone under it waits.
    for (const [lane, share] of cap.shares) {
      if (!waiting(lane)) continue;
      for (const t of tenants) {
        assert.ok(held(lane, t) <= Math.max(share.cap, share.held.get(t) ?? 0), `${what}: ${lane} ${t}`);
      }
    }
    // Work-conserving: with slots left, a candidate left out either no longer fits a limit, or is over its
    // share in a lane where someone under it waits.
    if (chosen.length < cap.slots) {
      for (const c of candidates.filter((c) => !chosen.includes(c))) {
        const fits =
          leftOf(
            cap.lanes,
            c.lane,
            used((x) => x.lane, c.lane),
          ) > 0 &&
          leftOf(
            cap.tenants,
            c.tenantId,
            used((x) => x.tenantId, c.tenantId),
          ) > 0 &&
          leftOf(
            cap.types,
            c.type,
            used((x) => x.type, c.type),
          ) > 0 &&
          (c.breakerKey === null ||
            leftOf(
              cap.breakers,
              c.breakerKey,
              used((x) => x.breakerKey, c.breakerKey),
            ) > 0);
        const share = cap.shares.get(c.lane);
        const heldBack = share !== undefined && held(c.lane, c.tenantId) >= share.cap && waiting(c.lane);
        assert.ok(!fits || heldBack, `${what}: ${c.id} was left out`);
      }
    }
  }
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
