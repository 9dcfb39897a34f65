/**
 * Two Conveyor builds side by side in one run: a commit (`--ref`, the "before") and the working tree (the
 * "after"), each started as users start it (`bin/conveyor serve`, SQLite + local disk, its own data folder,
 * the same three files uploaded), then measured with `wrk` in alternating order, round after round, so a
 * busy minute on a shared machine hits both alike. The figure compared is the server's CPU time per
 * response (utime + stime from /proc/<pid>/stat over the measured run, divided by the responses), which
 * a noisy neighbour disturbs far less than requests per second; requests per second are reported too.
 *
 *   node_modules/.bin/node bench/ab.ts --ref <commit> [--rounds 8] [--duration 4] [--warmup 1]
 *     [--scenarios small-200,small-304,range-64k,medium-200] [--processes 1]
 *
 * Results go to stdout as a Markdown table. Loopback only; everything started is stopped and deleted.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..');
const KiB = 1024;
const MiB = 1024 * KiB;
const SOURCE_PATHS = ['src', 'package.json', 'bin', 'tsconfig.json', 'tsconfig.build.json'];
const RANGE_START = 50 * MiB + 12_345;
const RANGE_LENGTH = 64 * KiB;
const FILES = { small: 10 * KiB, medium: MiB, large: 100 * MiB } as const;
type FileKey = keyof typeof FILES;

/** Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on every Linux this runs on). */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

interface Scenario {
  file: FileKey;
  headers(etag: string): string[];
}
const SCENARIOS: Record<string, Scenario> = {
  'small-200': { file: 'small', headers: () => [] },
  'small-304': { file: 'small', headers: (etag) => [`If-None-Match: ${etag}`] },
  'range-64k': {
    file: 'large',
    headers: () => [`Range: bytes=${RANGE_START}-${RANGE_START + RANGE_LENGTH - 1}`],
  },
  'medium-200': { file: 'medium', headers: () => [] },
};

const { values } = parseArgs({
  options: {
    ref: { type: 'string' },
    rounds: { type: 'string', default: '8' },
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    scenarios: { type: 'string', default: Object.keys(SCENARIOS).join(',') },
    processes: { type: 'string', default: '1' },
  },
});
if (!values.ref) {
  console.error('usage: bench/ab.ts --ref <commit> [--rounds N] [--duration S] [--scenarios a,b]');
  process.exit(2);
}
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const scenarios = values.scenarios.split(',');
for (const id of scenarios) if (!Object.hasOwn(SCENARIOS, id)) throw new Error(`unknown scenario ${id}`);

interface Build {
  label: string;
  dir: string;
  base: string;
  pid: number;
  child: ChildProcess;
  paths: Record<FileKey, string>;
  etags: Record<FileKey, string>;
}

