/**
 * Delivery and upload benchmark: Conveyor against nginx on the same machine, in one run.
 *
 * For each pairing (`--processes`: nginx with that many worker processes, Conveyor and bench/bare-node.ts
 * with that many processes) and each backend (SQLite + local disk, PostgreSQL + s3rver) it starts a real
 * `conveyor serve`, uploads the benchmark files, and then, scenario by scenario, runs wrk against nginx
 * (serving the same bytes from disk with sendfile), against Conveyor and against bare Node (plain
 * node:http doing the least an origin must), back to back, so every ratio compares measurements taken a
 * few seconds apart, by servers given the same number of processes. It samples Conveyor's RSS every 100 ms throughout, then uploads a 1 GiB file streamed from
 * disk with curl. Prints Markdown tables and writes them, with the raw figures, to bench/results/.
 *
 * Run it through bench/run.sh; `bench/run.sh --help` lists the options.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { availableParallelism, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort } from '../test/helpers/child.ts';
import { type S3Server, startS3Server } from '../test/helpers/s3-server.ts';
import { benchServerEnv } from './server-env.ts';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH_DIR, '..');
const KiB = 1024;
const MiB = 1024 * KiB;
const MB = 1_000_000;
const RSS_LIMIT_BYTES = 200 * MB;

// ---------------------------------------------------------------------------------------------------------
// Options

const HELP = `Usage: bench/run.sh [options]

  --duration <s>       seconds per measured wrk run (default 10; env BENCH_DURATION)
  --warmup <s>         seconds of discarded wrk warm-up before each measured run (default 3; env BENCH_WARMUP)
  --connections <n>    wrk connections (default 50; env BENCH_CONNECTIONS)
  --threads <n>        wrk threads (default 2; env BENCH_THREADS)
  --rounds <n>         nginx/Conveyor pairs per scenario; the median run is reported (default 1)
  --backends <list>    sqlite-fs,postgres-s3 (default both)
  --scenarios <list>   small-200,small-304,medium-200,range-64k (default all)
  --upload-mib <n>     size of the upload test file in MiB (default 1024; 0 skips the upload test)
  --cpu-prof <dir>     run Conveyor with --cpu-prof, writing .cpuprofile files into <dir>
  --postgres-url <url> PostgreSQL server (default env TEST_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/test)
  --quiet-threshold <n> before each nginx/Conveyor pair, wait until the machine uses less than n % of
                       one CPU (default 30)
  --quiet-timeout <s>  ...but at most this long (default 120)
  --env NAME=VALUE     extra environment for Conveyor, e.g. --env CONVEYOR_S3_QUEUE_SIZE=2 (repeatable)
  --processes <list>   pairings to measure (default 1): for each n, nginx worker_processes n, Conveyor
                       with CONVEYOR_PROCESSES=n and bare Node with n processes; 1,2 measures and
                       reports both pairings (RSS and CPU cover all of a server's processes)
  --ref <git ref>      benchmark the Conveyor of this commit (default: the working tree as it is at start)
  --out <dir>          where the Markdown and JSON results go (default bench/results)
  --report <file.json> print the tables of an earlier run again (runs nothing)
`;

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env['BENCH_DURATION'] ?? '10' },
    warmup: { type: 'string', default: process.env['BENCH_WARMUP'] ?? '3' },
    connections: { type: 'string', default: process.env['BENCH_CONNECTIONS'] ?? '50' },
    threads: { type: 'string', default: process.env['BENCH_THREADS'] ?? '2' },
    rounds: { type: 'string', default: '1' },
    backends: { type: 'string', default: 'sqlite-fs,postgres-s3' },
    scenarios: { type: 'string', default: 'small-200,small-304,medium-200,range-64k' },
    'upload-mib': { type: 'string', default: '1024' },
    'cpu-prof': { type: 'string' },
    'postgres-url': {
      type: 'string',
      default: process.env['TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test',
    },
    processes: { type: 'string', default: '1' },
    env: { type: 'string', multiple: true, default: [] },
    'quiet-threshold': { type: 'string', default: '30' },
    'quiet-timeout': { type: 'string', default: '120' },
    ref: { type: 'string' },
    out: { type: 'string', default: join(BENCH_DIR, 'results') },
    report: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

function positiveInt(name: string, value: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${name}: expected an integer >= ${min}, got ${value}`);
  return n;
}

const options = {
  duration: positiveInt('duration', args.duration),
  warmup: positiveInt('warmup', args.warmup, 0),
  connections: positiveInt('connections', args.connections),
  threads: positiveInt('threads', args.threads),
  rounds: positiveInt('rounds', args.rounds),
  uploadMiB: positiveInt('upload-mib', args['upload-mib'], 0),
  cpuProf: args['cpu-prof'] ? resolve(args['cpu-prof']) : undefined,
  postgresUrl: args['postgres-url'],
  processes: [...new Set(args.processes.split(',').map((n) => positiveInt('processes', n.trim())))],
  env: Object.fromEntries(
    args.env.map((pair) => {
      const at = pair.indexOf('=');
      if (at < 1) throw new Error(`--env: expected NAME=VALUE, got ${pair}`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  ),
  quietThreshold: positiveInt('quiet-threshold', args['quiet-threshold']),
  quietTimeout: positiveInt('quiet-timeout', args['quiet-timeout'], 0),
  ref: args.ref,
  out: resolve(args.out),
};

type BackendName = 'sqlite-fs' | 'postgres-s3';
const BACKEND_LABEL: Record<BackendName, string> = {
  'sqlite-fs': 'SQLite + disk',
  'postgres-s3': 'PostgreSQL + S3 (s3rver)',
};
const backends = listOption('backends', args.backends, ['sqlite-fs', 'postgres-s3'] as const);

// ---------------------------------------------------------------------------------------------------------
// Scenarios

interface Fixture {
  name: string;
  size: number;
}
const FIXTURES = {
  small: { name: 'small-10k.bin', size: 10 * KiB },
  medium: { name: 'medium-1m.bin', size: 1 * MiB },
  large: { name: 'large-100m.bin', size: 100 * MiB },
} satisfies Record<string, Fixture>;
type FixtureKey = keyof typeof FIXTURES;

/** An unaligned offset in the middle of the 100 MiB file. */
const RANGE_START = 50 * MiB + 12_345;
const RANGE_LENGTH = 64 * KiB;

