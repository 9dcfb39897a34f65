import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { VIDEO_JOB } from '../../src/media/video-job.ts';
import type { TestServer } from './conveyor.ts';
import { waitFor } from './jobs.ts';

const run = promisify(execFile);

/** The settings of a Conveyor that encodes a small two-rung ladder with 1 s segments, in process. */
export const LADDER_SETTINGS = {
  serveWorkers: true,
  jobPollMs: 20,
  jobHeartbeatMs: 50,
  videoHeights: '120,240',
  videoSegmentSeconds: 1,
  videoPreset: 'fast',
  videoHwaccel: 'off',
} as const;

/** A 426x240 H.264/AAC MP4 of `seconds` at 30 fps with a tone, made with lavfi in `dir`. */
export async function makeClip(dir: string, seconds: number): Promise<Buffer> {
  const path = join(dir, `clip-${seconds}.mp4`);
  await run('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-y'],
    ...['-f', 'lavfi', '-i', `testsrc2=size=426x240:rate=30:duration=${seconds}`],
    ...['-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`],
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest'],
    ...['-movflags', '+faststart', path],
  ]);
  return readFile(path);
}

/** The video job of an asset, once it has ended (succeeded or dead). */
export async function videoJob(server: TestServer, assetId: string): Promise<any> {
  return waitFor(
    `video job of ${assetId}`,
    async () => {
      const { body } = await server.json('GET', `/api/v1/jobs?type=${VIDEO_JOB}&limit=100`);
      const job = body.items.find((j: any) => j.payload.assetId === assetId);
      return job && ['succeeded', 'dead'].includes(job.state) ? job : null;
    },
    120_000,
  );
}

/** The URIs of a playlist: URI lines and URI="..." attributes (RFC 8216 §4.1, §4.2). */
export function playlistUris(text: string): string[] {
  const uris: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === '') continue;
    if (!line.startsWith('#')) uris.push(line);
    else for (const match of line.matchAll(/URI="([^"]*)"/g)) uris.push(match[1]!);
  }
  return uris;
}
