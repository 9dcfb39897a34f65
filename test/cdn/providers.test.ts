import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { BunnyProvider } from '../../src/cdn/providers/bunny.ts';
import { CLOUDFLARE_MAX_PURGE_ITEMS, CloudflareProvider } from '../../src/cdn/providers/cloudflare.ts';
import { CloudFrontProvider } from '../../src/cdn/providers/cloudfront.ts';
import { FASTLY_MAX_KEYS, FastlyProvider } from '../../src/cdn/providers/fastly.ts';
import { VarnishProvider } from '../../src/cdn/providers/varnish.ts';
import { startBunnyServer } from '../helpers/cdn/bunny-server.ts';
import { startCloudflareServer } from '../helpers/cdn/cloudflare-server.ts';
import { startCloudFrontServer } from '../helpers/cdn/cloudfront-server.ts';
import { startFastlyServer } from '../helpers/cdn/fastly-server.ts';
import { header } from '../helpers/cdn/http-loopback.ts';
import { startVarnishServer } from '../helpers/cdn/varnish-server.ts';
import { cdnProviderContract } from './provider-contract.ts';

/** Long enough for a loaded machine to answer a loopback call; short enough for the hung-server test. */
const TIMEOUT_MS = 1500;

async function cloudflare() {
  const server = await startCloudflareServer({ zoneId: 'zone-1', apiToken: 'cf-token' });
  const provider = new CloudflareProvider({
    name: 'cf',
    baseUrl: 'https://cdn.example.com/',
    apiUrl: server.url,
    apiToken: 'cf-token',
    zoneId: 'zone-1',
    timeoutMs: TIMEOUT_MS,
  });
  return { provider, server };
}

async function bunny() {
  const server = await startBunnyServer({ pullZoneId: '42', accessKey: 'bunny-key' });
  const provider = new BunnyProvider({
    name: 'bunny',
    baseUrl: 'https://conveyor.b-cdn.net',
    apiUrl: server.url,
    accessKey: 'bunny-key',
    pullZoneId: '42',
    tokenKey: 'token-key',
    timeoutMs: TIMEOUT_MS,
  });
  return { provider, server };
}

async function fastly() {
  const server = await startFastlyServer({ serviceId: 'svc-1', apiToken: 'fastly-token' });
  const provider = new FastlyProvider({
    name: 'fastly',
    baseUrl: 'https://media.example.org',
    apiUrl: server.url,
    apiToken: 'fastly-token',
    serviceId: 'svc-1',
    timeoutMs: TIMEOUT_MS,
  });
  return { provider, server };
}

async function varnish() {
  const server = await startVarnishServer({ maxTags: 64 });
  const provider = new VarnishProvider({
    name: 'varnish',
    baseUrl: 'http://edge.example.net',
    apiUrl: server.url,
    maxTags: 64,
    timeoutMs: TIMEOUT_MS,
  });
  return { provider, server };
}

cdnProviderContract('Cloudflare', cloudflare);
cdnProviderContract('Bunny', bunny);
cdnProviderContract('Fastly', fastly);
cdnProviderContract('Varnish', varnish);
cdnProviderContract('CloudFront', async () => {
  const server = await startCloudFrontServer({ domain: 'https://d111111abcdef8.cloudfront.net' });
  const provider = new CloudFrontProvider({
    name: 'cloudfront',
    baseUrl: 'https://d111111abcdef8.cloudfront.net',
    distributionId: server.distributionId,
    apiUrl: server.url,
    cloudwatchUrl: server.url,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    timeoutMs: TIMEOUT_MS,
  });
  return { provider, server };
});

