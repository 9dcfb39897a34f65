import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CachePolicyConfig, cacheControl } from '../../src/delivery/cache-policy.ts';

const CONFIG: CachePolicyConfig = {
  latestMaxAge: 60,
  latestSMaxAge: 3600,
  staleWhileRevalidate: 30,
  staleIfError: 86400,
  notFoundSMaxAge: 10,
};

describe('cacheControl', () => {
  it('lets browsers and CDNs keep a latest response for different times, and serve it stale', () => {
    assert.equal(
      cacheControl('latest', CONFIG),
      'public, max-age=60, s-maxage=3600, stale-while-revalidate=30, stale-if-error=86400',
    );
  });

  it('omits stale-if-error when it is 0', () => {
    assert.equal(
      cacheControl('latest', { ...CONFIG, staleIfError: 0 }),
      'public, max-age=60, s-maxage=3600, stale-while-revalidate=30',
    );
  });

  it('omits stale-while-revalidate when it is 0', () => {
    assert.equal(
      cacheControl('latest', { ...CONFIG, staleWhileRevalidate: 0 }),
      'public, max-age=60, s-maxage=3600, stale-if-error=86400',
    );
    assert.equal(
      cacheControl('latest', { ...CONFIG, staleWhileRevalidate: 0, staleIfError: 0 }),
      'public, max-age=60, s-maxage=3600',
    );
  });

  it('writes zero lifetimes for max-age and s-maxage as they are', () => {
    assert.equal(
      cacheControl('latest', {
        ...CONFIG,
        latestMaxAge: 0,
        latestSMaxAge: 0,
        staleWhileRevalidate: 0,
        staleIfError: 0,
      }),
      'public, max-age=0, s-maxage=0',
    );
  });

  it('marks a pinned version immutable for a year, whatever the configuration', () => {
    assert.equal(cacheControl('version', CONFIG), 'public, max-age=31536000, immutable');
  });

  it('keeps private responses out of every cache', () => {
    assert.equal(cacheControl('private', CONFIG), 'private, no-store');
  });

  it('lets shared caches keep a 404 for notFoundSMaxAge, and browsers ask again', () => {
    assert.equal(cacheControl('missing', CONFIG), 'public, max-age=0, s-maxage=10');
    assert.equal(cacheControl('missing', { ...CONFIG, notFoundSMaxAge: 0 }), 'no-store');
  });

  it('accepts the 2^31 ceiling of delta-seconds', () => {
    assert.equal(
      cacheControl('latest', { ...CONFIG, latestSMaxAge: 2_147_483_648 }),
      'public, max-age=60, s-maxage=2147483648, stale-while-revalidate=30, stale-if-error=86400',
    );
  });

  it('refuses lifetimes that are not delta-seconds', () => {
    for (const key of ['latestMaxAge', 'latestSMaxAge', 'staleWhileRevalidate', 'staleIfError'] as const) {
      for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2_147_483_649]) {
        assert.throws(() => cacheControl('latest', { ...CONFIG, [key]: bad }), RangeError, `${key}=${bad}`);
      }
    }
    for (const bad of [-1, 1.5, 2_147_483_649]) {
      assert.throws(() => cacheControl('missing', { ...CONFIG, notFoundSMaxAge: bad }), RangeError);
    }
  });

  it('refuses an unknown kind', () => {
    assert.throws(() => cacheControl('public' as 'latest', CONFIG), TypeError);
  });
});
