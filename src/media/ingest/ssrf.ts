/**
 * SSRF guard
 * ==========
 *
 * Remote ingest fetches URLs that tenants choose, from inside our network. Without a guard a tenant
 * could make us fetch http://169.254.169.254/ (cloud credentials), http://10.0.0.5:6379/ or anything
 * else only we can reach. The guard works in two steps, both needed:
 *
 * 1. checkUrl(url, policy), before any network: an absolute http(s) URL without credentials, a port in
 *    allowedPorts, a host allowed by allowHosts/denyHosts, and, when the host is an IP literal, a public
 *    address. The WHATWG URL parser has already canonicalised every IPv4 spelling (2130706433, 0177.0.0.1,
 *    0x7f.1, 127.1 all become 127.0.0.1) and every IPv6 one, so only canonical literals reach the checks.
 *    `localhost` and `*.localhost` are judged as the literal 127.0.0.1: RFC 6761 §6.3 says "Name
 *    resolution APIs and libraries SHOULD recognize localhost names as special and SHOULD always return
 *    the IP loopback address for address queries".
 *
 * 2. createGuardedLookup(policy), used as the `lookup` of every http(s).request: it resolves the name
 *    (all addresses) and refuses if ANY address is forbidden, since Node's happy-eyeballs connect may
 *    pick any of them, then hands back exactly the addresses it checked. Node connects to what the
 *    lookup returned, so the checked address is the connected one: no DNS-rebinding window. (Node does
 *    not call the lookup for IP-literal hosts; step 1 covers those.) Pair it with `agent: false` or an
 *    agent of your own: a shared keep-alive agent could reuse a socket opened for another host.
 *
 * An address is forbidden when classifyAddress names a class for it (anything but ordinary public
 * unicast) and no allowAddresses entry covers it. Addresses that embed an IPv4 address are handled so:
 *   ::ffff:0:0/96  IPv4-mapped: the kernel sends IPv4 packets to the embedded address, so it is judged by
 *                  that address (::ffff:8.8.8.8 passes, ::ffff:127.0.0.1 is 'ipv4-mapped').
 *   64:ff9b::/96   NAT64 well-known prefix (RFC 6052): the gateway forwards to the embedded address; a
 *                  DNS64 resolver synthesises these for v4-only names, so they are judged by it ('nat64').
 *   2002::/16      6to4 (RFC 3056): the relay forwards to the embedded address; judged by it ('6to4').
 *   ::/96          IPv4-compatible (deprecated by RFC 4291 §2.5.5.1), 64:ff9b:1::/48 local-use NAT64 (the
 *                  embedding depends on a prefix length we cannot know) and 2001::/32 Teredo (obsolete,
 *                  two embedded addresses, one of them obfuscated): refused outright.
 * Any IPv6 address outside 2000::/3, the global unicast space, is refused as 'reserved'.
 *
 * Not covered: an HTTP proxy resolves names itself, so this guard means nothing behind one; the
 * downloader never uses a proxy.
 */
