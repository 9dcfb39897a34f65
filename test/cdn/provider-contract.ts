import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CdnError, type CdnProvider, type PurgeKind, type PurgeRequest } from '../../src/cdn/provider.ts';
import type { LoopbackCdn } from '../helpers/cdn/loopback.ts';

/**
 * The CdnProvider contract (src/cdn/provider.ts), run against one provider and a loopback server that
 * speaks its documented API. `setup` is called for every test and returns a provider configured against
 * a fresh server. The server's own checks (auth, batch limits, body shapes) answer 4xx to a provider
 * that gets them wrong, so a purge that succeeds here was sent as the API documents it.
 *
 * A server that can also leave a call unanswered (`hangNext`, as test/helpers/cdn/http-loopback.ts
 * offers) gets the timeout test; the provider should then time out within a second or two.
 */

const KINDS: PurgeKind[] = ['urls', 'tags', 'prefixes', 'all'];

/** The same resource, whether named with or without the scheme (Cloudflare's prefixes, Fastly's URLs). */
function resource(item: string): string {
  return item.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
}

function itemsFor(provider: CdnProvider, kind: Exclude<PurgeKind, 'all'>, count: number): string[] {
  return Array.from({ length: count }, (_, i) => {
    if (kind === 'urls') return `${provider.baseUrl}/a/asset-${i}/v1/file-${i}.jpg`;
    if (kind === 'prefixes') return `${provider.baseUrl}/v/asset-${i}/`;
    return `asset-${i}`;
  });
}

function request(provider: CdnProvider, kind: PurgeKind, count: number): PurgeRequest {
  return kind === 'all' ? { kind } : { kind, items: itemsFor(provider, kind, count) };
}

async function rejectsWith(promise: Promise<unknown>, check: (error: CdnError) => void): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof CdnError, `expected a CdnError, got ${String(error)}`);
    check(error);
    return true;
  });
}

