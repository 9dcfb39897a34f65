import assert from 'node:assert/strict';
import type { LookupAddress, LookupOptions } from 'node:dns';
import http from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import { describe, it } from 'node:test';
import { DEFAULT_DENY_HOSTS } from '../../../src/config/ingest-settings.ts';
import { BadUrlError, ForbiddenAddressError } from '../../../src/media/ingest/download-errors.ts';
import {
  type AddressClass,
  checkUrl,
  classifyAddress,
  createGuardedLookup,
  embeddedIPv4,
  judgeAddress,
  type Resolver,
  type SsrfPolicy,
} from '../../../src/media/ingest/ssrf.ts';

const OPEN: SsrfPolicy = { allowAddresses: [], denyHosts: [] };

// [address, expected class]: every category, with the first and last address of each range and the
// neighbours just outside it.
const V4: [string, AddressClass | null][] = [
  ['0.0.0.0', 'unspecified'],
  ['0.0.0.1', 'this-network'],
  ['0.255.255.255', 'this-network'],
  ['1.0.0.0', null],
  ['9.255.255.255', null],
  ['10.0.0.0', 'private'],
  ['10.255.255.255', 'private'],
  ['11.0.0.0', null],
  ['100.63.255.255', null],
  ['100.64.0.0', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['100.128.0.0', null],
  ['100.100.100.199', 'cgnat'],
  ['100.100.100.200', 'cloud-metadata'],
  ['126.255.255.255', null],
  ['127.0.0.0', 'loopback'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.255', 'loopback'],
  ['128.0.0.0', null],
  ['168.63.129.15', null],
  ['168.63.129.16', 'cloud-metadata'],
  ['169.253.255.255', null],
  ['169.254.0.0', 'link-local'],
  ['169.254.169.253', 'link-local'],
  ['169.254.169.254', 'cloud-metadata'],
  ['169.254.170.2', 'cloud-metadata'],
  ['169.254.255.255', 'link-local'],
  ['169.255.0.0', null],
  ['172.15.255.255', null],
  ['172.16.0.0', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.0', null],
  ['191.255.255.255', null],
  ['192.0.0.0', 'reserved'],
  ['192.0.0.192', 'cloud-metadata'],
  ['192.0.0.255', 'reserved'],
  ['192.0.1.0', null],
  ['192.0.2.0', 'documentation'],
  ['192.0.2.255', 'documentation'],
  ['192.0.3.0', null],
  ['192.88.98.255', null],
  ['192.88.99.0', 'reserved'],
  ['192.88.99.255', 'reserved'],
  ['192.88.100.0', null],
  ['192.167.255.255', null],
  ['192.168.0.0', 'private'],
  ['192.168.255.255', 'private'],
  ['192.169.0.0', null],
  ['198.17.255.255', null],
  ['198.18.0.0', 'benchmark'],
  ['198.19.255.255', 'benchmark'],
  ['198.20.0.0', null],
  ['198.51.99.255', null],
  ['198.51.100.0', 'documentation'],
  ['198.51.100.255', 'documentation'],
  ['198.51.101.0', null],
  ['203.0.112.255', null],
  ['203.0.113.0', 'documentation'],
  ['203.0.113.255', 'documentation'],
  ['203.0.114.0', null],
  ['223.255.255.255', null],
  ['224.0.0.0', 'multicast'],
  ['239.255.255.255', 'multicast'],
  ['240.0.0.0', 'reserved'],
  ['255.255.255.254', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  ['8.8.8.8', null],
  ['1.1.1.1', null],
  ['9.9.9.9', null],
  ['151.101.1.69', null],
];

const V6: [string, AddressClass | null][] = [
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['::2', 'ipv4-compatible'],
  ['::127.0.0.1', 'ipv4-compatible'],
  ['::808:808', 'ipv4-compatible'], // refused outright, even with a public address inside
  ['::ffff:127.0.0.1', 'ipv4-mapped'],
  ['::ffff:7f00:1', 'ipv4-mapped'],
  ['0:0:0:0:0:ffff:c0a8:101', 'ipv4-mapped'],
  ['::ffff:169.254.169.254', 'ipv4-mapped'],
  ['::ffff:0.0.0.0', 'ipv4-mapped'],
  ['::ffff:8.8.8.8', null],
  ['::fffe:808:808', 'reserved'],
  ['::1:0:0:0', 'reserved'],
  ['64:ff9b::7f00:1', 'nat64'],
  ['64:ff9b::a9fe:a9fe', 'nat64'],
  ['64:ff9b::10.0.0.1', 'nat64'],
  ['64:ff9b::808:808', null],
  ['64:ff9b:1::1', 'nat64'],
  ['64:ff9b:1:ffff:ffff:ffff:ffff:ffff', 'nat64'],
  ['64:ff9b:2::', 'reserved'],
  ['100::1', 'reserved'],
  ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['2000::', null],
  ['2001::', 'teredo'],
  ['2001:0:ffff:ffff:ffff:ffff:ffff:ffff', 'teredo'],
  ['2001:1::1', 'reserved'],
  ['2001:2::1', 'benchmark'],
  ['2001:2:0:ffff:ffff:ffff:ffff:ffff', 'benchmark'],
  ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['2001:200::', null],
  ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', null],
  ['2001:db8::', 'documentation'],
  ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
  ['2001:db9::', null],
  ['2002:7f00:1::', '6to4'],
  ['2002:a00:1::1', '6to4'],
  ['2002:c000:204::', '6to4'],
  ['2002:808:808::', null],
  ['3fff::1', 'documentation'],
  ['3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
  ['3fff:1000::', null],
  ['3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null],
  ['4000::1', 'reserved'],
  ['5f00::1', 'reserved'],
  ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['fc00::', 'unique-local'],
  ['fd00:ec2::253', 'unique-local'],
  ['fd00:ec2::254', 'cloud-metadata'],
  ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'unique-local'],
  ['fe00::1', 'reserved'],
  ['fe80::', 'link-local'],
  ['fe80::1%eth0', 'link-local'],
  ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'link-local'],
  ['fec0::1', 'site-local'],
  ['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'site-local'],
  ['ff00::', 'multicast'],
  ['ff02::1', 'multicast'],
  ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'multicast'],
  ['2606:4700::1111', null],
  ['2606:4700:4700::1001', null],
  ['2001:4860:4860::8888', null],
  ['2a00:1450:4001:82a::200e', null],
  ['2620:fe::fe', null],
];

describe('classifyAddress', () => {
  for (const [address, expected] of [...V4, ...V6]) {
    it(`${address} -> ${expected ?? 'public'}`, () => assert.equal(classifyAddress(address), expected));
  }

  it('calls anything that is not an address invalid', () => {
    for (const s of [
      '',
      'foo',
      'localhost',
      '[::1]',
      '1.2.3',
      '256.1.1.1',
      '01.2.3.4',
      '1.2.3.4/32',
      ':::1',
    ]) {
      assert.equal(classifyAddress(s), 'invalid', s);
    }
  });
});

describe('embeddedIPv4', () => {
  it('extracts the address behind IPv4-mapped, NAT64 and 6to4 prefixes', () => {
    assert.equal(embeddedIPv4('::ffff:7f00:1'), '127.0.0.1');
    assert.equal(embeddedIPv4('64:ff9b::a9fe:a9fe'), '169.254.169.254');
    assert.equal(embeddedIPv4('2002:c0a8:101:1::5'), '192.168.1.1');
  });

  it('answers null for everything else', () => {
    for (const s of [
      '127.0.0.1',
      '::1',
      '::7f00:1',
      '2001::1',
      '64:ff9b:1::7f00:1',
      '2606:4700::1111',
      'x',
    ]) {
      assert.equal(embeddedIPv4(s), null, s);
    }
  });
});

describe('judgeAddress', () => {
  const policy: SsrfPolicy = { allowAddresses: ['127.0.0.1/32', '10.0.0.0/8', '::1'], denyHosts: [] };

  it('lets allowAddresses override the class, and nothing more', () => {
    assert.equal(judgeAddress('127.0.0.1', policy), null);
    assert.equal(judgeAddress('127.0.0.2', policy), 'loopback');
    assert.equal(judgeAddress('10.200.0.1', policy), null);
    assert.equal(judgeAddress('172.16.0.1', policy), 'private');
    assert.equal(judgeAddress('::1', policy), null);
    assert.equal(judgeAddress('8.8.8.8', policy), null);
  });

  it('allows the IPv4-mapped form of an allowed IPv4 address, but not its NAT64 or 6to4 forms', () => {
    assert.equal(judgeAddress('::ffff:127.0.0.1', policy), null);
    assert.equal(judgeAddress('64:ff9b::7f00:1', policy), 'nat64');
    assert.equal(judgeAddress('2002:7f00:1::', policy), '6to4');
  });

  it('never allows something that is not an address', () => {
    assert.equal(judgeAddress('foo', { allowAddresses: ['0.0.0.0/0', '::/0'], denyHosts: [] }), 'invalid');
  });

  it('refuses a malformed allowAddresses entry', () => {
    assert.throws(
      () => judgeAddress('127.0.0.1', { allowAddresses: ['127.0.0.1/40'], denyHosts: [] }),
      TypeError,
    );
  });
});

function forbidden(url: string, policy: SsrfPolicy, reason: string): void {
  assert.throws(
    () => checkUrl(url, policy),
    (err: unknown) => {
      assert.ok(err instanceof ForbiddenAddressError, `${url}: ${String(err)}`);
      assert.equal(err.reason, reason, url);
      assert.equal(err.code, 'ssrf_forbidden');
      assert.equal(err.retryable, false);
      return true;
    },
  );
}

describe('checkUrl', () => {
  it('accepts public http(s) URLs and answers the parsed URL', () => {
    for (const u of [
      'https://example.com/a.jpg',
      'http://8.8.8.8/',
      'http://[2606:4700::1111]:8080/x',
      'http://172.32.0.1/',
    ]) {
      assert.equal(checkUrl(u, OPEN).href, new URL(u).href);
    }
    assert.equal(checkUrl('HTTP://Example.COM', OPEN).href, 'http://example.com/');
  });

  it('refuses non-public literal hosts in every spelling the URL parser canonicalises', () => {
    const cases: [string, string][] = [
      ['http://127.0.0.1/', 'loopback'],
      ['http://localhost/', 'loopback'],
      ['http://LOCALHOST./', 'loopback'],
      ['http://cdn.localhost:8080/', 'loopback'],
      ['http://[::1]/', 'loopback'],
      ['http://10.1.2.3/', 'private'],
      ['http://172.16.0.1/', 'private'],
      ['http://172.31.255.255/', 'private'],
      ['http://192.168.1.1/', 'private'],
      ['http://169.254.169.254/latest/meta-data/', 'cloud-metadata'],
      ['http://100.100.100.200/', 'cloud-metadata'],
      ['http://[fd00:ec2::254]/', 'cloud-metadata'],
      ['http://0.0.0.0/', 'unspecified'],
      ['http://[::]/', 'unspecified'],
      ['http://[::ffff:127.0.0.1]/', 'ipv4-mapped'],
      ['http://[0:0:0:0:0:ffff:7f00:1]/', 'ipv4-mapped'],
      ['http://[64:ff9b::a9fe:a9fe]/', 'nat64'],
      ['http://[::127.0.0.1]/', 'ipv4-compatible'],
      ['http://[fe80::1]/', 'link-local'],
      ['http://2130706433/', 'loopback'],
      ['http://0177.0.0.1/', 'loopback'],
      ['http://0x7f000001/', 'loopback'],
      ['http://0x7f.1/', 'loopback'],
      ['http://127.1/', 'loopback'],
      ['http://%31%32%37.0.0.1/', 'loopback'],
      ['http://0xa9fea9fe/', 'cloud-metadata'],
      ['https://3232235777/', 'private'], // 192.168.1.1
    ];
    for (const [url, reason] of cases) forbidden(url, OPEN, reason);
  });

  it('refuses URLs that are not absolute http(s) URLs without credentials', () => {
    for (const u of [
      'ftp://example.com/a',
      'file:///etc/passwd',
      'gopher://example.com/',
      'javascript:alert(1)',
      'data:text/plain,hi',
      'ws://example.com/',
      'http://user:pass@example.com/',
      'http://user@example.com/',
      'http://:pass@example.com/',
      'not a url',
      '/relative/path',
      '',
    ]) {
      assert.throws(() => checkUrl(u, OPEN), BadUrlError, u);
    }
  });

  it('narrows the schemes and ports when the policy says so', () => {
    const policy: SsrfPolicy = { ...OPEN, schemes: ['https'], allowedPorts: [443, 8443] };
    assert.throws(() => checkUrl('http://example.com/', policy), BadUrlError);
    assert.equal(checkUrl('https://example.com/', policy).host, 'example.com');
    assert.equal(checkUrl('https://example.com:8443/', policy).port, '8443');
    forbidden('https://example.com:8080/', policy, 'port-not-allowed');
    forbidden('http://example.com/', { ...OPEN, allowedPorts: [443] }, 'port-not-allowed');
  });

  it('applies denyHosts (exact names and *.suffix patterns, trailing dot and case ignored)', () => {
    const policy: SsrfPolicy = { ...OPEN, denyHosts: ['metadata.google.internal', '*.corp.example'] };
    forbidden('http://metadata.google.internal/', policy, 'host-denied');
    forbidden('http://METADATA.google.internal./', policy, 'host-denied');
    forbidden('http://a.b.corp.example/', policy, 'host-denied');
    assert.doesNotThrow(() => checkUrl('http://corp.example/', policy));
    assert.doesNotThrow(() => checkUrl('http://evilcorp.example/', policy));
  });

  it('denies in-network names with DEFAULT_DENY_HOSTS', () => {
    const policy: SsrfPolicy = { ...OPEN, denyHosts: DEFAULT_DENY_HOSTS };
    for (const u of ['http://metadata.google.internal/', 'http://nas.local/', 'http://router.home.arpa/']) {
      forbidden(u, policy, 'host-denied');
    }
    assert.doesNotThrow(() => checkUrl('https://example.com/', policy));
  });

  it('with allowHosts, refuses every other host, IP literals included; denyHosts still wins', () => {
    const policy: SsrfPolicy = {
      ...OPEN,
      allowHosts: ['cdn.example.com', '*.media.example.org', 'münchen.de'],
      denyHosts: ['bad.media.example.org'],
    };
    for (const u of [
      'https://cdn.example.com/x',
      'https://a.media.example.org/',
      'https://x.y.media.example.org/',
    ]) {
      assert.doesNotThrow(() => checkUrl(u, policy), u);
    }
    assert.doesNotThrow(() => checkUrl('https://MÜNCHEN.de/', policy));
    for (const u of [
      'https://media.example.org/',
      'https://evil-cdn.example.com/',
      'https://cdn.example.com.evil.net/',
      'http://8.8.8.8/',
    ]) {
      forbidden(u, policy, 'host-not-allowed');
    }
    forbidden('https://bad.media.example.org/', policy, 'host-denied');
  });

  it('lets allowAddresses through, localhost included, and only those addresses', () => {
    const policy: SsrfPolicy = { allowAddresses: ['127.0.0.1/32'], denyHosts: [] };
    assert.doesNotThrow(() => checkUrl('http://127.0.0.1:8080/', policy));
    assert.doesNotThrow(() => checkUrl('http://localhost:8080/', policy));
    forbidden('http://127.0.0.2/', policy, 'loopback');
    forbidden('http://[::1]/', policy, 'loopback');
  });

  it('names the host and the address in the error', () => {
    try {
      checkUrl('http://[::ffff:a9fe:a9fe]/', OPEN);
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof ForbiddenAddressError);
      assert.equal(err.host, '::ffff:a9fe:a9fe');
      assert.equal(err.address, '::ffff:a9fe:a9fe');
      assert.match(err.message, /embeds 169\.254\.169\.254: cloud-metadata/);
    }
  });
});

function lookupP(lookup: LookupFunction, host: string, options: LookupOptions & { all?: boolean }) {
  return new Promise<{ address: string | LookupAddress[]; family?: number }>((resolve, reject) => {
    lookup(host, options, (err, address, family) => (err ? reject(err) : resolve({ address, family })));
  });
}

function resolverOf(table: Record<string, string[]>): Resolver & { calls: string[] } {
  const calls: string[] = [];
  const resolve = async (host: string) => {
    calls.push(host);
    return (table[host] ?? []).map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolve, { calls });
}

async function refused(p: Promise<unknown>, reason: string, address?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ForbiddenAddressError, String(err));
    assert.equal(err.reason, reason);
    if (address !== undefined) assert.equal(err.address, address);
    return true;
  });
}

