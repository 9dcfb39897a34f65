/**
 * Memory under hostile images (test/media/image/hostile-images.ts), in two parts:
 *
 *   per-input  each hostile image (and an ordinary 12 MP JPEG, for scale) alone through each step of
 *              the image library (analyse, variants, one transform), every run in a fresh process:
 *              how much RSS that one step adds at its peak, i.e. which input and which step cost
 *              the memory, next to what cost.ts estimates for it;
 *   seven      the seven costliest uploaded at once to a running Conveyor (`bin/conveyor serve`, SQLite
 *              + local folder, default settings) while a transform of each is requested: its RSS
 *              before, at the peak (sampled every 10 ms, and the kernel's VmHWM) and once every job
 *              has ended and 10 s have passed.
 *
 *   node_modules/.bin/node bench/image-memory.ts [--only per-input,seven] [--images a,b]
 *     [--env NAME=value ...] [--direct] [--dir <folder with the images, reused between runs>]
 *
 * --env is passed to the measured processes (e.g. MALLOC_ARENA_MAX=2, LD_PRELOAD=<jemalloc>, or any
 * CONVEYOR_ setting). --direct starts the server as `node dist/cli/main.js serve` instead of through
 * bin/conveyor, i.e. without the launcher's malloc settings. Prints Markdown; nothing is written to the repository. Everything listens on
 * 127.0.0.1.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import type { ResolvedSpec } from '../src/grammar/transform-spec.ts';
import { signTransformPath } from '../src/media/image/transform-url.ts';
import { freePort } from '../test/helpers/child.ts';
import {
  HOSTILE_IMAGES,
  type HostileImage,
  SEVEN_BOMBS,
  writeHostileImages,
} from '../test/media/image/hostile-images.ts';
import { sceneJpeg } from '../test/media/image/sample-images.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: 'per-input,seven' },
    images: { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    dir: { type: 'string' },
    step: { type: 'string' },
    file: { type: 'string' },
    direct: { type: 'boolean', default: false },
  },
});
const KEY = { id: 'bench', secret: Buffer.from('b'.repeat(48)) };
const STEPS = ['analyse', 'variants', 'transform'] as const;
/** Not hostile: an ordinary 12 MP baseline JPEG, for scale. */
const REFERENCE = 'photo-12mp';
type Step = (typeof STEPS)[number];

if (args.step) {
  await measureStep(args.step as Step, args.file!);
} else {
  await main();
}

// --- one step in a process of its own ---------------------------------------------------------------

function status(pid: number | 'self' = 'self'): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/**
 * The child: loads the library, runs a trivial pipeline (so that libvips' start-up is not counted),
 * then `step` on `file` with the default settings, and prints what RSS did.
 */
async function measureStep(step: Step, file: string): Promise<void> {
  const image = await import('../src/media/image/index.ts');
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
    .jpeg()
    .toBuffer();
  const bytes = await readFile(file);
  const spec = { width: 512, height: 512, fit: 'inside', gravity: 'center', dpr: 1, format: 'webp' } as const;
  const estimate = await estimateStep(step, bytes, spec).catch(() => undefined);
  const before = status().rss;
  const started = performance.now();
  let outcome = 'ok';
  try {
    if (step === 'analyse') await image.analyseImage(bytes, image.DEFAULT_IMAGE_LIMITS);
    if (step === 'variants') {
      await image.renderVariants(
        bytes,
        image.DEFAULT_VARIANT_PRESETS,
        image.DEFAULT_VARIANT_FORMATS,
        image.DEFAULT_VARIANT_OPTIONS,
      );
    }
    if (step === 'transform') await image.renderTransform(bytes, spec, image.DEFAULT_RENDER_OPTIONS);
  } catch (error) {
    outcome = (error as { code?: string }).code ?? String(error);
  }
  const ms = performance.now() - started;
  const after = status();
  process.stdout.write(
    `${JSON.stringify({ before, peak: after.hwm, after: after.rss, ms, outcome, estimate })}\n`,
  );
}

/** What the library estimates the step needs (src/media/image/cost.ts), from the header. */
async function estimateStep(step: Step, bytes: Buffer, spec: ResolvedSpec): Promise<number> {
  const image = await import('../src/media/image/index.ts');
  const cost = await import('../src/media/image/cost.ts');
  const { variantSetBytes } = await import('../src/media/image/variants.ts');
  const { planResize } = await import('../src/media/image/geometry.ts');
  const source = await image.probeImage(bytes, image.DEFAULT_IMAGE_LIMITS);
  if (step === 'analyse') return cost.analysisBytes(source);
  if (step === 'transform') {
    const options = image.DEFAULT_RENDER_OPTIONS;
    const plan = planResize(source, spec, {
      maxDimension: options.maxOutputDimension,
      enlarge: options.enlarge,
    });
    return cost.transformBytes(source, plan, spec.format);
  }
  const geometry = { maxDimension: 16383, enlarge: false };
  const plans = image.DEFAULT_VARIANT_PRESETS.map((preset) => planResize(source, preset, geometry));
  return variantSetBytes(source, plans, image.DEFAULT_VARIANT_FORMATS);
}

