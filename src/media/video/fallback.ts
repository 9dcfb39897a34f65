/**
 * The fallback chain of one encode
 * ================================
 *
 * A proven hardware encoder (hwaccel.ts) can still fail on a real input: the GPU is busy or out of
 * sessions, its decoder does not know the source's profile, a driver update broke it since the cached
 * trial. One encode is therefore a short list of attempts, best first:
 *
 *   1. hardware decode + hardware encode   frames stay on the GPU (when ffmpeg lists the family's hwaccel)
 *   2. software decode + hardware encode   the decoder is out of the picture
 *   3. CPU                                 the codec's proven CPU encoder (libx264, …)
 *
 * encodeWithFallback runs them in order inside one job attempt, so a fallback never consumes one of the
 * job's attempts. It moves on only when a failure is the hardware's; a cancel stops at once, and a bad
 * input (or a full disk, a missing binary) ends the chain with that error, since another encoder would
 * fail the same way. The CPU attempt's failure is the job's failure. Each step taken is answered as
 * `{from, to, reason}` for the job record and `conveyor_video_encode_fallbacks_total`.
 *
 * `run` is injected: the job hands in the real ffmpeg runner, which builds its arguments from the
 * attempt's data and writes each attempt's output to a fresh temporary place, so a failed attempt's
 * partial files never mix with the next one's.
 */
import { PermanentJobError } from '../../jobs/types.ts';
import {
  ACCEL_FAMILIES,
  type AccelFamily,
  deviceArgs,
  type EncoderCandidate,
  type EncoderReport,
  stderrTail,
  uploadFilters,
  type VideoCodec,
} from './hwaccel.ts';

export type AttemptStep = 'hw_decode' | 'sw_decode' | 'cpu';

/** One way to run an encode, as data the ffmpeg argument builder turns into options. */
export interface EncodeAttempt {
  /** Names it in fallbacks and metric labels: `h264_nvenc:hw_decode`, `h264_nvenc:sw_decode`, `libx264`. */
  name: string;
  step: AttemptStep;
  family: AccelFamily;
  codec: VideoCodec;
  encoder: string;
  /** Options before `-i`: the hardware device and decoder. */
  inputArgs: string[];
  /** The scale filter that works on this attempt's frames (`scale_cuda` on CUDA frames, …). */
  scaleFilter: string;
  /** Filters after the software ones and before the encoder, e.g. the VAAPI upload. */
  uploadFilters: string[];
}

/**
 * Hardware decoding per family. ffmpeg 5.1 (`ffmpeg -h full`): "-hwaccel_output_format format  select
 * output format used with HW accelerated decoding"; naming the hardware format (cuda, vaapi) keeps the
 * decoded frames in GPU memory, so the scaling runs there too (scale_cuda, scale_vaapi) and nothing is
 * copied back. VideoToolbox hands
 * its frames back in system memory, so the ordinary `scale` follows it. QSV has none here: ffmpeg 5.1
 * says of `-hwaccel qsv` that "both the decoder and the encoder must support QSV acceleration and no
 * filters must be used", and a ladder scales.
 */
function hardwareDecode(
  family: AccelFamily,
  vaapiDevice: string | null,
): { inputArgs: string[]; scaleFilter: string } | null {
  switch (family) {
    case 'nvenc':
      return { inputArgs: ['-hwaccel', 'cuda', '-hwaccel_output_format', 'cuda'], scaleFilter: 'scale_cuda' };
    case 'vaapi':
      return vaapiDevice === null
        ? null
        : {
            inputArgs: [
              '-hwaccel',
              'vaapi',
              '-hwaccel_device',
              vaapiDevice,
              '-hwaccel_output_format',
              'vaapi',
            ],
            scaleFilter: 'scale_vaapi',
          };
    case 'videotoolbox':
      return { inputArgs: ['-hwaccel', 'videotoolbox'], scaleFilter: 'scale' };
    default:
      return null;
  }
}

/**
 * The encoder a job uses for `codec`: the report's best. A codec nothing proved (AV1 on an ffmpeg
 * without libsvtav1, or with `videoHwaccel=off` and no CPU encoder) cannot be encoded here at all, and
 * retrying on the same worker would not change that.
 */
export function chooseEncoder(report: EncoderReport, codec: VideoCodec): EncoderCandidate {
  const best = report.best[codec];
  if (best) return best;
  const tried = report.failed.filter((f) => f.codec === codec).map((f) => `${f.encoder}: ${f.reason}`);
  throw new PermanentJobError(
    `No ${codec} encoder works with this worker's ffmpeg${tried.length > 0 ? ` (${tried.join('; ')})` : ''}`,
    'video_encoder_unavailable',
  );
}

