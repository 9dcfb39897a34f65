import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type RateDecision,
  RateLimiter,
  type RateLimitRule,
  rateLimitHeaders,
} from '../../src/http/rate-limit.ts';

function clock(start = 1_000_000) {
  let t = start;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

// 10 requests per 10 s: one request's worth of quota comes back every second.
const RULE: RateLimitRule = { name: 'per-key', limit: 10, windowSeconds: 10 };

function takeMany(limiter: RateLimiter, key: string, n: number): RateDecision[] {
  return Array.from({ length: n }, () => limiter.take(key));
}

describe('RateLimiter', () => {
  it('allows a burst up to the limit, then denies', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now });
    const decisions = takeMany(limiter, 'a', 10);
    assert.ok(decisions.every((d) => d.allowed));
    assert.deepEqual(
      decisions.map((d) => d.remaining),
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    );
    const denied = limiter.take('a');
    assert.equal(denied.allowed, false);
    assert.equal(denied.remaining, 0);
    assert.equal(denied.limit, 10);
  });

  it('reports reset as the time until the full limit is back', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now });
    assert.deepEqual(limiter.take('a'), {
      allowed: true,
      limit: 10,
      remaining: 9,
      resetSeconds: 1,
      retryAfterSeconds: 0,
    });
    takeMany(limiter, 'a', 4);
    assert.equal(limiter.take('a').resetSeconds, 6);
    c.advance(2500);
    // 6 s of debt minus 2.5 s elapsed, plus 1 s for this request; 3 requests were paid back.
    assert.deepEqual(limiter.take('a'), {
      allowed: true,
      limit: 10,
      remaining: 5,
      resetSeconds: 5,
      retryAfterSeconds: 0,
    });
  });

  it('refills one request per window/limit', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now });
    takeMany(limiter, 'a', 10);
    c.advance(999);
    assert.equal(limiter.take('a').allowed, false);
    c.advance(1);
    const d = limiter.take('a');
    assert.equal(d.allowed, true);
    assert.equal(d.remaining, 0);
    assert.equal(limiter.take('a').allowed, false);

    // A steady client at exactly the sustained rate is never refused.
    for (let i = 0; i < 50; i++) {
      c.advance(1000);
      assert.equal(limiter.take('a').allowed, true, `request ${i}`);
    }
    // After a full window of silence the whole burst is available again.
    c.advance(10_000);
    assert.ok(takeMany(limiter, 'a', 10).every((x) => x.allowed));
    assert.equal(limiter.take('a').allowed, false);
  });

  it('does not allow twice the limit across a window boundary', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now });
    c.advance(9_900);
    takeMany(limiter, 'a', 10);
    c.advance(200);
    const allowed = takeMany(limiter, 'a', 10).filter((d) => d.allowed).length;
    assert.equal(allowed, 0);
  });

  it('gives an accurate retry-after that is then honoured', () => {
    const c = clock();
    const limiter = new RateLimiter({ name: 'slow', limit: 2, windowSeconds: 60 }, { now: c.now });
    takeMany(limiter, 'a', 2);
    const denied = limiter.take('a');
    assert.equal(denied.allowed, false);
    assert.equal(denied.retryAfterSeconds, 30);
    assert.equal(denied.resetSeconds, 60);
    c.advance(10_400);
    const later = limiter.take('a');
    assert.equal(later.retryAfterSeconds, 20, '19.6 s rounds up');
    c.advance(19_599);
    assert.equal(limiter.take('a').allowed, false);
    c.advance(1);
    assert.equal(limiter.take('a').allowed, true);
  });

  it('never reports a retry-after below one second', () => {
    const c = clock();
    const limiter = new RateLimiter({ name: 'fast', limit: 1000, windowSeconds: 1 }, { now: c.now });
    takeMany(limiter, 'a', 1000);
    const denied = limiter.take('a');
    assert.equal(denied.allowed, false);
    assert.equal(denied.retryAfterSeconds, 1);
  });

  it('does not charge denied requests', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now });
    takeMany(limiter, 'a', 10);
    takeMany(limiter, 'a', 100);
    c.advance(1000);
    assert.equal(limiter.take('a').allowed, true);
  });

  it('keeps keys independent', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now });
    takeMany(limiter, 'a', 10);
    assert.equal(limiter.take('a').allowed, false);
    const b = limiter.take('b');
    assert.equal(b.allowed, true);
    assert.equal(b.remaining, 9);
  });

  it('stays exact when window/limit is not a whole number of milliseconds', () => {
    const c = clock();
    const limiter = new RateLimiter({ name: 'thirds', limit: 3, windowSeconds: 1 }, { now: c.now });
    assert.deepEqual(
      takeMany(limiter, 'a', 3).map((d) => d.remaining),
      [2, 1, 0],
    );
    assert.equal(limiter.take('a').allowed, false);
    c.advance(1000);
    assert.deepEqual(
      takeMany(limiter, 'a', 4).map((d) => d.allowed),
      [true, true, true, false],
    );
  });

  it('forgets keys whose bucket has drained', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now });
    for (let i = 0; i < 1000; i++) limiter.take(`k${i}`);
    assert.equal(limiter.size, 1000);
    c.advance(999);
    assert.equal(limiter.size, 1000);
    c.advance(1);
    assert.equal(limiter.size, 0);
    // A drained key behaves exactly like a new one.
    assert.equal(limiter.take('k1').remaining, 9);
  });

  it('bounds memory under a flood of distinct keys', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now, maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) {
      limiter.take(`flood-${i}`);
      if (i % 7 === 0) c.advance(1);
    }
    assert.equal(limiter.size, 100);
    // The most recent keys are the ones kept.
    assert.equal(limiter.take('flood-9999').remaining, 8);
    assert.equal(limiter.take('flood-0').remaining, 9);
  });

  it('evicts the least recently charged key first when full', () => {
    const c = clock();
    const limiter = new RateLimiter(RULE, { now: c.now, maxKeys: 2 });
    limiter.take('a');
    limiter.take('b');
    limiter.take('a');
    limiter.take('c');
    assert.equal(limiter.size, 2);
    assert.equal(limiter.take('a').remaining, 7, 'a was charged recently and kept its state');
    assert.equal(limiter.take('b').remaining, 9, 'b was forgotten');
  });

  it('rejects rules the headers cannot express', () => {
    assert.throws(() => new RateLimiter({ name: 'x', limit: 0, windowSeconds: 1 }), RangeError);
    assert.throws(() => new RateLimiter({ name: 'x', limit: 1.5, windowSeconds: 1 }), RangeError);
    assert.throws(() => new RateLimiter({ name: 'x', limit: 1, windowSeconds: 0.5 }), RangeError);
    assert.throws(() => new RateLimiter({ name: '', limit: 1, windowSeconds: 1 }), RangeError);
    assert.throws(() => new RateLimiter({ name: 'caf\u00e9', limit: 1, windowSeconds: 1 }), RangeError);
    assert.throws(() => new RateLimiter(RULE, { maxKeys: 0 }), RangeError);
  });
});

