import { createHash } from 'node:crypto';
import { canonicalJson } from '../../jobs/policy.ts';

/**
 * The key of a ladder: a short hash of everything that shapes its outputs (codec, preset, heights,
 * segment length, container...), given as a plain object. Key order does not matter and `undefined`
 * members are left out, so equal settings give equal keys however they were assembled; array order does
 * matter (the caller sorts what is a set). 64 bits is plenty: keys are only ever compared among the
 * ladders of one content.
 */
export function ladderKey(parts: Readonly<Record<string, unknown>>): string {
  return createHash('sha256').update(canonicalJson(parts)).digest('hex').slice(0, 16);
}

/**
 * A file's path inside its ladder: `/`-separated names of letters, digits, `.`, `_` and `-`, each starting
 * with a letter or digit. So a path is relative, has no `.` or `..` step, and can be put in a playlist or a
 * delivery URL as it is, without escaping.
 */
const FILE_PATH = /^[A-Za-z0-9][A-Za-z0-9._-]*(?:\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;
const FILE_PATH_MAX = 200;

/**
 * The folder of a ladder's chunk files (chunks.ts): the source's pieces and each chunk's encodes. They
 * live only while the ladder encodes; `VideoStore.complete` deletes them.
 */
export const CHUNKS_DIR = 'chunks';

/** A rendition's name (e.g. `720p`, `av1-1080p`) or a ladder key: one path step, at most 64 characters. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Throws a TypeError unless `path` is a file path the store keeps (see FILE_PATH). */
export function checkFilePath(path: string): void {
  if (path.length > FILE_PATH_MAX || !FILE_PATH.test(path)) {
    throw new TypeError(`not a video file path: ${JSON.stringify(path)}`);
  }
}

/** Throws a TypeError unless `name` is a rendition name (see NAME). */
export function checkRenditionName(name: string): void {
  if (!NAME.test(name)) throw new TypeError(`not a rendition name: ${JSON.stringify(name)}`);
}

/** Throws a TypeError unless `key` is a ladder key: one `ladderKey` made, or another name (see NAME). */
export function checkLadderKey(key: string): void {
  if (!NAME.test(key)) throw new TypeError(`not a ladder key: ${JSON.stringify(key)}`);
}