import { promises as dns, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { domainToASCII } from 'node:url';
import { type Cidr, contains, parseAddress, parseCidr } from '../../grammar/cidr.ts';
import { BadUrlError, ForbiddenAddressError } from './download-errors.ts';

export type AddressClass =
  | 'unspecified'
  | 'this-network'
  | 'loopback'
  | 'private'
  | 'cgnat'
  | 'link-local'
  | 'site-local'
  | 'unique-local'
  | 'cloud-metadata'
  | 'multicast'
  | 'broadcast'
  | 'documentation'
  | 'benchmark'
  | 'reserved'
  | 'ipv4-mapped'
  | 'ipv4-compatible'
  | 'nat64'
  | '6to4'
  | 'teredo'
  | 'invalid';

export interface SsrfPolicy {
  /**
   * CIDRs or single addresses that are permitted whatever their class, as text ('127.0.0.1/32') or
   * parsed (src/grammar/cidr.ts).
   */
  allowAddresses: readonly (string | Cidr)[];
  /** When non-empty, only these hosts: exact names or '*.example.com' (any subdomain, not the apex). */
  allowHosts?: readonly string[];
  /**
   * Hosts refused outright, same patterns as allowHosts; checked first. The setting's default,
   * DEFAULT_DENY_HOSTS (src/config/ingest-settings.ts), names the in-network names.
   */
  denyHosts: readonly string[];
  /** Ports that may be used (the scheme's default port counts as that number); default any. */
  allowedPorts?: readonly number[];
  /** Default both; only narrowing is possible. */
  schemes?: readonly ('http' | 'https')[];
}

/** Resolves a name to all its addresses; the default is the system resolver (dns.lookup, all: true). */
export type Resolver = (hostname: string) => Promise<readonly LookupAddress[]>;

// ---------------------------------------------------------------------------------------------------
// Address classes

type Embedding = 'ipv4-mapped' | 'nat64' | '6to4';
interface Rule extends Cidr {
  class: AddressClass | { embedded: Embedding; shift: bigint };
}

// Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890) plus the metadata
// endpoints of the big clouds. Order does not matter: the longest matching prefix wins.
const RULES: Rule[] = [
  ...rules(4, {
    '0.0.0.0/32': 'unspecified',
    '0.0.0.0/8': 'this-network',
    '10.0.0.0/8': 'private',
    '100.64.0.0/10': 'cgnat',
    '127.0.0.0/8': 'loopback',
    '169.254.0.0/16': 'link-local',
    '172.16.0.0/12': 'private',
    '192.0.0.0/24': 'reserved', // IETF protocol assignments
    '192.0.2.0/24': 'documentation',
    '192.88.99.0/24': 'reserved', // the 6to4 relay anycast, deprecated by RFC 7526
    '192.168.0.0/16': 'private',
    '198.18.0.0/15': 'benchmark',
    '198.51.100.0/24': 'documentation',
    '203.0.113.0/24': 'documentation',
    '224.0.0.0/4': 'multicast',
    '240.0.0.0/4': 'reserved',
    '255.255.255.255/32': 'broadcast',
    '169.254.169.254/32': 'cloud-metadata', // AWS, GCP, Azure, DigitalOcean, OpenStack, Oracle
    '169.254.170.2/32': 'cloud-metadata', // AWS ECS task credentials
    '100.100.100.200/32': 'cloud-metadata', // Alibaba Cloud
    '192.0.0.192/32': 'cloud-metadata', // Oracle Cloud (legacy)
    '168.63.129.16/32': 'cloud-metadata', // Azure WireServer: public space, reachable only inside Azure
  }),
  ...rules(6, {
    '::/128': 'unspecified',
    '::1/128': 'loopback',
    '::/96': 'ipv4-compatible',
    '64:ff9b:1::/48': 'nat64',
    '2001::/23': 'reserved', // IETF protocol assignments
    '2001::/32': 'teredo',
    '2001:2::/48': 'benchmark',
    '2001:db8::/32': 'documentation',
    '3fff::/20': 'documentation',
    'fc00::/7': 'unique-local',
    'fec0::/10': 'site-local',
    'fe80::/10': 'link-local',
    'ff00::/8': 'multicast',
    'fd00:ec2::254/128': 'cloud-metadata', // AWS IMDS over IPv6
  }),
  embedding('::ffff:0:0/96', 'ipv4-mapped', 0n),
  embedding('64:ff9b::/96', 'nat64', 0n),
  embedding('2002::/16', '6to4', 80n), // 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD
].sort((a, b) => b.prefix - a.prefix);

const GLOBAL_UNICAST = parseCidr('2000::/3')!;

/**
 * Why `ip` is not an ordinary public address, or null when it is. Anything that is not an IP address
 * (including an IPv6 literal in brackets) is 'invalid'.
 */
export function classifyAddress(ip: string): AddressClass | null {
  const parsed = parseAddress(ip);
  if (parsed === null) return 'invalid';
  const rule = RULES.find((r) => contains(r, parsed));
  if (rule === undefined) {
    return parsed.family === 6 && !contains(GLOBAL_UNICAST, parsed) ? 'reserved' : null;
  }
  if (typeof rule.class === 'string') return rule.class;
  const v4 = embeddedIPv4(ip)!;
  return classifyAddress(v4) === null ? null : rule.class.embedded;
}

/** The IPv4 address an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address leads to, else null. */
export function embeddedIPv4(ip: string): string | null {
  const parsed = parseAddress(ip);
  if (parsed === null || parsed.family === 4) return null;
  const rule = RULES.find((r) => contains(r, parsed));
  if (rule === undefined || typeof rule.class === 'string') return null;
  const v4 = (parsed.base >> rule.class.shift) & 0xffffffffn;
  return [24n, 16n, 8n, 0n].map((s) => String((v4 >> s) & 0xffn)).join('.');
}

/** The class that makes `ip` forbidden under `policy`, or null when it may be connected to. */
export function judgeAddress(ip: string, policy: SsrfPolicy): AddressClass | null {
  const reason = classifyAddress(ip);
  if (reason === null || reason === 'invalid') return reason;
  const parsed = parseAddress(ip)!;
  // An IPv4-mapped address is plain IPv4 on the wire, so an allowed IPv4 address allows its mapped
  // form too. NAT64 and 6to4 traffic goes to a gateway or relay first: only the IPv6 form can allow it.
  const v4 = reason === 'ipv4-mapped' ? embeddedIPv4(ip) : null;
  const candidates = v4 === null ? [parsed] : [parsed, parseAddress(v4)!];
  const allowed = compile(policy).allow.some((c) => candidates.some((a) => contains(c, a)));
  return allowed ? null : reason;
}

// ---------------------------------------------------------------------------------------------------
// URLs

const DEFAULT_PORT: Record<string, number> = { 'http:': 80, 'https:': 443 };

/**
 * Parses and checks `input` before any network traffic; answers the parsed URL. Throws BadUrlError for
 * something that is not a usable http(s) URL and ForbiddenAddressError for a refused destination.
 */
export function checkUrl(input: string, policy: SsrfPolicy): URL {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new BadUrlError(`not an absolute URL: ${JSON.stringify(input.slice(0, 200))}`);
  }
  const schemes = policy.schemes ?? ['http', 'https'];
  if (!schemes.some((s) => `${s}:` === url.protocol)) {
    throw new BadUrlError(`scheme ${url.protocol} is not allowed (only ${schemes.join(', ')})`);
  }
  // Credentials in a URL end up in logs and job records, and would be sent to every redirect target.
  if (url.username !== '' || url.password !== '') {
    throw new BadUrlError('credentials in the URL (user:password@host) are not accepted');
  }
  const host = bareHost(url);
  const port = url.port === '' ? DEFAULT_PORT[url.protocol]! : Number(url.port);
  const rules = compile(policy);
  if (rules.allowedPorts !== undefined && !rules.allowedPorts.has(port)) {
    throw new ForbiddenAddressError(host, 'port-not-allowed', undefined, `port ${port}`);
  }
  const name = host.replace(/\.$/, '');
  if (matchesHost(rules.denyHosts, name)) throw new ForbiddenAddressError(host, 'host-denied');
  if (rules.allowHosts.length > 0 && !matchesHost(rules.allowHosts, name)) {
    throw new ForbiddenAddressError(host, 'host-not-allowed');
  }
  const literal = isIP(host) !== 0 ? host : isLocalhostName(name) ? '127.0.0.1' : null;
  if (literal !== null) {
    const reason = judgeAddress(literal, policy);
    if (reason !== null) throw refusal(host, literal, reason);
  }
  return url;
}

