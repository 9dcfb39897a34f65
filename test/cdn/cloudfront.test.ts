import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { CdnError, type PurgeRequest } from '../../src/cdn/provider.ts';
import {
  type CloudFrontOptions,
  CloudFrontProvider,
  invalidationPath,
} from '../../src/cdn/providers/cloudfront.ts';
import {
  type CloudFrontServer,
  type CloudFrontServerOptions,
  startCloudFrontServer,
} from '../helpers/cdn/cloudfront-server.ts';

const BASE = 'https://cdn.example.com';

async function setup(
  t: TestContext,
  serverOptions: CloudFrontServerOptions = {},
  extra: Partial<CloudFrontOptions> = {},
): Promise<{ server: CloudFrontServer; provider: CloudFrontProvider }> {
  const server = await startCloudFrontServer({ domain: BASE, ...serverOptions });
  t.after(() => server.close());
  const provider = new CloudFrontProvider({
    name: 'cf-test',
    baseUrl: `${BASE}/`,
    distributionId: server.distributionId,
    apiUrl: server.url,
    cloudwatchUrl: server.url,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    timeoutMs: 5_000,
    ...extra,
  });
  return { server, provider };
}

async function rejectsWith(promise: Promise<unknown>, check: (error: CdnError) => void): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof CdnError, `expected a CdnError, got ${String(error)}`);
    assert.equal(error.provider, 'cf-test');
    check(error);
    return true;
  });
}

const urls = (n: number) => Array.from({ length: n }, (_, i) => `${BASE}/a/asset-${i}/v1/file.jpg`);
const folders = (n: number) => Array.from({ length: n }, (_, i) => `${BASE}/v/asset-${i}/`);

describe('CloudFront invalidations', () => {
  it('sends URLs and prefixes as invalidation paths, SigV4-signed, with a fresh CallerReference each call', async (t) => {
    const { server, provider } = await setup(t);
    assert.equal(provider.baseUrl, BASE);
    const first = await provider.purge({ kind: 'urls', items: [`${BASE}/a/x.jpg`, '/b/y.m3u8'] });
    const second = await provider.purge({ kind: 'prefixes', items: [`${BASE}/v/abc/`] });
    const third = await provider.purge({ kind: 'all' });
    assert.deepEqual(
      server.invalidations.map((i) => i.paths),
      [['/a/x.jpg', '/b/y.m3u8'], ['/v/abc/*'], ['/*']],
    );
    assert.deepEqual(
      [first.id, second.id, third.id],
      server.invalidations.map((i) => i.id),
    );
    const references = server.invalidations.map((i) => i.callerReference);
    assert.equal(new Set(references).size, 3, 'each call has its own CallerReference');
    for (const call of server.calls) {
      assert.equal(call.method, 'POST');
      assert.equal(call.url, `/2020-05-31/distribution/${server.distributionId}/invalidation`);
      assert.match(
        String(call.headers.authorization),
        new RegExp(`^AWS4-HMAC-SHA256 Credential=${server.accessKeyId}/`),
      );
      assert.match(
        call.body,
        /<InvalidationBatch xmlns="http:\/\/cloudfront.amazonaws.com\/doc\/2020-05-31\/">/,
      );
    }
    assert.deepEqual(server.purged(), [
      { kind: 'urls', item: `${BASE}/a/x.jpg` },
      { kind: 'urls', item: `${BASE}/b/y.m3u8` },
      { kind: 'prefixes', item: `${BASE}/v/abc/` },
      { kind: 'all', item: `${BASE}/` },
    ]);
  });

  it('URL-encodes non-ASCII and RFC 1738 unsafe characters only, and refuses what is no path', () => {
    assert.equal(invalidationPath('/a b/é.jpg', false), '/a%20b/%C3%A9.jpg');
    assert.equal(
      invalidationPath(`${BASE}/a b/é.jpg`, false),
      '/a%20b/%C3%A9.jpg',
      'a URL is not encoded twice',
    );
    assert.equal(invalidationPath('/a/{x}|^~[1]`"<>.ts', false), '/a/%7Bx%7D%7C%5E%7E%5B1%5D%60%22%3C%3E.ts');
    assert.equal(invalidationPath("/keep/$-_.+!'(),;:@&=/x?q=1", false), "/keep/$-_.+!'(),;:@&=/x?q=1");
    assert.equal(invalidationPath('/100%25/a', false), '/100%25/a');
    assert.equal(invalidationPath('/50%/a', false), '/50%25/a');
    assert.equal(invalidationPath('/v/abc/', true), '/v/abc/*');
    assert.equal(invalidationPath('relative/path', false), null);
    assert.equal(invalidationPath('/a*/b', false), null, 'a wildcard only at the end, and only for prefixes');
    assert.equal(invalidationPath(`/${'x'.repeat(4000)}`, false), null, 'over 4,000 characters');
  });

  it('declares the documented limits, no tags and no soft purge, and refuses past them before calling', async (t) => {
    const { server, provider } = await setup(t);
    assert.deepEqual(provider.capabilities.purge, {
      urls: { maxItems: 3000 },
      prefixes: { maxItems: 15 },
      all: { maxItems: 1 },
    });
    assert.equal(provider.capabilities.softPurge, false);
    assert.equal(provider.tagHeader, null);
    const refused: PurgeRequest[] = [
      { kind: 'urls', items: urls(3001) },
      { kind: 'prefixes', items: folders(16) },
      { kind: 'tags', items: ['asset-1'] },
      { kind: 'urls', items: [] },
      { kind: 'urls', items: [`${BASE}/a*b`] },
    ];
    for (const request of refused) {
      await rejectsWith(provider.purge(request), (e) => assert.equal(e.retryable, false));
    }
    assert.equal(server.calls.length, 0);
    await provider.purge({ kind: 'urls', items: urls(3000) });
    await provider.purge({ kind: 'prefixes', items: folders(15) });
    assert.deepEqual(
      server.invalidations.map((i) => i.paths.length),
      [3000, 15],
    );
  });

  it('TooManyInvalidationsInProgress is a retryable 429 until invalidations complete', async (t) => {
    const { server, provider } = await setup(t, { holdInvalidations: true });
    await provider.purge({ kind: 'urls', items: urls(2999) });
    await provider.purge({ kind: 'prefixes', items: folders(15) });
    await provider.purge({ kind: 'urls', items: [`${BASE}/last.jpg`] });
    for (const request of [
      { kind: 'urls', items: [`${BASE}/one-more.jpg`] },
      { kind: 'all' },
    ] satisfies PurgeRequest[]) {
      await rejectsWith(provider.purge(request), (e) => {
        assert.equal(e.status, 429);
        assert.equal(e.retryable, true);
        assert.equal(e.retryAfterMs, null, 'CloudFront gives no Retry-After');
        assert.match(e.message, /400 TooManyInvalidationsInProgress/);
      });
    }
    server.completeInvalidations();
    await provider.purge({ kind: 'all' });
    await provider.purge({ kind: 'urls', items: [`${BASE}/one-more.jpg`] });
    assert.equal(server.invalidations.length, 5);
  });
});