interface Scenario {
  id: 'small-200' | 'small-304' | 'medium-200' | 'range-64k';
  title: string;
  fixture: FixtureKey;
  /** What the target compares: requests/s, or bytes/s of content. */
  metric: 'rps' | 'bytes';
  target: number;
  expectStatus: number;
  /** Content bytes per response. */
  bodyBytes: number;
  /** Request headers; `etag` is the server's own ETag for the file. */
  headers(etag: string): Record<string, string>;
}

const SCENARIOS: Scenario[] = [
  {
    id: 'small-200',
    title: '10 KiB GET 200',
    fixture: 'small',
    metric: 'rps',
    target: 0.8,
    expectStatus: 200,
    bodyBytes: FIXTURES.small.size,
    headers: () => ({}),
  },
  {
    id: 'small-304',
    title: '10 KiB conditional GET 304',
    fixture: 'small',
    metric: 'rps',
    target: 0.9,
    expectStatus: 304,
    bodyBytes: 0,
    headers: (etag) => ({ 'If-None-Match': etag }),
  },
  {
    id: 'medium-200',
    title: '1 MiB GET 200',
    fixture: 'medium',
    metric: 'bytes',
    target: 0.5,
    expectStatus: 200,
    bodyBytes: FIXTURES.medium.size,
    headers: () => ({}),
  },
  {
    id: 'range-64k',
    title: '64 KiB range of 100 MiB (206)',
    fixture: 'large',
    metric: 'bytes',
    target: 0.5,
    expectStatus: 206,
    bodyBytes: RANGE_LENGTH,
    headers: () => ({ Range: `bytes=${RANGE_START}-${RANGE_START + RANGE_LENGTH - 1}` }),
  },
];
const scenarios = listOption(
  'scenarios',
  args.scenarios,
  SCENARIOS.map((s) => s.id),
).map((id) => SCENARIOS.find((s) => s.id === id)!);

function listOption<T extends string>(name: string, value: string, allowed: readonly T[]): T[] {
  const items = value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
  for (const item of items) {
    if (!allowed.includes(item as T))
      throw new Error(`--${name}: unknown ${item}; expected ${allowed.join(',')}`);
  }
  return items as T[];
}

// ---------------------------------------------------------------------------------------------------------
// Cleanup: everything started is stopped again, also on Ctrl-C.

const cleanups: (() => Promise<void> | void)[] = [];
async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const cleanup = cleanups.pop()!;
    try {
      await cleanup();
    } catch (error) {
      console.error(`cleanup failed: ${(error as Error).message}`);
    }
  }
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    void runCleanups().finally(() => process.exit(130));
  });
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers

/** VmRSS of a process in bytes, or null once it is gone. */
function readOneRss(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * VmRSS of a process plus its child processes (the server processes of `serve` with CONVEYOR_PROCESSES > 1;
 * their shared pages, such as the node binary, are then counted once per process), or null once it is gone.
 */
function readRss(pid: number): number | null {
  const own = readOneRss(pid);
  if (own === null) return null;
  return childrenOf(pid).reduce((sum, child) => sum + (readOneRss(child) ?? 0), own);
}

interface RssStats {
  samples: number;
  peak: number;
  mean: number;
}

/** Samples VmRSS every `intervalMs` until stopped. */
function sampleRss(pid: number, intervalMs = 100): { stop(): RssStats } {
  const values: number[] = [];
  const take = () => {
    const rss = readRss(pid);
    if (rss !== null) values.push(rss);
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return {
        samples: values.length,
        peak: Math.max(...values),
        mean: values.reduce((a, b) => a + b, 0) / values.length,
      };
    },
  };
}

