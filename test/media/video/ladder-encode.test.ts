import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as HLS from 'hls-parser';
import { codecString, type ProbedStream } from '../../../src/media/video/codecs.ts';
import { type MasterVariant, writeMaster } from '../../../src/media/video/hls/master.ts';
import {
  isComplete,
  measureBandwidth,
  mediaSegments,
  overlongSegments,
  rewriteMediaPlaylist,
} from '../../../src/media/video/hls/media.ts';
import { hlsTime, type LadderSettings, planLadder, type Rendition } from '../../../src/media/video/ladder.ts';
import {
  encoderArgs,
  PRESET_ENCODERS,
  type PresetFamily,
  rungFilter,
} from '../../../src/media/video/presets.ts';

/**
 * One tiny real encode per software preset family, through the ladder's own plan and arguments: a
 * few seconds of lavfi at 160x90 and 59.94 fps with a tone, two rungs (the smaller held to half the
 * frame rate), one-second segments (shorter ones make ffmpeg write EXT-X-TARGETDURATION:0, which a
 * strict parser rightly refuses). Checked with ffprobe: keyframes exactly
 * on the segment grid and at the same instants on both rungs; codec strings from ffprobe's report equal
 * the ones the init segment's own boxes spell; the media playlists and the master parse with hls-parser.
 */

const execFileAsync = promisify(execFile);
HLS.setOptions({ strictMode: true });

const SOFTWARE: readonly PresetFamily[] = ['x264', 'svt-av1', 'libvpx-vp9'];
const SETTINGS: LadderSettings = {
  heights: [64, 90],
  segmentSeconds: 1,
  maxFrameRate: 60,
  highFrameRateHeight: 90,
  sourceRungPercent: 10,
};
const SOURCE_SECONDS = 3;

const encoders = (() => {
  try {
    return execFileSync('ffmpeg', ['-hide_banner', '-encoders'], { encoding: 'utf8' });
  } catch {
    if (process.env['CI'] === 'true') throw new Error('ffmpeg is required in CI');
    return null;
  }
})();

function skipReason(family: PresetFamily): string | false {
  if (encoders === null) return 'ffmpeg is not installed';
  if (new RegExp(` ${PRESET_ENCODERS[family].encoder} `).test(encoders)) return false;
  if (process.env['CI'] === 'true') throw new Error(`ffmpeg lacks ${PRESET_ENCODERS[family].encoder} in CI`);
  return `this ffmpeg has no ${PRESET_ENCODERS[family].encoder}`;
}

interface Encoded {
  rung: Rendition;
  dir: string;
  playlist: string;
}

async function encode(rung: Rendition, family: PresetFamily, dir: string): Promise<Encoded> {
  await execFileAsync('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-nostdin'],
    ...['-f', 'lavfi', '-i', `testsrc2=size=160x90:rate=60000/1001:duration=${SOURCE_SECONDS}`],
    ...['-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=44100:duration=${SOURCE_SECONDS}`],
    ...['-filter:v', rungFilter(rung, family)],
    ...encoderArgs(rung, 'fast', family),
    ...['-f', 'hls', '-hls_time', hlsTime(rung), '-hls_playlist_type', 'vod', '-hls_segment_type', 'fmp4'],
    ...['-hls_fmp4_init_filename', 'init.mp4', '-hls_segment_filename', join(dir, 'seg_%03d.m4s')],
    join(dir, 'index.m3u8'),
  ]);
  return { rung, dir, playlist: await readFile(join(dir, 'index.m3u8'), 'utf8') };
}