/** The URL's host without IPv6 brackets: what net.connect and the lookup see. */
export function bareHost(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

function isLocalhostName(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost');
}

// ---------------------------------------------------------------------------------------------------
// Lookup

export const systemResolver: Resolver = (hostname) => dns.lookup(hostname, { all: true, order: 'verbatim' });

/**
 * A dns.lookup-compatible function for http(s).request's `lookup` option. It resolves with `resolve`,
 * refuses with a ForbiddenAddressError when any address is forbidden, and answers the checked addresses
 * (all of them for `all: true`, which Node's autoSelectFamily uses; the first otherwise).
 */
export function createGuardedLookup(policy: SsrfPolicy, resolve: Resolver = systemResolver): LookupFunction {
  compile(policy); // a malformed allowAddresses entry should fail here, at setup, not at the first request
  return (hostname, options, callback) => {
    guardedResolve(hostname, policy, resolve, familyOf(options.family)).then(
      (addresses) => {
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, options.all ? [] : ''),
    );
  };
}

async function guardedResolve(
  hostname: string,
  policy: SsrfPolicy,
  resolve: Resolver,
  family: 0 | 4 | 6,
): Promise<LookupAddress[]> {
  const found =
    isIP(hostname) !== 0 ? [{ address: hostname, family: isIP(hostname) }] : await resolve(hostname);
  // Every address is checked, not only those of the requested family: the answer is judged as a whole.
  for (const { address } of found) {
    const reason = judgeAddress(address, policy);
    if (reason !== null) throw refusal(hostname, address, reason);
  }
  const usable = found
    .map(({ address }) => ({ address, family: isIP(address) }))
    .filter((a) => family === 0 || a.family === family);
  if (usable.length === 0) {
    const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
    err.code = 'ENOTFOUND';
    throw err;
  }
  return usable;
}

function familyOf(f: number | 'IPv4' | 'IPv6' | undefined): 0 | 4 | 6 {
  return f === 4 || f === 'IPv4' ? 4 : f === 6 || f === 'IPv6' ? 6 : 0;
}

function refusal(host: string, address: string, reason: AddressClass): ForbiddenAddressError {
  const v4 = embeddedIPv4(address);
  const detail = v4 === null ? undefined : `embeds ${v4}: ${classifyAddress(v4)}`;
  return new ForbiddenAddressError(host, reason, address, detail);
}

// ---------------------------------------------------------------------------------------------------
// Policy compilation

interface CompiledPolicy {
  allow: Cidr[];
  allowHosts: string[];
  denyHosts: string[];
  allowedPorts: Set<number> | undefined;
}

const compiled = new WeakMap<SsrfPolicy, CompiledPolicy>();

function compile(policy: SsrfPolicy): CompiledPolicy {
  let c = compiled.get(policy);
  if (c === undefined) {
    c = {
      allow: policy.allowAddresses.map((entry) => {
        if (typeof entry !== 'string') return entry;
        const cidr = parseCidr(entry);
        if (cidr === null) throw new TypeError(`allowAddresses: not an address or CIDR: ${entry}`);
        return cidr;
      }),
      allowHosts: (policy.allowHosts ?? []).map(hostPattern),
      denyHosts: policy.denyHosts.map(hostPattern),
      allowedPorts: policy.allowedPorts === undefined ? undefined : new Set(policy.allowedPorts),
    };
    compiled.set(policy, c);
  }
  return c;
}

// Patterns are compared in the form the URL parser gives hosts: lower case, punycode, no trailing dot.
function hostPattern(p: string): string {
  const wild = p.startsWith('*.');
  const ascii = domainToASCII((wild ? p.slice(2) : p).trim().replace(/\.$/, ''));
  if (ascii === '') throw new TypeError(`not a host pattern: ${JSON.stringify(p)}`);
  return wild ? `.${ascii}` : ascii;
}

function matchesHost(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => (p.startsWith('.') ? name.endsWith(p) : name === p));
}

function rules(family: 4 | 6, table: Record<string, AddressClass>): Rule[] {
  return Object.entries(table).map(([cidr, cls]) => {
    const parsed = parseCidr(cidr);
    if (parsed === null || parsed.family !== family) throw new Error(`bad built-in CIDR ${cidr}`);
    return { ...parsed, class: cls };
  });
}

function embedding(cidr: string, embedded: Embedding, shift: bigint): Rule {
  return { ...parseCidr(cidr)!, class: { embedded, shift } };
}