/** Runs a command to completion and answers its output; fails on a non-zero exit or after `timeoutMs`. */
async function capture(
  command: string,
  argv: string[],
  timeoutMs: number,
): Promise<{ stdout: string; stderr: string }> {
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${command} exited with ${code ?? signal}: ${stderr || stdout}`);
  return { stdout, stderr };
}

async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (let written = 0; written < size; ) {
    const chunk = randomBytes(Math.min(MiB, size - written));
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
    written += chunk.length;
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: MiB }), hash);
  return hash.digest('hex');
}

const mib = (bytes: number) => bytes / MiB;
const fmtMB = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
const fmtMs = (us: number) => (us >= 10_000 ? (us / 1000).toFixed(1) : (us / 1000).toFixed(2));
const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds (user + system, all threads) a process has used, or 0 once it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

function childrenOf(parent: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent)
        children.push(Number(entry));
    } catch {}
  }
  return children;
}

/** Busy and total jiffies of the whole machine, from the first line of /proc/stat. */
function machineJiffies(): { busy: number; total: number } {
  const [, ...values] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = values.map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - n[3]! - n[4]!, total };
}

interface CpuStats {
  /** CPU used by the server under test, in % of one CPU (nginx: its workers; Conveyor: its process). */
  serverPercent: number;
  /** CPU used by wrk, in % of one CPU. */
  wrkPercent: number;
  /** CPU used by everything else on the machine, in % of one CPU: interference from other work. */
  otherPercent: number;
  /** 1-minute load average when the run started. */
  load1: number;
}

function cpuMeter(pids: number[]): { stop(wrkSeconds: number): CpuStats } {
  const load1 = loadavg()[0]!;
  const server0 = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const machine0 = machineJiffies();
  const started = performance.now();
  return {
    stop(wrkSeconds) {
      const seconds = (performance.now() - started) / 1000;
      const server = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - server0;
      const busy = (machineJiffies().busy - machine0.busy) / CLK_TCK;
      return {
        serverPercent: (100 * server) / seconds,
        wrkPercent: (100 * wrkSeconds) / seconds,
        otherPercent: Math.max(0, (100 * (busy - server - wrkSeconds)) / seconds),
        load1,
      };
    },
  };
}

/**
 * Waits (up to --quiet-timeout seconds) until the machine is quiet: less than --quiet-threshold % of one
 * CPU busy over 2 s while nothing of ours is under load. On a shared machine this keeps a burst of someone
 * else's work from landing in one side of a comparison.
 */
async function waitForQuiet(): Promise<void> {
  const deadline = Date.now() + options.quietTimeout * 1000;
  for (let announced = false; ; ) {
    const before = machineJiffies().busy;
    await sleep(2000);
    const percent = (100 * (machineJiffies().busy - before)) / CLK_TCK / 2;
    if (percent < options.quietThreshold) return;
    if (Date.now() > deadline) {
      log(`  machine still busy (${percent.toFixed(0)} % of a CPU); measuring anyway`);
      return;
    }
    if (!announced) log(`  machine busy (${percent.toFixed(0)} % of a CPU); waiting for it to settle`);
    announced = true;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Machine

interface Machine {
  nproc: number;
  cpu: string;
  memory: string;
  kernel: string;
  node: string;
  nginx: string;
  wrk: string;
  curl: string;
}

function describeMachine(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  return {
    nproc: availableParallelism(),
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: `${release()}`,
    node: process.version,
    nginx: firstLine('nginx', ['-v']).replace(/^nginx version:\s*/, ''),
    wrk: firstLine('wrk', ['-v']).replace(/\s*Copyright.*$/, ''),
    curl: firstLine('curl', ['--version']).replace(/\s*\(.*$/, ''),
  };
}

/** The first line a command prints on stdout or stderr (nginx -v uses stderr, wrk -v exits with 1). */
function firstLine(command: string, argv: string[]): string {
  const result = spawnSync(command, argv, { encoding: 'utf8' });
  return `${result.stdout}${result.stderr}`.trim().split('\n')[0]!.trim();
}

// ---------------------------------------------------------------------------------------------------------
// The Conveyor under test

/** What a Conveyor needs to run: its source, the launcher and the build files. */
const SOURCE_PATHS = ['src', 'package.json', 'bin', 'tsconfig.json', 'tsconfig.build.json'];

/**
 * Copies the Conveyor to benchmark (src/, package.json and the launcher with its build files, from a commit
 * or from the working tree) into the temporary folder, so that edits made to the repository during the run
 * cannot change what is measured.
 */
async function snapshotSource(work: string): Promise<{ dir: string; description: string }> {
  const dir = join(work, 'conveyor');
  await mkdir(dir);
  const git = (...argv: string[]) => spawnSync('git', argv, { cwd: ROOT, encoding: 'utf8' });
  if (options.ref) {
    const commit = git('rev-parse', '--verify', `${options.ref}^{commit}`).stdout.trim();
    if (!commit) throw new Error(`--ref ${options.ref}: no such commit`);
    await capture(
      'sh',
      ['-c', `git -C '${ROOT}' archive ${commit} ${SOURCE_PATHS.join(' ')} | tar -x -C '${dir}'`],
      60_000,
    );
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    return {
      dir,
      description: `commit ${commit.slice(0, 12)} (${git('log', '-1', '--format=%s', commit).stdout.trim()})`,
    };
  }
  for (const path of SOURCE_PATHS) await cp(join(ROOT, path), join(dir, path), { recursive: true });
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const head = git('rev-parse', '--short=12', 'HEAD').stdout.trim();
  const dirty = git('status', '--porcelain', '--', ...SOURCE_PATHS)
    .stdout.split('\n')
    .filter(Boolean)
    .map((line) => line.slice(3));
  return {
    dir,
    description: dirty.length
      ? `working tree at ${head} with uncommitted changes to ${dirty.join(', ')}`
      : `working tree at ${head} (clean)`,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Servers

interface Target {
  name: 'nginx' | 'Conveyor' | 'bare Node';
  base: string;
  /** Path per fixture. */
  paths: Record<FixtureKey, string>;
  /** The server's ETag per fixture. */
  etags: Record<FixtureKey, string>;
  /** Conveyor's process, whose RSS is sampled. */
  pid?: number;
  /** The processes doing the serving, for CPU accounting. */
  cpuPids(): number[];
}

async function startNginx(
  work: string,
  www: string,
  workers: number,
): Promise<{ base: string; workers(): number[]; stop(): Promise<void> }> {
  const prefix = join(work, `nginx-${workers}`);
  await mkdir(prefix, { recursive: true });
  const port = await freePort();
  const template = await readFile(join(BENCH_DIR, 'nginx.conf.template'), 'utf8');
  const conf = template
    .replaceAll('{{WORKERS}}', String(workers))
    .replaceAll('{{PREFIX}}', prefix)
    .replaceAll('{{ROOT}}', www)
    .replaceAll('{{PORT}}', String(port));
  const confPath = join(prefix, 'nginx.conf');
  await writeFile(confPath, conf);
  await capture('nginx', ['-c', confPath, '-p', prefix], 10_000);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/${FIXTURES.small.name}`, 10_000);
  const master = Number(await readFile(join(prefix, 'nginx.pid'), 'utf8'));
  return {
    base,
    workers: () => childrenOf(master),
    async stop() {
      await capture('nginx', ['-c', confPath, '-p', prefix, '-s', 'quit'], 10_000);
      // Wait for the master to remove its pid file, so nothing of nginx outlives the run.
      for (let i = 0; i < 100; i++) {
        if (!(await stat(join(prefix, 'nginx.pid')).catch(() => null))) return;
        await sleep(100);
      }
    },
  };
}