describe('Cloudflare', () => {
  it('sends the API token as Bearer and the purge body the API documents', async () => {
    const { provider, server } = await cloudflare();
    try {
      const result = await provider.purge({ kind: 'prefixes', items: ['https://cdn.example.com/v/abc/'] });
      assert.match(result.id ?? '', /^[0-9a-f]{32}$/);
      const [call] = server.calls;
      assert.equal(call!.url, '/client/v4/zones/zone-1/purge_cache');
      assert.equal(header(call!, 'authorization'), 'Bearer cf-token');
      assert.deepEqual(JSON.parse(call!.body), { prefixes: ['cdn.example.com/v/abc/'] });
      await provider.purge({ kind: 'all' });
      assert.deepEqual(JSON.parse(server.calls[1]!.body), { purge_everything: true });
    } finally {
      await server.close();
    }
  });

  it('takes 100 items per purge: the API refuses 101, and the provider never sends them', async () => {
    const { provider, server } = await cloudflare();
    try {
      assert.equal(provider.capabilities.purge.tags?.maxItems, CLOUDFLARE_MAX_PURGE_ITEMS);
      const tags = Array.from({ length: CLOUDFLARE_MAX_PURGE_ITEMS + 1 }, (_, i) => `t${i}`);
      const direct = await fetch(`${server.url}/zones/zone-1/purge_cache`, {
        method: 'POST',
        headers: { authorization: 'Bearer cf-token', 'content-type': 'application/json' },
        body: JSON.stringify({ tags }),
      });
      assert.equal(direct.status, 400);
      assert.equal(((await direct.json()) as { success: boolean }).success, false);
      await assert.rejects(provider.purge({ kind: 'tags', items: tags }), { retryable: false });
      assert.equal(server.calls.length, 1, 'only the direct call reached the server');
    } finally {
      await server.close();
    }
  });

  it('reads the hit ratio from cached requests over requests', async () => {
    const { provider, server } = await cloudflare();
    try {
      const [day] = await provider.usage!(new Date('2024-05-04T00:00:00Z'), new Date('2024-05-05T00:00:00Z'));
      assert.deepEqual(day, { day: '2024-05-04', bytes: 4_000_000, requests: 400, cacheHitRatio: 0.9 });
      const query = JSON.parse(server.calls[0]!.body) as { query: string };
      assert.match(query.query, /httpRequests1dGroups/);
    } finally {
      await server.close();
    }
  });

  it('a wrong token is a 403 in the v4 envelope, not retryable', async () => {
    const server = await startCloudflareServer({ zoneId: 'zone-1', apiToken: 'cf-token' });
    const provider = new CloudflareProvider({
      name: 'cf',
      baseUrl: 'https://cdn.example.com',
      apiUrl: server.url,
      apiToken: 'wrong',
      zoneId: 'zone-1',
      timeoutMs: TIMEOUT_MS,
    });
    try {
      await assert.rejects(provider.purge({ kind: 'all' }), (error: Error & { status: number }) => {
        assert.equal(error.status, 403);
        assert.match(error.message, /Authentication error/);
        assert.doesNotMatch(error.message, /wrong/, 'the token is not in the message');
        return true;
      });
    } finally {
      await server.close();
    }
  });
});