/** The attempts for an encode with `chosen`, best first, ending with the codec's proven CPU encoder. */
export function fallbackChain(chosen: EncoderCandidate, report: EncoderReport): EncodeAttempt[] {
  const base = { family: chosen.family, codec: chosen.codec, encoder: chosen.encoder };
  const attempts: EncodeAttempt[] = [];
  if (chosen.family !== 'cpu') {
    const device = deviceArgs(chosen.family, report.vaapiDevice);
    const method = ACCEL_FAMILIES[chosen.family].hwaccel;
    const decode = hardwareDecode(chosen.family, report.vaapiDevice);
    if (decode && method !== null && report.hwaccels.includes(method)) {
      attempts.push({
        ...base,
        name: `${chosen.encoder}:hw_decode`,
        step: 'hw_decode',
        inputArgs: decode.inputArgs,
        scaleFilter: decode.scaleFilter,
        uploadFilters: [],
      });
    }
    attempts.push({
      ...base,
      name: `${chosen.encoder}:sw_decode`,
      step: 'sw_decode',
      inputArgs: device,
      scaleFilter: 'scale',
      uploadFilters: uploadFilters(chosen.family),
    });
  }
  const cpu = report.proven.find((c) => c.family === 'cpu' && c.codec === chosen.codec);
  if (cpu) {
    attempts.push({
      family: 'cpu',
      codec: cpu.codec,
      encoder: cpu.encoder,
      name: cpu.encoder,
      step: 'cpu',
      inputArgs: [],
      scaleFilter: 'scale',
      uploadFilters: [],
    });
  }
  return attempts;
}

export type FailureKind = 'cancelled' | 'input' | 'hardware';

/** What ffmpeg says when a GPU, its driver or a hardware encoder or decoder gives up. */
const HARDWARE =
  /nvenc|cuda|cuvid|libnvidia|OpenEncodeSession|qsv|mfx|vaapi|va_openDriver|VA display|libva|videotoolbox|VTCompressionSession|VTDecompression|hwupload|hwaccel|hw_frames|hwframe|hardware|Device creation failed|No device available/i;
/**
 * What ffmpeg says when the input or the surroundings are at fault: a file that is not media, a missing
 * or unreadable file, a full disk, a stream map that matches nothing. Another encoder would fail alike.
 */
const INPUT =
  /Invalid data found when processing input|moov atom not found|No such file or directory|Permission denied|No space left on device|does not contain any stream|matches no streams|Could not find codec parameters|End of file/i;

/**
 * Whose fault a failed attempt is. A cancel (the job's signal, an AbortError) is nobody's: stop. A
 * message naming hardware is the hardware's; one naming the input is the input's; anything else counts
 * as the hardware's, because drivers word their failures in many ways and a wrong guess costs one more
 * attempt that fails the same way, while the CPU attempt's failure still ends the job with its own error.
 */
export function classifyEncodeFailure(error: unknown, signal?: AbortSignal): FailureKind {
  if (signal?.aborted) return 'cancelled';
  const { name, code, stderr, message } = (error ?? {}) as {
    name?: unknown;
    code?: unknown;
    stderr?: unknown;
    message?: unknown;
  };
  if (name === 'AbortError' || name === 'JobAbort' || code === 'ABORT_ERR') return 'cancelled';
  // The ffmpeg binary itself could not be started: no encoder choice helps.
  if (code === 'ENOENT' || code === 'EACCES') return 'input';
  const text = `${typeof stderr === 'string' ? stderr : ''}\n${typeof message === 'string' ? message : ''}`;
  if (HARDWARE.test(text)) return 'hardware';
  if (INPUT.test(text)) return 'input';
  return 'hardware';
}

export interface Fallback {
  from: string;
  to: string;
  reason: string;
}

export interface FallbackOutcome<T> {
  result: T;
  /** The attempt that succeeded. */
  attempt: EncodeAttempt;
  /** Every step taken on the way, in order; empty when the first attempt succeeded. */
  fallbacks: Fallback[];
}

export interface FallbackOptions {
  /** The job's signal: once aborted, nothing more runs and the failure is a cancel. */
  signal?: AbortSignal;
  /** Replaces classifyEncodeFailure, e.g. with one that knows the runner's error codes. */
  classify?: (error: unknown, signal?: AbortSignal) => FailureKind;
  /** Told of each fallback as it happens (job record, metrics), before the next attempt starts. */
  onFallback?: (fallback: Fallback) => void;
}

/** Why an attempt failed, in a line: its stderr's tail, else its message. */
function reasonOf(error: unknown): string {
  const { stderr, message } = (error ?? {}) as { stderr?: unknown; message?: unknown };
  const tail = typeof stderr === 'string' ? stderrTail(stderr) : '';
  return tail || (typeof message === 'string' ? stderrTail(message) : String(error));
}

/**
 * Runs `attempts` in order until one succeeds. A failure the classifier gives to the hardware moves on
 * to the next attempt; any other failure, and the last attempt's, is thrown as it is (the fallbacks
 * taken so far have been told to `onFallback`).
 */
export async function encodeWithFallback<T>(
  attempts: readonly EncodeAttempt[],
  run: (attempt: EncodeAttempt, index: number) => Promise<T>,
  options: FallbackOptions = {},
): Promise<FallbackOutcome<T>> {
  if (attempts.length === 0) throw new Error('encodeWithFallback: no attempt to run');
  const classify = options.classify ?? classifyEncodeFailure;
  const fallbacks: Fallback[] = [];
  for (const [index, attempt] of attempts.entries()) {
    options.signal?.throwIfAborted();
    try {
      return { result: await run(attempt, index), attempt, fallbacks };
    } catch (error) {
      const next = attempts[index + 1];
      if (next === undefined || classify(error, options.signal) !== 'hardware') throw error;
      const fallback = { from: attempt.name, to: next.name, reason: reasonOf(error) };
      fallbacks.push(fallback);
      options.onFallback?.(fallback);
    }
  }
  // Unreachable: the loop returns or throws on its last attempt.
  throw new Error('encodeWithFallback: ran out of attempts');
}