/** bench/bare-node.ts on the fixture folder: the same paths as nginx, its own ETags. */
async function startBareNode(
  www: string,
  paths: Record<FixtureKey, string>,
  processes: number,
): Promise<Target & { stop(): Promise<void> }> {
  const child = spawn(process.execPath, [join(BENCH_DIR, 'bare-node.ts'), www, String(processes)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await once(child, 'exit');
  };
  cleanups.push(stop);
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  const base = `http://127.0.0.1:${port}`;
  const etags = {} as Record<FixtureKey, string>;
  for (const key of Object.keys(FIXTURES) as FixtureKey[]) {
    const head = await fetch(base + paths[key], { method: 'HEAD' });
    etags[key] = head.headers.get('etag') ?? '';
  }
  return {
    name: 'bare Node',
    base,
    paths,
    etags,
    cpuPids: () => [child.pid!, ...childrenOf(child.pid!)],
    stop,
  };
}

async function waitFor(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${url} did not come up`);
    await sleep(100);
  }
}

interface ConveyorProcess {
  base: string;
  pid: number;
  key: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startConveyorProcess(
  source: string,
  name: BackendName,
  processes: number,
  dataDir: string,
  extraEnv: Record<string, string>,
  key = 'cvk_' + randomBytes(32).toString('base64url'),
): Promise<ConveyorProcess> {
  const port = await freePort();
  const env = benchServerEnv({ dataDir, port, adminKey: key }, { ...extraEnv, ...options.env });
  // Node names each profile after the process (and cluster workers inherit the flags).
  const nodeArgs = options.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', join(options.cpuProf, name)] : [];
  if (processes > 1) env['CONVEYOR_PROCESSES'] = String(processes);
  const logPath = join(dataDir, `conveyor-${Date.now()}.log`);
  const logFile = createWriteStream(logPath);
  await once(logFile, 'open');
  // As users start it: the launcher, which runs the compiled JavaScript.
  let [command, argv] = [join(source, 'bin/conveyor'), ['serve']];
  if (nodeArgs.length > 0) {
    // --cpu-prof is not allowed in NODE_OPTIONS: let the launcher compile, then run its build with the flags.
    spawnSync(join(source, 'bin/conveyor'), ['--help'], { cwd: source });
    [command, argv] = [process.execPath, [...nodeArgs, join(source, 'dist/cli/main.js'), 'serve']];
  }
  const child = spawn(command, argv, {
    cwd: source,
    env,
    stdio: ['ignore', logFile, logFile],
  });
  const exited = once(child, 'exit');
  const base = `http://127.0.0.1:${port}`;
  try {
    await Promise.race([
      waitFor(`${base}/healthz`, 60_000),
      exited.then(() => {
        throw new Error('Conveyor exited during start-up');
      }),
    ]);
  } catch (error) {
    child.kill('SIGKILL');
    const output = await readFile(logPath, 'utf8').catch(() => '');
    throw new Error(`${(error as Error).message}\n${output}`);
  }
  return {
    base,
    pid: child.pid!,
    key,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
      logFile.end();
    },
  };
}

interface Uploaded {
  id: string;
  url: string;
  etag: string;
  sha256: string;
  size: number;
}

