import { readFileSync } from 'node:fs';
import { parseList } from './parsers.ts';
import { type Config, type ConfigInput, envName, type SettingKey, settings } from './schema.ts';
import type { ReadSetting, Setting } from './setting.ts';

export type { Config, ConfigInput } from './schema.ts';

/**
 * CONVEYOR_ variables that are not settings: the config file's name, what the CLI's client commands read
 * (`conveyor upload`), and the index `serve` hands to each process it forks.
 */
export const NON_SETTING_VARIABLES = new Set([
  'CONVEYOR_CONFIG',
  'CONVEYOR_URL',
  'CONVEYOR_API_KEY',
  'CONVEYOR_UPLOAD_RESUMABLE_THRESHOLD',
  'CONVEYOR_UPLOAD_CHUNK_SIZE',
  'CONVEYOR_UPLOAD_STATE_FILE',
  'CONVEYOR_WORKER_INDEX',
  // Set by bin/conveyor: the allocator variables it set for Node, which tools do not inherit (tool.ts).
  'CONVEYOR_LAUNCHER_MALLOC',
]);

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** The text each parsed setting was given, by config: what `redactedConfig` shows for it. */
const givenText = new WeakMap<Config, Record<string, unknown>>();

/** Thrown by `read` when the setting read is itself invalid: its own problem names it. */
class InvalidDependency extends Error {}

/**
 * Builds the effective configuration: defaults, then the JSON file named by CONVEYOR_CONFIG (keys as in
 * `settings`, e.g. `{"port": 9000}`), then CONVEYOR_* environment variables, then `overrides` (tests).
 * Every value is parsed here, once, into the type its setting gives. Collects every problem before
 * failing, so one start-up names all bad keys at once.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: ConfigInput = {}): Config {
  const problems: string[] = [];
  const file = readConfigFile(env['CONVEYOR_CONFIG'], problems);

  for (const key of Object.keys(file)) {
    if (!Object.hasOwn(settings, key))
      problems.push(`${key} (in ${env['CONVEYOR_CONFIG']}): unknown setting`);
  }
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith('CONVEYOR_') && !NON_SETTING_VARIABLES.has(name) && value !== undefined) {
      const known = Object.keys(settings).some((key) => envName(key) === name);
      if (!known) problems.push(`${name}: unknown setting`);
    }
  }

  type Source = 'override' | 'environment' | 'file' | 'default';
  const given = (key: SettingKey): { raw: unknown; source: Source } => {
    const fromEnv = env[envName(key)];
    if (Object.hasOwn(overrides, key)) return { raw: overrides[key], source: 'override' };
    if (fromEnv !== undefined && fromEnv !== '') return { raw: fromEnv, source: 'environment' };
    if (Object.hasOwn(file, key)) return { raw: file[key], source: 'file' };
    return { raw: (settings[key] as Setting).default, source: 'default' };
  };
  /** The setting as its problem names it: the variable, and where the value came from unless that is it. */
  const named = (key: SettingKey, source: Source): string => {
    if (source === 'environment') return envName(key);
    if (source === 'file') return `${envName(key)} ("${key}" in ${env['CONVEYOR_CONFIG']})`;
    return `${envName(key)} (${source})`;
  };

  // Settings are parsed on first read, so that a parser may read the settings its grammar is bounded by.
  const parsed = new Map<SettingKey, Parsed>();
  const parsing = new Set<SettingKey>();
  const texts: Record<string, unknown> = {};
  const resolve = (key: SettingKey): Parsed => {
    const done = parsed.get(key);
    if (done) return done;
    if (parsing.has(key)) throw new Error(`settings read each other: ${[...parsing, key].join(' -> ')}`);
    parsing.add(key);
    const { raw, source } = given(key);
    const setting: Setting = settings[key];
    if (setting.type === 'parsed') texts[key] = raw;
    const result = parseSetting(setting, raw, read);
    parsing.delete(key);
    if (!result.ok && result.error !== null) problems.push(`${named(key, source)}: ${result.error}`);
    parsed.set(key, result);
    return result;
  };
  const read: ReadSetting = (key) => {
    if (!Object.hasOwn(settings, key)) throw new Error(`no setting ${key}`);
    const result = resolve(key as SettingKey);
    if (!result.ok) throw new InvalidDependency();
    return result.value;
  };

  const out: Record<string, unknown> = {};
  for (const key of Object.keys(settings) as SettingKey[]) {
    const result = resolve(key);
    if (result.ok) out[key] = result.value;
  }

  if (out['storage'] === 's3' && !out['s3Bucket'])
    problems.push('CONVEYOR_S3_BUCKET: required with storage=s3');
  const db = out['databaseUrl'] as string | undefined;
  if (db !== undefined && !/^postgres(ql)?:\/\//.test(db) && !db.startsWith('sqlite:')) {
    problems.push('CONVEYOR_DATABASE_URL: expected postgres://… or sqlite:<path>');
  }
  // HLS players read H.264 from MPEG-TS segments; AV1 and VP9 have no mapping there that they read, and
  // need fMP4 (CMAF) segments.
  const codecs = (out['videoCodecs'] as readonly string[] | undefined) ?? [];
  if (out['videoSegmentFormat'] === 'mpegts' && codecs.some((c) => c !== 'h264')) {
    problems.push(
      `CONVEYOR_VIDEO_SEGMENT_FORMAT: mpegts carries only h264, not ${codecs.filter((c) => c !== 'h264').join(', ')} (CONVEYOR_VIDEO_CODECS)`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const config = Object.freeze(out) as Config;
  givenText.set(config, texts);
  return config;
}

function readConfigFile(path: string | undefined, problems: string[]): Record<string, unknown> {
  if (!path) return {};
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
    problems.push(`CONVEYOR_CONFIG: ${path} must hold a JSON object`);
  } catch (error) {
    problems.push(`CONVEYOR_CONFIG: cannot read ${path}: ${(error as Error).message}`);
  }
  return {};
}

