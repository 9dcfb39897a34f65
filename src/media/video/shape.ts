import type { Config } from '../../config/config.ts';
import type { LadderCodec, VideoPreset } from '../../config/video-settings.ts';
import { ladderKey } from './keys.ts';
import { ladderSettings, planLadder, type Rendition } from './ladder.ts';
import type { VideoInfo } from './probe.ts';

/** What shapes a ladder's outputs: the preset, the rungs, the ladder's key and its renditions. */
export interface LadderShape {
  preset: VideoPreset;
  rungs: Rendition[];
  ladder: string;
  jobs: { codec: LadderCodec; rung: Rendition; name: string }[];
}

/**
 * The shape of a source's ladder under `config` and `preset`, from its probe: the rungs (ladder.ts), the
 * key of everything that shapes the outputs (keys.ts), and one rendition per codec and rung.
 */
export function ladderShape(config: Config, info: VideoInfo, preset: VideoPreset): LadderShape {
  const video = info.video!;
  const rungs = planLadder(
    {
      width: video.displayWidth,
      height: video.displayHeight,
      frameRate: video.fps ?? 30,
      hasAudio: info.audio !== null,
    },
    ladderSettings(config),
  );
  const ladder = ladderKey({
    codecs: config.videoCodecs,
    preset,
    rungs: rungs.map((r) => `${r.width}x${r.height}@${r.frameRate.num}/${r.frameRate.den}`),
    segment: `${rungs[0]!.segmentDuration.num}/${rungs[0]!.segmentDuration.den}`,
    format: config.videoSegmentFormat,
    // Left out when off, so that the keys of ladders made without it stay what they were.
    loudnorm: config.videoLoudnorm ?? undefined,
  });
  const jobs = config.videoCodecs.flatMap((codec) =>
    rungs.map((rung) => ({ codec, rung, name: `${codec}-${rung.name}` })),
  );
  return { preset, rungs, ladder, jobs };
}