describe('createGuardedLookup', () => {
  const resolver = resolverOf({
    'public.test': ['8.8.8.8', '2606:4700::1111'],
    'loop.test': ['127.0.0.1'],
    'mixed.test': ['8.8.8.8', '10.0.0.1'],
    'mixed-first.test': ['10.0.0.1', '8.8.8.8'],
    'mixed6.test': ['2606:4700::1111', '::1'],
    'mapped.test': ['::ffff:169.254.169.254'],
  });
  const lookup = createGuardedLookup(OPEN, resolver);

  it('answers every checked address for all: true, and the first one otherwise', async () => {
    assert.deepEqual((await lookupP(lookup, 'public.test', { all: true })).address, [
      { address: '8.8.8.8', family: 4 },
      { address: '2606:4700::1111', family: 6 },
    ]);
    assert.deepEqual(await lookupP(lookup, 'public.test', {}), { address: '8.8.8.8', family: 4 });
    assert.deepEqual(await lookupP(lookup, 'public.test', { family: 6 }), {
      address: '2606:4700::1111',
      family: 6,
    });
  });

  it('refuses a name that resolves to a forbidden address', async () => {
    await refused(lookupP(lookup, 'loop.test', { all: true }), 'loopback', '127.0.0.1');
    await refused(lookupP(lookup, 'mapped.test', {}), 'ipv4-mapped', '::ffff:169.254.169.254');
  });

  it('refuses when ANY address is forbidden, whatever the order or the family asked for', async () => {
    await refused(lookupP(lookup, 'mixed.test', { all: true }), 'private', '10.0.0.1');
    await refused(lookupP(lookup, 'mixed-first.test', {}), 'private', '10.0.0.1');
    await refused(lookupP(lookup, 'mixed6.test', { all: true }), 'loopback', '::1');
    await refused(lookupP(lookup, 'mixed6.test', { family: 4 }), 'loopback', '::1');
  });

  it('reports ENOTFOUND when nothing (of the family asked for) is left', async () => {
    await assert.rejects(lookupP(lookup, 'nowhere.test', { all: true }), { code: 'ENOTFOUND' });
    await assert.rejects(
      lookupP(createGuardedLookup(OPEN, resolverOf({ x: ['8.8.8.8'] })), 'x', { family: 6 }),
      {
        code: 'ENOTFOUND',
      },
    );
  });

  it('judges IP literals without resolving them', async () => {
    const r = resolverOf({});
    const l = createGuardedLookup(OPEN, r);
    assert.deepEqual(await lookupP(l, '8.8.8.8', {}), { address: '8.8.8.8', family: 4 });
    await refused(lookupP(l, '169.254.169.254', { all: true }), 'cloud-metadata');
    assert.deepEqual(r.calls, []);
  });

  it('passes resolver failures through unchanged', async () => {
    const failing: Resolver = async () => {
      throw Object.assign(new Error('getaddrinfo EAI_AGAIN x'), { code: 'EAI_AGAIN' });
    };
    await assert.rejects(lookupP(createGuardedLookup(OPEN, failing), 'x', {}), { code: 'EAI_AGAIN' });
  });

  it('lets allowAddresses override, per address', async () => {
    const policy: SsrfPolicy = { allowAddresses: ['127.0.0.1/32'], denyHosts: [] };
    const l = createGuardedLookup(policy, resolverOf({ a: ['127.0.0.1'], b: ['127.0.0.1', '127.0.0.2'] }));
    assert.deepEqual(await lookupP(l, 'a', {}), { address: '127.0.0.1', family: 4 });
    await refused(lookupP(l, 'b', {}), 'loopback', '127.0.0.2');
  });

  it('refuses a malformed policy when it is created', () => {
    assert.throws(() => createGuardedLookup({ allowAddresses: ['nope'], denyHosts: [] }), TypeError);
    assert.throws(() => createGuardedLookup({ allowAddresses: [], denyHosts: ['*.'] }), TypeError);
  });

  it('refuses localhost through the system resolver', async () => {
    await refused(lookupP(createGuardedLookup(OPEN), 'localhost', { all: true }), 'loopback');
  });
});

