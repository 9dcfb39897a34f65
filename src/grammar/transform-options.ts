/**
 * The {options} segment of an image transform URL (the URL itself: transform-url.ts).
 *
 * Comma-separated `key:value` pairs, each key at most once, in any order:
 *
 *   w:<int>         width in CSS pixels, >= 1             h:<int>  height in CSS pixels, >= 1
 *   fit:<fit>       cover (default) | contain | fill | inside | outside
 *   g:<gravity>     center (default) | north | northeast | east | southeast | south | southwest | west |
 *                   northwest | attention | entropy | fp:<x>:<y> (focal point: fractions of the source's
 *                   width and height, each a <dec> in [0, 1])
 *   q:<int>         quality, 1-100; absent: the output format's configured default
 *   f:<format>      source (default) | auto | jpeg | png | webp | avif
 *   dpr:<dec>       device pixel ratio, >= 1 (default 1). round(w × dpr) and round(h × dpr) are the output's
 *                   device pixels, and those are what maxWidth and maxHeight bound
 *   blur:<dec>      Gaussian blur sigma, >= 0.3           sharpen:<dec>  sharpen sigma, >= 0.3
 *   preset:<name>   a configured preset (1-64 characters of A-Z a-z 0-9 _ -); only f: may accompany it
 *
 * Upper bounds come from TransformLimits (configuration). Every number has exactly one spelling: <int> is
 * decimal digits without leading zeros; <dec> may add a fraction of at most three digits, without
 * trailing zeros. So `1.5`, never `1.50`, `01.5`, `.5`, `+1.5` or `15e-1`. Anything else (an unknown or
 * repeated key, a value out of range, another spelling, a character outside `A-Z a-z 0-9 : , . _ -`, a
 * segment longer than maxOptionsLength) is refused with a TransformUrlError naming the key.
 *
 * Output format: `source` keeps the source's format when it is an output format (else jpeg, or png when
 * the source has alpha; negotiate.ts), so the URL alone determines the bytes and every CDN can cache the
 * response without Vary. `auto` opts into Accept negotiation, and the route then sends `Vary: Accept`.
 *
 * Canonical form: keys in the order w, h, fit, g, q, f, dpr, blur, sharpen, defaults left out; when
 * nothing is left, `f:source`. formatOptions writes it. The parser accepts any order: a signature covers
 * the bytes as sent whatever they are, and the derived-blob cache key (cacheKey) spells out the canonical
 * form, so `h:300,w:400` and `w:400,h:300` are rendered once.
 */
import { ConveyorError } from '../errors.ts';
import {
  FITS,
  GRAVITIES,
  type Gravity,
  OUTPUT_FORMATS,
  type OutputFormat,
  type RequestedFormat,
  type ResolvedSpec,
  type TransformSpec,
} from './transform-spec.ts';

/** What a URL asks for: a TransformSpec whose format may still be `source`. */
export type TransformRequest = Omit<TransformSpec, 'format'> & { format: RequestedFormat };

/** Named presets, as configured. Trusted: they are not checked against the limits again. */
export type TransformPresets = Readonly<Record<string, TransformRequest>>;

export interface TransformLimits {
  /** Largest output width in device pixels, round(w × dpr). */
  maxWidth: number;
  /** Largest output height in device pixels, round(h × dpr). */
  maxHeight: number;
  maxDpr: number;
  maxBlur: number;
  maxSharpen: number;
  /** Longest {options} segment in characters. */
  maxOptionsLength: number;
  /** Output formats this server renders; an f: or extension naming another is refused. */
  formats: readonly OutputFormat[];
}

/**
 * The defaults of the transform settings (CONVEYOR_TRANSFORM_MAX_*); 4096 device pixels keeps a decoded
 * RGBA output under 64 MiB.
 */
export const DEFAULT_TRANSFORM_LIMITS: TransformLimits = {
  maxWidth: 4096,
  maxHeight: 4096,
  maxDpr: 4,
  maxBlur: 100,
  maxSharpen: 10,
  maxOptionsLength: 256,
  formats: OUTPUT_FORMATS,
};

/** A malformed transform URL: a 400 whose `option` member names the offending key, when there is one. */
export class TransformUrlError extends ConveyorError {
  readonly option: string | undefined;

  constructor(detail: string, option?: string) {
    super('bad_request', detail, { extra: option === undefined ? {} : { option } });
    this.name = 'TransformUrlError';
    this.option = option;
  }
}

export interface ParsedOptions {
  /** The request with any preset expanded and f: applied. */
  spec: TransformRequest;
  /** The preset's name when the options were `preset:<name>[,f:<format>]`. */
  preset: string | undefined;
  /** Whether the text had an f: (a URL's extension may only repeat it). */
  formatGiven: boolean;
}

