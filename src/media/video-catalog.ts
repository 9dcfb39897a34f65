import type { Kysely } from 'kysely';
import type { Database, VideoInfoTable, VideoLaddersTable } from '../db/tables.ts';

/** One rendition of a complete ladder, as the job measured it (video-job.ts, `rendition.json`). */
export interface RenditionView {
  name: string;
  codec: string;
  width: number;
  height: number;
  bandwidth: number;
  averageBandwidth: number;
  [measured: string]: unknown;
}

/** What the API shows of a video on an asset or version: the probe, the ladder and its URLs. */
export interface VideoView {
  durationMs: number;
  width: number;
  height: number;
  hasAudio: boolean;
  container: string;
  videoCodec: string;
  audioCodec: string | null;
  /** EBU R128 figures (integrated LUFS, range, true peak), or null. */
  loudness: unknown;
  /** The ladder served under this view's URL: `complete`, or how far the newest attempt got. */
  state: VideoLaddersTable['state'] | 'none';
  renditions: RenditionView[];
  encoder: string | null;
  fallbacks: unknown[];
  /** Delivery URLs under the view's own URL; null until the ladder is complete. */
  urls: { master: string; poster: string; sprite: string; spriteVtt: string; fallback: string } | null;
}

/**
 * Adds `video` to API views of video content (null for other content or before the probe): what the
 * probe found, and the ladder that the view's URL serves (src/media/video-delivery.ts chooses it the
 * same way: an asset's latest URL the newest complete ladder, a version's the first), with its
 * renditions (sizes, bit rates, quality scores), encoder and the playlist, poster, sprite and MP4 URLs.
 * Two queries for a whole page.
 */
export async function describeVideo<T extends { sha256: string; url: string; contentType: string }>(
  db: Kysely<Database>,
  views: readonly T[],
  which: 'newest' | 'first',
): Promise<(T & { video: VideoView | null })[]> {
  // Only video content ever gets a probe (video-job.ts takes `video/*`): a page of images asks nothing.
  const shas = [
    ...new Set(views.filter((v) => v.contentType.toLowerCase().startsWith('video/')).map((v) => v.sha256)),
  ];
  if (shas.length === 0) return views.map((view) => ({ ...view, video: null }));
  const [infos, ladders] = await Promise.all([
    db.selectFrom('video_info').selectAll().where('sha256', 'in', shas).execute(),
    db.selectFrom('video_ladders').selectAll().where('source_sha256', 'in', shas).execute(),
  ]);
  const infoBy = new Map(infos.map((row) => [row.sha256, row]));
  return views.map((view) => {
    const info = infoBy.get(view.sha256);
    return { ...view, video: info ? videoView(info, pick(ladders, view.sha256, which), view.url) : null };
  });
}

/** The complete ladder the view serves; failing that, the newest attempt, to show how far it got. */
function pick(
  ladders: readonly VideoLaddersTable[],
  sha256: string,
  which: 'newest' | 'first',
): VideoLaddersTable | undefined {
  const mine = ladders.filter((l) => l.source_sha256 === sha256);
  const complete = mine
    .filter((l) => l.state === 'complete')
    .sort((a, b) => (a.completed_at ?? 0) - (b.completed_at ?? 0) || a.ladder.localeCompare(b.ladder));
  if (complete.length > 0) return which === 'first' ? complete[0] : complete.at(-1);
  return mine.sort((a, b) => b.updated_at - a.updated_at)[0];
}

function videoView(info: VideoInfoTable, ladder: VideoLaddersTable | undefined, url: string): VideoView {
  const complete = ladder?.state === 'complete';
  const hls = `${url}/hls`;
  return {
    durationMs: info.duration_ms,
    width: info.width,
    height: info.height,
    hasAudio: info.has_audio === 1,
    container: info.container,
    videoCodec: info.video_codec,
    audioCodec: info.audio_codec,
    loudness: info.loudness ? JSON.parse(info.loudness) : null,
    state: ladder?.state ?? 'none',
    renditions: complete && ladder.renditions ? (JSON.parse(ladder.renditions) as RenditionView[]) : [],
    encoder: complete ? ladder.encoder : null,
    fallbacks: complete && ladder.fallbacks ? (JSON.parse(ladder.fallbacks) as unknown[]) : [],
    urls: complete
      ? {
          master: `${hls}/master.m3u8`,
          poster: `${hls}/poster.jpg`,
          sprite: `${hls}/sprite.jpg`,
          spriteVtt: `${hls}/sprite.vtt`,
          fallback: `${hls}/fallback.mp4`,
        }
      : null,
  };
}
