/**
 * Video benchmark (issue 18), in one run on this machine. Each scenario prints a Markdown table; the
 * tables and the raw figures go to bench/results/video-<time>.md and .json as well.
 *
 *   overhead  Conveyor's video.ladder job against the very ffmpeg and ffprobe commands it ran, replayed by
 *             hand, on a generated 60 s 1080p source, alternating the sides over --rounds rounds.
 *   ladder    time to the first stored rendition and to the complete ladder of that source (CPU encoder,
 *             default settings), frames per second per rendition, and PeerTube's and Immich's default
 *             encoder settings run by hand on the same source.
 *   memory    Conveyor's RSS, sampled every 100 ms, while it takes a ~1 GiB source and encodes a two-rung
 *             ladder of it (ffmpeg's own memory reported apart).
 *   delivery  ~2 MB HLS segments of a real ladder through /v/<version>/hls/… against nginx serving the same
 *             files from disk, with wrk, as many processes each.
 *   chunked   a 5-minute 720p source encoded whole and in chunks (video.chunk jobs), each by an API-only
 *             server and two `conveyor worker` processes on its database: wall time, CPU, and each
 *             worker's share.
 *
 *   node_modules/.bin/node bench/video.ts [--only overhead,ladder,memory,delivery,chunked] [--rounds 3]
 *     [--seconds 60] [--memory-mib 1024] [--duration 10] [--warmup 3] [--processes 1] [--chunked-seconds 300]
 *
 * Conveyor runs as users start it (bin/conveyor serve, SQLite + local folder, its in-process worker), in
 * a temporary data folder; everything listens on 127.0.0.1. Sources are made with lavfi (testsrc2 + sine)
 * in a temporary folder and deleted at the end. Not run in CI.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from '../test/helpers/child.ts';
import { benchServerEnv } from './server-env.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The scenarios, in the order a full run takes them. A scenario is a name, a line saying what it
 * measures, and a function that appends its tables to the report.
 */
const SCENARIOS: readonly Scenario[] = [
  { name: 'overhead', what: 'ladder job against the same ffmpeg commands by hand', run: benchOverhead },
  { name: 'ladder', what: 'time to first rendition and full ladder; PeerTube and Immich', run: benchLadder },
  { name: 'memory', what: 'worker RSS during the ladder of a ~1 GiB source', run: benchMemory },
  { name: 'delivery', what: '~2 MB HLS segments: Conveyor against nginx', run: benchDelivery },
  { name: 'chunked', what: 'a 5-minute source whole and in chunks, 2 worker processes', run: benchChunked },
];

interface Scenario {
  name: string;
  what: string;
  run(ctx: Context): Promise<void>;
}

interface Context {
  work: string;
  /** Markdown, printed and saved at the end. */
  out: string[];
  /** Raw figures by scenario, saved as JSON. */
  raw: Record<string, unknown>;
}

const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: SCENARIOS.map((s) => s.name).join(',') },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '60' },
    'memory-mib': { type: 'string', default: '1024' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    processes: { type: 'string', default: '1' },
    'chunked-seconds': { type: 'string', default: '300' },
  },
});

/** How often job states, RSS and the machine are looked at. */
const JOB_POLL_MS = 500;
const RSS_SAMPLE_MS = 100;
/** The machine counts as quiet below this share of one CPU busy over QUIET_SAMPLE_MS. */
const QUIET_BUSY_PERCENT = 30;
const QUIET_SAMPLE_MS = 2000;
const QUIET_TIMEOUT_MS = 120_000;
/** Longest wait for one ladder job; a run past it is broken, not slow. */
const JOB_TIMEOUT_MS = 30 * 60_000;
/** The generated sources: 1080p30 (testsrc2 + a 440 Hz sine), as the issue asks. */
const SOURCE = { width: 1920, height: 1080, fps: 30 };
/** Seconds of the delivery scenario's 720p source: six 4 s segments. */
const DELIVERY_SECONDS = 24;
/** The delivery scenario's wrk settings, as bench/delivery.ts's. */
const WRK = { threads: 2, connections: 50 };
/** The chunked scenario's source size (its length is --chunked-seconds) and worker processes. */
const CHUNKED = { width: 1280, height: 720, workers: 2 };
/** Sizes of the PeerTube comparison's ladder: the rungs Conveyor makes of a 1080p source. */
const PEER_RUNGS = [240, 360, 480, 720, 1080];
const CLK_TCK = 100;

