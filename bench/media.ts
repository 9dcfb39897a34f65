/**
 * Media benchmark (issue 4), in one run on this machine:
 *
 *   1. transform throughput: fit 512x512 of a 12 MP JPEG to JPEG, WebP and AVIF, every request a new
 *      output (distinct quality and width, so Conveyor renders, stores and serves each one), against a
 *      minimal node:http server that calls sharp directly with the same settings;
 *   2. a cached transform answered again, with wrk, against nginx serving the same bytes from disk (and
 *      bench/bare-node.ts, for what Node reaches);
 *   3. RSS of Conveyor while 32 transforms of 24 MP images are requested at once, with the default
 *      transform concurrency and with 32 render slots;
 *   4. ingest of 1,000 remote images from a loopback origin in one batch of mixed kinds: throughput and
 *      per-image latency by lane.
 *
 *   node_modules/.bin/node bench/media.ts [--only transform,cached,rss,ingest] [--requests 40]
 *     [--concurrency 4] [--duration 10] [--images 1000] [--processes 1]
 *   --processes sets CONVEYOR_PROCESSES for the cached-transform part, and as many bare Node processes
 *   and nginx worker processes, so that the three compare like with like.
 *
 * Conveyor runs as users start it (bin/conveyor serve, SQLite + local folder) in its own process;
 * everything listens on 127.0.0.1. Prints Markdown; nothing is written to the repository.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, createServer, request } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp, { type Sharp } from 'sharp';
import { signTransformPath } from '../src/media/image/transform-url.ts';
import { freePort } from '../test/helpers/child.ts';
import { sceneSvg } from '../test/media/image/sample-images.ts';
import { benchServerEnv } from './server-env.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: 'transform,cached,rss,ingest' },
    requests: { type: 'string', default: '40' },
    concurrency: { type: 'string', default: '4' },
    duration: { type: 'string', default: '10' },
    processes: { type: 'string', default: '1' },
    images: { type: 'string', default: '1000' },
    'serve-sharp': { type: 'string' },
  },
});
const only = new Set(args.only.split(','));
const KEY = { id: 'bench', secret: Buffer.from('b'.repeat(48)) };
const ENCODERS = {
  jpeg: (s: Sharp, q: number) => s.jpeg({ quality: q, mozjpeg: true }),
  webp: (s: Sharp, q: number) => s.webp({ quality: q, effort: 4 }),
  avif: (s: Sharp, q: number) => s.avif({ quality: q, effort: 2 }),
};
type Format = keyof typeof ENCODERS;

// ---------------------------------------------------------------------------------------------------
// The minimal reference: node:http + sharp, the same settings Conveyor's transforms use.

if (args['serve-sharp']) {
  const file = args['serve-sharp'];
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const format = url.searchParams.get('f') as Format;
    const width = Number(url.searchParams.get('w'));
    const quality = Number(url.searchParams.get('q'));
    const pipeline = sharp(file, { limitInputPixels: 50_000_000, sequentialRead: true })
      .rotate()
      .resize(width, width, { fit: 'inside', withoutEnlargement: true });
    ENCODERS[format](pipeline, quality)
      .toBuffer()
      .then(
        (data) =>
          res.writeHead(200, { 'content-type': `image/${format}`, 'content-length': data.length }).end(data),
        (error: Error) => res.writeHead(500).end(error.message),
      );
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as { port: number }).port }));
} else {
  await main();
}

// ---------------------------------------------------------------------------------------------------

interface Conveyor {
  base: string;
  pid: number;
  key: string;
  stop(): Promise<void>;
}

async function startConveyor(work: string, env: Record<string, string>): Promise<Conveyor> {
  const port = await freePort();
  const dataDir = await mkdtemp(join(work, 'conveyor-'));
  const key = `cvk_${randomBytes(32).toString('base64url')}`;
  const base = `http://127.0.0.1:${port}`;
  const childEnv = benchServerEnv(
    { dataDir, port, adminKey: key },
    {
      CONVEYOR_SIGNING_KEYS: `${KEY.id}:${KEY.secret.toString()}`,
      ...env,
    },
  );
  const child = spawn(join(ROOT, 'bin/conveyor'), ['serve'], { cwd: ROOT, env: childEnv, stdio: 'inherit' });
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
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

async function api(c: Conveyor, method: string, path: string, body?: unknown, type = 'application/json') {
  const res = await fetch(c.base + path, {
    method,
    headers: { authorization: `Bearer ${c.key}`, 'content-type': type },
    ...(body === undefined ? {} : { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/**
 * A photo-like JPEG: smooth shapes, texture at several scales (noise drawn at 1/16 and 1/4 of the size
 * and enlarged) and fine grain, so that neither the source nor a 512 px rendition compresses away.
 */