/** Streams a file from disk into `POST /api/v1/assets`. */
function uploadFile(
  base: string,
  key: string,
  path: string,
  filename: string,
  size: number,
): Promise<Uploaded> {
  return new Promise((resolvePromise, reject) => {
    const req = request(
      `${base}/api/v1/assets?filename=${encodeURIComponent(filename)}`,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/octet-stream',
          'content-length': String(size),
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (text: string) => {
          body += text;
        });
        res.on('end', () => {
          if (res.statusCode !== 201) reject(new Error(`upload of ${filename}: ${res.statusCode} ${body}`));
          else resolvePromise(JSON.parse(body) as Uploaded);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    pipeline(createReadStream(path), req).catch(reject);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Checks: both servers answer each scenario as intended before anything is measured.

async function checkScenario(target: Target, scenario: Scenario, expected: Buffer): Promise<void> {
  const path = target.paths[scenario.fixture];
  const res = await fetch(target.base + path, { headers: scenario.headers(target.etags[scenario.fixture]) });
  const body = Buffer.from(await res.arrayBuffer());
  const where = `${target.name} ${scenario.id}`;
  if (res.status !== scenario.expectStatus)
    throw new Error(`${where}: status ${res.status}, expected ${scenario.expectStatus}`);
  if (scenario.expectStatus === 304) {
    if (body.length !== 0) throw new Error(`${where}: 304 with a body`);
    return;
  }
  const want =
    scenario.id === 'range-64k' ? expected.subarray(RANGE_START, RANGE_START + RANGE_LENGTH) : expected;
  if (!body.equals(want)) throw new Error(`${where}: wrong bytes (${body.length} received)`);
  if (scenario.id === 'range-64k') {
    const range = res.headers.get('content-range');
    const wantRange = `bytes ${RANGE_START}-${RANGE_START + RANGE_LENGTH - 1}/${FIXTURES.large.size}`;
    if (range !== wantRange) throw new Error(`${where}: Content-Range ${range}, expected ${wantRange}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// wrk

interface WrkResult {
  requests: number;
  bytes: number;
  durationUs: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { p50: number; p90: number; p99: number; max: number; mean: number };
  rps: number;
  /** Content bytes per second (requests x body size; wrk's own byte count adds the headers). */
  contentBytesPerSec: number;
  /** Everything wrk read per second, headers included. */
  wireBytesPerSec: number;
  rss?: RssStats;
  cpu?: CpuStats;
  wrkCpuSeconds: number;
  text: string;
}

/** `1m2.345s` (the format of the shell's `times`) in seconds. */
function parseTimes(value: string): number {
  const match = /^(\d+)m([\d.]+)s$/.exec(value);
  return match ? Number(match[1]) * 60 + Number(match[2]) : 0;
}

async function wrk(
  url: string,
  headers: Record<string, string>,
  seconds: number,
  bodyBytes: number,
): Promise<WrkResult> {
  const argv = [
    '-t',
    String(options.threads),
    '-c',
    String(options.connections),
    '-d',
    `${seconds}s`,
    '--timeout',
    '10s',
    '--latency',
    '-s',
    join(BENCH_DIR, 'report.lua'),
  ];
  for (const [name, value] of Object.entries(headers)) argv.push('-H', `${name}: ${value}`);
  argv.push(url);
  // `times` reports the CPU time wrk used (user and system), so that the rest can be told apart.
  const { stdout, stderr } = await capture(
    'sh',
    ['-c', 'wrk "$@" && times >&2', 'sh', ...argv],
    (seconds + 60) * 1000,
  );
  const children = stderr.trim().split('\n').at(-1)!.trim().split(/\s+/).map(parseTimes);
  const wrkCpuSeconds = children.reduce((a, b) => a + b, 0);
  const line = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (!line) throw new Error(`wrk printed no summary:\n${stdout}`);
  const parsed = JSON.parse(line.slice('WRK_JSON '.length)) as Pick<
    WrkResult,
    'requests' | 'bytes' | 'durationUs' | 'errors' | 'latencyUs'
  >;
  const secondsRun = parsed.durationUs / 1e6;
  return {
    ...parsed,
    rps: parsed.requests / secondsRun,
    contentBytesPerSec: (parsed.requests * bodyBytes) / secondsRun,
    wireBytesPerSec: parsed.bytes / secondsRun,
    wrkCpuSeconds,
    text: stdout.replace(/^WRK_JSON .*\n?/m, ''),
  };
}

/** Warm-up (discarded), then the measured run, sampling RSS of `pid` during both. */
async function measure(target: Target, scenario: Scenario): Promise<WrkResult> {
  const url = target.base + target.paths[scenario.fixture];
  const headers = scenario.headers(target.etags[scenario.fixture]);
  const sampler = target.pid ? sampleRss(target.pid) : null;
  let result: WrkResult;
  try {
    if (options.warmup > 0) await wrk(url, headers, options.warmup, scenario.bodyBytes);
    const cpu = cpuMeter(target.cpuPids());
    result = await wrk(url, headers, options.duration, scenario.bodyBytes);
    result.cpu = cpu.stop(result.wrkCpuSeconds);
  } catch (error) {
    sampler?.stop();
    throw error;
  }
  if (sampler) result.rss = sampler.stop();
  const errors = Object.values(result.errors).reduce((a, b) => a + b, 0);
  if (errors > 0) log(`  ${target.name}: wrk reported errors ${JSON.stringify(result.errors)}`);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// One backend

interface ScenarioResult {
  scenario: Scenario['id'];
  title: string;
  metric: Scenario['metric'];
  target: number;
  nginx: WrkResult;
  conveyor: WrkResult;
  /** bench/bare-node.ts in the same rounds. */
  bare?: WrkResult;
  ratio: number;
  met: boolean;
  runs: { nginx: WrkResult[]; conveyor: WrkResult[]; bare?: WrkResult[] };
}

interface UploadResult {
  bytes: number;
  seconds: number;
  bytesPerSec: number;
  rssBefore: number;
  rss: RssStats;
  rssAfter: number;
  status: number;
  hashOk: boolean;
}

interface BackendResult {
  backend: BackendName;
  label: string;
  /** nginx worker processes, Conveyor processes and bare Node processes alike. */
  processes: number;
  rssIdleStart: number;
  rssIdleBeforeLoad: number;
  rssIdleAfterLoad: number;
  scenarios: ScenarioResult[];
  upload?: UploadResult;
}

/** An empty PostgreSQL namespace for one run: a fresh schema in the given database, dropped afterwards. */
async function freshPostgres(): Promise<{ url: string; description: string; drop(): Promise<void> }> {
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: options.postgresUrl, connectionTimeoutMillis: 5000 });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  const name = `conveyor_bench_${randomBytes(6).toString('hex')}`;
  await admin(`create schema ${name}`);
  // Spelled out: URLSearchParams would encode the space as '+'.
  const separator = options.postgresUrl.includes('?') ? '&' : '?';
  return {
    url: `${options.postgresUrl}${separator}options=-c%20search_path%3D${name}`,
    description: `schema ${name}`,
    drop: () => admin(`drop schema if exists ${name} cascade`),
  };
}

async function prepareBackend(
  name: BackendName,
): Promise<{ env: Record<string, string>; cleanup: () => Promise<void> }> {
  if (name === 'sqlite-fs') return { env: {}, cleanup: async () => {} };
  const postgres = await freshPostgres();
  let s3: S3Server | undefined;
  try {
    s3 = await startS3Server({ bucket: 'conveyor-bench' });
  } catch (error) {
    await postgres.drop();
    throw error;
  }
  log(`  PostgreSQL ${postgres.description}, s3rver at ${s3.endpoint}`);
  return {
    env: {
      CONVEYOR_DATABASE_URL: postgres.url,
      CONVEYOR_STORAGE: 's3',
      CONVEYOR_S3_ENDPOINT: s3.endpoint,
      CONVEYOR_S3_BUCKET: s3.bucket,
      CONVEYOR_S3_REGION: s3.region,
      CONVEYOR_S3_FORCE_PATH_STYLE: 'true',
      CONVEYOR_S3_ACCESS_KEY_ID: s3.accessKeyId,
      CONVEYOR_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    },
    async cleanup() {
      await s3?.close();
      await postgres.drop();
    },
  };
}

function median<T>(items: T[], by: (item: T) => number): T {
  const sorted = [...items].sort((a, b) => by(a) - by(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

async function benchBackend(
  source: string,
  name: BackendName,
  processes: number,
  work: string,
  www: string,
  nginx: Target,
  bare: Target,
  fixtures: Record<FixtureKey, { path: string; sha256: string; bytes: Buffer }>,
  bigFile: { path: string; sha256: string; size: number } | null,
): Promise<BackendResult> {
  log(`${BACKEND_LABEL[name]}, ${processes} process(es) each: starting`);
  const dataDir = join(work, `conveyor-${name}-${processes}`);
  await mkdir(dataDir, { recursive: true });
  const backend = await prepareBackend(name);
  cleanups.push(backend.cleanup);
  const conveyor = await startConveyorProcess(source, name, processes, dataDir, backend.env);
  cleanups.push(() => conveyor.stop());
  await sleep(2000);
  const rssIdleStart = readRss(conveyor.pid) ?? 0;
  log(`  Conveyor pid ${conveyor.pid} at ${conveyor.base}, idle RSS ${fmtMB(rssIdleStart)}`);

  const paths = {} as Record<FixtureKey, string>;
  const etags = {} as Record<FixtureKey, string>;
  for (const [key, fixture] of Object.entries(FIXTURES) as [FixtureKey, Fixture][]) {
    const uploaded = await uploadFile(
      conveyor.base,
      conveyor.key,
      join(www, fixture.name),
      fixture.name,
      fixture.size,
    );
    if (uploaded.sha256 !== fixtures[key].sha256)
      throw new Error(`${fixture.name}: Conveyor stored other bytes`);
    paths[key] = new URL(uploaded.url).pathname;
    const head = await fetch(conveyor.base + paths[key], { method: 'HEAD' });
    etags[key] = head.headers.get('etag') ?? '';
  }
  const target: Target = {
    name: 'Conveyor',
    base: conveyor.base,
    paths,
    etags,
    pid: conveyor.pid,
    cpuPids: () => [conveyor.pid, ...childrenOf(conveyor.pid)],
  };
  for (const scenario of scenarios) {
    for (const server of [nginx, target, bare])
      await checkScenario(server, scenario, fixtures[scenario.fixture].bytes);
  }
  log('  both servers answer every scenario as expected (status, bytes, Content-Range, 304)');
  await sleep(2000);
  const rssIdleBeforeLoad = readRss(conveyor.pid) ?? 0;

  const results: ScenarioResult[] = [];
  for (const scenario of scenarios) {
    const runs = { nginx: [] as WrkResult[], conveyor: [] as WrkResult[], bare: [] as WrkResult[] };
    for (let round = 0; round < options.rounds; round++) {
      await waitForQuiet();
      log(`  ${scenario.title}: nginx${options.rounds > 1 ? ` (round ${round + 1})` : ''}`);
      runs.nginx.push(await measure(nginx, scenario));
      log(`  ${scenario.title}: Conveyor`);
      runs.conveyor.push(await measure(target, scenario));
      log(`  ${scenario.title}: bare Node`);
      runs.bare.push(await measure(bare, scenario));
    }
    const value = (r: WrkResult) => (scenario.metric === 'rps' ? r.rps : r.contentBytesPerSec);
    const n = median(runs.nginx, value);
    const c = median(runs.conveyor, value);
    const ratio = value(c) / value(n);
    results.push({
      scenario: scenario.id,
      title: scenario.title,
      metric: scenario.metric,
      target: scenario.target,
      nginx: n,
      conveyor: c,
      bare: median(runs.bare, value),
      ratio,
      met: ratio >= scenario.target,
      runs,
    });
    log(
      `    nginx ${fmtInt(n.rps)} req/s, Conveyor ${fmtInt(c.rps)} req/s: ${ratio.toFixed(2)}x (target ${scenario.target}x); bare Node ${fmtInt(median(runs.bare, value).rps)} req/s`,
    );
  }
  await sleep(3000);
  const rssIdleAfterLoad = readRss(conveyor.pid) ?? 0;

  await conveyor.stop();
  cleanups.pop();

  // The upload gets a fresh process (same database and storage), so that what it measures is the upload's
  // own memory and not the heap left behind by the delivery load.
  let upload: UploadResult | undefined;
  if (bigFile) {
    const fresh = await startConveyorProcess(source, name, processes, dataDir, backend.env, conveyor.key);
    cleanups.push(() => fresh.stop());
    await sleep(2000);
    upload = await benchUpload(fresh, bigFile);
    await fresh.stop();
    cleanups.pop();
  }
  await backend.cleanup();
  cleanups.pop();
  await rm(dataDir, { recursive: true, force: true });
  return {
    backend: name,
    label: BACKEND_LABEL[name],
    processes,
    rssIdleStart,
    rssIdleBeforeLoad,
    rssIdleAfterLoad,
    scenarios: results,
    ...(upload ? { upload } : {}),
  };
}

/** Streams the file from disk with curl (-T reads it in chunks; --data-binary @file would load it whole). */
async function benchUpload(
  conveyor: ConveyorProcess,
  file: { path: string; sha256: string; size: number },
): Promise<UploadResult> {
  log(`  upload of ${mib(file.size)} MiB with curl`);
  const rssBefore = readRss(conveyor.pid) ?? 0;
  const sampler = sampleRss(conveyor.pid);
  const started = performance.now();
  let stdout: string;
  let rss: RssStats;
  try {
    ({ stdout } = await capture(
      'curl',
      [
        '-sS',
        '-X',
        'POST',
        '-T',
        file.path,
        '-H',
        'Expect:',
        '-H',
        'content-type: application/octet-stream',
        '-H',
        `authorization: Bearer ${conveyor.key}`,
        '-w',
        '\nHTTP_STATUS %{http_code}',
        `${conveyor.base}/api/v1/assets?filename=upload.bin`,
      ],
      30 * 60_000,
    ));
  } finally {
    rss = sampler.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  const status = Number(/HTTP_STATUS (\d+)/.exec(stdout)?.[1] ?? 0);
  const body = stdout.replace(/\nHTTP_STATUS \d+\s*$/, '');
  let hashOk = false;
  try {
    hashOk = (JSON.parse(body) as Uploaded).sha256 === file.sha256;
  } catch {}
  await sleep(2000);
  const rssAfter = readRss(conveyor.pid) ?? 0;
  log(
    `    ${status} in ${seconds.toFixed(1)} s: ${(mib(file.size) / seconds).toFixed(1)} MiB/s, RSS peak ${fmtMB(rss.peak)}`,
  );
  if (status !== 201 || !hashOk) log(`    upload failed or stored other bytes: ${body.slice(0, 500)}`);
  return {
    bytes: file.size,
    seconds,
    bytesPerSec: file.size / seconds,
    rssBefore,
    rss,
    rssAfter,
    status,
    hashOk,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Report

type Options = typeof options;

interface Run {
  machine: Machine;
  command: string;
  source: string;
  options: Options;
  startedAt: Date;
  results: BackendResult[];
}

function report(run: Run): string {
  const { machine, command, source, results } = run;
  const startedAt = new Date(run.startedAt);
  const opts = { ...run.options, env: run.options.env ?? {} };
  const lines: string[] = [];
  const push = (...more: string[]) => lines.push(...more);
  push(
    `## Conveyor vs nginx, ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `- Machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memory} RAM, Linux ${machine.kernel}`,
    `- Software: Node ${machine.node}, ${machine.nginx}, ${machine.wrk}, ${machine.curl}`,
    `- wrk: ${opts.threads} threads, ${opts.connections} connections, ${opts.warmup} s warm-up + ${opts.duration} s measured per run, ${opts.rounds} round(s) (median reported); processes per server ${opts.processes.join(' and ')} (nginx worker_processes, Conveyor's CONVEYOR_PROCESSES and bare Node's processes alike, one pairing each)${
      Object.keys(opts.env).length
        ? `; Conveyor environment ${Object.entries(opts.env)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`
        : ''
    }`,
    `- Conveyor: ${source}`,
    `- Command: \`${command}\``,
    '',
    '### Delivery',
    '',
    '| Backend | Processes | Scenario | nginx | Conveyor | Ratio | Target | Met | nginx p50 / p99 ms | Conveyor p50 / p99 ms | Conveyor RSS peak |',
    '|---|--:|---|--:|--:|--:|--:|:-:|--:|--:|--:|',
  );
  const value = (r: WrkResult, metric: Scenario['metric']) =>
    metric === 'rps'
      ? `${fmtInt(r.rps)} req/s`
      : `${mib(r.contentBytesPerSec).toFixed(0)} MiB/s (${fmtInt(r.rps)} req/s)`;
  for (const b of results) {
    for (const s of b.scenarios) {
      const errors = (r: WrkResult) => Object.values(r.errors).reduce((x, y) => x + y, 0);
      const flag = errors(s.nginx) + errors(s.conveyor) > 0 ? ' ⚠ errors' : '';
      push(
        `| ${b.label} | ${b.processes} | ${s.title} | ${value(s.nginx, s.metric)} | ${value(s.conveyor, s.metric)} | ${s.ratio.toFixed(2)}x | ${s.target}x | ${s.met ? 'yes' : '**no**'}${flag} | ${fmtMs(s.nginx.latencyUs.p50)} / ${fmtMs(s.nginx.latencyUs.p99)} | ${fmtMs(s.conveyor.latencyUs.p50)} / ${fmtMs(s.conveyor.latencyUs.p99)} | ${s.conveyor.rss ? fmtMB(s.conveyor.rss.peak) : '-'} |`,
      );
    }
  }
  push(
    '',
    'Ratios compare requests/s for the 10 KiB scenarios and content bytes/s (requests x body size) for the others.',
    '',
  );
  const withBare = results.flatMap((b) => b.scenarios.filter((s) => s.bare).map((s) => ({ b, s })));
  if (withBare.length > 0) {
    push(
      '### Against bare Node',
      '',
      'bench/bare-node.ts, measured in the same rounds: plain node:http answering the same requests with the least work a Node origin can do (no database, no framework, no metrics). "bare Node ÷ nginx" is what the runtime reaches here; "Conveyor ÷ bare Node" is what Conveyor keeps of it.',
      '',
      '| Backend | Processes | Scenario | bare Node | bare Node ÷ nginx | Conveyor ÷ bare Node | bare Node CPU / response |',
      '|---|--:|---|--:|--:|--:|--:|',
    );
    for (const { b, s } of withBare) {
      const v = (r: WrkResult) => (s.metric === 'rps' ? r.rps : r.contentBytesPerSec);
      const bare = s.bare!;
      const perResponse = bare.cpu ? (bare.cpu.serverPercent / 100) * (1e6 / bare.rps) : Number.NaN;
      push(
        `| ${b.label} | ${b.processes} | ${s.title} | ${value(bare, s.metric)} | ${(v(bare) / v(s.nginx)).toFixed(2)}x | ${(v(s.conveyor) / v(bare)).toFixed(2)}x | ${perResponse.toFixed(0)} µs |`,
      );
    }
    push('');
  }
  push(
    '### Conveyor memory (VmRSS)',
    '',
    '| Backend | Processes | Idle after start | Idle after fixture uploads | Peak under load (mean) | Idle after load |',
    '|---|--:|--:|--:|--:|--:|',
  );
  for (const b of results) {
    const loaded = b.scenarios.flatMap((s) => s.runs.conveyor.map((r) => r.rss!).filter(Boolean));
    const peak = Math.max(0, ...loaded.map((r) => r.peak));
    const mean = loaded.length ? loaded.reduce((a, r) => a + r.mean, 0) / loaded.length : 0;
    push(
      `| ${b.label} | ${b.processes} | ${fmtMB(b.rssIdleStart)} | ${fmtMB(b.rssIdleBeforeLoad)} | ${fmtMB(peak)} (${fmtMB(mean)}) | ${fmtMB(b.rssIdleAfterLoad)} |`,
    );
  }
  push(
    '',
    '### CPU during the measured runs',
    '',
    `In % of one CPU (the machine has ${machine.nproc}): the server (nginx: its workers; Conveyor: its processes, every thread), wrk, and everything else on the machine (interference; s3rver counts here).`,
    '',
    'Server CPU per response (µs) is what one response costs; it barely depends on how much else the machine was doing.',
    '',
    '| Backend | Processes | Scenario | nginx | wrk | other | Conveyor | wrk | other | nginx CPU / response | Conveyor CPU / response | Conveyor / nginx |',
    '|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  );
  const perResponse = (r: WrkResult) => (r.cpu ? (r.cpu.serverPercent / 100) * (1e6 / r.rps) : Number.NaN);
  const cpuCells = (r: WrkResult) =>
    r.cpu
      ? `${r.cpu.serverPercent.toFixed(0)} % | ${r.cpu.wrkPercent.toFixed(0)} % | ${r.cpu.otherPercent.toFixed(0)} %`
      : '- | - | -';
  for (const b of results) {
    for (const s of b.scenarios) {
      const n = perResponse(s.nginx);
      const c = perResponse(s.conveyor);
      push(
        `| ${b.label} | ${b.processes} | ${s.title} | ${cpuCells(s.nginx)} | ${cpuCells(s.conveyor)} | ${n.toFixed(0)} µs | ${c.toFixed(0)} µs | ${(c / n).toFixed(1)}x |`,
      );
    }
  }
  const uploads = results.filter((b) => b.upload);
  if (uploads.length > 0) {
    push(
      '',
      '### Upload (raw body streamed from disk with curl -T)',
      '',
      '| Backend | Processes | Size | Status | Time | Throughput | RSS before | RSS peak (100 ms samples) | RSS after | Under 200 MB |',
      '|---|--:|--:|:-:|--:|--:|--:|--:|--:|:-:|',
    );
    for (const b of uploads) {
      const u = b.upload!;
      push(
        `| ${b.label} | ${b.processes} | ${mib(u.bytes)} MiB | ${u.status}${u.hashOk ? '' : ' ⚠ hash'} | ${u.seconds.toFixed(1)} s | ${mib(u.bytesPerSec).toFixed(1)} MiB/s | ${fmtMB(u.rssBefore)} | ${fmtMB(u.rss.peak)} (${u.rss.samples} samples) | ${fmtMB(u.rssAfter)} | ${u.rss.peak < RSS_LIMIT_BYTES ? 'yes' : '**no**'} |`,
      );
    }
  }
  const missed = results.flatMap((b) =>
    b.scenarios.filter((s) => !s.met).map((s) => `${b.label}, ${b.processes} process(es): ${s.title}`),
  );
  push('', missed.length ? `Targets missed: ${missed.join('; ')}.` : 'All delivery targets met.', '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const startedAt = new Date();
  const command = ['bench/run.sh', ...process.argv.slice(2)].join(' ');
  const machine = describeMachine();
  log(
    `${machine.nproc} CPUs (${machine.cpu}), ${machine.memory}, Linux ${machine.kernel}, Node ${machine.node}`,
  );

  const work = await mkdtemp(join(tmpdir(), 'conveyor-bench-'));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const source = await snapshotSource(work);
  log(`Conveyor: ${source.description}`);
  // nginx workers run as an unprivileged user when started by root; let them read the files.
  await chmod(work, 0o755);
  const www = join(work, 'www');
  await mkdir(www, { mode: 0o755 });
  const fixtures = {} as Record<FixtureKey, { path: string; sha256: string; bytes: Buffer }>;
  for (const [key, fixture] of Object.entries(FIXTURES) as [FixtureKey, Fixture][]) {
    const path = join(www, fixture.name);
    const sha256 = await writeRandomFile(path, fixture.size);
    await chmod(path, 0o644);
    fixtures[key] = { path, sha256, bytes: await readFile(path) };
  }
  log(`fixtures in ${www}`);

  let bigFile: { path: string; sha256: string; size: number } | null = null;
  if (options.uploadMiB > 0) {
    const path = join(tmpdir(), `conveyor-bench-upload-${randomBytes(4).toString('hex')}.bin`);
    cleanups.push(() => rm(path, { force: true }));
    log(`generating ${options.uploadMiB} MiB upload file with dd`);
    await capture(
      'dd',
      ['if=/dev/urandom', `of=${path}`, 'bs=1M', `count=${options.uploadMiB}`, 'status=none'],
      10 * 60_000,
    );
    bigFile = { path, sha256: await sha256File(path), size: options.uploadMiB * MiB };
  }

  const results: BackendResult[] = [];
  for (const processes of options.processes) {
    // Like with like: nginx gets as many worker processes as Conveyor and bare Node get processes.
    const nginxServer = await startNginx(work, www, processes);
    cleanups.push(() => nginxServer.stop());
    const nginxPaths = {} as Record<FixtureKey, string>;
    const nginxEtags = {} as Record<FixtureKey, string>;
    for (const [key, fixture] of Object.entries(FIXTURES) as [FixtureKey, Fixture][]) {
      nginxPaths[key] = `/${fixture.name}`;
      const head = await fetch(`${nginxServer.base}/${fixture.name}`, { method: 'HEAD' });
      nginxEtags[key] = head.headers.get('etag') ?? '';
    }
    const nginx: Target = {
      name: 'nginx',
      base: nginxServer.base,
      paths: nginxPaths,
      etags: nginxEtags,
      cpuPids: nginxServer.workers,
    };
    log(`nginx at ${nginx.base}, worker_processes ${processes}`);
    const bare = await startBareNode(www, nginxPaths, processes);
    log(`bare Node at ${bare.base}, ${processes} process(es)`);

    for (const name of backends) {
      results.push(
        await benchBackend(source.dir, name, processes, work, www, nginx, bare, fixtures, bigFile),
      );
    }
    // The next pairing runs alone on the machine.
    await bare.stop();
    cleanups.pop();
    await nginxServer.stop();
    cleanups.pop();
  }

  const markdown = report({ machine, command, source: source.description, options, startedAt, results });
  process.stdout.write(`\n${markdown}`);
  await mkdir(options.out, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  await writeFile(join(options.out, `${stamp}.md`), markdown);
  await writeFile(
    join(options.out, `${stamp}.json`),
    JSON.stringify({ machine, command, source: source.description, options, startedAt, results }, null, 2),
  );
  log(`results written to ${join(options.out, `${stamp}.{md,json}`)}`);
}

try {
  if (args.report) process.stdout.write(report(JSON.parse(await readFile(args.report, 'utf8')) as Run));
  else await main();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
