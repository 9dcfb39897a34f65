/**
 * The encoder detection kept across restarts. Trial encodes cost a second or two at every start of every
 * worker process; their answer only changes when the ffmpeg binary, the machine's render nodes or the
 * settings that shape the trials change, so those are the key. A file whose key differs, that does not
 * parse or whose report is not shaped as one is ignored and replaced by the next detection. What the key
 * cannot see (a driver upgrade, a GPU without a render node) is why docs/operations.md says to delete
 * the file after one; a stale "proven" is also caught per job by the fallback chain (fallback.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import type { EncoderReport, HwaccelMode } from './hwaccel.ts';

/** Bumped whenever the trials or the report change shape, so an older file is never read as current. */
const CACHE_VERSION = 1;

export interface CacheKey {
  version: number;
  ffmpeg: { path: string; size: number; mtimeMs: number };
  renderNodes: string[];
  mode: HwaccelMode;
  vaapiDevice: string | null;
  platform: string;
  codecs: readonly string[];
}

/**
 * The binary a command name runs: a path as it is (made absolute), a bare name looked up in PATH as
 * execFile does. Null when nothing is found, and then there is no key and no caching.
 */
async function locate(command: string): Promise<{ path: string; size: number; mtimeMs: number } | null> {
  const paths = command.includes('/')
    ? [resolve(command)]
    : (process.env['PATH'] ?? '')
        .split(delimiter)
        .filter((dir) => isAbsolute(dir))
        .map((dir) => join(dir, command));
  for (const path of paths) {
    const info = await stat(path).catch(() => null);
    if (info?.isFile()) return { path, size: info.size, mtimeMs: info.mtimeMs };
  }
  return null;
}

export async function cacheKey(
  ffmpegPath: string,
  rest: Omit<CacheKey, 'version' | 'ffmpeg'>,
): Promise<CacheKey | null> {
  const ffmpeg = await locate(ffmpegPath);
  return ffmpeg ? { version: CACHE_VERSION, ffmpeg, ...rest } : null;
}

const isStringArray = (value: unknown) =>
  Array.isArray(value) && value.every((item) => typeof item === 'string');
const isCandidateArray = (value: unknown) =>
  Array.isArray(value) &&
  value.every(
    (item) =>
      typeof item === 'object' &&
      item !== null &&
      typeof item.encoder === 'string' &&
      typeof item.family === 'string' &&
      typeof item.codec === 'string',
  );

/** The cached report when the file holds one under this very key; null otherwise (never throws). */
export async function readCache(file: string, key: CacheKey): Promise<EncoderReport | null> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) return null;
  const { key: stored, report } = parsed as { key?: unknown; report?: Partial<EncoderReport> };
  if (JSON.stringify(stored) !== JSON.stringify(key)) return null;
  if (
    typeof report !== 'object' ||
    report === null ||
    !isCandidateArray(report.proven) ||
    !isCandidateArray(report.failed) ||
    !isStringArray(report.hwaccels) ||
    typeof report.best !== 'object' ||
    report.best === null
  ) {
    return null;
  }
  return report as EncoderReport;
}

/**
 * Writes the file whole or not at all (a temporary file renamed over it), so that two processes
 * starting together, each detecting, never leave half a file. A folder that cannot be written only
 * costs the next start its trials: answers false, never throws.
 */
export async function writeCache(file: string, key: CacheKey, report: EncoderReport): Promise<boolean> {
  const temporary = `${file}.${randomUUID()}.tmp`;
  try {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(temporary, `${JSON.stringify({ key, report }, null, 2)}\n`);
    await rename(temporary, file);
    return true;
  } catch {
    await rm(temporary, { force: true }).catch(() => {});
    return false;
  }
}