export function cdnProviderContract(
  label: string,
  setup: () => Promise<{ provider: CdnProvider; server: LoopbackCdn }>,
): void {
  describe(`CdnProvider contract: ${label}`, () => {
    let provider: CdnProvider;
    let server: LoopbackCdn;
    beforeEach(async () => {
      ({ provider, server } = await setup());
    });
    afterEach(async () => {
      await server.close();
    });

    const declared = (): PurgeKind[] => KINDS.filter((k) => provider.capabilities.purge[k] !== undefined);
    /** A small purge the provider declares, for the failure tests. */
    const anyPurge = (): PurgeRequest => request(provider, declared()[0]!, 1);

    it('declares what it is: a name, a kind, a base URL without a trailing slash, sane limits', () => {
      assert.ok(provider.name.length > 0);
      assert.ok(!provider.baseUrl.endsWith('/'));
      assert.ok(declared().length > 0, 'purges something');
      for (const kind of declared()) {
        const max = provider.capabilities.purge[kind]!.maxItems;
        assert.ok(Number.isSafeInteger(max) && max >= 1, `${kind}: maxItems ${max}`);
      }
      assert.equal(provider.capabilities.signing, typeof provider.sign === 'function');
      assert.equal(provider.capabilities.usage, typeof provider.usage === 'function');
      if (provider.tagHeader) {
        assert.ok(provider.tagHeader.maxBytes > 0);
        assert.ok([',', ' '].includes(provider.tagHeader.separator));
      }
    });

    for (const kind of KINDS) {
      it(`purges ${kind} at its largest batch in one call, or refuses it unsent when undeclared`, async () => {
        const limit = provider.capabilities.purge[kind];
        if (!limit) {
          await rejectsWith(provider.purge(request(provider, kind, 1)), (error) => {
            assert.equal(error.retryable, false);
          });
          assert.equal(server.calls.length, 0, `${label} does not purge ${kind}: nothing is sent`);
          return;
        }
        const purge = request(provider, kind, limit.maxItems);
        const result = await provider.purge(purge);
        assert.equal(typeof result, 'object');
        assert.equal(server.calls.length, 1, 'one API call');
        const purged = server.purged();
        if (purge.kind === 'all') {
          assert.deepEqual(
            purged.map((p) => p.kind),
            ['all'],
          );
        } else {
          assert.deepEqual(
            purged.map((p) => ({ kind: p.kind, item: resource(p.item) })),
            purge.items.map((item) => ({ kind, item: resource(item) })),
          );
        }
      });
    }

    it('never sends an undeclared kind, nor a batch past its limit', async () => {
      for (const kind of KINDS) {
        const limit = provider.capabilities.purge[kind];
        if (limit && kind === 'all') continue;
        const purge = request(provider, kind, limit ? limit.maxItems + 1 : 1);
        await rejectsWith(provider.purge(purge), (error) => {
          assert.equal(error.retryable, false);
          assert.equal(error.provider, provider.name);
        });
      }
      assert.equal(server.calls.length, 0, 'nothing reached the API');
      assert.deepEqual(server.purged(), []);
    });

    it('a 429 with Retry-After in seconds is retryable after that long', async () => {
      server.failNext(429, { retryAfter: '7' });
      await rejectsWith(provider.purge(anyPurge()), (error) => {
        assert.equal(error.status, 429);
        assert.equal(error.retryable, true);
        assert.equal(error.retryAfterMs, 7000);
      });
      assert.deepEqual(server.purged(), [], 'the failed call purged nothing');
      await provider.purge(anyPurge());
      assert.equal(server.purged().length > 0, true, 'the next call goes through');
    });

    it('a 429 with Retry-After as an HTTP date is retryable until then', async () => {
      const until = new Date(Date.now() + 60_000);
      server.failNext(429, { retryAfter: until.toUTCString() });
      await rejectsWith(provider.purge(anyPurge()), (error) => {
        assert.equal(error.retryable, true);
        // The date has whole seconds: up to a second earlier than `until`, and no later.
        assert.ok(error.retryAfterMs !== null && error.retryAfterMs > 0 && error.retryAfterMs <= 60_000);
      });
    });

    for (const status of [500, 502, 503]) {
      it(`${status} is retryable, without Retry-After`, async () => {
        server.failNext(status);
        await rejectsWith(provider.purge(anyPurge()), (error) => {
          assert.equal(error.status, status);
          assert.equal(error.retryable, true);
          assert.equal(error.retryAfterMs, null);
        });
      });
    }

    for (const status of [400, 401, 403, 404]) {
      it(`${status} is not retryable`, async () => {
        server.failNext(status);
        await rejectsWith(provider.purge(anyPurge()), (error) => {
          assert.equal(error.status, status);
          assert.equal(error.retryable, false);
        });
      });
    }

    it('a server that is gone is a retryable failure with no status', async () => {
      await server.close();
      await rejectsWith(provider.purge(anyPurge()), (error) => {
        assert.equal(error.status, null);
        assert.equal(error.retryable, true);
      });
    });

    it('a server that never answers times out, retryable with no status', async (t) => {
      const hang = (server as Partial<{ hangNext(): void }>).hangNext;
      if (!hang) {
        t.skip('this loopback server cannot hold a call unanswered');
        return;
      }
      hang.call(server);
      await rejectsWith(provider.purge(anyPurge()), (error) => {
        assert.equal(error.status, null);
        assert.equal(error.retryable, true);
      });
    });

    it("the caller's abort stops a call", async () => {
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(provider.purge(anyPurge(), controller.signal));
    });

    it('reads usage for the days asked, as numbers, when it declares usage', async () => {
      if (!provider.usage) {
        assert.equal(provider.capabilities.usage, false, `${label} reports no usage, and says so`);
        return;
      }
      // [May 3 06:00, May 6 00:00): May 3, 4 and 5.
      const usage = await provider.usage(new Date('2024-05-03T06:00:00Z'), new Date('2024-05-06T00:00:00Z'));
      assert.deepEqual(
        usage.map((u) => u.day),
        ['2024-05-03', '2024-05-04', '2024-05-05'],
      );
      for (const day of usage) {
        assert.ok(Number.isFinite(day.bytes) && day.bytes >= 0, `bytes ${day.bytes}`);
        assert.ok(Number.isFinite(day.requests) && day.requests >= 0, `requests ${day.requests}`);
        const ratio = day.cacheHitRatio;
        assert.ok(ratio === null || (ratio >= 0 && ratio <= 1), `ratio ${ratio}`);
      }
      assert.deepEqual(
        await provider.usage(new Date('2024-05-03T00:00:00Z'), new Date('2024-05-03T00:00:00Z')),
        [],
      );
    });

    it('usage failures are CdnErrors too', async () => {
      if (!provider.usage) {
        assert.equal(provider.capabilities.usage, false, `${label} reports no usage, and says so`);
        return;
      }
      server.failNext(503, { retryAfter: '2' });
      await rejectsWith(
        provider.usage(new Date('2024-05-03T00:00:00Z'), new Date('2024-05-04T00:00:00Z')),
        (e) => {
          assert.equal(e.retryable, true);
          assert.equal(e.retryAfterMs, 2000);
        },
      );
    });
  });
}
