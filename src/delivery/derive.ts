import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Representation } from './lookup.ts';
import { Memo } from './memo.ts';

/** A blob made from a source's content (a preset variant, a transform), described apart from any URL. */
export interface DerivedBlob {
  sha256: string;
  size: number;
  contentType: string;
  /** What follows the source's file name, without its extension, in this blob's: `-thumb.webp`. */
  nameSuffix: string;
  /** When it was made (milliseconds since the epoch). */
  createdAt: number;
}

/** What a `Derive` step answers: the blob to serve instead of the source's. */
export interface Derived {
  blob: DerivedBlob;
  /** Added to the response (e.g. Vary: Accept). */
  headers?: OutgoingHttpHeaders;
  /** The blob's bytes when the step has them in memory (a render just made, perhaps not stored yet). */
  bytes?: Buffer;
}

/** What a derive step may read of the request. */
export interface DeriveRequest {
  readonly headers: IncomingHttpHeaders;
}

/**
 * Replaces the looked-up representation by one made from its content (a preset variant, a transform),
 * once access to the source has been granted.
 */
export interface Derive {
  /**
   * Names what `derive` answers for this source and request: any two calls whose keys are equal answer
   * the same blob and headers, whatever the step. Synchronous and cheap, since the origin asks it on every
   * request to look for a remembered answer; it includes what the answer depends on (the source's
   * SHA-256, and the parts of the request the step reads).
   */
  key(source: Representation, request: DeriveRequest): string;
  derive(source: Representation, request: DeriveRequest): Promise<Derived>;
}

/** What the origin serves for a derive step: the derived representation, its extra headers, its bytes. */
export interface DerivedAnswer {
  rep: Representation;
  headers?: OutgoingHttpHeaders | undefined;
  bytes?: Buffer | undefined;
}

/**
 * What the origin remembers of its derive steps' answers, by their keys, for `ttlMs`: the memo from which
 * a variant or transform is answered at once. A blob is derived from content, so one answer serves every
 * URL of that content; the representation around it (file name, dates, caching kind) is made for each
 * source representation and kept as long as that is, so that the origin formats its headers once.
 *
 * A row found in the database is trusted for `ttlMs` only: garbage collection (in any process) deletes
 * the derived rows of content nothing refers to any more, with their blobs, and a row remembered for ever
 * would name a deleted blob if the same content came back. An answer carrying fresh bytes (a render not
 * stored yet) serves its own request and those waiting for it, and is never remembered.
 */
export class Derivations {
  readonly #memo: Memo<Derived>;
  readonly #represented = new WeakMap<Representation, Map<string, DerivedAnswer & { from: Derived }>>();

  constructor(options: { ttlMs: number; maxEntries: number; now?: () => number }) {
    this.#memo = new Memo({
      ttlMs: options.ttlMs,
      maxEntries: options.maxEntries,
      keep: (derived) => derived.bytes === undefined,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  /** The remembered answer of `step` for `source` and `request`, or undefined; changes nothing. */
  getNow(step: Derive, source: Representation, request: DeriveRequest): DerivedAnswer | undefined {
    const key = step.key(source, request);
    const derived = this.#memo.getNow(key);
    return derived && this.#answer(source, key, derived);
  }

  /** The answer of `step`, remembered or derived (concurrent requests of one key share one derive). */
  async get(step: Derive, source: Representation, request: DeriveRequest): Promise<DerivedAnswer> {
    const key = step.key(source, request);
    const derived = await this.#memo.get(key, () => step.derive(source, request));
    return this.#answer(source, key, derived);
  }

  #answer(source: Representation, key: string, derived: Derived): DerivedAnswer {
    if (derived.bytes) {
      return {
        rep: derivedRepresentation(source, derived.blob),
        headers: derived.headers,
        bytes: derived.bytes,
      };
    }
    let bySource = this.#represented.get(source);
    if (!bySource) {
      bySource = new Map();
      this.#represented.set(source, bySource);
    }
    let answer = bySource.get(key);
    if (answer?.from !== derived) {
      answer = { from: derived, rep: derivedRepresentation(source, derived.blob), headers: derived.headers };
      bySource.set(key, answer);
    }
    return answer;
  }
}

/**
 * What the origin serves for a derived blob requested through `source`'s URL: the derived bytes, under
 * the source's access rules and caching kind. Last-Modified is when the derived blob was made (never
 * before the source's content), so a date validator can not match bytes rendered under older settings.
 */
export function derivedRepresentation(source: Representation, blob: DerivedBlob): Representation {
  return {
    kind: source.kind,
    assetId: source.assetId,
    tenantId: source.tenantId,
    sha256: blob.sha256,
    size: blob.size,
    contentType: blob.contentType,
    filename: source.filename.replace(/\.[^.]*$/, '') + blob.nameSuffix,
    lastModified: new Date(Math.max(source.lastModified.getTime(), Math.floor(blob.createdAt / 1000) * 1000)),
    visibility: source.visibility,
    ...(source.versionId ? { versionId: source.versionId } : {}),
    derived: true,
  };
}
