import { createHash } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import type { Derive, Derived } from '../delivery/derive.ts';
import type { Representation } from '../delivery/lookup.ts';
import { ConveyorError } from '../errors.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { rewriteMediaPlaylist } from './video/hls/media.ts';
import { checkFilePath } from './video/keys.ts';
import type { VideoStore } from './video/store.ts';

/** The master playlist's path in a ladder's folder of delivery URLs: `/v/<id>/hls/master.m3u8`. */
export const MASTER_PLAYLIST = 'master.m3u8';

/**
 * What delivery serves of a ladder, by extension: RFC 8216 §4 for playlists ("application/
 * vnd.apple.mpegurl"), the ISO BMFF registrations for fMP4 (`video/mp4` for the init segment and the MP4
 * fallback, `video/iso.segment` for media segments, RFC 8216 §3.3), MPEG-TS, the WebVTT sprite index and
 * its images. Anything else a ladder stores (the job's `rendition.json`) is not delivered.
 */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  m3u8: 'application/vnd.apple.mpegurl',
  mp4: 'video/mp4',
  m4s: 'video/iso.segment',
  ts: 'video/mp2t',
  vtt: 'text/vtt; charset=utf-8',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
};

/** The credentials of a delivery query that a private playlist's URIs carry on (access.ts). */
export interface GrantQuery {
  token?: string | undefined;
  exp?: string | undefined;
  kid?: string | undefined;
  scope?: string | undefined;
  sig?: string | undefined;
}

/**
 * The query string every URI of a private playlist carries: the grant the playlist itself was requested
 * with, unchanged, so that it opens each file the playlist names. A token opens any path of its asset; a
 * prefix signature (`scope`) any path under its folder, where the relative URIs of the ladder lead. A
 * single-path signature opens the playlist only and is not carried (it could open nothing else), nor is
 * an Authorization header: a player that sends it sends it for every request itself.
 */
export function grantQuery(query: GrantQuery): string {
  const params = new URLSearchParams();
  if (query.token !== undefined) params.set('token', query.token);
  if (query.scope !== undefined && query.sig !== undefined) {
    for (const name of ['exp', 'kid', 'scope', 'sig'] as const) {
      const value = query[name];
      if (value !== undefined) params.set(name, value);
    }
  }
  return params.toString();
}

/**
 * The playlist with `grant` appended to every URI (a master's variant and rendition URIs, a media
 * playlist's segments and EXT-X-MAP), by RFC 8216 §4.1's reading of lines (media.ts). Conveyor's URIs
 * are relative paths without a query, so the grant begins one; `&` joins it to a query already there.
 */
export function withGrant(playlist: string, grant: string): string {
  if (grant === '') return playlist;
  return rewriteMediaPlaylist(playlist, (uri) => `${uri}${uri.includes('?') ? '&' : '?'}${grant}`);
}

/** The 404 of a ladder or file that is not there (yet): never stored, since the ladder may complete. */
function noOutput(): ConveyorError {
  return new ConveyorError('not_found', 'No such video output', {
    headers: { 'cache-control': 'no-store' },
  });
}

/**
 * Video delivery: the files of a content's complete HLS ladder, served through the origin as a derive
 * step of the asset's or version's delivery URL (`/a/<assetId>/hls/<path>`, `/v/<versionId>/hls/<path>`),
 * so they have its access rules, conditional and range requests, and caching kind: a version's files are
 * immutable, an asset's follow its latest content (`latest`), a private asset's are `private, no-store`.
 *
 * A version's URLs serve the first ladder of its content to complete, which stays as long as the content
 * (a later ladder, made under other settings, would change bytes under an immutable URL); an asset's
 * serve the newest complete ladder. A ladder still encoding (or failed) answers 404, never a partial
 * master. A private asset's playlists carry their request's grant in every URI (`grantQuery`).
 */
export class VideoDelivery {
  readonly #ladders: Pick<VideoStore, 'completeLadder' | 'file'>;
  readonly #blobs: BlobStore;

  constructor(deps: { store: Pick<VideoStore, 'completeLadder' | 'file'>; blobs: BlobStore }) {
    this.#ladders = deps.store;
    this.#blobs = deps.blobs;
  }

  /**
   * The derive step for the ladder file at `path` (relative, as stored: `h264-240p/index.m3u8`), or null
   * for a path that no ladder holds or that delivery does not serve (the route answers 404).
   */
  derive(path: string, query: GrantQuery): Derive | null {
    if (!isPath(path)) return null;
    const ext = path.slice(path.lastIndexOf('.') + 1);
    const contentType = CONTENT_TYPES[ext];
    if (contentType === undefined) return null;
    const playlist = ext === 'm3u8';
    const grant = playlist ? grantQuery(query) : '';
    return {
      // A private playlist's bytes depend on the grant it was asked with; everything else on the source.
      key: (source) =>
        `hls\0${source.sha256}\0${source.kind}\0${path}\0${source.visibility === 'private' ? grant : ''}`,
      derive: (source) => this.#derive(source, path, contentType, playlist ? grant : undefined),
    };
  }

  async #derive(
    source: Representation,
    path: string,
    contentType: string,
    grant: string | undefined,
  ): Promise<Derived> {
    const ladder = await this.#ladders.completeLadder(
      source.sha256,
      source.kind === 'version' ? 'first' : 'newest',
    );
    if (!ladder?.master) throw noOutput();
    const carried = source.visibility === 'private' ? (grant ?? '') : '';
    const nameSuffix = `-${path.replaceAll('/', '-')}`;
    if (path === MASTER_PLAYLIST) {
      const bytes = Buffer.from(withGrant(ladder.master, carried), 'utf8');
      return {
        blob: blobOf(bytes, contentType, nameSuffix, ladder.completedAt ?? ladder.updatedAt),
        bytes,
      };
    }
    const file = await this.#ladders.file(source.sha256, ladder.ladder, path);
    if (!file) throw noOutput();
    if (carried === '') {
      return {
        blob: { sha256: file.sha256, size: file.size, contentType, nameSuffix, createdAt: file.createdAt },
      };
    }
    const text = (await buffer(await this.#blobs.get(file.sha256))).toString('utf8');
    const bytes = Buffer.from(withGrant(text, carried), 'utf8');
    return { blob: blobOf(bytes, contentType, nameSuffix, file.createdAt), bytes };
  }
}

function blobOf(bytes: Buffer, contentType: string, nameSuffix: string, createdAt: number) {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return { sha256, size: bytes.length, contentType, nameSuffix, createdAt };
}

function isPath(path: string): boolean {
  try {
    checkFilePath(path);
    return true;
  } catch {
    return false;
  }
}