describe('rateLimitHeaders', () => {
  it('serializes an allowed decision', () => {
    const limiter = new RateLimiter(RULE, { now: clock().now });
    assert.deepEqual(rateLimitHeaders(RULE, limiter.take('a')), {
      'RateLimit-Policy': '"per-key";q=10;w=10',
      RateLimit: '"per-key";r=9;t=1',
    });
  });

  it('adds Retry-After on denial and keeps it no earlier than the effective window', () => {
    const rule = { name: 'slow', limit: 2, windowSeconds: 60 };
    const limiter = new RateLimiter(rule, { now: clock().now });
    takeMany(limiter, 'a', 2);
    assert.deepEqual(rateLimitHeaders(rule, limiter.take('a')), {
      'RateLimit-Policy': '"slow";q=2;w=60',
      RateLimit: '"slow";r=0;t=30',
      'Retry-After': '30',
    });
  });

  it('escapes the policy name as a structured-field string', () => {
    const rule = { name: 'a "quoted" \\ name', limit: 1, windowSeconds: 1 };
    const headers = rateLimitHeaders(rule, {
      allowed: true,
      limit: 1,
      remaining: 0,
      resetSeconds: 1,
      retryAfterSeconds: 0,
    });
    assert.equal(headers['RateLimit-Policy'], '"a \\"quoted\\" \\\\ name";q=1;w=1');
  });
});
