import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { loadConfig } from '../../../src/config/config.ts';
import { VIDEO_PRESETS } from '../../../src/config/video-settings.ts';
import {
  type LadderSource,
  ladderSettings,
  planLadder,
  type Rendition,
} from '../../../src/media/video/ladder.ts';
import {
  audioArgs,
  choosePreset,
  encoderArgs,
  PRESET_ENCODERS,
  PRESET_FAMILIES,
  PRESETS,
  rungFilter,
} from '../../../src/media/video/presets.ts';

const CONFIG = loadConfig({}, {});
const SETTINGS = ladderSettings(CONFIG);

function ladder(source: Partial<LadderSource> = {}): Rendition[] {
  return planLadder({ width: 1920, height: 1080, frameRate: 30, hasAudio: true, ...source }, SETTINGS);
}

/** The value after `option` in an argument list. */
function optionValue(args: readonly string[], option: string): string | undefined {
  const i = args.indexOf(option);
  return i < 0 ? undefined : args[i + 1];
}

describe('encoderArgs: every family', () => {
  const r720 = ladder()[3]!;

  it('names the encoder, the GOP in frames and the forced-keyframe grid', () => {
    for (const family of PRESET_FAMILIES) {
      const args = encoderArgs(r720, 'balanced', family);
      assert.equal(optionValue(args, '-c:v'), PRESET_ENCODERS[family].encoder, family);
      assert.equal(optionValue(args, '-g'), '120', family);
      assert.equal(optionValue(args, '-force_key_frames'), 'expr:gte(t,n_forced*4-0.000001)', family);
    }
  });

  it('writes an NTSC segment as its exact fraction', () => {
    const r = ladder({ frameRate: 29.97 })[3]!;
    const args = encoderArgs(r, 'balanced', 'x264');
    assert.equal(optionValue(args, '-force_key_frames'), 'expr:gte(t,n_forced*1001/250-0.000001)');
    assert.equal(optionValue(args, '-g'), '120');
    const halved = ladder({ frameRate: 59.94 });
    assert.equal(optionValue(encoderArgs(halved[0]!, 'fast', 'x264'), '-g'), '120');
    assert.equal(optionValue(encoderArgs(halved[4]!, 'fast', 'x264'), '-g'), '240');
    assert.equal(
      optionValue(encoderArgs(halved[0]!, 'fast', 'x264'), '-force_key_frames'),
      optionValue(encoderArgs(halved[4]!, 'fast', 'x264'), '-force_key_frames'),
    );
  });

  it('turns scene-cut keyframes off where the encoder has them', () => {
    const x264 = encoderArgs(r720, 'fast', 'x264');
    assert.equal(optionValue(x264, '-sc_threshold'), '0');
    assert.equal(optionValue(x264, '-x264-params'), 'scenecut=0:open_gop=0');
    assert.equal(optionValue(x264, '-keyint_min'), '120');
    assert.equal(optionValue(x264, '-forced-idr'), '1');
    assert.equal(optionValue(encoderArgs(r720, 'fast', 'nvenc'), '-no-scenecut'), '1');
    assert.equal(optionValue(encoderArgs(r720, 'fast', 'qsv'), '-adaptive_i'), '0');
    assert.equal(
      optionValue(encoderArgs(r720, 'fast', 'svt-av1'), '-svtav1-params'),
      'scd=0:irefresh-type=2',
    );
    assert.equal(optionValue(encoderArgs(r720, 'fast', 'libvpx-vp9'), '-keyint_min'), '120');
  });

  it('caps the rate at the table max and buffer, scaled by the preset', () => {
    for (const preset of VIDEO_PRESETS) {
      for (const family of PRESET_FAMILIES) {
        const args = encoderArgs(r720, preset, family);
        const rates = r720.bitrates[PRESET_ENCODERS[family].codec];
        const scale = PRESETS[preset][family].rateScale;
        assert.equal(
          optionValue(args, '-maxrate'),
          String(Math.round(rates.max * scale)),
          `${preset} ${family}`,
        );
        assert.equal(
          optionValue(args, '-bufsize'),
          String(Math.round(rates.buffer * scale)),
          `${preset} ${family}`,
        );
      }
    }
  });

  it('gives every preset a quality and speed per family, better quality for slower presets', () => {
    for (const family of PRESET_FAMILIES) {
      const q = (name: (typeof VIDEO_PRESETS)[number]) => PRESETS[name][family].quality;
      if (family === 'vaapi') {
        for (const name of VIDEO_PRESETS) assert.equal(q(name), null);
        continue;
      }
      assert.ok(
        q('archive')! < q('balanced')! && q('balanced')! < q('fast')! && q('fast')! < q('small')!,
        family,
      );
    }
    assert.ok(PRESETS.small.x264.rateScale < 1 && PRESETS.archive.x264.rateScale > 1);
  });

  it('uses each family its own way of aiming at quality', () => {
    assert.equal(optionValue(encoderArgs(r720, 'balanced', 'x264'), '-crf'), '21');
    assert.equal(optionValue(encoderArgs(r720, 'balanced', 'x264'), '-preset'), 'medium');
    const nvenc = encoderArgs(r720, 'balanced', 'nvenc');
    assert.deepEqual(
      [optionValue(nvenc, '-rc'), optionValue(nvenc, '-cq'), optionValue(nvenc, '-b:v')],
      ['vbr', '23', '0'],
    );
    const qsv = encoderArgs(r720, 'balanced', 'qsv');
    assert.deepEqual([optionValue(qsv, '-global_quality'), optionValue(qsv, '-b:v')], ['23', '3000000']);
    const vaapi = encoderArgs(r720, 'small', 'vaapi');
    assert.deepEqual([optionValue(vaapi, '-rc_mode'), optionValue(vaapi, '-b:v')], ['VBR', '2250000']);
    assert.equal(vaapi.includes('-pix_fmt'), false);
    assert.equal(optionValue(encoderArgs(r720, 'archive', 'svt-av1'), '-crf'), '28');
    const vp9 = encoderArgs(r720, 'balanced', 'libvpx-vp9');
    assert.deepEqual(
      [optionValue(vp9, '-crf'), optionValue(vp9, '-b:v')],
      ['33', String(r720.bitrates.vp9.max)],
    );
  });

  it('sets the High profile and the level for the H.264 families', () => {
    assert.equal(optionValue(encoderArgs(r720, 'balanced', 'x264'), '-profile:v'), 'high');
    assert.equal(optionValue(encoderArgs(r720, 'balanced', 'x264'), '-level:v'), '3.1');
    assert.equal(optionValue(encoderArgs(r720, 'balanced', 'nvenc'), '-level'), '3.1');
    assert.equal(optionValue(encoderArgs(r720, 'balanced', 'qsv'), '-level'), '31');
    assert.equal(optionValue(encoderArgs(r720, 'balanced', 'vaapi'), '-level'), '31');
    const top = ladder({ frameRate: 60 })[4]!;
    assert.equal(optionValue(encoderArgs(top, 'balanced', 'x264'), '-level:v'), '4.2');
    const uhd = planLadder({ width: 3840, height: 2160, frameRate: 30, hasAudio: false }, SETTINGS).at(-1)!;
    assert.equal(optionValue(encoderArgs(uhd, 'archive', 'x264'), '-level:v'), '5.1');
    for (const family of ['svt-av1', 'libvpx-vp9'] as const) {
      assert.equal(encoderArgs(r720, 'balanced', family).includes('-profile:v'), false);
    }
  });

  it('adds AAC-LC stereo at 48 kHz, or no audio', () => {
    for (const family of PRESET_FAMILIES) {
      const args = encoderArgs(r720, 'fast', family);
      assert.deepEqual(args.slice(-8), ['-c:a', 'aac', '-b:a', '128000', '-ac', '2', '-ar', '48000'], family);
    }
    const silent = planLadder({ width: 640, height: 360, frameRate: 30, hasAudio: false }, SETTINGS)[0]!;
    assert.deepEqual(audioArgs(silent), ['-an']);
    assert.equal(encoderArgs(silent, 'fast', 'x264').at(-1), '-an');
    assert.equal(optionValue(audioArgs(ladder()[0]!), '-b:a'), '64000');
  });

  it('refuses pictures SVT-AV1 cannot take', () => {
    const tiny = planLadder({ width: 160, height: 60, frameRate: 30, hasAudio: false }, SETTINGS)[0]!;
    assert.throws(() => encoderArgs(tiny, 'fast', 'svt-av1'), /64 pixels/);
    assert.doesNotThrow(() => encoderArgs(tiny, 'fast', 'x264'));
  });

  it('pins the whole x264 argument list', () => {
    assert.deepEqual(encoderArgs(r720, 'balanced', 'x264'), [
      ...['-c:v', 'libx264', '-preset', 'medium', '-crf', '21', '-maxrate', '4500000', '-bufsize', '6000000'],
      ...['-g', '120', '-keyint_min', '120', '-sc_threshold', '0'],
      ...['-x264-params', 'scenecut=0:open_gop=0', '-forced-idr', '1'],
      ...['-profile:v', 'high', '-level:v', '3.1', '-pix_fmt', 'yuv420p'],
      ...['-force_key_frames', 'expr:gte(t,n_forced*4-0.000001)'],
      ...['-c:a', 'aac', '-b:a', '128000', '-ac', '2', '-ar', '48000'],
    ]);
  });
});

