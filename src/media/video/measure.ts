/**
 * What the video job measured of each rendition (the master playlist's line for it, its quality) and
 * what it answers as its result.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { LadderCodec } from '../../config/video-settings.ts';
import { codecList } from './codecs.ts';
import { MEDIA_PLAYLIST } from './encode.ts';
import { FALLBACK_MP4, POSTER, type Quality, SPRITE, SPRITE_VTT } from './extras.ts';
import type { Fallback } from './fallback.ts';
import { measureBandwidth, mediaSegments } from './hls/media.ts';
import type { Rendition } from './ladder.ts';
import { probeVideo } from './probe.ts';

/** What the job measured of one rendition: the master playlist's line for it, and what the API shows. */
export interface RenditionResult {
  name: string;
  codec: LadderCodec;
  width: number;
  height: number;
  frameRate: number;
  bandwidth: number;
  averageBandwidth: number;
  codecs: string[];
  bytes: number;
  encoder: string;
  /** Against the source (extras.ts, qualityGraph); null when CONVEYOR_VIDEO_QUALITY_ANALYSIS is off. */
  quality: Quality | null;
}

/** A rendition's bit rates from its segments, and its RFC 6381 codecs from the encoded streams. */
export async function measureRendition(
  dir: string,
  files: readonly string[],
  ffprobePath: string,
  what: { name: string; codec: LadderCodec; rung: Rendition; encoder: string; quality: Quality | null },
): Promise<RenditionResult> {
  const playlist = await readFile(join(dir, MEDIA_PLAYLIST), 'utf8');
  const segments = await Promise.all(
    mediaSegments(playlist).map(async (s) => ({
      duration: s.duration,
      bytes: (await stat(join(dir, s.uri))).size,
    })),
  );
  const { num, den } = what.rung.segmentDuration;
  const { peak, average } = measureBandwidth(segments, num / den);
  const probed = await probeVideo(join(dir, MEDIA_PLAYLIST), { ffprobePath });
  const streams = [
    {
      codec: probed.video!.codec,
      ...(probed.video!.profile ? { profile: probed.video!.profile } : {}),
      ...(probed.video!.level !== null ? { level: probed.video!.level } : {}),
      ...(probed.video!.pixFmt ? { pixFmt: probed.video!.pixFmt } : {}),
      width: what.rung.width,
      height: what.rung.height,
      frameRate: what.rung.frameRate.num / what.rung.frameRate.den,
    },
    ...(probed.audio
      ? [{ codec: probed.audio.codec, ...(probed.audio.profile ? { profile: probed.audio.profile } : {}) }]
      : []),
  ];
  let bytes = 0;
  for (const file of files) bytes += (await stat(join(dir, file))).size;
  return {
    name: what.name,
    codec: what.codec,
    width: what.rung.width,
    height: what.rung.height,
    frameRate: what.rung.frameRate.num / what.rung.frameRate.den,
    bandwidth: peak,
    averageBandwidth: average,
    codecs: codecList(streams),
    bytes,
    encoder: what.encoder,
    quality: what.quality,
  };
}

/** What GET /api/v1/jobs/{id} shows of a finished ladder; file paths are relative to the ladder. */
export function jobResult(
  payload: { assetId: string; sha256: string },
  ladder: string,
  renditions: readonly RenditionResult[],
  encoder: string,
  encoded: number,
  fallbacks: readonly Fallback[] = [],
) {
  return {
    assetId: payload.assetId,
    sha256: payload.sha256,
    ladder,
    encoded,
    encoder,
    // The encoder attempts this attempt gave up on (hardware to CPU), in order.
    fallbacks,
    renditions: renditions.map((r) => ({
      name: r.name,
      codec: r.codec,
      width: r.width,
      height: r.height,
      bandwidth: r.bandwidth,
      averageBandwidth: r.averageBandwidth,
      quality: r.quality ?? null,
    })),
    poster: POSTER,
    sprite: SPRITE,
    spriteVtt: SPRITE_VTT,
    fallback: FALLBACK_MP4,
  };
}