async function photo(width: number, height: number): Promise<Buffer> {
  const texture = async (divisor: number, sigma: number) => {
    const w = Math.ceil(width / divisor);
    const h = Math.ceil(height / divisor);
    const noise = { type: 'gaussian' as const, mean: 128, sigma };
    const small = await sharp({ create: { width: w, height: h, channels: 3, background: '#000', noise } })
      .raw()
      .toBuffer();
    return sharp(small, { raw: { width: w, height: h, channels: 3 } })
      .resize(width, height, { kernel: 'cubic' })
      .raw()
      .toBuffer();
  };
  const layers = [await texture(16, 60), await texture(4, 30), await texture(1, 12)];
  const scene = await sharp(sceneSvg(width, height)).removeAlpha().raw().toBuffer();
  for (let i = 0; i < scene.length; i++) {
    let v = scene[i]!;
    for (const layer of layers) v += layer[i]! - 128;
    scene[i] = Math.max(0, Math.min(255, v));
  }
  return sharp(scene, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 88 })
    .toBuffer();
}

async function uploadImage(c: Conveyor, bytes: Buffer, name: string): Promise<string> {
  const asset = await api(c, 'POST', `/api/v1/assets?filename=${name}`, bytes, 'image/jpeg');
  return asset.id as string;
}

function transformPath(id: string, format: Format, width: number, quality: number): string {
  const signed = `/w:${width},h:${width},fit:inside,q:${quality},f:${format}/${id}`;
  return `/t/${signTransformPath(signed, KEY)}${signed}`;
}

/** `total` GETs with `concurrency` in flight; answers requests per second. */
async function load(urls: string[], concurrency: number): Promise<{ rps: number; failures: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  let failures = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < urls.length) {
        const url = urls[next++]!;
        const status = await new Promise<number>((resolveStatus) => {
          request(url, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolveStatus(res.statusCode!));
          })
            .on('error', () => resolveStatus(0))
            .end();
        });
        if (status !== 200) failures++;
      }
    }),
  );
  agent.destroy();
  return { rps: urls.length / ((performance.now() - started) / 1000), failures };
}

