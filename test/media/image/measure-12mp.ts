/**
 * A hand-run measurement, not a test: the cost of rendering a 12 MP photo.
 *
 *   node test/media/image/measure-12mp.ts make /tmp/12mp.jpg
 *   node test/media/image/measure-12mp.ts transform /tmp/12mp.jpg jpeg|webp|avif [avifEffort]
 *   node test/media/image/measure-12mp.ts variants /tmp/12mp.jpg
 *   node test/media/image/measure-12mp.ts analyse /tmp/12mp.jpg
 *   node test/media/image/measure-12mp.ts baseline
 *
 * Each measuring run is a fresh process so that its peak RSS (getrusage maxrss) is its own. Set
 * SHARP_CONCURRENCY to override libvips' thread count (sharp picks 1 on glibc without jemalloc).
 */
import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import type { OutputFormat } from '../../../src/grammar/transform-spec.ts';
import {
  analyseImage,
  DEFAULT_IMAGE_LIMITS,
  DEFAULT_RENDER_OPTIONS,
  DEFAULT_VARIANT_FORMATS,
  DEFAULT_VARIANT_OPTIONS,
  DEFAULT_VARIANT_PRESETS,
  renderTransform,
  renderVariants,
  TRANSFORM_ENCODERS,
} from '../../../src/media/image/index.ts';
import { sceneSvg } from './sample-images.ts';

const [command, path, format, effort] = process.argv.slice(2);
if (process.env.SHARP_CONCURRENCY) sharp.concurrency(Number(process.env.SHARP_CONCURRENCY));
const RUNS = 5;

function peakMb(): string {
  return (process.resourceUsage().maxRSS / 1024).toFixed(0);
}

async function timed(label: string, work: () => Promise<unknown>): Promise<void> {
  const times: number[] = [];
  let result: unknown;
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    result = await work();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  const bytes = (result as { bytes?: number }).bytes;
  console.log(
    `${label}: median ${times[RUNS >> 1]!.toFixed(0)} ms (min ${times[0]!.toFixed(0)}, max ${times[RUNS - 1]!.toFixed(0)})` +
      `${bytes === undefined ? '' : `, ${bytes} bytes`}, peak RSS ${peakMb()} MB, libvips threads ${sharp.concurrency()}`,
  );
}

if (command === 'make' && path) {
  // A photo-like 4000x3000: a gradient, 600 overlapping translucent shapes of every size (detail that
  // survives downscaling) and grain, so that the encoders have real work to do.
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const shapes = Array.from({ length: 600 }, () => {
    const [x, y, r] = [random() * 4000, random() * 3000, 5 + random() ** 3 * 400];
    const colour = `rgb(${Math.floor(random() * 256)},${Math.floor(random() * 256)},${Math.floor(random() * 256)})`;
    return random() < 0.5
      ? `<circle cx="${x}" cy="${y}" r="${r}" fill="${colour}" opacity="0.6"/>`
      : `<rect x="${x}" y="${y}" width="${r * 1.7}" height="${r}" fill="${colour}" opacity="0.6"/>`;
  }).join('');
  const scene = await sharp(sceneSvg(4000, 3000))
    .composite([
      {
        input: Buffer.from(
          `<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="3000">${shapes}</svg>`,
        ),
      },
    ])
    .png()
    .toBuffer();
  const grain = await sharp({
    create: {
      width: 4000,
      height: 3000,
      channels: 3,
      background: '#000',
      noise: { type: 'gaussian', mean: 128, sigma: 14 },
    },
  })
    .png()
    .toBuffer();
  const jpeg = await sharp(scene)
    .composite([{ input: grain, blend: 'overlay' }])
    .jpeg({ quality: 90 })
    .toBuffer();
  await writeFile(path, jpeg);
  console.log(`wrote ${path}: ${jpeg.length} bytes`);
} else if (command === 'transform' && path && format) {
  const encoders =
    effort === undefined
      ? TRANSFORM_ENCODERS
      : { ...TRANSFORM_ENCODERS, avif: { quality: 50, effort: Number(effort) } };
  const options = { ...DEFAULT_RENDER_OPTIONS, encoders };
  const spec = { width: 512, height: 512, fit: 'inside' as const, gravity: 'center' as const, dpr: 1 };
  await timed(
    `inside 512x512 -> ${format}${format === 'avif' ? ` effort ${encoders.avif.effort}` : ''}`,
    () => renderTransform(path, { ...spec, format: format as OutputFormat }, options),
  );
} else if (command === 'variants' && path) {
  const started = performance.now();
  const out = await renderVariants(
    path,
    DEFAULT_VARIANT_PRESETS,
    DEFAULT_VARIANT_FORMATS,
    DEFAULT_VARIANT_OPTIONS,
  );
  console.log(
    `default variants (${out.length}): ${(performance.now() - started).toFixed(0)} ms, ` +
      `${out.reduce((n, v) => n + v.bytes, 0)} bytes, peak RSS ${peakMb()} MB`,
  );
  for (const v of out) console.log(`  ${v.preset}.${v.format} ${v.width}x${v.height} ${v.bytes} bytes`);
} else if (command === 'baseline') {
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
    .jpeg()
    .toBuffer();
  console.log(`baseline (node + sharp loaded, one trivial pipeline): peak RSS ${peakMb()} MB`);
} else if (command === 'analyse' && path) {
  await timed('analyse', () => analyseImage(path, DEFAULT_IMAGE_LIMITS));
} else {
  console.error('usage: see the comment at the top of this file');
  process.exit(2);
}
