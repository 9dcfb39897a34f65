/**
 * Loudness of a video's audio (EBU R128 / ITU-R BS.1770): integrated loudness, loudness range and true
 * peak, measured by ffmpeg's `ebur128` filter over the first audio stream.
 *
 * Why ebur128 and not `loudnorm=print_format=json`: both implement BS.1770 and report the same four
 * figures (ebur128's "Threshold" under integrated loudness is loudnorm's input_thresh), which are
 * exactly what a second `loudnorm` pass takes as measured_I, measured_LRA, measured_TP and
 * measured_thresh. But loudnorm measures by normalising: it runs its whole normaliser, upsampled to
 * 192 kHz, and the measurement is a side effect, while ebur128 only measures (4x oversampling for the
 * true peak). On this machine a 60 s track measured at 390x real time with ebur128 and 88x with
 * loudnorm. The price is text instead of JSON: ebur128 logs its summary at the info level, a format
 * stable since the filter was added (2012), parsed below. Its per-frame lines go to the verbose level
 * (`framelog=verbose`), so stderr holds only the summary and the bounded tail always has it.
 */
import { VideoError } from './errors.ts';
import { ffmpegArgs } from './ffmpeg-args.ts';
import type { VideoInfo } from './probe.ts';
import { type FfmpegRunOptions, runFfmpeg } from './run.ts';

export interface Loudness {
  /** Integrated loudness in LUFS; null for silence (nothing above the -70 LUFS absolute gate). */
  integratedLufs: number | null;
  /** The relative gate of the integrated measurement, LUFS (loudnorm's measured_thresh); null for silence. */
  thresholdLufs: number | null;
  /** Loudness range (LRA) in LU. */
  loudnessRangeLu: number | null;
  /** True peak in dBTP (ffmpeg labels it dBFS); null for digital silence (-inf). */
  truePeakDbtp: number | null;
}

/** BS.1770's absolute gate: blocks quieter than this are ignored; an all-gated track reports exactly it. */
const ABSOLUTE_GATE_LUFS = -70;

/**
 * Measures the audio stream that `info` found (its first); null when there is none. Decodes all of
 * that stream, so give it a time limit (`videoCheckTimeoutSeconds`) like the decode check.
 */
export async function measureLoudness(
  path: string,
  info: Pick<VideoInfo, 'audio'>,
  options: FfmpegRunOptions = {},
): Promise<Loudness | null> {
  if (info.audio === null) return null;
  const args = ffmpegArgs({
    logLevel: 'info',
    inputs: [{ path }],
    outputs: [
      {
        path: '-',
        format: 'null',
        maps: [`0:${info.audio.index}`],
        audioFilter: 'ebur128=peak=true:framelog=verbose',
      },
    ],
  });
  const { stderrTail } = await runFfmpeg(args, options);
  const loudness = parseEbur128Summary(stderrTail);
  if (loudness === null) {
    throw new VideoError('video_process_failed', 'ffmpeg printed no loudness summary', {
      details: { stderrTail },
    });
  }
  return loudness;
}

/**
 * The last ebur128 summary in `log`, or null when there is none. Its shape (ffmpeg 5.1):
 *
 *   [Parsed_ebur128_0 @ 0x...] Summary:
 *
 *     Integrated loudness:
 *       I:         -21.8 LUFS
 *       Threshold: -31.8 LUFS
 *
 *     Loudness range:
 *       LRA:         0.0 LU
 *       ...
 *
 *     True peak:
 *       Peak:      -16.1 dBFS
 */
export function parseEbur128Summary(log: string): Loudness | null {
  const at = log.lastIndexOf('Summary:');
  if (at === -1) return null;
  const summary = log.slice(at);
  const integrated = figure(summary, /Integrated loudness:\s*I:\s*(\S+)\s*LUFS\s*Threshold:\s*(\S+)\s*LUFS/);
  if (integrated === null) return null;
  const i = integrated[0] ?? null;
  const threshold = integrated[1] ?? null;
  const silent = i === null || i <= ABSOLUTE_GATE_LUFS;
  return {
    integratedLufs: silent ? null : i,
    thresholdLufs: silent ? null : threshold,
    loudnessRangeLu: figure(summary, /Loudness range:\s*LRA:\s*(\S+)\s*LU/)?.[0] ?? null,
    truePeakDbtp: figure(summary, /True peak:\s*Peak:\s*(\S+)\s*dBFS/)?.[0] ?? null,
  };
}

/** The captured numbers of `pattern` in `text` (`-inf`, `nan` are null), or null when it does not match. */
function figure(text: string, pattern: RegExp): (number | null)[] | null {
  const match = pattern.exec(text);
  if (!match) return null;
  return match.slice(1).map((v) => {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  });
}
