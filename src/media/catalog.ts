import type { Kysely } from 'kysely';
import type { Database, MediaDerivedTable, MediaInfoTable } from '../db/tables.ts';
import type { OutputFormat } from '../grammar/transform-spec.ts';
import { EXTENSIONS } from './derived.ts';
import { describeVideo, type VideoView } from './video-catalog.ts';

/** What image processing found, as the API shows it on an asset or version. */
export interface MediaView {
  format: string;
  width: number;
  height: number;
  orientation: number | null;
  hasAlpha: boolean;
  pages: number;
  dominantColor: string | null;
  thumbhash: string | null;
  blurhash: string | null;
  phash: string | null;
  exif: Record<string, unknown> | null;
}

export interface VariantView {
  preset: string;
  format: string;
  contentType: string;
  width: number;
  height: number;
  size: number;
  url: string;
}

/**
 * Adds `media` (dimensions, placeholders, dominant colour, perceptual hash, safe EXIF; null until the
 * image job has run or for non-images), `variants` (with their delivery URLs, under the asset's or
 * version's own URL) and `video` (video-catalog.ts) to API views, for a whole page in two queries, four
 * when it holds video.
 */
export class MediaCatalog {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async describe<T extends { sha256: string; url: string; contentType: string }>(
    views: readonly T[],
    /** Which complete video ladder the views' URLs serve: an asset's the newest, a version's the first. */
    ladder: 'newest' | 'first' = 'newest',
  ): Promise<(T & { media: MediaView | null; variants: VariantView[]; video: VideoView | null })[]> {
    const shas = [...new Set(views.map((v) => v.sha256))];
    if (shas.length === 0) return [];
    const [infos, derived] = await Promise.all([
      this.#db.selectFrom('media_info').selectAll().where('sha256', 'in', shas).execute(),
      this.#db
        .selectFrom('media_derived')
        .selectAll()
        .where('source_sha256', 'in', shas)
        .where('kind', '=', 'variant')
        .orderBy('key')
        .execute(),
    ]);
    const infoBy = new Map(infos.map((row) => [row.sha256, mediaView(row)]));
    return (await describeVideo(this.#db, views, ladder)).map((view) => ({
      ...view,
      media: infoBy.get(view.sha256) ?? null,
      variants: derived
        .filter((row) => row.source_sha256 === view.sha256)
        .map((row) => variantView(row, view.url)),
    }));
  }
}

function mediaView(row: MediaInfoTable): MediaView {
  return {
    format: row.format,
    width: row.width,
    height: row.height,
    orientation: row.orientation,
    hasAlpha: row.has_alpha === 1,
    pages: row.pages,
    dominantColor: row.dominant_color,
    thumbhash: row.thumbhash,
    blurhash: row.blurhash,
    phash: row.phash,
    exif: row.exif ? (JSON.parse(row.exif) as Record<string, unknown>) : null,
  };
}

function variantView(row: MediaDerivedTable, baseUrl: string): VariantView {
  return {
    preset: row.preset!,
    format: row.format,
    contentType: row.content_type,
    width: row.width,
    height: row.height,
    size: row.size,
    url: `${baseUrl}/${row.preset}.${EXTENSIONS[row.format as OutputFormat]}`,
  };
}
