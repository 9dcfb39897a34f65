import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { CdnProvider } from '../../src/cdn/provider.ts';
import { CloudFrontProvider, cloudfrontFromEntry } from '../../src/cdn/providers/cloudfront.ts';
import { createProviders } from '../../src/cdn/registry.ts';
import { ConfigError, loadConfig } from '../../src/config/config.ts';

const ENTRIES = [
  { name: 'cf', kind: 'cloudflare', baseUrl: 'https://cdn.example.com/', apiToken: 't', zoneId: 'z' },
  {
    name: 'bunny',
    kind: 'bunny',
    baseUrl: 'https://x.b-cdn.net',
    accessKey: 'k',
    pullZoneId: '1',
    timeoutMs: 500,
  },
  { name: 'fastly', kind: 'fastly', baseUrl: 'https://m.example.org', apiToken: 't', serviceId: 's' },
  { name: 'edge', kind: 'varnish', baseUrl: 'http://edge.example.net', apiUrl: 'http://127.0.0.1:6081' },
];

/** The setting's text: `value` as JSON, or as it is when it is already text. */
function load(value: unknown, env: Record<string, string> = {}) {
  return loadConfig(env, { cdnProviders: typeof value === 'string' ? value : JSON.stringify(value) });
}

function problems(value: unknown): string[] {
  try {
    load(value);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('CONVEYOR_CDN_PROVIDERS', () => {
  it('parses every kind, with the default timeout where an entry sets none', () => {
    const config = load(ENTRIES, { CONVEYOR_CDN_TIMEOUT_MS: '2500' });
    assert.deepEqual(
      config.cdnProviders?.map((e) => [e.name, e.kind, e.timeoutMs, e.baseUrl]),
      [
        ['cf', 'cloudflare', 2500, 'https://cdn.example.com'],
        ['bunny', 'bunny', 500, 'https://x.b-cdn.net'],
        ['fastly', 'fastly', 2500, 'https://m.example.org'],
        ['edge', 'varnish', 2500, 'http://edge.example.net'],
      ],
    );
    assert.equal(loadConfig({}).cdnProviders, undefined, 'unset: no CDN');
  });

  it('names the setting and the entry in every problem', () => {
    const [missing] = problems([
      ENTRIES[0],
      { name: 'b2', kind: 'bunny', baseUrl: 'https://x', accessKey: 'k' },
    ]);
    assert.match(missing!, /^CONVEYOR_CDN_PROVIDERS \(override\): entry 2 \("b2"\): pullZoneId: required$/);
    assert.match(
      problems([{ ...ENTRIES[0], kind: 'akamai' }])[0]!,
      /entry 1 \("cf"\): kind: expected one of/,
    );
    assert.match(problems([ENTRIES[0], ENTRIES[0]])[0]!, /entry 2 \("cf"\): name "cf" is used twice/);
    assert.match(problems([{ ...ENTRIES[0], zoneID: 'z' }])[0]!, /unknown option zoneID for kind cloudflare/);
    assert.match(
      problems([{ ...ENTRIES[3], apiUrl: undefined }])[0]!,
      /entry 1 \("edge"\): apiUrl: required/,
    );
    assert.match(problems([{ ...ENTRIES[0], baseUrl: 'ftp://x' }])[0]!, /baseUrl: expected http/);
    assert.match(
      problems([{ ...ENTRIES[1], timeoutMs: 5 }])[0]!,
      /timeoutMs: expected an integer in 100\.\./,
    );
    assert.match(problems({})[0]!, /expected a JSON array/);
    assert.match(problems('[')[0]!, /not JSON/);
    const cloudfront = {
      name: 'cfr',
      kind: 'cloudfront',
      baseUrl: 'https://d.cloudfront.net',
      distributionId: 'E1',
    };
    assert.match(
      problems([{ ...cloudfront, keyPairId: 'K' }])[0]!,
      /keyPairId and privateKeyFile go together/,
    );
  });

  it('is a secret: the config shown to operators does not hold the credentials', async () => {
    const { redactedConfig } = await import('../../src/config/config.ts');
    const shown = redactedConfig(load(ENTRIES));
    assert.equal(shown['cdnProviders'], '[redacted]');
  });
});

describe('createProviders', () => {
  it('builds the four HTTP providers in order', () => {
    const providers = createProviders(load(ENTRIES));
    assert.deepEqual(
      providers.map((p) => [p.name, p.kind, p.baseUrl]),
      [
        ['cf', 'cloudflare', 'https://cdn.example.com'],
        ['bunny', 'bunny', 'https://x.b-cdn.net'],
        ['fastly', 'fastly', 'https://m.example.org'],
        ['edge', 'varnish', 'http://edge.example.net'],
      ],
    );
    assert.deepEqual(createProviders(loadConfig({})), []);
  });

  const cloudfront = {
    name: 'cfr',
    kind: 'cloudfront',
    baseUrl: 'https://d111.cloudfront.net',
    distributionId: 'E1',
    keyPairId: 'K1',
    privateKeyFile: '/etc/conveyor/cf.pem',
  };

  it('a cloudfront entry without its factory is a ConfigError naming it', () => {
    const config = load([ENTRIES[0], cloudfront]);
    assert.equal(config.cdnProviders?.[1]?.kind, 'cloudfront');
    assert.throws(
      () => createProviders(config),
      (error: unknown) =>
        error instanceof ConfigError &&
        /"cfr" is a cloudfront provider, which is not built in this process/.test(error.problems[0]!),
    );
  });

  it('a cloudfront entry goes to the factory handed in', () => {
    const seen: unknown[] = [];
    const providers = createProviders(load([cloudfront]), {
      cloudfront: (entry) => {
        seen.push(entry);
        return { name: entry.name, kind: 'cloudfront', baseUrl: entry.baseUrl } as unknown as CdnProvider;
      },
    });
    assert.equal(providers[0]?.name, 'cfr');
    assert.deepEqual(seen, [{ ...cloudfront, region: 'us-east-1', timeoutMs: 10_000 }]);
  });

  it("cloudfrontFromEntry builds the CloudFront provider, its key read from the entry's file", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'conveyor-cf-'));
    try {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const file = join(dir, 'cf.pem');
      await writeFile(file, privateKey.export({ type: 'pkcs1', format: 'pem' }));
      const [provider] = createProviders(load([{ ...cloudfront, privateKeyFile: file }]), {
        cloudfront: cloudfrontFromEntry,
      });
      assert.ok(provider instanceof CloudFrontProvider);
      assert.equal(provider.capabilities.signing, true);
      const signed = provider.sign!({
        url: 'https://d111.cloudfront.net/v/ver_1',
        expiresAt: new Date(Date.now() + 60_000),
      });
      assert.match(signed.url, /Key-Pair-Id=K1/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