describe('rungFilter', () => {
  it('sets the rate, then the size with square pixels, then what the encoder takes', () => {
    const r = ladder({ frameRate: 59.94 })[0]!;
    assert.equal(rungFilter(r, 'x264'), 'fps=30000/1001,scale=426:240,setsar=1,format=yuv420p');
    assert.equal(rungFilter(r, 'svt-av1'), 'fps=30000/1001,scale=426:240,setsar=1,format=yuv420p');
    assert.equal(rungFilter(r, 'qsv'), 'fps=30000/1001,scale=426:240,setsar=1,format=nv12');
    assert.equal(rungFilter(r, 'vaapi'), 'fps=30000/1001,scale=426:240,setsar=1,format=nv12,hwupload');
  });
});

describe('choosePreset', () => {
  it('takes the job override, else the tier, else the default', () => {
    const config = loadConfig({}, { videoPreset: 'fast', videoTierPresets: 'premium=archive,free=small' });
    assert.equal(choosePreset({ override: 'balanced', tier: 'premium' }, config), 'balanced');
    assert.equal(choosePreset({ tier: 'premium' }, config), 'archive');
    assert.equal(choosePreset({ tier: 'free' }, config), 'small');
    assert.equal(choosePreset({ tier: 'standard' }, config), 'fast');
    assert.equal(choosePreset({}, config), 'fast');
    assert.equal(choosePreset({}, CONFIG), 'balanced');
  });

  it('refuses tier maps that name unknown tiers or presets', () => {
    assert.throws(() => loadConfig({}, { videoTierPresets: 'gold=fast' }), /tier=preset/);
    assert.throws(() => loadConfig({}, { videoTierPresets: 'free=quick' }), /tier=preset/);
    assert.throws(() => loadConfig({}, { videoTierPresets: 'free=fast,free=small' }), /twice/);
    assert.throws(() => loadConfig({}, { videoPreset: 'quick' as 'fast' }), /videoPreset|VIDEO_PRESET/);
  });
});