// --- the parent ---------------------------------------------------------------------------------------

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('CONVEYOR_') && name !== 'NODE_OPTIONS') env[name] = value;
  }
  for (const pair of args.env) {
    const eq = pair.indexOf('=');
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

function MB(bytes: number): string {
  return `${Math.round(bytes / 1e6)} MB`;
}

async function perInput(paths: Record<string, string>, names: readonly string[], out: string[]) {
  out.push(
    '### Each hostile image alone, step by step',
    '',
    'RSS added at the peak (VmHWM minus RSS before the step) by one step on one image, each in a fresh process, default settings; after the slash, what src/media/image/cost.ts estimates for it (what the step reserves in the memory budget).',
    '',
    `| Image | File | ${STEPS.map((s) => `${s} peak`).join(' | ')} | ${STEPS.map((s) => `${s} time`).join(' | ')} |`,
    `|---|--:|${STEPS.map(() => '--:|').join('')}${STEPS.map(() => '--:|').join('')}`,
  );
  for (const name of names) {
    const cells: string[] = [];
    const times: string[] = [];
    for (const step of STEPS) {
      const run = spawnSync(
        process.execPath,
        [fileURLToPath(import.meta.url), '--step', step, '--file', paths[name]!],
        { cwd: ROOT, env: childEnv(), encoding: 'utf8' },
      );
      const line = run.stdout.trim().split('\n').at(-1) ?? '';
      try {
        const r = JSON.parse(line) as {
          before: number;
          peak: number;
          ms: number;
          outcome: string;
          estimate?: number;
        };
        const estimate = r.estimate === undefined ? '' : ` / ${MB(r.estimate)}`;
        const measured = `${MB(r.peak - r.before)}${estimate}`;
        cells.push(r.outcome === 'ok' ? measured : `${r.outcome} (${measured})`);
        times.push(`${(r.ms / 1000).toFixed(1)} s`);
      } catch {
        cells.push(`failed: ${run.stderr.trim().split('\n').at(-1)}`);
        times.push('');
      }
      process.stderr.write(`${name} ${step}: ${cells.at(-1)}\n`);
    }
    const size = (await readFile(paths[name]!)).length;
    out.push(`| ${name} | ${(size / 1024).toFixed(0)} KiB | ${cells.join(' | ')} | ${times.join(' | ')} |`);
  }
  out.push('');
}

interface Conveyor {
  base: string;
  pid: number;
  key: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startConveyor(work: string): Promise<Conveyor> {
  const port = await freePort();
  const dataDir = await mkdtemp(join(work, 'conveyor-'));
  const key = `cvk_${randomBytes(32).toString('base64url')}`;
  const base = `http://127.0.0.1:${port}`;
  const env = {
    CONVEYOR_DATA_DIR: dataDir,
    CONVEYOR_HOST: '127.0.0.1',
    CONVEYOR_PORT: String(port),
    CONVEYOR_PUBLIC_URL: base,
    CONVEYOR_ADMIN_KEY: key,
    CONVEYOR_LOG_LEVEL: 'warn',
    CONVEYOR_RATE_LIMIT_PER_KEY: '0',
    CONVEYOR_RATE_LIMIT_PER_ADDRESS: '0',
    CONVEYOR_GC_INTERVAL_SECONDS: '0',
    CONVEYOR_SIGNING_KEYS: `${KEY.id}:${KEY.secret.toString()}`,
    ...childEnv(),
  };
  // --direct: Node on the compiled build without the launcher, i.e. without its malloc settings.
  const [command, argv] = args.direct
    ? [process.execPath, [join(ROOT, 'dist/cli/main.js'), 'serve']]
    : [join(ROOT, 'bin/conveyor'), ['serve']];
  if (args.direct) spawnSync(join(ROOT, 'bin/conveyor'), ['--help'], { cwd: ROOT, stdio: 'ignore' });
  const child = spawn(command, argv, { cwd: ROOT, env, stdio: 'inherit' });
  for (;;) {
    if (child.exitCode !== null) throw new Error('Conveyor exited during start-up');
    if ((await fetch(`${base}/healthz`).catch(() => null))?.ok) break;
    await sleep(100);
  }
  return {
    base,
    pid: child.pid!,
    key,
    child,
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

async function api(c: Conveyor, method: string, path: string, body?: Buffer): Promise<any> {
  const res = await fetch(c.base + path, {
    method,
    headers: { authorization: `Bearer ${c.key}`, 'content-type': 'application/octet-stream' },
    ...(body ? { body } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The image jobs of `ids` once all have ended, by asset id. */
async function jobsEnded(c: Conveyor, ids: readonly string[]): Promise<Map<string, any>> {
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    const { items } = await api(c, 'GET', '/api/v1/jobs?type=image.process&limit=100');
    const ended = new Map<string, any>();
    for (const job of items) {
      if (ids.includes(job.payload.assetId) && ['succeeded', 'dead'].includes(job.state)) {
        ended.set(job.payload.assetId, job);
      }
    }
    if (ended.size === ids.length) return ended;
    if (Date.now() > deadline) {
      throw new Error(`no ended image job for ${ids.filter((id) => !ended.has(id)).join(', ')}`);
    }
    await sleep(200);
  }
}

async function transform(c: Conveyor, id: string): Promise<number> {
  const signed = `/w:512,h:512,fit:inside,f:webp/${id}`;
  const res = await fetch(`${c.base}/t/${signTransformPath(signed, KEY)}${signed}`);
  await res.arrayBuffer();
  return res.status;
}

async function seven(work: string, paths: Record<string, string>, names: readonly string[], out: string[]) {
  const conveyor = await startConveyor(work);
  try {
    // Load the image library and let start-up settle: one ordinary image through the job and a transform.
    const warm = await api(conveyor, 'POST', '/api/v1/assets?filename=warm.jpg', await sceneJpeg(1200, 800));
    await jobsEnded(conveyor, [warm.id]);
    await transform(conveyor, warm.id);
    await sleep(2000);
    const before = status(conveyor.pid).rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, status(conveyor.pid).rss);
    }, 10);
    const started = performance.now();
    const bombs = await Promise.all(names.map(async (name) => [name, await readFile(paths[name]!)] as const));
    const ids = await Promise.all(
      bombs.map(
        async ([name, bytes]) => (await api(conveyor, 'POST', `/api/v1/assets?filename=${name}`, bytes)).id,
      ),
    );
    const [statuses, jobs] = await Promise.all([
      Promise.all(ids.map((id) => transform(conveyor, id))),
      jobsEnded(conveyor, ids),
    ]);
    const seconds = (performance.now() - started) / 1000;
    await sleep(10_000);
    clearInterval(sampler);
    const after = status(conveyor.pid);
    peak = Math.max(peak, after.hwm);
    const outcomes = names.map((name, i) => {
      const job = jobs.get(ids[i])!;
      const error =
        job.state === 'dead' ? ` (${job.errors?.at(-1)?.code ?? job.errors?.at(-1)?.message ?? ''})` : '';
      return `${name}: job ${job.state}${error}, transform ${statuses[i]}`;
    });
    out.push(
      '### Seven uploaded at once, and a transform of each',
      '',
      `${names.join(', ')}: uploaded together to one \`bin/conveyor serve\` (SQLite + local folder, in-process worker), a fit-512 WebP transform of each requested as soon as it exists.`,
      '',
      '| RSS before | Peak RSS | Peak added | RSS 10 s after the last job | All done in |',
      '|--:|--:|--:|--:|--:|',
      `| ${MB(before)} | ${MB(peak)} | ${MB(peak - before)} | ${MB(after.rss)} | ${seconds.toFixed(1)} s |`,
      '',
      ...outcomes.map((line) => `- ${line}`),
      '',
    );
  } finally {
    await conveyor.stop();
  }
}

async function main(): Promise<void> {
  const only = new Set(args.only.split(','));
  const work = await mkdtemp(join(tmpdir(), 'conveyor-image-memory-'));
  const dir = args.dir ?? join(work, 'images');
  await mkdir(dir, { recursive: true });
  const names = args.images?.split(',') ?? [REFERENCE, ...HOSTILE_IMAGES];
  const wanted = [...new Set([...names, ...(only.has('seven') ? SEVEN_BOMBS : [])])];
  const missing = wanted.filter((name) => !existsSync(join(dir, name)));
  process.stderr.write(`writing ${missing.length} images into ${dir}\n`);
  if (missing.includes(REFERENCE)) await writeFile(join(dir, REFERENCE), await sceneJpeg(4000, 3000));
  await writeHostileImages(
    dir,
    missing.filter((name): name is HostileImage => name !== REFERENCE),
  );
  const paths = Object.fromEntries(wanted.map((name) => [name, join(dir, name)]));
  const out: string[] = [
    `## Image memory benchmark, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `- Machine: ${cpus().length} CPUs (${cpus()[0]?.model}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips})`,
    `- Command: \`node bench/image-memory.ts ${process.argv.slice(2).join(' ')}\``,
    '',
  ];
  try {
    if (only.has('per-input')) await perInput(paths, names, out);
    if (only.has('seven')) await seven(work, paths, SEVEN_BOMBS, out);
  } finally {
    await rm(work, { recursive: true, force: true });
    process.stdout.write(`${out.join('\n')}\n`);
  }
}
