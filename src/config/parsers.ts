import { isLane, LANES, type Lane } from '../glossary.ts';
import { type Cidr, parseCidr } from '../grammar/cidr.ts';
import {
  PRESET_NAME,
  parseOptions,
  type TransformLimits,
  type TransformPresets,
} from '../grammar/transform-options.ts';
import { OUTPUT_FORMATS, type OutputFormat } from '../grammar/transform-spec.ts';

/**
 * The grammars of the settings written as text: lists, kind maps, ports, host patterns, CIDRs, output
 * formats and transform presets. The loader runs them once, at start-up, and the code reads the typed
 * values they return; each throws a message naming the bad entry, which the loader reports with the
 * setting's name. The CLI's flags that repeat a setting (`conveyor worker --lanes`) use the same ones.
 */

const HOST_PATTERN = /^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$/i;

/** `a, b,,c` -> ['a', 'b', 'c']: comma-separated, blanks around and empty items ignored. */
export function parseList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** An optional list that names nothing is unset: undefined rather than []. */
export function unlessEmpty<T>(list: T[]): T[] | undefined {
  return list.length === 0 ? undefined : list;
}

/** `critical,high` -> lanes. */
export function parseLanes(value: string): Lane[] {
  const items = parseList(value);
  const bad = items.filter((l) => !isLane(l));
  if (bad.length > 0) throw new Error(`unknown lanes ${bad.join(', ')}; expected ${LANES.join(', ')}`);
  return items as Lane[];
}

/** `avatar=critical,post=high` -> a kind -> lane map, which must name the kind `default`. */
export function parseKindLanes(value: string): Readonly<Record<string, Lane>> {
  const out: Record<string, Lane> = {};
  for (const item of parseList(value)) {
    const match = /^([a-z][a-z0-9_-]{0,31})\s*=\s*([a-z]+)$/.exec(item);
    if (!match || !isLane(match[2])) {
      throw new Error(`expected kind=lane with a lane of ${LANES.join(', ')}, got ${JSON.stringify(item)}`);
    }
    out[match[1]!] = match[2];
  }
  if (!Object.hasOwn(out, 'default')) throw new Error('the kind "default" must be given a lane');
  return Object.freeze(out);
}

/** `80,443` -> port numbers. */
export function parsePorts(value: string): number[] {
  return parseList(value).map((item) => {
    if (!/^\d{1,5}$/.test(item) || Number(item) < 1 || Number(item) > 65535) {
      throw new Error(`not a port: ${JSON.stringify(item)}`);
    }
    return Number(item);
  });
}

/** `0` to `65535`: one port, where 0 picks a free one. */
export function parsePort(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) throw new Error('expected a port, 0 to 65535');
  return Number(value);
}

/** `cdn.example.com,*.example.org` -> host names and `*.suffix` patterns. */
export function parseHosts(value: string): string[] {
  const hosts = parseList(value);
  for (const item of hosts) {
    if (!HOST_PATTERN.test(item)) throw new Error(`not a host name or *.suffix: ${JSON.stringify(item)}`);
  }
  return hosts;
}

/** `10.1.2.0/24,::1` -> address prefixes (src/grammar/cidr.ts). */
export function parseCidrs(value: string): Cidr[] {
  return parseList(value).map((item) => {
    const cidr = parseCidr(item);
    if (!cidr) throw new Error(`not an address or CIDR: ${JSON.stringify(item)}`);
    return cidr;
  });
}

/** `webp,avif` -> output formats, in order; at least one. */
export function parseFormats(value: string): OutputFormat[] {
  const list = parseList(value);
  for (const format of list) {
    if (!(OUTPUT_FORMATS as readonly string[]).includes(format)) {
      throw new Error(`unknown format ${JSON.stringify(format)}; expected ${OUTPUT_FORMATS.join(', ')}`);
    }
  }
  if (list.length === 0) throw new Error('at least one format');
  return list as OutputFormat[];
}

/**
 * `thumb=w:150,h:150,fit:cover,g:attention;small=w:480,fit:inside` -> named transform requests, each
 * in the grammar of a transform URL's options (src/grammar/transform-options.ts) and within `limits`.
 */
export function parsePresets(value: string, limits: TransformLimits): TransformPresets {
  const out: Record<string, TransformPresets[string]> = {};
  for (const item of value
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = item.indexOf('=');
    const name = item.slice(0, Math.max(0, eq)).trim();
    if (eq < 0 || !PRESET_NAME.test(name))
      throw new Error(`expected name=options, got ${JSON.stringify(item)}`);
    if (Object.hasOwn(out, name)) throw new Error(`preset ${name} is defined twice`);
    try {
      out[name] = parseOptions(item.slice(eq + 1).trim(), limits).spec;
    } catch (error) {
      throw new Error(`preset ${name}: ${(error as Error).message}`);
    }
  }
  return Object.freeze(out);
}

/** An origin as a browser sends it in `Origin`: lower-case scheme and host, a port only when not the default. */
const ORIGIN = /^([a-z][a-z0-9+.-]*):\/\/([a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/;
const DEFAULT_PORTS: Readonly<Record<string, string>> = { http: '80', https: '443' };

/**
 * The origins a CORS surface answers (src/http/cors.ts): `https://app.example.com, http://localhost:3000`
 * -> exact origins, compared byte for byte with the request's `Origin`, so each is refused unless written
 * as browsers send it (scheme://host[:port], lower case, no path, no default port). `*` (any origin) stands
 * alone and only where `wildcard` allows it. Naming nothing is unset: undefined.
 */
export function parseOrigins(value: string, options: { wildcard: boolean }): '*' | string[] | undefined {
  const items = parseList(value);
  if (items.includes('*')) {
    if (!options.wildcard) throw new Error('"*" is allowed for delivery only: list each origin');
    if (items.length > 1) throw new Error('"*" stands alone: it already allows every origin');
    return '*';
  }
  for (const item of items) {
    const match = ORIGIN.exec(item);
    if (!match) {
      const hint = ORIGIN.test(item.toLowerCase()) ? ' (in lower case, as browsers send it)' : '';
      throw new Error(`not an origin, scheme://host[:port] with no path${hint}: ${JSON.stringify(item)}`);
    }
    const [, scheme, host, port] = match;
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535 || port.startsWith('0'))) {
      throw new Error(`not a port in ${JSON.stringify(item)}`);
    }
    if (port !== undefined && DEFAULT_PORTS[scheme!] === port) {
      throw new Error(
        `${JSON.stringify(item)}: browsers send it without its default port, as "${scheme}://${host}"`,
      );
    }
  }
  return unlessEmpty([...new Set(items)]);
}