// Every option encoderArgs writes, checked against this machine's ffmpeg: the encoder's own options
// (`ffmpeg -h encoder=NAME`), libavcodec's generic ones and ffmpeg's per-stream options (`-h full`).
// A named value (NVENC's -preset p5, VA-API's -rc_mode VBR) must be one the option lists.
const ffmpegHere = (() => {
  try {
    execFileSync('ffmpeg', ['-hide_banner', '-version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env['CI'] === 'true') throw new Error('ffmpeg is required in CI');
    return false;
  }
})();

describe('encoderArgs against ffmpeg 5.1', { skip: ffmpegHere ? false : 'ffmpeg is not installed' }, () => {
  type Options = Map<string, Set<string>>;
  const help = (...args: string[]) =>
    execFileSync('ffmpeg', ['-hide_banner', ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });

  /** Options of an AVOptions block: name -> the named constants listed under it. */
  function avOptions(text: string): Options {
    const out: Options = new Map();
    let current: Set<string> | undefined;
    for (const line of text.split('\n')) {
      const option = /^ {2}-(\S+)\s+<\w+>/.exec(line);
      if (option !== null) {
        current = new Set();
        out.set(option[1]!, current);
        continue;
      }
      const constant = /^ {5}(\S+)\s/.exec(line);
      if (constant !== null && current !== undefined) current.add(constant[1]!);
    }
    return out;
  }

  const full = help('-h', 'full');
  const generic = avOptions(
    full.slice(full.indexOf('AVCodecContext AVOptions:')).split(/\n\S.*AVOptions:\n/)[0]!,
  );
  const main = new Set(
    [...full.slice(0, full.indexOf('AVCodecContext AVOptions:')).matchAll(/^-(\S+)/gm)].map((m) => m[1]!),
  );

  function check(args: readonly string[], encoder: Options, label: string): void {
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      if (!arg.startsWith('-') || /^-\d/.test(arg)) continue;
      const name = arg.slice(1).replace(/:[va]$/, '');
      const value = args[i + 1];
      const known = encoder.get(name) ?? generic.get(name);
      if (known === undefined) {
        assert.ok(main.has(name), `${label}: ffmpeg has no option -${name}`);
        continue;
      }
      if (value !== undefined && known.size > 0 && !/^-?\d+(\.\d+)?$/.test(value)) {
        assert.ok(known.has(value), `${label}: -${name} ${value} is not one of ${[...known].join(', ')}`);
      }
    }
  }

  for (const family of PRESET_FAMILIES) {
    it(`knows every option of ${family} (${PRESET_ENCODERS[family].encoder})`, () => {
      const encoder = avOptions(help('-h', `encoder=${PRESET_ENCODERS[family].encoder}`));
      const aac = avOptions(help('-h', 'encoder=aac'));
      for (const preset of VIDEO_PRESETS) {
        for (const rung of ladder({ frameRate: 59.94 })) {
          const args = encoderArgs(rung, preset, family);
          const audio = args.indexOf('-c:a');
          check(args.slice(0, audio), encoder, `${family} ${preset} ${rung.name}`);
          check(args.slice(audio), aac, `aac ${preset} ${rung.name}`);
        }
      }
    });
  }

  it('knows every filter of the rung chains', () => {
    const filters = help('-filters');
    for (const name of ['fps', 'scale', 'setsar', 'format', 'hwupload']) {
      assert.match(filters, new RegExp(`^ \\S+ ${name} `, 'm'), name);
    }
  });
});