const work = await mkdtemp(join(tmpdir(), 'conveyor-ab-'));
const builds: Build[] = [];
try {
  const files = await writeFiles(join(work, 'files'));
  const before = await snapshot(join(work, 'before'), values.ref);
  const after = await snapshot(join(work, 'after'));
  for (const [label, dir] of [
    [before.description, before.dir],
    [after.description, after.dir],
  ] as const) {
    builds.push(await start(label, dir, join(work, `data-${builds.length}`), files));
  }
  const samples = new Map<string, { cpuUs: number[]; rps: number[] }[]>();
  for (let round = 0; round < rounds; round++) {
    for (const id of scenarios) {
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const index of order) {
        const build = builds[index]!;
        const scenario = SCENARIOS[id]!;
        const args = [
          '-t2',
          '-c50',
          ...scenario.headers(build.etags[scenario.file]).flatMap((h) => ['-H', h]),
        ];
        const url = build.base + build.paths[scenario.file];
        if (warmup > 0) wrk([...args, `-d${warmup}s`, url]);
        const cpuBefore = cpuTicks(build.child.pid!);
        const result = wrk([...args, `-d${duration}s`, url]);
        const cpuUs = ((cpuTicks(build.child.pid!) - cpuBefore) * 1e6) / CLOCK_TICKS / result.requests;
        const perBuild = samples.get(id) ?? [
          { cpuUs: [], rps: [] },
          { cpuUs: [], rps: [] },
        ];
        perBuild[index]!.cpuUs.push(cpuUs);
        perBuild[index]!.rps.push(result.requests / result.seconds);
        samples.set(id, perBuild);
      }
    }
    process.stderr.write(`round ${round + 1}/${rounds} done\n`);
  }
  report(samples);
} finally {
  for (const build of builds) build.child.kill('SIGTERM');
  await Promise.all(
    builds.map((build) => (build.child.exitCode === null ? once(build.child, 'exit') : null)),
  );
  await rm(work, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------------------

/** utime + stime of a process and its children that were waited for (a cluster's workers). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let ticks = Number(fields[11]) + Number(fields[12]);
  for (const child of childrenOf(pid)) ticks += cpuTicks(child);
  return ticks;
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function wrk(args: string[]): { requests: number; seconds: number } {
  const run = spawnSync('wrk', args, { encoding: 'utf8' });
  const match = /(\d+) requests in ([\d.]+)(m?s)/.exec(run.stdout);
  if (run.status !== 0 || !match) throw new Error(`wrk ${args.join(' ')} failed: ${run.stdout}${run.stderr}`);
  if (/Non-2xx or 3xx responses/.test(run.stdout)) throw new Error(`wrk saw error responses: ${run.stdout}`);
  const seconds = Number(match[2]) / (match[3] === 'ms' ? 1000 : 1);
  return { requests: Number(match[1]), seconds };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function report(samples: Map<string, { cpuUs: number[]; rps: number[] }[]>): void {
  const [a, b] = builds;
  console.log(`Before: ${a!.label}\nAfter: ${b!.label}`);
  console.log(`${rounds} alternating rounds, wrk -t2 -c50 -d${duration}s, ${values.processes} process(es)\n`);
  console.log(
    '| Scenario | CPU µs/response before (min / median) | after (min / median) | after ÷ before (median) | req/s before / after (median) |',
  );
  console.log('|---|--:|--:|--:|--:|');
  for (const [id, [before, after]] of samples) {
    const fmt = (xs: number[]) => `${Math.min(...xs).toFixed(1)} / ${median(xs).toFixed(1)}`;
    const ratio = median(after!.cpuUs) / median(before!.cpuUs);
    console.log(
      `| ${id} | ${fmt(before!.cpuUs)} | ${fmt(after!.cpuUs)} | ${ratio.toFixed(3)} | ` +
        `${Math.round(median(before!.rps))} / ${Math.round(median(after!.rps))} |`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------

async function writeFiles(dir: string): Promise<Record<FileKey, string>> {
  await mkdir(dir, { recursive: true });
  const out = {} as Record<FileKey, string>;
  for (const [key, size] of Object.entries(FILES) as [FileKey, number][]) {
    out[key] = join(dir, `${key}.bin`);
    await writeFile(out[key], randomBytes(size));
  }
  return out;
}

/** A copy of Conveyor at `ref`, or of the working tree, so edits during the run change nothing. */
async function snapshot(dir: string, ref?: string): Promise<{ dir: string; description: string }> {
  await mkdir(dir, { recursive: true });
  const git = (...argv: string[]) => spawnSync('git', argv, { cwd: ROOT, encoding: 'utf8' });
  let description: string;
  if (ref) {
    const commit = git('rev-parse', '--verify', `${ref}^{commit}`).stdout.trim();
    if (!commit) throw new Error(`--ref ${ref}: no such commit`);
    const archive = spawnSync(
      'sh',
      ['-c', `git archive ${commit} ${SOURCE_PATHS.join(' ')} | tar -x -C '${dir}'`],
      {
        cwd: ROOT,
      },
    );
    if (archive.status !== 0) throw new Error(`git archive ${commit} failed`);
    description = commit.slice(0, 12);
  } else {
    for (const path of SOURCE_PATHS) await cp(join(ROOT, path), join(dir, path), { recursive: true });
    const dirty = git('status', '--porcelain', '--', ...SOURCE_PATHS).stdout.trim() !== '';
    description = `working tree at ${git('rev-parse', '--short=12', 'HEAD').stdout.trim()}${dirty ? ', modified' : ''}`;
  }
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return { dir, description };
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

async function start(
  label: string,
  dir: string,
  dataDir: string,
  files: Record<FileKey, string>,
): Promise<Build> {
  await mkdir(dataDir, { recursive: true });
  const port = await freePort();
  const key = 'cvk_' + randomBytes(32).toString('base64url');
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('CONVEYOR_')) env[k] = v;
  Object.assign(env, {
    CONVEYOR_DATA_DIR: dataDir,
    CONVEYOR_HOST: '127.0.0.1',
    CONVEYOR_PORT: String(port),
    CONVEYOR_PUBLIC_URL: `http://127.0.0.1:${port}`,
    CONVEYOR_ADMIN_KEY: key,
    CONVEYOR_LOG_LEVEL: 'warn',
    CONVEYOR_RATE_LIMIT_PER_KEY: '0',
    CONVEYOR_RATE_LIMIT_PER_ADDRESS: '0',
    CONVEYOR_GC_INTERVAL_SECONDS: '0',
    CONVEYOR_PROCESSES: values.processes,
  });
  const child = spawn(join(dir, 'bin/conveyor'), ['serve'], {
    cwd: dir,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  for (const deadline = Date.now() + 120_000; ; ) {
    if (child.exitCode !== null) throw new Error(`${label}: Conveyor exited during start-up`);
    if (
      await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline) throw new Error(`${label}: no answer on ${base}/healthz`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const paths = {} as Record<FileKey, string>;
  const etags = {} as Record<FileKey, string>;
  for (const [fileKey, path] of Object.entries(files) as [FileKey, string][]) {
    const res = await fetch(`${base}/api/v1/assets?filename=${fileKey}.bin`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' },
      body: readFileSync(path),
    });
    if (res.status !== 201)
      throw new Error(`${label}: upload of ${fileKey}: ${res.status} ${await res.text()}`);
    const asset = (await res.json()) as { url: string; etag: string };
    paths[fileKey] = new URL(asset.url, base).pathname;
    etags[fileKey] = asset.etag;
  }
  return { label, dir, base, pid: child.pid!, child, paths, etags };
}