describe('CloudFront failures', () => {
  it('429 and 5xx are retryable with Retry-After read as seconds or a date; the SDK does not retry', async (t) => {
    const { server, provider } = await setup(t);
    const purge = () => provider.purge({ kind: 'urls', items: [`${BASE}/x.jpg`] });
    server.failNext(429, { retryAfter: '7' });
    await rejectsWith(purge(), (e) =>
      assert.deepEqual([e.status, e.retryable, e.retryAfterMs], [429, true, 7000]),
    );
    server.failNext(503, { retryAfter: new Date(Date.now() + 60_000).toUTCString() });
    await rejectsWith(purge(), (e) => {
      assert.deepEqual([e.status, e.retryable], [503, true]);
      assert.ok(e.retryAfterMs !== null && e.retryAfterMs > 0 && e.retryAfterMs <= 60_000);
    });
    for (const status of [500, 502]) {
      server.failNext(status);
      await rejectsWith(purge(), (e) =>
        assert.deepEqual([e.status, e.retryable, e.retryAfterMs], [status, true, null]),
      );
    }
    assert.equal(server.calls.length, 4, 'one API call per purge');
    assert.equal(server.invalidations.length, 0);
  });

  it('bad input, access denied and a missing distribution are not retryable', async (t) => {
    const { server, provider } = await setup(t);
    const purge = () => provider.purge({ kind: 'all' });
    for (const status of [400, 401, 403, 404]) {
      server.failNext(status);
      await rejectsWith(purge(), (e) => assert.deepEqual([e.status, e.retryable], [status, false]));
    }
    const wrongKey = new CloudFrontProvider({
      name: 'cf-test',
      baseUrl: BASE,
      distributionId: server.distributionId,
      apiUrl: server.url,
      accessKeyId: 'AKIAOTHER',
      secretAccessKey: 'other',
      timeoutMs: 5_000,
    });
    await rejectsWith(wrongKey.purge({ kind: 'all' }), (e) =>
      assert.deepEqual([e.status, e.retryable], [403, false]),
    );
    const { provider: elsewhere } = await setup(t, {}, { distributionId: 'ENOSUCHDIST' });
    await rejectsWith(elsewhere.purge({ kind: 'all' }), (e) =>
      assert.deepEqual([e.status, e.retryable], [404, false]),
    );
  });

  it('a server that is gone, or does not answer in time, is retryable with no status; an abort stops a call', async (t) => {
    const { server, provider } = await setup(t, {}, { timeoutMs: 200 });
    server.hangNext();
    await rejectsWith(provider.purge({ kind: 'all' }), (e) => {
      assert.deepEqual([e.status, e.retryable], [null, true]);
      assert.match(e.message, /timed out/);
    });
    const controller = new AbortController();
    controller.abort();
    await rejectsWith(provider.purge({ kind: 'all' }, controller.signal), (e) =>
      assert.equal(e.status, null),
    );
    await server.close();
    await rejectsWith(provider.purge({ kind: 'all' }), (e) =>
      assert.deepEqual([e.status, e.retryable], [null, true]),
    );
    await rejectsWith(provider.usage(new Date('2024-05-03'), new Date('2024-05-04')), (e) =>
      assert.deepEqual([e.status, e.retryable], [null, true]),
    );
  });
});