describe('createGuardedLookup inside http.request', () => {
  async function recordingServer(host: string) {
    const hits: string[] = [];
    const server = http.createServer((req, res) => {
      hits.push(req.url ?? '');
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    return { hits, server, port: (server.address() as AddressInfo).port };
  }

  function get(url: string, lookup: LookupFunction, autoSelectFamily: boolean) {
    return new Promise<number>((resolve, reject) => {
      // autoSelectFamily is honoured by net.connect but missing from ClientRequestArgs; with it Node asks
      // the lookup for all addresses, without it for one.
      const options: http.RequestOptions = Object.assign({ agent: false, lookup }, { autoSelectFamily });
      const req = http.request(url, options, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  }

  for (const autoSelectFamily of [true, false]) {
    it(`surfaces the ForbiddenAddressError itself and never connects (autoSelectFamily: ${autoSelectFamily})`, async () => {
      const { hits, server, port } = await recordingServer('127.0.0.1');
      try {
        const lookup = createGuardedLookup(OPEN, resolverOf({ 'media.test': ['127.0.0.1'] }));
        await refused(
          get(`http://media.test:${port}/secret`, lookup, autoSelectFamily),
          'loopback',
          '127.0.0.1',
        );
        assert.deepEqual(hits, []);
      } finally {
        server.close();
      }
    });
  }

  it('connects to the address it checked, and checks again on every connection', async () => {
    const a = await recordingServer('127.0.0.1');
    const b = await recordingServer('127.0.0.2');
    try {
      // A rebinding name: the first answer is the allowed address, the second a forbidden one.
      const answers = [['127.0.0.1'], ['127.0.0.2']];
      const rebinding: Resolver = async () =>
        (answers.shift() ?? []).map((address) => ({ address, family: 4 }));
      const policy: SsrfPolicy = { allowAddresses: ['127.0.0.1'], denyHosts: [] };
      const lookup = createGuardedLookup(policy, rebinding);
      assert.equal(await get(`http://media.test:${a.port}/one`, lookup, true), 200);
      await refused(get(`http://media.test:${b.port}/two`, lookup, true), 'loopback', '127.0.0.2');
      assert.deepEqual(a.hits, ['/one']);
      assert.deepEqual(b.hits, []);
    } finally {
      a.server.close();
      b.server.close();
    }
  });
});