/** CPU seconds (user + system, every thread) a process has used. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
}

function MB(bytes: number): string {
  return `${(bytes / 1e6).toFixed(0)} MB`;
}

// ---------------------------------------------------------------------------------------------------

async function benchTransforms(work: string, out: string[]) {
  const requests = Number(args.requests);
  const concurrency = Number(args.concurrency);
  const source = await photo(4000, 3000);
  const file = join(work, 'source-12mp.jpg');
  await writeFile(file, source);
  const conveyor = await startConveyor(work, {
    CONVEYOR_IMAGE_VARIANTS: 'false',
    CONVEYOR_TRANSFORM_CONCURRENCY: String(concurrency),
  });
  const reference = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve-sharp', file], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const [{ port }] = (await once(reference, 'message')) as [{ port: number }];
    const id = await uploadImage(conveyor, source, 'source-12mp.jpg');
    await sleep(3000); // the analysis job of the upload runs now, not during the measurements
    out.push(
      '### Transform throughput: fit 512x512 of a 12 MP JPEG, every request a new output',
      '',
      `${(source.length / 1e6).toFixed(1)} MB source, ${requests} requests per run, ${concurrency} in flight; Conveyor renders at most ${concurrency} at once. Reference: node:http calling sharp on the file with the same settings. Two rounds, alternating; the better run of each is shown.`,
      '',
      '| Output | sharp direct | Conveyor | Conveyor overhead | CPU per render: sharp direct / Conveyor |',
      '|---|--:|--:|--:|--:|',
    );
    let q = 40;
    for (const format of ['jpeg', 'webp', 'avif'] as Format[]) {
      const best = { sharp: 0, conveyor: 0 };
      const cpu = { sharp: 0, conveyor: 0 };
      for (let round = 0; round < 2; round++) {
        const params = Array.from({ length: requests }, (_, i) => ({
          w: 512 - (i % 8),
          q: q + Math.floor(i / 8),
        }));
        q += Math.ceil(requests / 8);
        let before = cpuSeconds(reference.pid!);
        const direct = await load(
          params.map((p) => `http://127.0.0.1:${port}/?f=${format}&w=${p.w}&q=${p.q}`),
          concurrency,
        );
        cpu.sharp += cpuSeconds(reference.pid!) - before;
        before = cpuSeconds(conveyor.pid);
        const ours = await load(
          params.map((p) => conveyor.base + transformPath(id, format, p.w, p.q)),
          concurrency,
        );
        cpu.conveyor += cpuSeconds(conveyor.pid) - before;
        if (direct.failures + ours.failures > 0) throw new Error(`${format}: failed requests`);
        best.sharp = Math.max(best.sharp, direct.rps);
        best.conveyor = Math.max(best.conveyor, ours.rps);
      }
      const overhead = (1 - best.conveyor / best.sharp) * 100;
      out.push(
        `| ${format} | ${best.sharp.toFixed(1)} req/s | ${best.conveyor.toFixed(1)} req/s | ${overhead.toFixed(1)} % | ${((cpu.sharp / (2 * requests)) * 1000).toFixed(0)} / ${((cpu.conveyor / (2 * requests)) * 1000).toFixed(0)} ms |`,
      );
      if (q > 95) q = 40;
    }
    out.push('');
  } finally {
    reference.kill();
    await conveyor.stop();
  }
}

async function benchCached(work: string, out: string[]) {
  const conveyor = await startConveyor(work, {
    CONVEYOR_IMAGE_VARIANTS: 'false',
    CONVEYOR_PROCESSES: args.processes,
  });
  const www = join(work, 'www');
  await mkdir(www, { recursive: true });
  await chmod(work, 0o755);
  const nginxPrefix = join(work, 'nginx');
  await mkdir(nginxPrefix, { recursive: true });
  let bare: ChildProcess | undefined;
  try {
    const id = await uploadImage(conveyor, await photo(4000, 3000), 'cached.jpg');
    const path = transformPath(id, 'webp', 512, 80);
    const first = await fetch(conveyor.base + path);
    const bytes = Buffer.from(await first.arrayBuffer());
    await writeFile(join(www, 'cached.webp'), bytes);
    await chmod(join(www, 'cached.webp'), 0o644);
    const nginxPort = await freePort();
    const conf = (await readFile(join(ROOT, 'bench/nginx.conf.template'), 'utf8'))
      .replaceAll('{{WORKERS}}', args.processes)
      .replaceAll('{{PREFIX}}', nginxPrefix)
      .replaceAll('{{ROOT}}', www)
      .replaceAll('{{PORT}}', String(nginxPort));
    await writeFile(join(nginxPrefix, 'nginx.conf'), conf);
    spawnSync('nginx', ['-c', join(nginxPrefix, 'nginx.conf'), '-p', nginxPrefix]);
    bare = spawn(process.execPath, [join(ROOT, 'bench/bare-node.ts'), www, args.processes], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const [{ port: barePort }] = (await once(bare, 'message')) as [{ port: number }];
    await sleep(500);
    const duration = Number(args.duration);
    const wrk = (url: string) => {
      spawnSync('wrk', ['-t2', '-c50', '-d2s', url]);
      const run = spawnSync('wrk', ['-t2', '-c50', `-d${duration}s`, url], { encoding: 'utf8' });
      return Number(/Requests\/sec:\s+([\d.]+)/.exec(run.stdout)?.[1] ?? 0);
    };
    const nginx = wrk(`http://127.0.0.1:${nginxPort}/cached.webp`);
    const ours = wrk(conveyor.base + path);
    const node = wrk(`http://127.0.0.1:${barePort}/cached.webp`);
    out.push(
      '### A cached transform answered again',
      '',
      `A ${(bytes.length / 1024).toFixed(1)} KiB WebP (fit 512 of a 12 MP JPEG), wrk -t2 -c50, 2 s warm-up + ${duration} s each, back to back; nginx worker processes, Conveyor processes and bare Node processes ${args.processes} each.`,
      '',
      '| Server | req/s | ÷ nginx |',
      '|---|--:|--:|',
      `| nginx (sendfile, the file on disk) | ${nginx.toFixed(0)} | 1.00x |`,
      `| Conveyor /t/… (signature check, lookup, derived-blob cache, origin) | ${ours.toFixed(0)} | ${(ours / nginx).toFixed(2)}x |`,
      `| bare node:http (bench/bare-node.ts, the same bytes) | ${node.toFixed(0)} | ${(node / nginx).toFixed(2)}x |`,
      '',
    );
  } finally {
    bare?.kill();
    spawnSync('nginx', ['-c', join(nginxPrefix, 'nginx.conf'), '-p', nginxPrefix, '-s', 'quit']);
    await conveyor.stop();
  }
}

async function benchRss(work: string, out: string[]) {
  const source = await photo(6000, 4000);
  out.push(
    '### RSS while 32 transforms of 24 MP images are requested at once',
    '',
    `${(source.length / 1e6).toFixed(1)} MB 6000x4000 JPEG, 32 distinct WebP renders (fit 2048) requested together; RSS sampled every 20 ms.`,
    '',
    '| Render slots | Idle RSS | Peak RSS | All 32 answered in | Statuses |',
    '|---|--:|--:|--:|---|',
  );
  for (const slots of ['0', '32']) {
    const conveyor = await startConveyor(work, {
      CONVEYOR_IMAGE_VARIANTS: 'false',
      CONVEYOR_TRANSFORM_CONCURRENCY: slots,
    });
    try {
      const id = await uploadImage(conveyor, source, 'big.jpg');
      await sleep(4000);
      const idle = rss(conveyor.pid);
      let peak = idle;
      const timer = setInterval(() => {
        peak = Math.max(peak, rss(conveyor.pid));
      }, 20);
      const started = performance.now();
      const statuses = await Promise.all(
        Array.from(
          { length: 32 },
          async (_, i) => (await fetch(conveyor.base + transformPath(id, 'webp', 2048 - i, 80))).status,
        ),
      );
      const seconds = (performance.now() - started) / 1000;
      clearInterval(timer);
      const byStatus = new Map<number, number>();
      for (const status of statuses) byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
      const counted = [...byStatus].map(([status, n]) => `${n} x ${status}`).join(', ');
      const label = slots === '0' ? `default (${cpus().length}, the CPUs)` : slots;
      out.push(`| ${label} | ${MB(idle)} | ${MB(peak)} | ${seconds.toFixed(1)} s | ${counted} |`);
    } finally {
      await conveyor.stop();
    }
  }
  out.push('');
}

async function benchIngest(work: string, out: string[]) {
  const count = Number(args.images);
  // 20 pictures; each URL gets distinct bytes (a tail after the JPEG's end marker), so that nothing is
  // deduplicated by content.
  const pictures = await Promise.all(Array.from({ length: 20 }, (_, i) => photo(800 + i * 8, 600)));
  const origin = createServer((req, res) => {
    const n = Number(/^\/img\/(\d+)\.jpg$/.exec(req.url!)?.[1] ?? -1);
    if (n < 0) return res.writeHead(404).end();
    const tail = Buffer.from(`#${n}`);
    const body = Buffer.concat([pictures[n % pictures.length]!, tail]);
    res
      .writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length, etag: `"${n}"` })
      .end(body);
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  const originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
  const conveyor = await startConveyor(work, {
    CONVEYOR_INGEST_ALLOW_ADDRESSES: '127.0.0.1/32',
    CONVEYOR_INGEST_HOST_RATE_PER_SECOND: '0',
    CONVEYOR_IMAGE_VARIANTS: 'false',
  });
  try {
    const kinds = (i: number) => (i % 10 === 0 ? 'avatar' : i % 10 < 4 ? 'post' : 'backfill');
    const started = Date.now();
    const items = Array.from({ length: count }, (_, i) => ({
      url: `${originUrl}/img/${i}.jpg`,
      kind: kinds(i),
    }));
    const batch = await api(conveyor, 'POST', '/api/v1/ingest/batch', { items });
    const queuedMs = Date.now() - started;
    const ids = new Set<string>(batch.items.map((j: { id: string }) => j.id));
    let done: any[] = [];
    for (;;) {
      done = [];
      let cursor: string | null = null;
      do {
        const page: any = await api(
          conveyor,
          'GET',
          `/api/v1/jobs?type=ingest.fetch&limit=100${cursor ? `&cursor=${cursor}` : ''}`,
        );
        done.push(...page.items.filter((j: any) => ids.has(j.id) && ['succeeded', 'dead'].includes(j.state)));
        cursor = page.nextCursor;
      } while (cursor);
      if (done.length === ids.size) break;
      await sleep(250);
    }
    const finished = Math.max(...done.map((j) => Date.parse(j.finishedAt)));
    const seconds = (finished - started) / 1000;
    const dead = done.filter((j) => j.state === 'dead').length;
    out.push(
      `### Ingest of ${count} remote images in one batch`,
      '',
      `A loopback origin serving ${count} distinct JPEGs (800-952 x 600, ${(pictures[0]!.length / 1024).toFixed(0)} KiB and up); one batch: 10 % avatar (critical), 30 % post (high), 60 % backfill (low). One serve process with its in-process worker (concurrency ${10}), per-host rate limit off, analysis on, variants off. The batch was queued in ${queuedMs} ms.`,
      '',
      `Throughput: ${count} images in ${seconds.toFixed(1)} s = **${(count / seconds).toFixed(0)} images/s** (${dead} dead).`,
      '',
      '| Lane | Images | p50 latency | p90 | p99 | last finished |',
      '|---|--:|--:|--:|--:|--:|',
    );
    for (const lane of ['critical', 'high', 'low']) {
      const jobs = done.filter((j) => j.priority === lane);
      const latencies = jobs
        .map((j) => Date.parse(j.finishedAt) - Date.parse(j.createdAt))
        .sort((a, b) => a - b);
      const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
      out.push(
        `| ${lane} | ${jobs.length} | ${at(0.5)} ms | ${at(0.9)} ms | ${at(0.99)} ms | ${latencies.at(-1)} ms |`,
      );
    }
    out.push(
      '',
      'Latency: from the batch being queued to the job finishing (the asset stored and its analysis queued).',
      '',
    );
  } finally {
    await conveyor.stop();
    origin.closeAllConnections();
    origin.close();
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'conveyor-media-bench-'));
  const out: string[] = [
    `## Media benchmark, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `- Machine: ${cpus().length} CPUs (${cpus()[0]?.model}), Node ${process.version}, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips})`,
    `- Command: \`node bench/media.ts ${process.argv.slice(2).join(' ')}\``,
    '',
  ];
  try {
    if (only.has('transform')) await benchTransforms(work, out);
    if (only.has('cached')) await benchCached(work, out);
    if (only.has('rss')) await benchRss(work, out);
    if (only.has('ingest')) await benchIngest(work, out);
  } finally {
    await rm(work, { recursive: true, force: true });
    process.stdout.write(`${out.join('\n')}\n`);
  }
}
