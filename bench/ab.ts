/**
 * Two or more Conveyor builds side by side on one data folder (SQLite + disk), measured in alternation:
 * for each scenario, one wrk run against each build in turn, the order rotating from round to round, so
 * that every build sees the same machine within seconds. Reports the CPU each server process used per
 * response (utime + stime of all its threads, /proc/<pid>/stat), which a busy machine disturbs far less
 * than requests per second, and each build's ratio to the first, as the median of per-round ratios.
 *
 *   node_modules/.bin/node bench/ab.ts --build <checkout> --build <checkout> [--build ...]
 *        [--rounds 8] [--duration 4] [--warmup 1] [--connections 50] [--scenarios small-200,...]
 *        [--env N:KEY=VALUE ...]
 *
 * `--env` gives build N's measured server a setting of its own: the same checkout twice with one setting
 * apart is an A/B of that setting (e.g. `--env 1:CONVEYOR_CDN_PROVIDERS=[...]` for cache tags).
 *
 * A build is a checkout with node_modules (e.g. `git worktree add /tmp/ref <commit>` and a hard-linked
 * copy of node_modules); each runs through its own launcher (bin/conveyor), as users run it. Fixtures go
 * in through a server of their own first, with the image jobs on; the measured servers run no workers.
 * Scenarios: small-200 (10 KiB GET), small-304, medium-200 (1 MiB), range-64k (of 100 MiB), variant
 * (`/a/<id>/thumb.webp`) and transform (a signed `/t/` URL), all answered from memory once warm.
 * Needs wrk.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { freePort } from '../test/helpers/child.ts';
import { benchServerEnv } from './server-env.ts';

const { values: args } = parseArgs({
  options: {
    build: { type: 'string', multiple: true, default: [] },
    rounds: { type: 'string', default: '8' },
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    connections: { type: 'string', default: '50' },
    scenarios: { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
  },
});
const builds = args.build.map((dir) => resolve(dir));
if (builds.length < 2) throw new Error('give at least two --build <checkout>');
const LABELS = builds.map((_, i) => String.fromCharCode(65 + i));
/** `--env N:KEY=VALUE`: a setting for the measured server of build N only (0 is the first). */
const buildEnv = builds.map(() => ({}) as Record<string, string>);
for (const given of args.env) {
  const match = /^(\d+):([A-Z0-9_]+)=(.*)$/s.exec(given);
  const env = match && buildEnv[Number(match[1])];
  if (!match || !env) throw new Error(`--env ${given}: expected N:KEY=VALUE with N a build's index`);
  env[match[2]!] = match[3]!;
}
const rounds = Number(args.rounds);
const duration = Number(args.duration);
const warmup = Number(args.warmup);
/** Clock ticks per second of /proc/<pid>/stat (CLK_TCK, 100 on Linux). */
const TICKS = 100;
const KEY = `cvk_${randomBytes(32).toString('base64url')}`;

interface Server {
  base: string;
  pid: number;
  child: ChildProcess;
}

async function start(build: string, data: string, env: Record<string, string>): Promise<Server> {
  spawnSync(join(build, 'bin/conveyor'), ['--help'], { cwd: build }); // compiles, if it must
  const port = await freePort();
  const childEnv = benchServerEnv({ dataDir: data, port, adminKey: KEY }, env);
  const log = createWriteStream(join(data, `conveyor-${port}.log`));
  await once(log, 'open');
  const child = spawn(join(build, 'bin/conveyor'), ['serve'], {
    cwd: build,
    env: childEnv,
    stdio: ['ignore', log, log],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (
      await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 600) throw new Error(`${build} did not start (log: ${data})`);
    await sleep(100);
  }
  return { base, pid: child.pid!, child };
}

async function stop(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  server.child.kill('SIGTERM');
  await once(server.child, 'exit');
}

/** CPU time of a process and all its threads so far, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function wrk(url: string, seconds: number, headers: Record<string, string>) {
  const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const out = spawnSync('wrk', ['-t2', `-c${args.connections}`, `-d${seconds}s`, ...h, url], {
    encoding: 'utf8',
  });
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr}`);
  return {
    requests: Number(/(\d+) requests in/.exec(out.stdout)?.[1] ?? 0),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out.stdout)?.[1] ?? 0),
    errors: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out.stdout)?.[1] ?? 0),
  };
}

async function json<T>(base: string, path: string, init: RequestInit): Promise<T> {
  const res = await fetch(base + path, init);
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function upload(base: string, bytes: Buffer, filename: string) {
  return json<{ id: string; url: string; etag: string }>(base, `/api/v1/assets?filename=${filename}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
}

/** Uploads the fixtures through a server of the first build; answers each scenario's request. */
async function fixtures(
  data: string,
): Promise<Record<string, { path: string; headers: Record<string, string> }>> {
  const server = await start(builds[0]!, data, {});
  try {
    const path = (url: string) => new URL(url).pathname;
    const small = await upload(server.base, randomBytes(10 * 1024), 'small.bin');
    const medium = await upload(server.base, randomBytes(1024 * 1024), 'medium.bin');
    const large = await upload(server.base, randomBytes(100 * 1024 * 1024), 'large.bin');
    const raw = randomBytes(800 * 600 * 3);
    const photo = await sharp(raw, { raw: { width: 800, height: 600, channels: 3 } })
      .jpeg()
      .toBuffer();
    const image = await upload(server.base, photo, 'photo.jpg');
    const signed = await json<{ path: string }>(server.base, `/api/v1/assets/${image.id}/transform-url`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ width: 200, format: 'webp' }),
    });
    const variant = `/a/${image.id}/thumb.webp`;
    for (let i = 0; (await fetch(server.base + variant)).status !== 200; i++) {
      if (i > 600) throw new Error('the image job made no variant');
      await sleep(100);
    }
    return {
      'small-200': { path: path(small.url), headers: {} },
      'small-304': { path: path(small.url), headers: { 'if-none-match': small.etag } },
      'medium-200': { path: path(medium.url), headers: {} },
      'range-64k': { path: path(large.url), headers: { range: 'bytes=52441145-52506680' } },
      variant: { path: variant, headers: {} },
      transform: { path: signed.path, headers: {} },
    };
  } finally {
    await stop(server);
  }
}