describe('Bunny', () => {
  it('sends AccessKey, a URL purge in the query and a tag purge as CacheTag', async () => {
    const { provider, server } = await bunny();
    try {
      await provider.purge({ kind: 'urls', items: ['https://conveyor.b-cdn.net/a/x?w=100'] });
      await provider.purge({ kind: 'tags', items: ['asset-1'] });
      await provider.purge({ kind: 'prefixes', items: ['https://conveyor.b-cdn.net/v/abc/'] });
      const [url, tag, prefix] = server.calls;
      assert.equal(header(url!, 'accesskey'), 'bunny-key');
      assert.equal(
        new URL(url!.url, 'http://x').searchParams.get('url'),
        'https://conveyor.b-cdn.net/a/x?w=100',
      );
      assert.equal(tag!.url, '/pullzone/42/purgeCache');
      assert.deepEqual(JSON.parse(tag!.body), { CacheTag: 'asset-1' });
      assert.equal(
        new URL(prefix!.url, 'http://x').searchParams.get('url'),
        'https://conveyor.b-cdn.net/v/abc/*',
      );
    } finally {
      await server.close();
    }
  });

  /** The documented algorithm, written again here from Bunny's page, independent of the provider. */
  function expectedToken(
    key: string,
    path: string,
    expires: number,
    params: Record<string, string>,
    ip = '',
  ) {
    const data = Object.keys(params)
      .sort()
      .map((k) => `${k}=${params[k]}`)
      .join('&');
    return createHash('sha256')
      .update(`${key}${path}${expires}${data}${ip}`)
      .digest('base64')
      .replaceAll('+', '-')
      .replaceAll('/', '_')
      .replaceAll('=', '');
  }

  it('signs one URL with the SHA-256 token in the query', async () => {
    const { provider, server } = await bunny();
    await server.close();
    const expiresAt = new Date('2030-01-01T00:00:00Z');
    const expires = expiresAt.getTime() / 1000;
    const signed = new URL(
      provider.sign!({ url: 'https://conveyor.b-cdn.net/a/abc/photo.jpg?w=300', expiresAt }).url,
    );
    assert.equal(signed.pathname, '/a/abc/photo.jpg');
    assert.equal(signed.searchParams.get('expires'), String(expires));
    assert.equal(signed.searchParams.get('w'), '300');
    assert.equal(
      signed.searchParams.get('token'),
      expectedToken('token-key', '/a/abc/photo.jpg', expires, { w: '300' }),
    );
    const locked = new URL(
      provider.sign!({ url: 'https://conveyor.b-cdn.net/a/x.jpg', expiresAt, clientIp: '203.0.113.9' }).url,
    );
    assert.equal(
      locked.searchParams.get('token'),
      expectedToken('token-key', '/a/x.jpg', expires, {}, '203.0.113.9'),
    );
  });

  it('signs an HLS folder with a directory token in the path, token_path in the signature', async () => {
    const { provider, server } = await bunny();
    await server.close();
    const expiresAt = new Date('2030-01-01T00:00:00Z');
    const expires = expiresAt.getTime() / 1000;
    const { url } = provider.sign!({
      url: 'https://conveyor.b-cdn.net/v/abc/1/master.m3u8',
      expiresAt,
      prefix: true,
    });
    const match =
      /^https:\/\/conveyor\.b-cdn\.net\/bcdn_token=([^&]+)&expires=(\d+)&token_path=([^/]+)(\/.*)$/.exec(url);
    assert.ok(match, url);
    assert.equal(match[2], String(expires));
    assert.equal(decodeURIComponent(match[3]!), '/v/abc/1/');
    assert.equal(match[4], '/v/abc/1/master.m3u8');
    assert.equal(match[1], expectedToken('token-key', '/v/abc/1/', expires, { token_path: '/v/abc/1/' }));
  });

  it('does not sign without the pull zone token key', () => {
    const provider = new BunnyProvider({
      name: 'b',
      baseUrl: 'https://x.b-cdn.net',
      accessKey: 'k',
      pullZoneId: '1',
      timeoutMs: TIMEOUT_MS,
    });
    assert.equal(provider.capabilities.signing, false);
    assert.equal(provider.sign, undefined);
  });

  it('a CacheTag list is refused by the API (one tag per purge)', async () => {
    const { server } = await bunny();
    try {
      const direct = await fetch(`${server.url}/pullzone/42/purgeCache`, {
        method: 'POST',
        headers: { accesskey: 'bunny-key', 'content-type': 'application/json' },
        body: JSON.stringify({ CacheTag: ['a', 'b'] }),
      });
      assert.equal(direct.status, 400);
      assert.equal(((await direct.json()) as { Field: string }).Field, 'CacheTag');
    } finally {
      await server.close();
    }
  });
});