describe('CloudFront usage from CloudWatch', () => {
  it('reads Requests, BytesDownloaded and CacheHitRate per UTC day of [from, to)', async (t) => {
    const { server, provider } = await setup(t, {
      metrics: (day) =>
        day === '2024-05-04'
          ? null
          : day === '2024-05-05'
            ? { requests: 10, bytes: 2048 }
            : { requests: 1500, bytes: 123_456_789_012, cacheHitRate: 87.5 },
    });
    const usage = await provider.usage(new Date('2024-05-03T06:00:00Z'), new Date('2024-05-06T00:00:00Z'));
    assert.deepEqual(usage, [
      { day: '2024-05-03', requests: 1500, bytes: 123_456_789_012, cacheHitRatio: 0.875 },
      { day: '2024-05-04', requests: 0, bytes: 0, cacheHitRatio: null },
      { day: '2024-05-05', requests: 10, bytes: 2048, cacheHitRatio: null },
    ]);
    assert.equal(server.calls.length, 1);
    const call = server.calls[0]!;
    assert.equal(call.headers['x-amz-target'], 'GraniteServiceVersion20100801.GetMetricData');
    assert.match(String(call.headers.authorization), /\/us-east-1\/monitoring\/aws4_request/);
    const body = JSON.parse(call.body);
    assert.equal(body.StartTime, Date.parse('2024-05-03T00:00:00Z') / 1000, 'days start at UTC midnight');
    assert.equal(body.EndTime, Date.parse('2024-05-06T00:00:00Z') / 1000);
    assert.deepEqual(
      body.MetricDataQueries.map((q: any) => [
        q.MetricStat.Metric.MetricName,
        q.MetricStat.Stat,
        q.MetricStat.Period,
      ]),
      [
        ['Requests', 'Sum', 86400],
        ['BytesDownloaded', 'Sum', 86400],
        ['CacheHitRate', 'Average', 86400],
      ],
    );
    for (const q of body.MetricDataQueries) {
      assert.equal(q.MetricStat.Metric.Namespace, 'AWS/CloudFront');
      assert.deepEqual(q.MetricStat.Metric.Dimensions, [
        { Name: 'DistributionId', Value: server.distributionId },
        { Name: 'Region', Value: 'Global' },
      ]);
    }
  });

  it('follows NextToken across pages, and asks nothing for an empty range', async (t) => {
    const { server, provider } = await setup(t, { pageDays: 2 });
    const usage = await provider.usage(new Date('2024-05-01T00:00:00Z'), new Date('2024-05-06T00:00:00Z'));
    assert.deepEqual(
      usage.map((u) => [u.day, u.requests]),
      [1, 2, 3, 4, 5].map((n) => [`2024-05-0${n}`, 1000 * n]),
    );
    assert.equal(server.calls.length, 3);
    assert.deepEqual(
      await provider.usage(new Date('2024-05-03T06:00:00Z'), new Date('2024-05-03T06:00:00Z')),
      [],
    );
    assert.equal(server.calls.length, 3);
  });

  it('CloudWatch failures are CdnErrors with the same retry rules', async (t) => {
    const { server, provider } = await setup(t);
    const read = () => provider.usage(new Date('2024-05-03'), new Date('2024-05-04'));
    server.failNext(503, { retryAfter: '2' });
    await rejectsWith(read(), (e) =>
      assert.deepEqual([e.status, e.retryable, e.retryAfterMs], [503, true, 2000]),
    );
    server.failNext(429);
    await rejectsWith(read(), (e) => assert.deepEqual([e.status, e.retryable], [429, true]));
    server.failNext(400);
    await rejectsWith(read(), (e) => assert.deepEqual([e.status, e.retryable], [400, false]));
    assert.equal((await read()).length, 1);
  });
});