function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const data = await mkdtemp(join(tmpdir(), 'conveyor-ab-'));
const servers: Server[] = [];
try {
  const all = await fixtures(data);
  const chosen = args.scenarios ? args.scenarios.split(',') : Object.keys(all);
  for (const [i, build] of builds.entries()) {
    servers.push(await start(build, data, { CONVEYOR_SERVE_WORKERS: 'false', ...buildEnv[i] }));
  }
  // Every build answers every scenario alike (status, ETag, length), and the first time fills its memos.
  for (const name of chosen) {
    const s = all[name];
    if (!s) throw new Error(`no scenario ${name}`);
    const answers = await Promise.all(
      servers.map(async ({ base }) => {
        const r = await fetch(base + s.path, { headers: s.headers });
        return `${r.status} ${r.headers.get('etag')} ${(await r.arrayBuffer()).byteLength}`;
      }),
    );
    if (new Set(answers).size !== 1) throw new Error(`${name}: ${answers.join(' / ')}`);
  }
  // cpu[scenario][round][build]: µs of CPU per response
  const cpu: Record<string, number[][]> = Object.fromEntries(chosen.map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const [index, name] of chosen.entries()) {
      const s = all[name]!;
      const turn = (round + index) % servers.length;
      const order = servers.map((_, i) => (i + turn) % servers.length);
      if ((round + index) % 2 === 1) order.reverse();
      const measured: number[] = [];
      for (const i of order) {
        const { base, pid } = servers[i]!;
        if (warmup > 0) wrk(base + s.path, warmup, s.headers);
        const before = cpuTicks(pid);
        const run = wrk(base + s.path, duration, s.headers);
        measured[i] = (((cpuTicks(pid) - before) / TICKS) * 1e6) / run.requests;
        const note = run.errors > 0 && name !== 'small-304' ? `, ${run.errors} errors` : '';
        process.stderr.write(
          `round ${round + 1} ${name} ${LABELS[i]}: ${run.rps.toFixed(0)} req/s, ${measured[i]!.toFixed(1)} µs CPU/response${note}\n`,
        );
      }
      cpu[name]!.push(measured);
    }
  }
  const lines = [
    builds.map((b, i) => `${LABELS[i]}: ${b}`).join('  \n'),
    '',
    `| Scenario | ${LABELS.map((l) => `${l}: µs CPU/response, median (min)`).join(' | ')} | ${LABELS.slice(1)
      .map((l) => `${l} ÷ A, median of rounds (range)`)
      .join(' | ')} |`,
    `|---|${LABELS.map(() => '--:').join('|')}|${LABELS.slice(1)
      .map(() => '--:')
      .join('|')}|`,
  ];
  for (const name of chosen) {
    const byRound = cpu[name]!;
    const cells = LABELS.map((_, i) => {
      const values = byRound.map((r) => r[i]!);
      return `${median(values).toFixed(1)} (${Math.min(...values).toFixed(1)})`;
    });
    const ratios = LABELS.slice(1).map((_, j) => {
      const values = byRound.map((r) => r[j + 1]! / r[0]!);
      return `${median(values).toFixed(3)} (${Math.min(...values).toFixed(2)}-${Math.max(...values).toFixed(2)})`;
    });
    lines.push(`| ${name} | ${cells.join(' | ')} | ${ratios.join(' | ')} |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await Promise.all(servers.map(stop));
  await rm(data, { recursive: true, force: true });
}