async function ffprobe(...args: string[]): Promise<unknown> {
  const { stdout } = await execFileAsync('ffprobe', ['-v', 'error', '-of', 'json', ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout);
}

/**
 * Keyframe times of the video, from the packets' K flag. The brief's `-skip_frame nokey` frame listing
 * relies on the decoder honouring skip_frame, which libdav1d (AV1) does not; the container's sync-sample
 * flag is what a player and the hls muxer go by anyway.
 */
async function keyframeTimes(playlist: string): Promise<number[]> {
  const out = (await ffprobe(
    '-select_streams',
    'v:0',
    '-show_entries',
    'packet=pts_time,flags',
    playlist,
  )) as {
    packets: { pts_time: string; flags: string }[];
  };
  const times = out.packets.map((p) => ({ t: Number(p.pts_time), key: p.flags.startsWith('K') }));
  const first = Math.min(...times.map((p) => p.t));
  return times
    .filter((p) => p.key)
    .map((p) => p.t - first)
    .sort((a, b) => a - b);
}

/** The codec string the init segment's own configuration box spells (avcC, av1C, vpcC). */
function boxCodec(init: Buffer): string {
  const box = (type: string) => {
    const at = init.indexOf(type, 0, 'latin1');
    return at < 0 ? undefined : init.subarray(at + 4);
  };
  const hex = (b: number) => b.toString(16).padStart(2, '0');
  const two = (n: number) => String(n).padStart(2, '0');
  const avcC = box('avcC');
  if (avcC) return `avc1.${hex(avcC[1]!)}${hex(avcC[2]!)}${hex(avcC[3]!)}`;
  const av1C = box('av1C');
  if (av1C) {
    const profile = av1C[1]! >> 5;
    const level = av1C[1]! & 0x1f;
    const tier = av1C[2]! & 0x80 ? 'H' : 'M';
    const depth = av1C[2]! & 0x20 ? 12 : av1C[2]! & 0x40 ? 10 : 8;
    return `av01.${profile}.${two(level)}${tier}.${two(depth)}`;
  }
  const vpcC = box('vpcC');
  if (vpcC) return `vp09.${two(vpcC[4]!)}.${two(vpcC[5]!)}.${two(vpcC[6]! >> 4)}`;
  throw new Error('no codec configuration box in the init segment');
}

interface ProbeStream {
  codec_type: string;
  codec_name: string;
  profile?: string;
  level?: number;
  pix_fmt?: string;
  width?: number;
  height?: number;
  r_frame_rate?: string;
}

async function probedStreams(playlist: string): Promise<ProbedStream[]> {
  const out = (await ffprobe('-show_streams', playlist)) as { streams: ProbeStream[] };
  const ordered = [...out.streams].sort((a, b) =>
    a.codec_type === 'video' ? -1 : b.codec_type === 'video' ? 1 : 0,
  );
  return ordered.map((s) => {
    const [num, den] = (s.r_frame_rate ?? '0/1').split('/').map(Number);
    return {
      codec: s.codec_name,
      profile: s.profile,
      level: s.level,
      pixFmt: s.pix_fmt,
      width: s.width,
      height: s.height,
      frameRate: num! / den!,
    };
  });
}

for (const family of SOFTWARE) {
  describe(`a two-rung ladder encoded with ${family}`, { skip: skipReason(family) }, () => {
    const rungs = planLadder({ width: 160, height: 90, frameRate: 60000 / 1001, hasAudio: true }, SETTINGS);
    let root: string;
    let encoded: Encoded[];

    before(async () => {
      root = await mkdtemp(join(tmpdir(), `conveyor-ladder-${family}-`));
      encoded = [];
      for (const rung of rungs) {
        const dir = join(root, rung.name);
        await execFileAsync('mkdir', ['-p', dir]);
        encoded.push(await encode(rung, family, dir));
      }
    });
    after(async () => {
      await rm(root, { recursive: true, force: true });
    });

    it('plans a full-rate and a half-rate rung with the same GOP duration', () => {
      assert.deepEqual(
        rungs.map((r) => [r.name, r.width, r.height, `${r.frameRate.num}/${r.frameRate.den}`, r.gopFrames]),
        [
          ['64p', 114, 64, '30000/1001', 30],
          ['90p', 160, 90, '60000/1001', 60],
        ],
      );
    });

    it('puts keyframes exactly on the segment grid, at the same instants on both rungs', async () => {
      const segment = rungs[0]!.segmentDuration.num / rungs[0]!.segmentDuration.den; // 1.001 s
      const grid: number[] = [];
      for (let t = 0; t < SOURCE_SECONDS; t += segment) grid.push(t);
      const times = await Promise.all(encoded.map((e) => keyframeTimes(join(e.dir, 'index.m3u8'))));
      for (const [i, list] of times.entries()) {
        assert.equal(list.length, grid.length, `${rungs[i]!.name}: ${list.join(', ')}`);
        for (const [k, t] of list.entries())
          assert.ok(Math.abs(t - grid[k]!) < 0.0005, `${rungs[i]!.name} ${t}`);
      }
      for (const [k, t] of times[0]!.entries())
        assert.ok(Math.abs(t - times[1]![k]!) < 0.0001, `keyframe ${k}`);
    });

    it('writes complete media playlists, one GOP per segment, that a strict parser reads', () => {
      for (const { rung, playlist } of encoded) {
        assert.equal(isComplete(playlist), true);
        assert.deepEqual(overlongSegments(playlist), []);
        const parsed = HLS.parse(playlist) as HLS.types.MediaPlaylist;
        const ours = mediaSegments(playlist);
        assert.deepEqual(
          parsed.segments.map((s) => [s.uri, s.duration]),
          ours.map((s) => [s.uri, s.duration]),
        );
        const segment = rung.segmentDuration.num / rung.segmentDuration.den;
        assert.equal(ours.length, Math.ceil(SOURCE_SECONDS / segment));
        for (const s of ours.slice(0, -1))
          assert.ok(Math.abs(s.duration - segment) < 0.001, `${rung.name} ${s.duration}`);
        const total = ours.reduce((sum, s) => sum + s.duration, 0);
        assert.ok(Math.abs(total - SOURCE_SECONDS) < 0.05, `${rung.name} lasts ${total} s`);
      }
    });

    it('spells the same codec strings from ffprobe as the init segment does', async () => {
      for (const { rung, dir } of encoded) {
        const streams = await probedStreams(join(dir, 'index.m3u8'));
        const codecs = streams.map(codecString);
        const box = boxCodec(await readFile(join(dir, 'init.mp4')));
        if (family === 'libvpx-vp9') {
          // ffmpeg 5.1 writes vpcC's level from the picture size alone; the string counts the rate too.
          const [, profile, level, depth] = codecs[0]!.split('.');
          const [, boxProfile, boxLevel, boxDepth] = box.split('.');
          assert.deepEqual([profile, depth], [boxProfile, boxDepth], rung.name);
          assert.ok(Number(level) >= Number(boxLevel), `${codecs[0]} against ${box}`);
        } else {
          assert.equal(codecs[0], box, rung.name);
        }
        assert.equal(codecs[1], 'mp4a.40.2');
        assert.equal(streams[0]!.width, rung.width);
        assert.equal(streams[0]!.height, rung.height);
        if (family === 'x264') {
          const args = encoderArgs(rung, 'fast', family);
          const level = args[args.indexOf('-level:v') + 1]!.replace('.', '');
          assert.equal(codecs[0], `avc1.6400${Number(level).toString(16).padStart(2, '0')}`);
        }
      }
    });

    it('makes a master from the measured segments that a strict parser reads', async () => {
      const variants: MasterVariant[] = [];
      for (const { rung, dir, playlist } of encoded) {
        const segments = await Promise.all(
          mediaSegments(playlist).map(async (s) => ({
            duration: s.duration,
            bytes: (await stat(join(dir, s.uri))).size,
          })),
        );
        const { peak, average } = measureBandwidth(
          segments,
          rung.segmentDuration.num / rung.segmentDuration.den,
        );
        variants.push({
          bandwidth: peak,
          averageBandwidth: average,
          codecs: (await probedStreams(join(dir, 'index.m3u8'))).map(codecString),
          width: rung.width,
          height: rung.height,
          frameRate: rung.frameRate.num / rung.frameRate.den,
          uri: `${rung.name}/index.m3u8?token=t0k`,
        });
      }
      const master = HLS.parse(
        writeMaster(variants, { segments: 'fmp4', startBandwidth: 0 }),
      ) as HLS.types.MasterPlaylist;
      assert.equal(master.variants.length, 2);
      for (const v of master.variants) {
        const given = variants.find((g) => g.uri === v.uri)!;
        assert.ok(v.bandwidth >= v.averageBandwidth! && v.averageBandwidth! > 0);
        assert.equal(v.codecs, given.codecs.join(','));
        assert.deepEqual(v.resolution, { width: given.width, height: given.height });
        assert.equal(v.frameRate, Number(given.frameRate.toFixed(3)));
      }
      assert.deepEqual(
        master.variants.map((v) => v.bandwidth),
        variants.map((v) => v.bandwidth).sort((a, b) => a - b),
      );
    });

    it('signs every URI of a real media playlist and nothing else', async () => {
      for (const { dir, playlist } of encoded) {
        const signed = rewriteMediaPlaylist(playlist, (uri) => `${uri}?exp=1&sig=x`);
        const parsed = HLS.parse(signed) as HLS.types.MediaPlaylist;
        const files = new Set(await readdir(dir));
        for (const s of parsed.segments) {
          assert.match(s.uri, /\?exp=1&sig=x$/);
          assert.ok(files.has(s.uri.replace('?exp=1&sig=x', '')), s.uri);
          assert.equal(s.map.uri, 'init.mp4?exp=1&sig=x');
        }
        assert.equal(signed.replaceAll('?exp=1&sig=x', ''), playlist);
      }
    });
  });
}
