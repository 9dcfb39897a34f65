import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT } from './child.ts';

/**
 * test/fixtures/recording-ffmpeg.sh: an ffmpeg that logs each run (its pid and arguments) and, asked to,
 * encodes HLS at the input's own pace, so that a video job's encodes last as long as the clip.
 */
export const RECORDING_FFMPEG = join(ROOT, 'test/fixtures/recording-ffmpeg.sh');

/** The environment the recording ffmpeg reads: where it logs, and real-time HLS encodes. */
export function recordingFfmpeg(log: string): Record<string, string> {
  return { RECORDING_FFMPEG_LOG: log, RECORDING_FFMPEG_REALTIME: '1' };
}

/** One ffmpeg run the wrapper logged. */
export interface FfmpegRun {
  pid: number;
  args: string;
  /** The rendition an HLS encode wrote (its output folder's name, e.g. `h264-240p`); null for other runs. */
  rendition: string | null;
}

/** The runs logged so far, in order. */
export async function ffmpegRuns(log: string): Promise<FfmpegRun[]> {
  let text: string;
  try {
    text = await readFile(log, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const space = line.indexOf(' ');
      const args = line.slice(space + 1);
      const hls = / -f hls /.test(` ${args} `);
      // Each attempt writes into <work>/<rendition>/attempt-<n>/index.m3u8 (src/media/video/encode.ts).
      const folder = /\/([^/ ]+)\/attempt-\d+\/index\.m3u8/.exec(args);
      return { pid: Number(line.slice(0, space)), args, rendition: hls && folder ? folder[1]! : null };
    });
}

/** Whether process `pid` has ended (signal 0 probes it without sending anything). */
export function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}