describe('Fastly', () => {
  it('purges up to 256 keys in the Surrogate-Key header; the API refuses 257', async () => {
    const { provider, server } = await fastly();
    try {
      assert.equal(provider.capabilities.purge.tags?.maxItems, FASTLY_MAX_KEYS);
      const keys = Array.from({ length: FASTLY_MAX_KEYS }, (_, i) => `k${i}`);
      await provider.purge({ kind: 'tags', items: keys });
      const [call] = server.calls;
      assert.equal(call!.url, '/service/svc-1/purge');
      assert.equal(header(call!, 'fastly-key'), 'fastly-token');
      assert.equal(header(call!, 'surrogate-key'), keys.join(' '));
      assert.equal(header(call!, 'fastly-soft-purge'), undefined, 'hard unless asked');
      const direct = await fetch(`${server.url}/service/svc-1/purge`, {
        method: 'POST',
        headers: { 'fastly-key': 'fastly-token', 'surrogate-key': [...keys, 'one-more'].join(' ') },
      });
      assert.equal(direct.status, 400);
    } finally {
      await server.close();
    }
  });

  it('a soft purge sends Fastly-Soft-Purge: 1 for keys and URLs, never for purge-all', async () => {
    const { provider, server } = await fastly();
    try {
      await provider.purge({ kind: 'tags', items: ['a'], soft: true });
      const result = await provider.purge({
        kind: 'urls',
        items: ['https://media.example.org/a/x.jpg'],
        soft: true,
      });
      await provider.purge({ kind: 'all' });
      const [tags, url, all] = server.calls;
      assert.equal(header(tags!, 'fastly-soft-purge'), '1');
      assert.equal(header(url!, 'fastly-soft-purge'), '1');
      assert.equal(url!.url, '/purge/media.example.org/a/x.jpg');
      assert.ok(result.id);
      assert.equal(all!.url, '/service/svc-1/purge_all');
      assert.equal(header(all!, 'fastly-soft-purge'), undefined);
    } finally {
      await server.close();
    }
  });

  it('reads daily historical stats', async () => {
    const { provider, server } = await fastly();
    try {
      const usage = await provider.usage!(new Date('2024-05-10T00:00:00Z'), new Date('2024-05-11T00:00:00Z'));
      assert.deepEqual(usage, [{ day: '2024-05-10', bytes: 10_000_000, requests: 1000, cacheHitRatio: 0.9 }]);
      const query = new URL(server.calls[0]!.url, 'http://x').searchParams;
      assert.equal(query.get('by'), 'day');
      assert.equal(query.get('from'), String(Date.parse('2024-05-10T00:00:00Z') / 1000));
    } finally {
      await server.close();
    }
  });
});

describe('Varnish', () => {
  it('purges a URL with PURGE under its public host, and tags through xkey headers', async () => {
    const { provider, server } = await varnish();
    try {
      await provider.purge({ kind: 'urls', items: ['http://edge.example.net/a/abc?w=10'] });
      await provider.purge({ kind: 'tags', items: ['asset-1', 'version-2'] });
      await provider.purge({ kind: 'tags', items: ['tenant-3'], soft: true });
      const [url, tags, soft] = server.calls;
      assert.equal(url!.method, 'PURGE');
      assert.equal(url!.url, '/a/abc?w=10');
      assert.equal(header(url!, 'host'), 'edge.example.net');
      assert.equal(header(tags!, 'xkey-purge'), 'asset-1 version-2');
      assert.equal(header(soft!, 'xkey-softpurge'), 'tenant-3');
      assert.equal(header(soft!, 'xkey-purge'), undefined);
    } finally {
      await server.close();
    }
  });

  // The loopback server's parser (Node's) knows only registered methods, so the test uses DELETE.
  it('uses the configured method', async () => {
    const server = await startVarnishServer({ maxTags: 8, method: 'DELETE' });
    const provider = new VarnishProvider({
      name: 'v',
      baseUrl: 'http://edge.example.net',
      apiUrl: server.url,
      purgeMethod: 'DELETE',
      timeoutMs: TIMEOUT_MS,
    });
    try {
      await provider.purge({ kind: 'tags', items: ['a'] });
      assert.equal(server.calls[0]!.method, 'DELETE');
    } finally {
      await server.close();
    }
  });
});