const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const only = new Set(args.only.split(','));
  for (const name of only) {
    if (!SCENARIOS.some((s) => s.name === name)) throw new Error(`unknown scenario ${name}`);
  }
  const work = await mkdtemp(join(tmpdir(), 'conveyor-video-bench-'));
  const started = new Date();
  const ffmpegVersion = spawnSync('ffmpeg', ['-version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  const ctx: Context = {
    work,
    out: [
      `## Video benchmark, ${stamp(started)} UTC`,
      '',
      `- Machine: ${cpus().length} CPUs (${cpus()[0]?.model}), Node ${process.version}, ${ffmpegVersion}`,
      `- Command: \`node bench/video.ts ${process.argv.slice(2).join(' ')}\``,
      '',
    ],
    raw: {},
  };
  const stop = () => {
    void rm(work, { recursive: true, force: true }).finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  try {
    for (const scenario of SCENARIOS) {
      if (!only.has(scenario.name)) continue;
      log(`${stamp(new Date())} ${scenario.name}: ${scenario.what}`);
      // A scenario that fails is reported and the others still run: each takes minutes.
      try {
        await scenario.run(ctx);
      } catch (error) {
        log(`${scenario.name} failed: ${(error as Error).stack}`);
        ctx.out.push(`### ${scenario.name}: failed`, '', `    ${(error as Error).message}`, '');
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
    const text = `${ctx.out.join('\n')}\n`;
    process.stdout.write(text);
    const results = join(ROOT, 'bench/results');
    await mkdir(results, { recursive: true });
    const base = join(results, `video-${started.toISOString().replace(/[:.]/g, '-')}`);
    await writeFile(`${base}.md`, text);
    await writeFile(`${base}.json`, JSON.stringify({ started, args, ...ctx.raw }, null, 2));
    log(`results: ${base}.md and .json`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Conveyor

interface Conveyor {
  base: string;
  pid: number;
  key: string;
  dataDir: string;
  stop(): Promise<void>;
}

async function startConveyor(work: string, env: Record<string, string>): Promise<Conveyor> {
  const port = await freePort();
  const dataDir = await mkdtemp(join(work, 'conveyor-'));
  const key = `cvk_${randomBytes(32).toString('base64url')}`;
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(join(ROOT, 'bin/conveyor'), ['serve'], {
    cwd: ROOT,
    env: benchServerEnv({ dataDir, port, adminKey: key }, env),
    stdio: 'inherit',
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error('Conveyor exited during start-up');
    if ((await fetch(`${base}/healthz`).catch(() => null))?.ok) break;
    if (Date.now() > deadline) throw new Error('Conveyor did not start');
    await sleep(100);
  }
  return {
    base,
    pid: child.pid!,
    key,
    dataDir,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

async function api(c: Conveyor, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(c.base + path, {
    method,
    headers: {
      authorization: `Bearer ${c.key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Uploads a file streamed from disk (curl -T reads it in chunks); answers the asset. */
async function upload(c: Conveyor, file: string, filename: string): Promise<any> {
  const { stdout, status } = await run('curl', [
    ...['-sS', '-X', 'POST', '-T', file, '-H', 'Expect:', '-H', 'content-type: video/mp4'],
    ...['-H', `authorization: Bearer ${c.key}`, '-w', '\n%{http_code}'],
    `${c.base}/api/v1/assets?filename=${filename}`,
  ]);
  const lines = stdout.trimEnd().split('\n');
  if (status !== 0 || lines.at(-1) !== '201') throw new Error(`upload of ${file}: ${stdout}`);
  return JSON.parse(lines.slice(0, -1).join('\n'));
}

interface JobTimes {
  id: string;
  state: string;
  /** When the upload answered, when the job started and finished (ms since the epoch). */
  uploaded: number;
  started: number;
  finished: number;
  result: any;
}

/** Waits for the video job of an asset to end. */
async function videoJob(c: Conveyor, assetId: string, uploaded: number): Promise<JobTimes> {
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  for (;;) {
    const page = await api(c, 'GET', '/api/v1/jobs?type=video.ladder&limit=100');
    const job = page.items.find((j: any) => j.payload.assetId === assetId);
    if (job && (job.state === 'succeeded' || job.state === 'dead')) {
      if (job.state !== 'succeeded') throw new Error(`video job ${job.id}: ${JSON.stringify(job)}`);
      return {
        id: job.id,
        state: job.state,
        uploaded,
        started: Date.parse(job.startedAt),
        finished: Date.parse(job.finishedAt),
        result: job.result,
      };
    }
    if (Date.now() > deadline) throw new Error(`video job of ${assetId} did not end`);
    await sleep(JOB_POLL_MS);
  }
}

/** When each rendition's files were stored (ms since the epoch), read from the video_files rows. */
function renditionsStored(c: Conveyor): Map<string, number> {
  const db = new DatabaseSync(join(c.dataDir, 'conveyor.db'), { readOnly: true });
  try {
    const rows = db
      .prepare(
        'SELECT rendition, MAX(created_at) AS at FROM video_files WHERE rendition IS NOT NULL GROUP BY rendition',
      )
      .all() as { rendition: string; at: number }[];
    return new Map(rows.map((r) => [r.rendition, Number(r.at)]));
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Recording ffmpeg and ffprobe, and replaying what they ran

interface Recorded {
  tool: 'ffmpeg' | 'ffprobe';
  /** Start and end in ms since the epoch. */
  start: number;
  end: number;
  status: number;
  args: string[];
}

/**
 * Writes bash wrappers for ffmpeg and ffprobe into `dir` that run the real program and then record
 * its start, end, exit status and arguments (NUL-separated, so any argument survives) in `dir/log`.
 * The wrapper costs one bash start per run, counted against Conveyor.
 */
async function recorders(dir: string): Promise<{ ffmpeg: string; ffprobe: string; log: string }> {
  const logDir = join(dir, 'log');
  await mkdir(logDir, { recursive: true });
  const paths: Record<string, string> = {};
  for (const tool of ['ffmpeg', 'ffprobe']) {
    const real = which(tool);
    const script = [
      '#!/bin/bash',
      '# bench/video.ts: runs the real program, then records the run for the harness to replay.',
      'start=$(date +%s%N)',
      `${JSON.stringify(real)} "$@"`,
      'status=$?',
      `{ printf '%s\\n%s\\n%s\\n' "$start" "$(date +%s%N)" "$status"; printf '%s\\0' "$@"; } > "${logDir}/$start.$$.${tool}"`,
      'exit $status',
      '',
    ].join('\n');
    paths[tool] = join(dir, tool);
    await writeFile(paths[tool], script, { mode: 0o755 });
  }
  return { ffmpeg: paths.ffmpeg!, ffprobe: paths.ffprobe!, log: logDir };
}

async function recorded(logDir: string): Promise<Recorded[]> {
  const runs: Recorded[] = [];
  for (const name of await readdir(logDir)) {
    const text = await readFile(join(logDir, name), 'utf8');
    const [start, end, status, ...rest] = text.split('\n');
    const argv = rest.join('\n').split('\0').slice(0, -1);
    runs.push({
      tool: name.endsWith('.ffprobe') ? 'ffprobe' : 'ffmpeg',
      start: Number(start) / 1e6,
      end: Number(end) / 1e6,
      status: Number(status),
      args: argv,
    });
  }
  return runs.sort((a, b) => a.start - b.start);
}

/** The runs of one job: inside its time and naming its working folder (which they answer too). */
function jobRuns(all: Recorded[], job: JobTimes, workDir: string): { runs: Recorded[]; prefix: string } {
  const pattern = new RegExp(`${escapeRegExp(workDir)}/conveyor-video-[^/]+`);
  const runs = all.filter(
    (r) => r.start >= job.started - 1 && r.end <= job.finished + 1 && r.args.some((a) => pattern.test(a)),
  );
  const prefix = runs.flatMap((r) => r.args.map((a) => pattern.exec(a)?.[0])).find(Boolean);
  if (!prefix) throw new Error(`no recorded runs for job ${job.id}`);
  return { runs, prefix };
}

/** What a recorded run was for, from its arguments. */
function kindOf(r: Recorded): string {
  const a = r.args.join(' ');
  if (r.tool === 'ffprobe') return 'ffprobe';
  const rendition = /\/([^/ ]+)\/attempt-\d+\/index\.m3u8/.exec(a)?.[1];
  if (/ -f hls /.test(` ${a} `)) return `encode ${rendition ?? '?'}`;
  if (/ssim|psnr|vmaf/.test(a)) return 'quality';
  if (a.includes('ebur128')) return 'loudness';
  if (a.includes('-xerror')) return 'decode check';
  if (a.includes('poster.jpg')) return 'poster';
  if (a.includes('sprite.jpg')) return 'sprite';
  if (a.includes('fallback.mp4')) return 'mp4 fallback';
  return 'other';
}

/**
 * Runs `runs` again one after the other, as a person would by hand, with the job's working folder
 * `prefix` replaced by `dir` (which holds the source as `source`); answers each run's wall time.
 */
async function replay(runs: Recorded[], prefix: string, dir: string): Promise<number[]> {
  const times: number[] = [];
  const tools = { ffmpeg: which('ffmpeg'), ffprobe: which('ffprobe') };
  for (const r of runs) {
    const argv = r.args.map((a) => a.replaceAll(prefix, dir));
    for (const a of argv) {
      const path = a.startsWith('file:') ? a.slice(5) : a;
      if (path.startsWith(`${dir}/`)) await mkdir(dirname(path), { recursive: true });
    }
    const started = performance.now();
    const { status, stderr } = await run(tools[r.tool], argv, { stdout: 'ignore' });
    times.push(performance.now() - started);
    if (status !== r.status) throw new Error(`replay of ${argv.join(' ')}: exit ${status}\n${stderr}`);
  }
  return times;
}

// ---------------------------------------------------------------------------------------------------
// Scenario: chunked

/** A `conveyor worker` process on `c`'s database and storage, started once it has registered. */
async function startWorker(
  c: Conveyor,
  env: Record<string, string>,
): Promise<{ pid: number; stop(): Promise<void> }> {
  const before = workerCount(c);
  const child = spawn(join(ROOT, 'bin/conveyor'), ['worker'], {
    cwd: ROOT,
    env: benchServerEnv({ dataDir: c.dataDir, port: 0, adminKey: c.key }, env),
    stdio: 'inherit',
  });
  const deadline = Date.now() + 60_000;
  while (workerCount(c) <= before) {
    if (child.exitCode !== null) throw new Error('a worker exited during start-up');
    if (Date.now() > deadline) throw new Error('a worker did not start');
    await sleep(100);
  }
  return {
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

/** Workers that have registered on `c`'s database and not stopped. */
function workerCount(c: Conveyor): number {
  const db = new DatabaseSync(join(c.dataDir, 'conveyor.db'), { readOnly: true });
  try {
    const row = db.prepare('SELECT COUNT(*) AS n FROM job_workers WHERE stopped_at IS NULL').get() as {
      n: number;
    };
    return Number(row.n);
  } finally {
    db.close();
  }
}

async function benchChunked(ctx: Context): Promise<void> {
  const seconds = Number(args['chunked-seconds']);
  const dir = join(ctx.work, 'chunked');
  await mkdir(dir);
  log(`  making the ${seconds} s ${CHUNKED.height}p source`);
  const source = await makeSource(join(dir, 'source.mp4'), {
    seconds,
    width: CHUNKED.width,
    height: CHUNKED.height,
  });
  const sourceFrames = await frames(source);
  const rows: any[] = [];
  for (const mode of ['whole', 'chunks'] as const) {
    const settings = {
      CONVEYOR_SERVE_WORKERS: 'false',
      CONVEYOR_WORKER_CONCURRENCY: '1',
      CONVEYOR_VIDEO_QUALITY_ANALYSIS: 'false',
      // The defaults (120 s, 30 s chunks) when chunked; 0 encodes every source whole.
      CONVEYOR_VIDEO_CHUNK_MIN_SECONDS: mode === 'chunks' ? '120' : '0',
    };
    const conveyor = await startConveyor(ctx.work, settings);
    const workers: { pid: number; stop(): Promise<void> }[] = [];
    try {
      for (let i = 0; i < CHUNKED.workers; i++) workers.push(await startWorker(conveyor, settings));
      // A short clip first: each worker's encoder detection and first code paths happen there.
      const clip = await makeSource(join(dir, `warmup-${mode}.mp4`), { seconds: 2, width: 640, height: 360 });
      const warm = await upload(conveyor, clip, 'warmup.mp4');
      await videoJob(conveyor, warm.id, Date.now());
      const file = await variant(source, join(dir, `${mode}.mp4`), mode);
      const q = await quiet();
      const pids = [conveyor.pid, ...workers.map((w) => w.pid)];
      const cpu0 = pids.map(cpuWithChildren);
      const meter = otherMeter();
      const uploaded = Date.now();
      const asset = await upload(conveyor, file, `${mode}.mp4`);
      const job = await videoJob(conveyor, asset.id, uploaded);
      const cpus = pids.map((pid, i) => cpuWithChildren(pid) - cpu0[i]!);
      const other = meter.stop(sum(cpus));
      const page = await api(conveyor, 'GET', '/api/v1/jobs?type=video.chunk&limit=1000');
      const chunks = page.items.filter((j: any) => j.parentId === job.id);
      const row = {
        mode,
        wallMs: job.finished - uploaded,
        cpuS: sum(cpus),
        serverCpuS: cpus[0]!,
        workerCpuS: cpus.slice(1),
        chunks: chunks.length,
        renditions: job.result.renditions.length,
        quiet: q,
        otherPercent: other.otherPercent,
      };
      rows.push(row);
      log(
        `  ${mode}: ${s1(row.wallMs)}, CPU ${row.cpuS.toFixed(0)} s (${row.workerCpuS.map((c) => c.toFixed(0)).join(' + ')} in the workers), ${row.chunks} chunk jobs`,
      );
      await rm(file, { force: true });
    } finally {
      for (const w of workers) await w.stop();
      await conveyor.stop();
    }
  }
  ctx.raw.chunked = { seconds, sourceFrames, rows };
  const [whole, chunked] = rows;
  ctx.out.push(
    `### Chunked encoding: a ${seconds} s ${CHUNKED.height}p source whole and in chunks, ${CHUNKED.workers} worker processes`,
    '',
    `An API-only \`conveyor serve\` and ${CHUNKED.workers} \`conveyor worker\` processes (concurrency 1 each) on one SQLite database and folder; the ladder of the defaults (${whole.renditions} renditions), quality analysis off. \`whole\`: \`CONVEYOR_VIDEO_CHUNK_MIN_SECONDS=0\`, one worker encodes every rendition; \`chunks\`: the defaults (sources over 120 s in 30 s chunks), \`video.chunk\` jobs shared by both workers. Wall time from the upload's start to the ladder job's end; CPU of the server and workers with their ffmpeg runs.`,
    '',
    '| Mode | Wall time | CPU | CPU per worker | Chunk jobs | Load at start | Other CPU |',
    '|---|--:|--:|--:|--:|--:|--:|',
    ...rows.map(
      (r) =>
        `| ${r.mode} | ${s1(r.wallMs)} | ${r.cpuS.toFixed(0)} s | ${r.workerCpuS.map((c: number) => `${c.toFixed(0)} s`).join(' / ')} | ${r.chunks} | ${r.quiet.load1.toFixed(2)} | ${r.otherPercent.toFixed(0)} % |`,
    ),
    '',
    `Chunked ÷ whole: wall time **${(chunked.wallMs / whole.wallMs).toFixed(2)}x**, CPU ${(chunked.cpuS / whole.cpuS).toFixed(2)}x.`,
    '',
  );
}

// ---------------------------------------------------------------------------------------------------
// Processes, sources and the machine

function which(tool: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
  if (!found) throw new Error(`${tool} is not installed (Debian: apt-get install -y ffmpeg nginx wrk curl)`);
  return found;
}

function run(
  cmd: string,
  argv: string[],
  options: { stdout?: 'pipe' | 'ignore' } = {},
): Promise<{ status: number; stdout: string; stderr: string }> {
  const child = spawn(cmd, argv, { stdio: ['ignore', options.stdout ?? 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d) => {
    stdout += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d) => {
    stderr = (stderr + d).slice(-16_384);
  });
  return new Promise((resolveRun, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolveRun({ status: status ?? -1, stdout, stderr }));
  });
}

async function ffmpeg(argv: string[]): Promise<void> {
  const { status, stderr } = await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...argv]);
  if (status !== 0) throw new Error(`ffmpeg ${argv.join(' ')}: ${stderr}`);
}

/**
 * A testsrc2 + sine MP4 made with lavfi. `noise` adds temporal noise so that the encoder cannot
 * compress it away (for segments at the ladder's bit rate, and for a large source); `bitrate` sets the
 * source's own rate (ultrafast x264), otherwise it is x264 veryfast CRF 18.
 */
async function makeSource(
  file: string,
  o: { seconds: number; width: number; height: number; noise?: number; bitrate?: string },
): Promise<string> {
  const video = `testsrc2=size=${o.width}x${o.height}:rate=${SOURCE.fps}:duration=${o.seconds}`;
  const filter = o.noise ? ['-vf', `noise=alls=${o.noise}:allf=t`] : [];
  const rate = o.bitrate
    ? ['-preset', 'ultrafast', '-b:v', o.bitrate, '-maxrate', o.bitrate, '-bufsize', o.bitrate]
    : ['-preset', 'veryfast', '-crf', '18'];
  await ffmpeg([
    ...[
      '-f',
      'lavfi',
      '-i',
      video,
      '-f',
      'lavfi',
      '-i',
      `sine=frequency=440:sample_rate=48000:duration=${o.seconds}`,
    ],
    ...filter,
    ...['-c:v', 'libx264', ...rate, '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '128k', '-shortest'],
    ...['-movflags', '+faststart', file],
  ]);
  return file;
}

/** The same streams with another tag, so that the content (and its SHA-256) differs: no ladder is reused. */
async function variant(source: string, file: string, tag: string): Promise<string> {
  await ffmpeg(['-i', source, '-map', '0', '-c', 'copy', '-metadata', `comment=${tag}`, file]);
  return file;
}

async function frames(file: string): Promise<number> {
  const { stdout } = await run('ffprobe', [
    ...['-v', 'error', '-select_streams', 'v:0', '-count_packets'],
    ...['-show_entries', 'stream=nb_read_packets', '-of', 'csv=p=0', file],
  ]);
  return Number(stdout.trim());
}

/** CPU seconds of a process and the children it has waited for (ffmpeg, once each run ends). */
function cpuWithChildren(pid: number | 'self'): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / CLK_TCK;
}

/** CPU seconds the whole machine has been busy (everything but idle and iowait). */
function machineBusy(): number {
  const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = f.map(Number);
  return (n.reduce((a, b) => a + b, 0) - n[3]! - n[4]!) / CLK_TCK;
}

/** The state of the machine when a measured part starts, and what else ran during it. */
interface Quiet {
  load1: number;
  busyPercent: number;
  waitedS: number;
}

/**
 * Waits until the machine is quiet: under QUIET_BUSY_PERCENT of one CPU busy over QUIET_SAMPLE_MS.
 * The one-minute load average is recorded, not waited on: it stays above any useful threshold for
 * minutes after an encode of our own, while what matters is whether anything else is running now.
 */
async function quiet(): Promise<Quiet> {
  const started = Date.now();
  for (;;) {
    const before = machineBusy();
    await sleep(QUIET_SAMPLE_MS);
    const busyPercent = ((machineBusy() - before) / (QUIET_SAMPLE_MS / 1000)) * 100;
    if (busyPercent < QUIET_BUSY_PERCENT || Date.now() - started > QUIET_TIMEOUT_MS) {
      if (busyPercent >= QUIET_BUSY_PERCENT) log(`  the machine stayed busy (${busyPercent.toFixed(0)} %)`);
      return { load1: loadavg()[0]!, busyPercent, waitedS: (Date.now() - started) / 1000 };
    }
    log(`  waiting for a quiet machine (${busyPercent.toFixed(0)} % of one CPU busy)`);
  }
}

/** Measures what the machine did beside `ours` (CPU seconds of our processes) over a measured part. */
function otherMeter(): { stop(oursCpuS: number): { wallS: number; otherPercent: number } } {
  const busy0 = machineBusy();
  const t0 = performance.now();
  return {
    stop(oursCpuS) {
      const wallS = (performance.now() - t0) / 1000;
      const other = Math.max(0, machineBusy() - busy0 - oursCpuS);
      return { wallS, otherPercent: (other / wallS) * 100 };
    },
  };
}

function status(pid: number, field: string): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(text)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number) => {
    let text = '';
    try {
      text = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8');
    } catch {
      return;
    }
    for (const child of text.trim().split(/\s+/).filter(Boolean).map(Number)) {
      out.push(child);
      visit(child);
    }
  };
  visit(pid);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Figures

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const s1 = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const MB = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
const pct = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)} %`;
const stamp = (d: Date) => d.toISOString().slice(0, 16).replace('T', ' ');
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Time per kind of run (ms), in the order the kinds first appear. */
function byKind(runs: Recorded[], times: number[]): Map<string, number> {
  const kinds = new Map<string, number>();
  runs.forEach((r, i) => {
    kinds.set(kindOf(r), (kinds.get(kindOf(r)) ?? 0) + times[i]!);
  });
  return kinds;
}

// ---------------------------------------------------------------------------------------------------
// Scenario: overhead

async function benchOverhead(ctx: Context): Promise<void> {
  const seconds = Number(args.seconds);
  const rounds = Number(args.rounds);
  const dir = join(ctx.work, 'overhead');
  await mkdir(dir);
  log(`  making the ${seconds} s 1080p source`);
  const source = await makeSource(join(dir, 'source.mp4'), { seconds, ...SOURCE });
  const wrappers = await recorders(join(dir, 'tools'));
  const workDir = join(dir, 'jobs');
  await mkdir(workDir);
  const conveyor = await startConveyor(ctx.work, {
    CONVEYOR_FFMPEG_PATH: wrappers.ffmpeg,
    CONVEYOR_FFPROBE_PATH: wrappers.ffprobe,
    CONVEYOR_VIDEO_WORK_DIR: workDir,
    CONVEYOR_VIDEO_QUALITY_ANALYSIS: 'false',
  });
  const rows: any[] = [];
  try {
    // A short clip first: the process's encoder detection and the first use of every code path happen
    // there, not in a measured job.
    const clip = await makeSource(join(dir, 'warmup.mp4'), { seconds: 2, width: 640, height: 360 });
    const warm = await upload(conveyor, clip, 'warmup.mp4');
    await videoJob(conveyor, warm.id, Date.now());

    let commands: { runs: Recorded[]; prefix: string } | undefined;
    for (let round = 0; round < rounds; round++) {
      const file = await variant(source, join(dir, `round-${round}.mp4`), `round ${round}`);
      const row: any = { round };
      const jobSide = async () => {
        const q = await quiet();
        const cpu0 = cpuWithChildren(conveyor.pid);
        const meter = otherMeter();
        const asset = await upload(conveyor, file, `round-${round}.mp4`);
        const job = await videoJob(conveyor, asset.id, Date.now());
        const cpu = cpuWithChildren(conveyor.pid) - cpu0;
        const other = meter.stop(cpu);
        const mine = jobRuns(await recorded(wrappers.log), job, workDir);
        if (commands && !sameCommands(commands, mine)) log('  the job ran other commands than last round');
        commands = mine;
        const ffmpegMs = sum(mine.runs.map((r) => r.end - r.start));
        row.job = {
          wallMs: job.finished - job.started,
          queuedMs: job.started - job.uploaded,
          ffmpegMs,
          runs: mine.runs.length,
          cpuS: cpu,
          kinds: Object.fromEntries(
            byKind(
              mine.runs,
              mine.runs.map((r) => r.end - r.start),
            ),
          ),
          quiet: q,
          otherPercent: other.otherPercent,
        };
        log(
          `  round ${round}: job ${s1(row.job.wallMs)} (ffmpeg ${s1(ffmpegMs)} in ${mine.runs.length} runs)`,
        );
      };
      const handSide = async () => {
        const hand = join(dir, `hand-${round}`);
        await mkdir(hand);
        await copyFile(file, join(hand, 'source'));
        const q = await quiet();
        const cpu0 = cpuWithChildren('self');
        const meter = otherMeter();
        const times = await replay(commands!.runs, commands!.prefix, hand);
        const cpu = cpuWithChildren('self') - cpu0;
        const other = meter.stop(cpu);
        row.hand = {
          wallMs: sum(times),
          runs: times.length,
          cpuS: cpu,
          kinds: Object.fromEntries(byKind(commands!.runs, times)),
          quiet: q,
          otherPercent: other.otherPercent,
        };
        await rm(hand, { recursive: true, force: true });
        log(`  round ${round}: by hand ${s1(row.hand.wallMs)}`);
      };
      // The job goes first in round 0 (the commands to replay come from it), then the sides alternate.
      if (round % 2 === 0) {
        await jobSide();
        await handSide();
      } else {
        await handSide();
        await jobSide();
      }
      row.overhead = (row.job.wallMs - row.hand.wallMs) / row.hand.wallMs;
      rows.push(row);
      await rm(file, { force: true });
    }
  } finally {
    await conveyor.stop();
  }
  ctx.raw.overhead = { seconds, rounds: rows };

  const overhead = median(rows.map((r) => r.overhead)) * 100;
  const jobWall = median(rows.map((r) => r.job.wallMs));
  const handWall = median(rows.map((r) => r.hand.wallMs));
  const ownMs = median(rows.map((r) => r.job.wallMs - r.job.ffmpegMs));
  ctx.out.push(
    `### Overhead: the video.ladder job against the same commands by hand (${seconds} s 1080p source)`,
    '',
    `Conveyor's ffmpeg and ffprobe were wrappers that record every run; each round replays the job's runs in order with the real programs (same arguments, the working folder renamed). Quality analysis off (\`CONVEYOR_VIDEO_QUALITY_ANALYSIS=false\`) on both sides. Job wall time: the job's startedAt to finishedAt. Each round uploads a remux of the source with another tag, so no ladder is reused. ${rows.length} rounds, sides alternating (job first in even rounds).`,
    '',
    "| Round | Job | By hand | Overhead | ffmpeg/ffprobe inside the job | Conveyor's own time | CPU job / by hand | Load at start job / hand | Other CPU job / hand |",
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...rows.map(
      (r) =>
        `| ${r.round} | ${s1(r.job.wallMs)} | ${s1(r.hand.wallMs)} | ${pct(r.overhead * 100)} | ${s1(r.job.ffmpegMs)} (${r.job.runs} runs) | ${s1(r.job.wallMs - r.job.ffmpegMs)} | ${r.job.cpuS.toFixed(0)} / ${r.hand.cpuS.toFixed(0)} s | ${r.job.quiet.load1.toFixed(2)} / ${r.hand.quiet.load1.toFixed(2)} | ${r.job.otherPercent.toFixed(0)} / ${r.hand.otherPercent.toFixed(0)} % |`,
    ),
    '',
    `Median: job ${s1(jobWall)}, by hand ${s1(handWall)}, **overhead ${pct(overhead)}** (target at most +5 %: **${overhead <= 5 ? 'met' : 'missed'}**); Conveyor's own time (job wall time outside ffmpeg and ffprobe) ${s1(ownMs)}.`,
    '',
    'Where the time goes (median per kind of run, job / by hand):',
    '',
    '| Run | inside the job | by hand |',
    '|---|--:|--:|',
    ...Object.keys(rows[0]!.hand.kinds).map(
      (k) =>
        `| ${k} | ${s1(median(rows.map((r) => r.job.kinds[k] ?? 0)))} | ${s1(median(rows.map((r) => r.hand.kinds[k] ?? 0)))} |`,
    ),
    '',
  );
}

/** Whether two jobs ran the same commands, their working folders aside. */
function sameCommands(a: { runs: Recorded[]; prefix: string }, b: { runs: Recorded[]; prefix: string }) {
  const norm = (c: { runs: Recorded[]; prefix: string }) =>
    c.runs.map((r) => r.args.map((x) => x.replaceAll(c.prefix, '<work>')).join('\0')).join('\n');
  return norm(a) === norm(b);
}

// ---------------------------------------------------------------------------------------------------
// Scenario: ladder

async function benchLadder(ctx: Context): Promise<void> {
  const seconds = Number(args.seconds);
  const dir = join(ctx.work, 'ladder');
  await mkdir(dir);
  log(`  making the ${seconds} s 1080p source`);
  const source = await makeSource(join(dir, 'source.mp4'), { seconds, ...SOURCE });
  const sourceFrames = await frames(source);
  const wrappers = await recorders(join(dir, 'tools'));
  const workDir = join(dir, 'jobs');
  await mkdir(workDir);
  const conveyor = await startConveyor(ctx.work, {
    CONVEYOR_FFMPEG_PATH: wrappers.ffmpeg,
    CONVEYOR_FFPROBE_PATH: wrappers.ffprobe,
    CONVEYOR_VIDEO_WORK_DIR: workDir,
  });
  let job: JobTimes;
  let stored: Map<string, number>;
  let q: Quiet;
  try {
    const clip = await makeSource(join(dir, 'warmup.mp4'), { seconds: 2, width: 640, height: 360 });
    const warm = await upload(conveyor, clip, 'warmup.mp4');
    await videoJob(conveyor, warm.id, Date.now());
    const warmStored = renditionsStored(conveyor);
    q = await quiet();
    const asset = await upload(conveyor, source, 'source.mp4');
    job = await videoJob(conveyor, asset.id, Date.now());
    stored = new Map([...renditionsStored(conveyor)].filter(([name, at]) => warmStored.get(name) !== at));
  } finally {
    await conveyor.stop();
  }
  const { runs } = jobRuns(await recorded(wrappers.log), job, workDir);
  const encodes = runs.filter((r) => kindOf(r).startsWith('encode '));
  const firstStored = Math.min(...stored.values());
  const wall = job.finished - job.started;
  const renditions = encodes.map((r) => {
    const name = kindOf(r).slice('encode '.length);
    const ms = r.end - r.start;
    return {
      name,
      encodeMs: ms,
      fps: sourceFrames / (ms / 1000),
      storedAfterMs: stored.get(name)! - job.started,
    };
  });
  const encodeMs = sum(renditions.map((r) => r.encodeMs));
  const kinds = byKind(
    runs,
    runs.map((r) => r.end - r.start),
  );

  // The peers' default settings, by hand on the same source.
  await quiet();
  const peertube = await peerTubeLadder(source, join(dir, 'peertube'), sourceFrames);
  await quiet();
  const immich = await immichTranscode(source, join(dir, 'immich'), sourceFrames);
  ctx.raw.ladder = {
    seconds,
    sourceFrames,
    job,
    quiet: q,
    stored: Object.fromEntries(stored),
    renditions,
    kinds: Object.fromEntries(kinds),
    peertube,
    immich,
  };

  ctx.out.push(
    `### Ladder: time to the first rendition and to the full ladder (${seconds} s 1080p30 source, ${sourceFrames} frames)`,
    '',
    `Default settings (preset \`balanced\`: x264 \`medium\` CRF 21 with the rung's max rate; quality analysis on), CPU encoder (the only one this machine proves), one serve process with its in-process worker; a 2 s clip went first so that encoder detection is not in the figures. Load at start ${q.load1.toFixed(2)}.`,
    '',
    `- First rendition stored (${[...stored].sort((a, b) => a[1] - b[1])[0]?.[0]}): **${s1(firstStored - job.started)}** after the job started (${s1(firstStored - job.uploaded)} after the upload answered).`,
    `- Full ladder (${renditions.length} renditions, poster, sprite, MP4 fallback, master): **${s1(wall)}**; the rendition encodes alone ${s1(encodeMs)}, ${(((sourceFrames * renditions.length) / encodeMs) * 1000).toFixed(1)} frames/s over the ladder (source frames x renditions / encode time).`,
    '',
    '| Rendition | encode | frames/s | stored at |',
    '|---|--:|--:|--:|',
    ...renditions.map(
      (r) => `| ${r.name} | ${s1(r.encodeMs)} | ${r.fps.toFixed(1)} | ${s1(r.storedAfterMs)} |`,
    ),
    '',
    'Every run of the job, by kind:',
    '',
    '| Run | time |',
    '|---|--:|',
    ...[...kinds].map(([k, ms]) => `| ${k} | ${s1(ms)} |`),
    `| (outside ffmpeg and ffprobe) | ${s1(wall - sum([...kinds.values()]))} |`,
    '',
    "The peers' default settings, run by hand with the same ffmpeg on the same source, one rendition after the other:",
    '',
    '| System and settings | Output | time | frames/s |',
    '|---|---|--:|--:|',
    ...peertube.map(
      (p) =>
        `| PeerTube ${p.height}p: x264 veryfast, CRF 23 (x264's default), maxrate ${(p.maxrate / 1e6).toFixed(2)} Mbit/s, bufsize 2x, -bf 16 -b_strategy 1, audio copied | HLS fMP4, 4 s | ${s1(p.ms)} | ${p.fps.toFixed(1)} |`,
    ),
    `| **PeerTube, the ladder** | ${peertube.length} renditions | **${s1(sum(peertube.map((p) => p.ms)))}** | ${(((sourceFrames * peertube.length) / sum(peertube.map((p) => p.ms))) * 1000).toFixed(1)} |`,
    `| **Immich**: x264 ultrafast CRF 23, 720p, audio copied, no max rate | one MP4 | **${s1(immich.ms)}** | ${immich.fps.toFixed(1)} |`,
    '',
  );
}

/**
 * PeerTube's default VOD transcoding (its default x264 profile): preset veryfast, no CRF given (so
 * x264's 23), a max rate from its bits-per-pixel table (average bits per pixel by height, capped at
 * the input's rate + 30 %), a buffer of twice that, 16 B-frames with b_strategy 1, the source's frame
 * rate, AAC copied when it can be. Written as HLS with 4 s fMP4 segments, as Conveyor's renditions are.
 */
async function peerTubeLadder(source: string, dir: string, sourceFrames: number) {
  const bitsPerPixel: Record<number, number> = { 240: 0.17, 360: 0.15, 480: 0.12, 720: 0.11, 1080: 0.1 };
  const inputBitrate = ((await stat(source)).size * 8) / Number(args.seconds);
  const out = [];
  for (const height of PEER_RUNGS.filter((h) => h <= SOURCE.height)) {
    const average = Math.floor(height * ((height * 16) / 9) * SOURCE.fps * bitsPerPixel[height]!);
    const maxrate = Math.min(average, Math.round(inputBitrate * 1.3));
    const target = join(dir, `${height}p`);
    await mkdir(target, { recursive: true });
    const started = performance.now();
    await ffmpeg([
      ...['-i', source, '-vf', `scale=-2:${height}`, '-c:v', 'libx264', '-preset', 'veryfast'],
      ...['-maxrate', String(maxrate), '-bufsize', String(maxrate * 2), '-b_strategy', '1', '-bf', '16'],
      ...['-r', String(SOURCE.fps), '-c:a', 'copy'],
      ...['-f', 'hls', '-hls_time', '4', '-hls_playlist_type', 'vod', '-hls_segment_type', 'fmp4'],
      join(target, 'index.m3u8'),
    ]);
    const ms = performance.now() - started;
    out.push({ height, maxrate, ms, fps: sourceFrames / (ms / 1000) });
    log(`  PeerTube ${height}p: ${s1(ms)}`);
  }
  await rm(dir, { recursive: true, force: true });
  return out;
}

/** Immich's default transcode: one H.264 MP4 at 720p, x264 ultrafast CRF 23, accepted AAC audio copied. */
async function immichTranscode(source: string, dir: string, sourceFrames: number) {
  await mkdir(dir, { recursive: true });
  const started = performance.now();
  await ffmpeg([
    ...['-i', source, '-vf', 'scale=-2:720', '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '23'],
    ...['-c:a', 'copy', '-movflags', '+faststart', join(dir, 'out.mp4')],
  ]);
  const ms = performance.now() - started;
  log(`  Immich 720p: ${s1(ms)}`);
  await rm(dir, { recursive: true, force: true });
  return { ms, fps: sourceFrames / (ms / 1000) };
}

// ---------------------------------------------------------------------------------------------------
// Scenario: memory

async function benchMemory(ctx: Context): Promise<void> {
  const seconds = Number(args.seconds);
  const targetBytes = Number(args['memory-mib']) * 1024 * 1024;
  const dir = join(ctx.work, 'memory');
  await mkdir(dir);
  const bitrate = `${Math.round((targetBytes * 8) / seconds / 1e6)}M`;
  log(`  making a ~${args['memory-mib']} MiB ${seconds} s 1080p source at ${bitrate}bit/s`);
  const source = await makeSource(join(dir, 'large.mp4'), { seconds, ...SOURCE, noise: 40, bitrate });
  const size = (await stat(source)).size;
  const settings = {
    CONVEYOR_VIDEO_HEIGHTS: '240,360',
    CONVEYOR_VIDEO_QUALITY_ANALYSIS: 'false',
    CONVEYOR_VIDEO_WORK_DIR: dir,
  };
  const conveyor = await startConveyor(ctx.work, settings);
  const samples: { t: number; rss: number; ffmpeg: number }[] = [];
  let ffmpegPeak = 0;
  const marks: Record<string, number> = {};
  const timer = setInterval(() => {
    let ffmpegRss = 0;
    for (const pid of descendants(conveyor.pid)) {
      ffmpegRss = Math.max(ffmpegRss, status(pid, 'VmRSS'));
      ffmpegPeak = Math.max(ffmpegPeak, status(pid, 'VmHWM'));
    }
    samples.push({ t: Date.now(), rss: status(conveyor.pid, 'VmRSS'), ffmpeg: ffmpegRss });
  }, RSS_SAMPLE_MS);
  let job: JobTimes;
  let q: Quiet;
  try {
    q = await quiet();
    await sleep(2000);
    marks.upload = Date.now();
    const asset = await upload(conveyor, source, 'large.mp4');
    marks.uploaded = Date.now();
    job = await videoJob(conveyor, asset.id, Date.now());
    await sleep(2000);
  } finally {
    clearInterval(timer);
    await conveyor.stop();
    await rm(source, { force: true });
  }
  const between = (from: number, to: number) => samples.filter((s) => s.t >= from && s.t <= to);
  const idle = between(0, marks.upload!);
  const up = between(marks.upload!, marks.uploaded!);
  const during = between(job.started, job.finished);
  const peak = (xs: typeof samples) => Math.max(...xs.map((s) => s.rss));
  const low = (xs: typeof samples) => Math.min(...xs.map((s) => s.rss));
  const idleRss = median(idle.map((s) => s.rss));
  ctx.raw.memory = { seconds, size, bitrate, settings, job, quiet: q, ffmpegPeak, samples };
  const jobPeak = peak(during);
  ctx.out.push(
    `### Memory: Conveyor's RSS during the ladder of a ${(size / 2 ** 30).toFixed(2)} GiB source`,
    '',
    `A ${seconds} s 1080p30 H.264 source at ${bitrate}bit/s (testsrc2 with temporal noise, x264 ultrafast), ${MB(size)}, uploaded with curl -T; ladder settings ${Object.entries(
      settings,
    )
      .filter(([k]) => k !== 'CONVEYOR_VIDEO_WORK_DIR')
      .map(([k, v]) => `\`${k}=${v}\``)
      .join(
        ', ',
      )} (two renditions; poster, sprite, loudness, decode check and MP4 fallback as always). The serve process (HTTP and its in-process worker) sampled every ${RSS_SAMPLE_MS} ms from /proc/<pid>/status; ffmpeg runs in its own processes, sampled the same way. Load at start ${q.load1.toFixed(2)}.`,
    '',
    '| Phase | duration | samples | RSS min | RSS median | RSS peak |',
    '|---|--:|--:|--:|--:|--:|',
    `| idle before | | ${idle.length} | ${MB(low(idle))} | ${MB(idleRss)} | ${MB(peak(idle))} |`,
    `| upload (streamed) | ${s1(marks.uploaded! - marks.upload!)} | ${up.length} | ${MB(low(up))} | ${MB(median(up.map((s) => s.rss)))} | ${MB(peak(up))} |`,
    `| ladder job | ${s1(job.finished - job.started)} | ${during.length} | ${MB(low(during))} | ${MB(median(during.map((s) => s.rss)))} | **${MB(jobPeak)}** |`,
    '',
    `Target: the worker's RSS under 300 MB during the ladder: **${jobPeak < 300e6 ? 'met' : 'missed'}** (peak ${MB(jobPeak)}, ${MB(jobPeak - idleRss)} above idle). ffmpeg's own peak (VmHWM of the largest ffmpeg run): ${MB(ffmpegPeak)}.`,
    '',
  );
}

// ---------------------------------------------------------------------------------------------------
// Scenario: delivery

async function benchDelivery(ctx: Context): Promise<void> {
  const processes = args.processes;
  const dir = join(ctx.work, 'delivery');
  const www = join(dir, 'www');
  const prefix = join(dir, 'nginx');
  await mkdir(www, { recursive: true });
  await mkdir(prefix, { recursive: true });
  // nginx's workers run as an unprivileged user: the files must be readable on the way down.
  await chmod(ctx.work, 0o755);
  await chmod(dir, 0o755);
  log(`  making the ${DELIVERY_SECONDS} s 720p source`);
  // Temporal noise keeps the encoder at the rung's max rate, so the 4 s segments are about 2 MB.
  const source = await makeSource(join(dir, 'source.mp4'), {
    seconds: DELIVERY_SECONDS,
    width: 1280,
    height: 720,
    noise: 20,
  });
  const conveyor = await startConveyor(ctx.work, {
    CONVEYOR_VIDEO_HEIGHTS: '720',
    CONVEYOR_VIDEO_QUALITY_ANALYSIS: 'false',
    CONVEYOR_PROCESSES: processes,
  });
  const nginxConf = join(prefix, 'nginx.conf');
  try {
    const asset = await upload(conveyor, source, 'delivery.mp4');
    await videoJob(conveyor, asset.id, Date.now());
    const version = (await api(conveyor, 'POST', `/api/v1/assets/${asset.id}/publish`)).id as string;
    const base = `/v/${version}/hls/`;
    const master = await (await fetch(`${conveyor.base}${base}master.m3u8`)).text();
    const media = master.split('\n').find((l) => l.endsWith('.m3u8'))!;
    const folder = dirname(media);
    const playlist = await (await fetch(`${conveyor.base}${base}${media}`)).text();
    const names = playlist.split('\n').filter((l) => l.endsWith('.m4s'));
    const sizes: number[] = [];
    await mkdir(join(www, folder), { recursive: true, mode: 0o755 });
    for (const name of names) {
      const res = await fetch(`${conveyor.base}${base}${folder}/${name}`);
      if (res.status !== 200) throw new Error(`${name}: ${res.status}`);
      const bytes = Buffer.from(await res.arrayBuffer());
      sizes.push(bytes.length);
      await writeFile(join(www, folder, name), bytes, { mode: 0o644 });
    }
    const port = await freePort();
    const conf = (await readFile(join(ROOT, 'bench/nginx.conf.template'), 'utf8'))
      .replaceAll('{{WORKERS}}', processes)
      .replaceAll('{{PREFIX}}', prefix)
      .replaceAll('{{ROOT}}', www)
      .replaceAll('{{PORT}}', String(port));
    await writeFile(nginxConf, conf);
    const started = spawnSync('nginx', ['-c', nginxConf, '-p', prefix], { encoding: 'utf8' });
    if (started.status !== 0) throw new Error(`nginx: ${started.stderr}`);
    const nginxBase = `http://127.0.0.1:${port}/${folder}/`;
    const check = await fetch(nginxBase + names[0]);
    if (check.status !== 200) throw new Error(`nginx answered ${check.status}`);
    await check.arrayBuffer();

    // wrk asks for the segments in turn (each connection cycles through all of them).
    const script = join(dir, 'segments.lua');
    await writeFile(
      script,
      [
        `local names = { ${names.map((n) => JSON.stringify(n)).join(', ')} }`,
        'local i = 0',
        'request = function()',
        '  i = i % #names + 1',
        '  return wrk.format("GET", wrk.path .. names[i])',
        'end',
        await readFile(join(ROOT, 'bench/report.lua'), 'utf8'),
      ].join('\n'),
    );
    const nginxPids = () =>
      readFileSync(join(prefix, 'nginx.pid'), 'utf8')
        .trim()
        .split('\n')
        .map(Number)
        .flatMap((p) => [p, ...descendants(p)]);
    const conveyorPids = () => [conveyor.pid, ...descendants(conveyor.pid)];
    const measure = async (url: string, pids: () => number[]) => {
      const q = await quiet();
      await wrk(url, script, Number(args.warmup));
      const cpu0 = sum(pids().map((p) => cpuOf(p)));
      const busy0 = machineBusy();
      const result = await wrk(url, script, Number(args.duration));
      const server = sum(pids().map((p) => cpuOf(p))) - cpu0;
      const secondsRun = result.durationUs / 1e6;
      return {
        ...result,
        bytesPerSec: result.bytes / secondsRun,
        rps: result.requests / secondsRun,
        serverCpuPercent: (server / secondsRun) * 100,
        machineBusyPercent: ((machineBusy() - busy0) / secondsRun) * 100,
        quiet: q,
      };
    };
    const nginx = await measure(nginxBase, nginxPids);
    const ours = await measure(`${conveyor.base}${base}${folder}/`, conveyorPids);
    ctx.raw.delivery = { processes, names, sizes, nginx, conveyor: ours };
    const ratio = ours.bytesPerSec / nginx.bytesPerSec;
    const line = (name: string, r: typeof nginx) =>
      `| ${name} | ${(r.bytesPerSec / 1e6).toFixed(0)} MB/s | ${r.rps.toFixed(0)} | ${(r.latencyUs.p50 / 1000).toFixed(1)} / ${(r.latencyUs.p99 / 1000).toFixed(1)} ms | ${r.serverCpuPercent.toFixed(0)} % | ${r.quiet.load1.toFixed(2)} | ${sum(Object.values(r.errors) as number[])} |`;
    ctx.out.push(
      `### Delivery: HLS segments through Conveyor against nginx (${processes} process${processes === '1' ? '' : 'es'} each)`,
      '',
      `The ${names.length} media segments of the 720p rendition of a real ladder (${DELIVERY_SECONDS} s 1280x720 testsrc2 with temporal noise, \`CONVEYOR_VIDEO_HEIGHTS=720\`), ${sizes.map((s) => (s / 1e6).toFixed(2)).join(', ')} MB; Conveyor serves \`/v/<version>/hls/${folder}/<segment>\`, nginx (sendfile, bench/nginx.conf.template) the same bytes from disk. wrk -t${WRK.threads} -c${WRK.connections}, each connection asking for the segments in turn, ${args.warmup} s warm-up then ${args.duration} s measured; bytes/s as wrk read them (headers included, a few hundred bytes of ~2 MB).`,
      '',
      '| Server | bytes/s | responses/s | latency p50 / p99 | server CPU (of one CPU) | load at start | errors |',
      '|---|--:|--:|--:|--:|--:|--:|',
      line('nginx', nginx),
      line('Conveyor', ours),
      '',
      `Conveyor ÷ nginx: **${ratio.toFixed(2)}x** (target at least 0.8x: **${ratio >= 0.8 ? 'met' : 'missed'}**).`,
      '',
    );
  } finally {
    spawnSync('nginx', ['-c', nginxConf, '-p', prefix, '-s', 'quit']);
    await conveyor.stop();
  }
}

function cpuOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

async function wrk(url: string, script: string, seconds: number) {
  const {
    stdout,
    stderr,
    status: code,
  } = await run('wrk', [
    ...['-t', String(WRK.threads), '-c', String(WRK.connections), '-d', `${seconds}s`],
    ...['--timeout', '10s', '--latency', '-s', script, url],
  ]);
  const line = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (code !== 0 || !line) throw new Error(`wrk: ${stdout}\n${stderr}`);
  return JSON.parse(line.slice('WRK_JSON '.length)) as {
    requests: number;
    bytes: number;
    durationUs: number;
    errors: Record<string, number>;
    latencyUs: { p50: number; p90: number; p99: number; max: number; mean: number };
  };
}

await main();