/** A setting's value, or why it has none (null: another setting's problem says why). */
type Parsed = { ok: true; value: unknown } | { ok: false; error: string | null };

function parseSetting(setting: Setting, raw: unknown, read: ReadSetting): Parsed {
  switch (setting.type) {
    case 'string':
    case 'optional':
      if (raw === undefined || raw === null) {
        return setting.type === 'optional'
          ? { ok: true, value: undefined }
          : { ok: false, error: 'required' };
      }
      if (typeof raw !== 'string') return { ok: false, error: 'expected a string' };
      {
        const error = setting.check?.(raw) ?? null;
        return error === null ? { ok: true, value: raw } : { ok: false, error };
      }
    case 'int': {
      const n =
        typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? +raw : NaN;
      if (!Number.isSafeInteger(n))
        return { ok: false, error: `expected an integer, got ${JSON.stringify(raw)}` };
      if (n < setting.min || n > setting.max) {
        return { ok: false, error: `${n} is outside ${setting.min}..${setting.max}` };
      }
      return { ok: true, value: n };
    }
    case 'bool': {
      if (typeof raw === 'boolean') return { ok: true, value: raw };
      const s = String(raw).trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(s)) return { ok: true, value: true };
      if (['0', 'false', 'no', 'off'].includes(s)) return { ok: true, value: false };
      return { ok: false, error: `expected true or false, got ${JSON.stringify(raw)}` };
    }
    case 'enum':
      return typeof raw === 'string' && setting.values.includes(raw)
        ? { ok: true, value: raw }
        : { ok: false, error: `expected one of ${setting.values.join(', ')}, got ${JSON.stringify(raw)}` };
    case 'limits':
      return parseLimits(setting, raw);
    case 'parsed':
      if (raw === undefined || raw === null) return { ok: true, value: undefined };
      if (typeof raw !== 'string') return { ok: false, error: 'expected a string' };
      try {
        return { ok: true, value: setting.parse(raw, read) };
      } catch (error) {
        return { ok: false, error: error instanceof InvalidDependency ? null : (error as Error).message };
      }
  }
}

function parseLimits(setting: Extract<Setting, { type: 'limits' }>, raw: unknown): Parsed {
  const entries = (value: unknown): [string, unknown][] | string => {
    if (typeof value === 'string') {
      const out: [string, unknown][] = [];
      for (const item of parseList(value)) {
        const match = /^([A-Za-z0-9_.:-]+)\s*=\s*(.*)$/.exec(item);
        if (!match) return `expected name=number pairs separated by commas, got ${JSON.stringify(item)}`;
        out.push([match[1]!, match[2]!.trim()]);
      }
      return out;
    }
    if (value && typeof value === 'object' && !Array.isArray(value)) return Object.entries(value);
    return `expected "name=number,..." or an object, got ${JSON.stringify(value)}`;
  };
  const result: Record<string, number> = {};
  for (const source of [setting.default, raw]) {
    const list = entries(source);
    if (typeof list === 'string') return { ok: false, error: list };
    for (const [name, value] of list) {
      // `__proto__=5` would set nothing and `toString=5` would shadow a method: no name of Object's.
      if (name in Object.prototype) return { ok: false, error: `${JSON.stringify(name)} is a reserved name` };
      if (setting.keys && !setting.keys.includes(name)) {
        return {
          ok: false,
          error: `unknown name ${JSON.stringify(name)}; expected ${setting.keys.join(', ')}`,
        };
      }
      const n =
        typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? +value : NaN;
      if (!Number.isSafeInteger(n) || n < 0 || n > setting.max) {
        return {
          ok: false,
          error: `${name}: expected an integer in 0..${setting.max}, got ${JSON.stringify(value)}`,
        };
      }
      result[name] = n;
    }
  }
  return { ok: true, value: Object.freeze(result) };
}

/**
 * The effective config with secrets replaced, for `conveyor config` and start-up logs; parsed settings as
 * the text they were given.
 */
export function redactedConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const texts = givenText.get(config) ?? {};
  for (const [key, setting] of Object.entries(settings) as [SettingKey, Setting][]) {
    const value = Object.hasOwn(texts, key) ? texts[key] : config[key];
    const secret = 'secret' in setting && setting.secret;
    if (secret && value !== undefined)
      out[key] = key === 'databaseUrl' ? redactUrl(String(value)) : '[redacted]';
    else out[key] = value;
  }
  return out;
}

/** `url` with its password replaced, e.g. a database URL shown to an operator. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = 'redacted';
    return parsed.toString();
  } catch {
    return '[redacted]';
  }
}

/** The README's configuration table. */
export function configTable(): string {
  const rows = ['| variable | default | meaning |', '| --- | --- | --- |'];
  for (const [key, setting] of Object.entries(settings) as [SettingKey, Setting][]) {
    const def =
      setting.default === undefined || setting.default === '' ? '' : `\`${String(setting.default)}\``;
    rows.push(`| \`${envName(key)}\` | ${def} | ${setting.doc.replaceAll('|', '\\|')} |`);
  }
  return rows.join('\n');
}

export function publicBaseUrl(config: Config, boundPort?: number): string {
  return (config.publicUrl ?? `http://localhost:${boundPort ?? config.port}`).replace(/\/+$/, '');
}