const KEYS = ['w', 'h', 'fit', 'g', 'q', 'f', 'dpr', 'blur', 'sharpen', 'preset'] as const;
type Key = (typeof KEYS)[number];
const REQUESTED_FORMATS: readonly RequestedFormat[] = [...OUTPUT_FORMATS, 'auto', 'source'];
const OPTION_CHARS = /^[A-Za-z0-9:,._-]*$/;
const INT = /^(?:0|[1-9][0-9]*)$/;
const DEC = /^(?:0|[1-9][0-9]*)(?:\.[0-9]{0,2}[1-9])?$/;
export const PRESET_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Output size in device pixels; the renderer must round the same way the limits do. */
export function devicePixels(cssPixels: number, dpr: number): number {
  return Math.round(cssPixels * dpr);
}

/** Parses and validates an {options} segment; `presets` resolves `preset:<name>`. */
export function parseOptions(
  text: string,
  limits: TransformLimits,
  presets: TransformPresets = {},
): ParsedOptions {
  // Checked first, so that an oversized segment costs no further work.
  if (text.length > limits.maxOptionsLength) {
    throw new TransformUrlError(
      `the options are ${text.length} characters; at most ${limits.maxOptionsLength}`,
    );
  }
  if (text === '') throw new TransformUrlError('the options segment is empty');
  if (!OPTION_CHARS.test(text)) {
    // Name the option holding the first stray character when its key is readable.
    const item = text.split(',').find((i) => !OPTION_CHARS.test(i)) ?? '';
    const key = item.slice(0, Math.max(0, item.indexOf(':')));
    const option = isKey(key) ? key : undefined;
    const where = option === undefined ? 'options' : `${option}: ${show(item.slice(key.length + 1))}`;
    throw new TransformUrlError(`${where} may only contain the characters A-Z a-z 0-9 : , . _ -`, option);
  }
  const given = new Map<Key, string>();
  for (const item of text.split(',')) {
    if (item === '') throw new TransformUrlError('empty option: a doubled, leading or trailing comma');
    const colon = item.indexOf(':');
    const key = colon === -1 ? item : item.slice(0, colon);
    if (!isKey(key)) {
      throw new TransformUrlError(`unknown option ${show(key)}`, key === '' ? undefined : clip(key));
    }
    const value = colon === -1 ? '' : item.slice(colon + 1);
    if (value === '') throw new TransformUrlError(`${key}: missing value`, key);
    if (given.has(key)) throw new TransformUrlError(`${key} is given more than once`, key);
    given.set(key, value);
  }

  const f = given.get('f');
  const format = f === undefined ? undefined : allowedFormat('f', member('f', f, REQUESTED_FORMATS), limits);
  const formatGiven = format !== undefined;
  const name = given.get('preset');
  if (name !== undefined) {
    for (const key of given.keys()) {
      if (key !== 'preset' && key !== 'f') {
        throw new TransformUrlError(`${key} cannot be combined with preset; only f can`, key);
      }
    }
    // hasOwn, so that `preset:constructor` finds nothing on Object.prototype.
    if (!PRESET_NAME.test(name) || !Object.hasOwn(presets, name)) {
      throw new TransformUrlError(`unknown preset ${show(name)}`, 'preset');
    }
    const base = presets[name]!;
    return { spec: { ...base, format: format ?? base.format }, preset: name, formatGiven };
  }

  const spec: TransformRequest = { fit: 'cover', gravity: 'center', format: format ?? 'source', dpr: 1 };
  for (const [key, value] of given) {
    switch (key) {
      case 'w':
        spec.width = integer(key, value, 1, limits.maxWidth);
        break;
      case 'h':
        spec.height = integer(key, value, 1, limits.maxHeight);
        break;
      case 'fit':
        spec.fit = member(key, value, FITS);
        break;
      case 'g':
        spec.gravity = gravity(value);
        break;
      case 'q':
        spec.quality = integer(key, value, 1, 100);
        break;
      case 'dpr':
        spec.dpr = decimal(key, value, 1, limits.maxDpr);
        break;
      case 'blur':
        spec.blur = decimal(key, value, 0.3, limits.maxBlur);
        break;
      case 'sharpen':
        spec.sharpen = decimal(key, value, 0.3, limits.maxSharpen);
        break;
    }
  }
  for (const [key, size, max] of [
    ['w', spec.width, limits.maxWidth],
    ['h', spec.height, limits.maxHeight],
  ] as const) {
    const pixels = size === undefined ? 0 : devicePixels(size, spec.dpr);
    if (pixels > max)
      throw new TransformUrlError(`${key} × dpr is ${pixels} device pixels; at most ${max}`, key);
  }
  return { spec, preset: undefined, formatGiven };
}

/** Refuses a concrete output format that the configuration does not enable. */
export function allowedFormat<T extends RequestedFormat>(key: string, format: T, limits: TransformLimits): T {
  if (format !== 'auto' && format !== 'source' && !limits.formats.includes(format)) {
    throw new TransformUrlError(`${key}: ${format} output is not enabled on this server`, key);
  }
  return format;
}

function gravity(value: string): Gravity {
  if (!value.startsWith('fp:')) return member('g', value, GRAVITIES);
  const parts = value.split(':');
  if (parts.length !== 3) throw new TransformUrlError('g: a focal point is written fp:<x>:<y>', 'g');
  return { x: decimal('g', parts[1]!, 0, 1), y: decimal('g', parts[2]!, 0, 1) };
}

