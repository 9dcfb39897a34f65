import assert from 'node:assert/strict';
import { createVerify, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { CdnError, type SignedAccess } from '../../src/cdn/provider.ts';
import { CloudFrontProvider } from '../../src/cdn/providers/cloudfront.ts';

/**
 * CloudFront's edge check, written from the Developer Guide and not from the signer: the canned policy
 * `{"Statement":[{"Resource":"<base URL>","Condition":{"DateLessThan":{"AWS:EpochTime":<Expires>}}}]}`
 * is rebuilt from the URL, a custom policy is read from `Policy`; the signature is RSA-SHA1 over the
 * policy, both in CloudFront's base64 (`+` as `-`, `=` as `_`, `/` as `~`); the resource matches with `*`
 * (zero or more characters) and `?` (exactly one); `DateLessThan` and `IpAddress` hold.
 */
function cloudFrontAllows(
  publicKey: KeyObject,
  keyPairId: string,
  requested: string,
  access: { cookies?: Readonly<Record<string, string>> },
  viewer: { now: number; ip: string },
): boolean {
  const [base, query = ''] = requested.split('?') as [string, string?];
  const own: string[] = [];
  const signed = new Map<string, string>();
  for (const pair of query.split('&').filter(Boolean)) {
    const name = pair.slice(0, pair.indexOf('='));
    if (['Expires', 'Policy', 'Signature', 'Key-Pair-Id'].includes(name)) {
      signed.set(name, decodeURIComponent(pair.slice(name.length + 1)));
    } else own.push(pair);
  }
  for (const [name, value] of Object.entries(access.cookies ?? {}))
    signed.set(name.replace('CloudFront-', ''), value);
  const resourceUrl = own.length > 0 ? `${base}?${own.join('&')}` : base;
  if (signed.get('Key-Pair-Id') !== keyPairId || !signed.has('Signature')) return false;
  let policy: string;
  if (signed.has('Policy')) policy = fromCloudFrontBase64(signed.get('Policy')!).toString('utf8');
  else if (signed.has('Expires')) {
    policy = `{"Statement":[{"Resource":"${resourceUrl}","Condition":{"DateLessThan":{"AWS:EpochTime":${signed.get('Expires')}}}}]}`;
  } else return false;
  const verifier = createVerify('RSA-SHA1').update(policy);
  if (!verifier.verify(publicKey, fromCloudFrontBase64(signed.get('Signature')!))) return false;
  const statement = JSON.parse(policy).Statement[0];
  const pattern = new RegExp(
    `^${statement.Resource.replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  if (!pattern.test(resourceUrl)) return false;
  if (!(viewer.now < statement.Condition.DateLessThan['AWS:EpochTime'])) return false;
  const range = statement.Condition.IpAddress?.['AWS:SourceIp'];
  return range === undefined || inRange(viewer.ip, range);
}

function fromCloudFrontBase64(text: string): Buffer {
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '=').replace(/~/g, '/'), 'base64');
}

function inRange(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/') as [string, string];
  const toInt = (a: string) => a.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(bits));
  return Math.floor(toInt(ip) / size) === Math.floor(toInt(net) / size);
}

const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const KEY_ID = 'K2JCJMDEHXQW5F';
const provider = new CloudFrontProvider({
  name: 'cf-sign',
  baseUrl: 'https://cdn.example.com',
  distributionId: 'E2EXAMPLE0DIST',
  keyPairId: KEY_ID,
  privateKey: keys.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
  apiUrl: 'http://127.0.0.1:9',
  cloudwatchUrl: 'http://127.0.0.1:9',
  accessKeyId: 'AKIA',
  secretAccessKey: 'unused',
  timeoutMs: 1_000,
});
const expiresAt = new Date('2030-01-01T00:00:00.900Z');
const EXPIRES = Date.parse('2030-01-01T00:00:00Z') / 1000;
const before = { now: EXPIRES - 1, ip: '192.0.2.10' };
const after = { now: EXPIRES, ip: '192.0.2.10' };

function allows(requested: string, access: SignedAccess, viewer = before, cookiesOnly = false): boolean {
  return cloudFrontAllows(
    keys.publicKey,
    KEY_ID,
    requested,
    cookiesOnly ? { cookies: access.cookies! } : {},
    viewer,
  );
}

describe('CloudFront signed URLs and cookies', () => {
  it('offers signing only with a key', () => {
    assert.equal(provider.capabilities.signing, true);
    const unsigned = new CloudFrontProvider({
      name: 'x',
      baseUrl: 'https://a',
      distributionId: 'E',
      timeoutMs: 1,
    });
    assert.equal(unsigned.capabilities.signing, false);
    assert.equal(unsigned.sign, undefined);
    assert.throws(
      () =>
        new CloudFrontProvider({
          name: 'x',
          baseUrl: 'https://a',
          distributionId: 'E',
          keyPairId: 'K',
          timeoutMs: 1,
        }),
    );
  });

  it('signs one URL with a canned policy that verifies with the public key until it expires', () => {
    const access = provider.sign!({ url: 'https://cdn.example.com/a/asset/v1/photo.jpg', expiresAt });
    const url = new URL(access.url);
    assert.deepEqual([...url.searchParams.keys()].sort(), ['Expires', 'Key-Pair-Id', 'Signature']);
    assert.equal(
      url.searchParams.get('Expires'),
      String(EXPIRES),
      'whole seconds, never past the time asked',
    );
    assert.match(url.searchParams.get('Signature')!, /^[A-Za-z0-9~_-]+$/, "CloudFront's base64 alphabet");
    assert.equal(access.cookies, undefined);
    assert.equal(allows(access.url, access), true);
    assert.equal(allows(access.url, access, after), false, 'expired');
  });

  it('a tampered URL, expiry or signature, or another key, fails verification', () => {
    const access = provider.sign!({ url: 'https://cdn.example.com/a/asset/v1/photo.jpg', expiresAt });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    const variants = [
      access.url.replace('/v1/', '/v2/'),
      access.url.replace(`Expires=${EXPIRES}`, `Expires=${EXPIRES + 3600}`),
      access.url.replace(/Signature=(.)/, (_, c: string) => `Signature=${c === 'A' ? 'B' : 'A'}`),
      access.url.replace(`Key-Pair-Id=${KEY_ID}`, 'Key-Pair-Id=KOTHER'),
    ];
    for (const tampered of variants) assert.equal(allows(tampered, access), false, tampered);
    assert.equal(cloudFrontAllows(other, KEY_ID, access.url, {}, before), false);
  });

  it('signs a URL whose path needs escaping in the form a viewer requests it', () => {
    const access = provider.sign!({ url: 'https://cdn.example.com/a/my photo é.jpg', expiresAt });
    assert.ok(access.url.startsWith('https://cdn.example.com/a/my%20photo%20%C3%A9.jpg?Expires='));
    assert.equal(allows(access.url, access), true);
  });

  it('signs a prefix with a custom policy and cookies that cover the folder and nothing outside it', () => {
    const access = provider.sign!({
      url: 'https://cdn.example.com/v/abc/master.m3u8',
      expiresAt,
      prefix: true,
    });
    const url = new URL(access.url);
    assert.deepEqual([...url.searchParams.keys()].sort(), ['Key-Pair-Id', 'Policy', 'Signature']);
    const policy = JSON.parse(fromCloudFrontBase64(url.searchParams.get('Policy')!).toString('utf8'));
    assert.deepEqual(policy, {
      Statement: [
        {
          Resource: 'https://cdn.example.com/v/abc/*',
          Condition: { DateLessThan: { 'AWS:EpochTime': EXPIRES } },
        },
      ],
    });
    assert.deepEqual(Object.keys(access.cookies!).sort(), [
      'CloudFront-Key-Pair-Id',
      'CloudFront-Policy',
      'CloudFront-Signature',
    ]);
    assert.equal(allows(access.url, access), true, 'the signed URL itself');
    assert.equal(allows('https://cdn.example.com/v/abc/720p/segment-00042.ts', access, before, true), true);
    assert.equal(allows('https://cdn.example.com/v/abc/master.m3u8', access, after, true), false, 'expired');
    assert.equal(allows('https://cdn.example.com/v/abd/segment-1.ts', access, before, true), false);
    assert.equal(allows('https://cdn.example.com/v/segment-1.ts', access, before, true), false);
    assert.equal(allows('https://other.example.com/v/abc/segment-1.ts', access, before, true), false);
    const folder = provider.sign!({ url: 'https://cdn.example.com/v/abc/', expiresAt, prefix: true });
    assert.equal(allows('https://cdn.example.com/v/abc/init.mp4', folder, before, true), true);
  });

  it('restricts to a client address with a custom policy; an IPv6 address is refused', () => {
    const access = provider.sign!({
      url: 'https://cdn.example.com/a/x.jpg',
      expiresAt,
      clientIp: '192.0.2.10',
    });
    assert.ok(new URL(access.url).searchParams.has('Policy'));
    assert.equal(allows(access.url, access), true);
    assert.equal(allows(access.url, access, { now: before.now, ip: '192.0.2.11' }), false);
    assert.equal(allows('https://cdn.example.com/a/y.jpg', access, before, true), false, 'one URL only');
    assert.throws(
      () => provider.sign!({ url: 'https://cdn.example.com/a/x.jpg', expiresAt, clientIp: '2001:db8::1' }),
      (error: unknown) => error instanceof CdnError && !error.retryable && error.provider === 'cf-sign',
    );
  });
});
