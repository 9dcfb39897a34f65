import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { copyFile, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * Video fixtures, made with ffmpeg's lavfi sources (testsrc2 for pictures, sine for sound), never
 * downloaded. Each generator makes its file once per test run and answers its path; ask for them
 * freely. They are small and short: 160x90 at 25 fps unless the point is the size, 1-2 s, libx264
 * `ultrafast`; each costs an ffmpeg start, which is most of its time.
 *
 * "Once per test run": `node --test` runs each test file in a process of its own, so the files live in
 * a folder named after the parent process (the runner) and a hash of this file, shared by the test
 * files of one run and remade when a generator changes. Each file is written under a temporary name
 * and renamed when complete, so processes making the same fixture at once do not see half of one.
 * Folders of runners that have exited are removed the next time fixtures are asked for.
 *
 * They use the system's ffmpeg directly (not src/media/video/), so a bug there cannot hide in them.
 */

const run = promisify(execFile);

/** The common clip: what the fixtures below hold unless their comment says otherwise. */
export const CLIP = { width: 160, height: 90, fps: 25, seconds: 2, sampleRate: 48_000, channels: 2 } as const;

/** The `skip` option of tests that need ffmpeg and ffprobe: a reason without them; in CI they must be there. */
export function skipWithoutFfmpeg(): string | false {
  const ok = ['ffmpeg', 'ffprobe'].every(
    (tool) => spawnSync(tool, ['-version'], { stdio: 'ignore' }).status === 0,
  );
  if (ok) return false;
  if (process.env['CI'] === 'true')
    throw new Error('ffmpeg and ffprobe are required in CI (.ci/run installs them)');
  return 'ffmpeg or ffprobe is not installed';
}

const PREFIX = 'conveyor-video-fixtures-';
const VERSION = createHash('sha256')
  .update(readFileSync(fileURLToPath(import.meta.url)))
  .digest('hex')
  .slice(0, 12);
let folder: string | undefined;
const made = new Map<string, Promise<string>>();

function dir(): string {
  if (folder === undefined) {
    sweep();
    folder = join(tmpdir(), `${PREFIX}${process.ppid}-${VERSION}`);
    mkdirSync(folder, { recursive: true });
  }
  return folder;
}

/** Removes the fixture folders of test runs whose runner is gone. */
function sweep(): void {
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(name.startsWith(PREFIX) ? name.slice(PREFIX.length).split('-')[0] : Number.NaN);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.ppid || running(pid)) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Makes `name` once per run: `make` writes to a name of this process's own, renamed when complete. */
function fixture(name: string, make: (path: string) => Promise<void>): Promise<string> {
  let file = made.get(name);
  if (file === undefined) {
    const path = join(dir(), name);
    const part = `${path}.${process.pid}.part`;
    file = existsSync(path)
      ? Promise.resolve(path)
      : make(part)
          .then(() => rename(part, path))
          .then(() => path);
    made.set(name, file);
  }
  return file;
}

async function ffmpeg(...args: string[]): Promise<void> {
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y', ...args]);
}

const picture = (size = `${CLIP.width}x${CLIP.height}`, seconds: number = CLIP.seconds) => [
  '-f',
  'lavfi',
  '-i',
  `testsrc2=size=${size}:rate=${CLIP.fps}:duration=${seconds}`,
];
const sound = (seconds: number = CLIP.seconds, filter = '') => [
  '-f',
  'lavfi',
  '-i',
  `sine=frequency=440:sample_rate=${CLIP.sampleRate}:duration=${seconds}${filter}`,
];
const h264 = ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'];
const aac = ['-c:a', 'aac', '-b:a', '64k', '-ac', String(CLIP.channels)];

/** H.264 (Constrained Baseline, yuv420p) + AAC-LC stereo 48 kHz in MP4: the everyday upload. */
export function h264AacMp4(): Promise<string> {
  return fixture('h264-aac.mp4', (out) =>
    ffmpeg(...picture(), ...sound(), ...h264, ...aac, '-f', 'mp4', out),
  );
}

/** The same streams in Matroska. */
export function h264AacMkv(): Promise<string> {
  return fixture('h264-aac.mkv', (out) =>
    ffmpeg(...picture(), ...sound(), ...h264, ...aac, '-f', 'matroska', out),
  );
}

/** The same streams in QuickTime (`qt  ` brand). */
export function h264AacMov(): Promise<string> {
  return fixture('h264-aac.mov', (out) =>
    ffmpeg(...picture(), ...sound(), ...h264, ...aac, '-f', 'mov', out),
  );
}

/** VP9 + Opus in WebM. */
export function vp9OpusWebm(): Promise<string> {
  return fixture('vp9-opus.webm', (out) =>
    ffmpeg(
      ...picture(),
      ...sound(),
      ...['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '200k'],
      ...['-c:a', 'libopus', '-b:a', '48k', '-ac', String(CLIP.channels)],
      ...['-f', 'webm', out],
    ),
  );
}

/**
 * A portrait phone recording: the H.264 MP4 stored 160x90 with a display matrix that turns it 90
 * degrees clockwise for display (90x160), as phones write it (ffprobe: "rotation": -90).
 *
 * ffmpeg 5.1 has no `-display_rotation` (6.0 added it); it turns a `rotate` metadata value on a stream
 * copy into a display matrix with av_display_rotation_set(), i.e. counterclockwise degrees. So 270
 * here: 270 counterclockwise is 90 clockwise. Checked when made, so a different ffmpeg cannot quietly
 * produce another rotation.
 */
export function rotated90Mp4(): Promise<string> {
  return fixture('rotated-90.mp4', async (out) => {
    await ffmpeg('-i', await h264AacMp4(), '-c', 'copy', '-metadata:s:v:0', 'rotate=270', '-f', 'mp4', out);
    const { stdout } = await run('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', out]);
    if (!/"rotation": -90\b/.test(stdout))
      throw new Error(`rotated-90.mp4 has no -90 display matrix: ${stdout}`);
  });
}

/**
 * 1279x719, 1 s at 10 fps, no audio: odd width and height. 4:2:0 chroma halves both dimensions, so
 * libx264 refuses odd sizes in yuv420p; yuv444p (High 4:4:4 Predictive) takes them. testsrc2 rounds
 * its own size down to even, hence the scale (and setsar, which keeps the pixels square).
 */
export function oddSizeMp4(): Promise<string> {
  return fixture('odd-1279x719.mp4', (out) =>
    ffmpeg(
      ...['-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10:duration=1'],
      ...['-vf', 'scale=1279:719,setsar=1,format=yuv444p', '-c:v', 'libx264', '-preset', 'ultrafast'],
      ...['-f', 'mp4', out],
    ),
  );
}

/**
 * Variable frame rate, no audio: 30 frames at 30 fps (the first second), then 15 frames at 10 fps
 * (1.5 s more); ffprobe gives r_frame_rate 30/1 and an avg_frame_rate of about 18. The timestamps come
 * from setpts; `-fps_mode passthrough` keeps ffmpeg from evening them out.
 */
export function variableFrameRateMp4(): Promise<string> {
  return fixture('vfr.mp4', (out) =>
    ffmpeg(
      ...['-f', 'lavfi', '-i', 'testsrc2=size=160x90:rate=30:duration=1.5'],
      ...['-vf', "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'", '-fps_mode', 'passthrough', ...h264],
      ...['-f', 'mp4', out],
    ),
  );
}

/** The H.264 picture alone, no audio stream: a screen recording. */
export function noAudioMp4(): Promise<string> {
  return fixture('no-audio.mp4', (out) => ffmpeg(...picture(), ...h264, '-f', 'mp4', out));
}

/** H.264 + an AAC stream of digital silence: an audio stream with nothing to measure. */
export function silentAudioMp4(): Promise<string> {
  return fixture('silent-audio.mp4', (out) =>
    ffmpeg(...picture(), ...sound(CLIP.seconds, ',volume=0'), ...h264, ...aac, '-f', 'mp4', out),
  );
}

/** AAC alone in an M4A: audio without video. */
export function audioOnlyM4a(): Promise<string> {
  return fixture('audio-only.m4a', (out) => ffmpeg(...sound(), ...aac, '-f', 'ipod', out));
}

/**
 * The H.264 + AAC MP4 with its index in front (`-movflags +faststart`) and cut at half its size: it
 * probes as a whole 2 s video, and decoding fails where the data ends (a cut-off upload or download).
 */
export function truncatedMp4(): Promise<string> {
  return fixture('truncated.mp4', async (out) => {
    const whole = `${out}.whole.mp4`;
    await ffmpeg(...picture(), ...sound(), ...h264, ...aac, '-movflags', '+faststart', '-f', 'mp4', whole);
    const { size } = await stat(whole);
    const bytes = await readFile(whole);
    await writeFile(out, bytes.subarray(0, Math.floor(size / 2)));
    await rm(whole);
  });
}

/** 64 KiB of pseudo-random bytes (a fixed sequence): no container ffprobe knows. */
export function garbageFile(): Promise<string> {
  return fixture('garbage.mp4', async (out) => {
    const bytes = Buffer.alloc(64 * 1024);
    // A linear congruential generator (Numerical Recipes' constants): the same bytes on every run.
    let x = 0x2545f491;
    for (let i = 0; i < bytes.length; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      bytes[i] = x >>> 24;
    }
    await writeFile(out, bytes);
  });
}

/** An empty file named like a video. */
export function emptyFile(): Promise<string> {
  return fixture('empty.mp4', async (out) => {
    await (await open(out, 'w')).close();
  });
}

/** A copy of a fixture under `name` in the fixture folder, e.g. one whose name starts with `-`. */
export function copyOf(path: Promise<string>, name: string): Promise<string> {
  return fixture(name, async (out) => copyFile(await path, out));
}

/** Every generator by name, for tests that go through several. */
export const VIDEO_FIXTURES = {
  h264AacMp4,
  h264AacMkv,
  h264AacMov,
  vp9OpusWebm,
  rotated90Mp4,
  oddSizeMp4,
  variableFrameRateMp4,
  noAudioMp4,
  silentAudioMp4,
  audioOnlyM4a,
  truncatedMp4,
  garbageFile,
  emptyFile,
} as const satisfies Record<string, () => Promise<string>>;
export type VideoFixture = keyof typeof VIDEO_FIXTURES;