function integer(key: Key, value: string, min: number, max: number): number {
  if (!INT.test(value)) {
    throw new TransformUrlError(
      `${key}: ${show(value)} is not a whole number in canonical form (plain digits, no leading zeros)`,
      key,
    );
  }
  return inRange(key, value, min, max);
}

function decimal(key: Key, value: string, min: number, max: number): number {
  if (!DEC.test(value)) {
    throw new TransformUrlError(
      `${key}: ${show(value)} is not a number in canonical form (like 1.5: no sign, exponent, leading or ` +
        'trailing zeros, at most three decimals)',
      key,
    );
  }
  return inRange(key, value, min, max);
}

function inRange(key: Key, value: string, min: number, max: number): number {
  const n = Number(value);
  if (n < min || n > max)
    throw new TransformUrlError(`${key} must be between ${min} and ${max}, not ${value}`, key);
  return n;
}

function member<T extends string>(key: Key, value: string, values: readonly T[]): T {
  const found = values.find((v) => v === value);
  if (found === undefined) {
    throw new TransformUrlError(`${key}: ${show(value)} is not one of ${values.join(', ')}`, key);
  }
  return found;
}

function isKey(key: string): key is Key {
  return (KEYS as readonly string[]).includes(key);
}

function clip(text: string): string {
  return text.length > 32 ? `${text.slice(0, 32)}…` : text;
}

/** Quoted and clipped, so that a hostile value cannot fill the problem document. */
export function show(text: string): string {
  return JSON.stringify(clip(text));
}

/** The canonical {options} text for a request (see the header). Throws RangeError on unwritable values. */
export function formatOptions(spec: TransformRequest): string {
  return writeOptions(spec, false) || 'f:source';
}

/** `preset:<name>`, plus `,f:<format>` when a format is given. */
export function formatPreset(name: string, format?: RequestedFormat): string {
  if (!PRESET_NAME.test(name)) throw new RangeError(`preset: cannot write ${JSON.stringify(name)}`);
  return format === undefined
    ? `preset:${name}`
    : `preset:${name},f:${writable('f', format, REQUESTED_FORMATS)}`;
}

/**
 * A stable key for the derived blob of `spec` rendered from the source whose content hash is
 * `sourceSha256`: the same for every URL that renders the same bytes (whatever the option order, preset
 * or not, asset or version id). Defaults are spelled out, so that changing a default later cannot alias
 * old derivatives. An absent quality means "the configured default": put the effective quality into the
 * spec first if a change of that setting should invalidate derivatives.
 */
export function cacheKey(spec: ResolvedSpec, sourceSha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sourceSha256))
    throw new TypeError('sourceSha256 must be 64 lower-case hex digits');
  writable('f', spec.format, OUTPUT_FORMATS);
  return `t1/${sourceSha256}/${writeOptions(spec, true)}`;
}

function writeOptions(spec: TransformRequest, spellDefaults: boolean): string {
  const g = spec.gravity;
  const parts: string[] = [];
  if (spec.width !== undefined) parts.push(`w:${writeInt('w', spec.width, 1, Infinity)}`);
  if (spec.height !== undefined) parts.push(`h:${writeInt('h', spec.height, 1, Infinity)}`);
  if (spellDefaults || spec.fit !== 'cover') parts.push(`fit:${writable('fit', spec.fit, FITS)}`);
  if (spellDefaults || g !== 'center') {
    parts.push(
      typeof g === 'string'
        ? `g:${writable('g', g, GRAVITIES)}`
        : `g:fp:${writeDec('g', g.x, 0, 1)}:${writeDec('g', g.y, 0, 1)}`,
    );
  }
  if (spec.quality !== undefined) parts.push(`q:${writeInt('q', spec.quality, 1, 100)}`);
  if (spellDefaults || spec.format !== 'source')
    parts.push(`f:${writable('f', spec.format, REQUESTED_FORMATS)}`);
  if (spellDefaults || spec.dpr !== 1) parts.push(`dpr:${writeDec('dpr', spec.dpr, 1, Infinity)}`);
  if (spec.blur !== undefined) parts.push(`blur:${writeDec('blur', spec.blur, 0.3, Infinity)}`);
  if (spec.sharpen !== undefined) parts.push(`sharpen:${writeDec('sharpen', spec.sharpen, 0.3, Infinity)}`);
  return parts.join(',');
}

function writeInt(key: Key, n: number, min: number, max: number): string {
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new RangeError(`${key}: cannot write ${n}`);
  return String(n);
}

function writeDec(key: Key, n: number, min: number, max: number): string {
  // String() gives the shortest spelling that reads back as n; when that is not canonical (an exponent, a
  // fourth decimal) no canonical spelling exists.
  const text = String(n);
  if (!DEC.test(text) || n < min || n > max) throw new RangeError(`${key}: cannot write ${n}`);
  return text;
}

function writable<T extends string>(key: Key, value: unknown, values: readonly T[]): T {
  const found = values.find((v) => v === value);
  if (found === undefined) throw new RangeError(`${key}: cannot write ${JSON.stringify(value)}`);
  return found;
}
