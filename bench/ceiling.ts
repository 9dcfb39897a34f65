/**
 * What Node itself can do on this machine, to put Conveyor's delivery figures in context: tiny servers that
 * each do one part of what delivery does (answer a 304; send 10 KiB from memory; open and stream a file the
 * way the fs store does; the same through Fastify), measured with the same wrk settings as bench/run.sh.
 *
 *   node_modules/.bin/node bench/ceiling.ts [--duration 10] [--warmup 3] [--connections 50] [--threads 2]
 *
 * Each server runs in its own child process (this file, started with --serve <mode>) on 127.0.0.1.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, openSync, readSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';

const MODES = {
  'node-304': 'node:http, 304 with an ETag (no I/O)',
  'node-memory': 'node:http, 10 KiB from a Buffer in memory',
  'node-file-256k':
    'node:http, open + createReadStream (highWaterMark 256 KiB, no end) per request, as FsBlobStore.get',
  'node-file-exact': 'node:http, open + createReadStream with end = size - 1 (buffer sized to the file)',
  'node-readfile': 'node:http, fs.readFile per request, then end(buffer)',
  'node-range-64k':
    'node:http, 206 of 64 KiB of a 100 MiB file: one synchronous pread into a reused buffer, as the origin does',
  'fastify-304': 'Fastify, 304 with an ETag (no I/O)',
  'fastify-memory': 'Fastify, 10 KiB from a Buffer in memory',
} as const;
type Mode = keyof typeof MODES;

const { values } = parseArgs({
  options: {
    serve: { type: 'string' },
    file: { type: 'string' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
    threads: { type: 'string', default: '2' },
    modes: { type: 'string', default: Object.keys(MODES).join(',') },
  },
});

const ETAG = '"ceiling"';
/** The range scenario of bench/delivery.ts: 64 KiB from the middle of a 100 MiB file (unaligned). */
const LARGE_SIZE = 100 * 1024 * 1024;
const RANGE_LENGTH = 64 * 1024;
const RANGE_START = 50 * 1024 * 1024 + 12_345;

async function serve(mode: Mode, file: string): Promise<void> {
  const handle = await open(file, 'r');
  const { size } = await handle.stat();
  const bytes = await handle.readFile();
  await handle.close();
  const headers = (res: ServerResponse) => {
    res.setHeader('etag', ETAG);
    res.setHeader('content-type', 'application/octet-stream');
  };
  const stream = async (res: ServerResponse, exact: boolean) => {
    const fd = await open(file, 'r');
    res.setHeader('content-length', size);
    const body = createReadStream('', {
      fd,
      highWaterMark: 256 * 1024,
      ...(exact ? { start: 0, end: size - 1 } : {}),
    });
    await pipeline(body, res).catch(() => {});
  };
  // The range mode's file and buffers: the origin reads ranges of open files synchronously into pooled
  // buffers that return to the pool when the response closes.
  const large = mode === 'node-range-64k' ? openSync(`${file}.large`, 'r') : -1;
  const free: Buffer[] = [];
  const handlers: Record<string, (res: ServerResponse) => void | Promise<void>> = {
    'node-range-64k': (res) => {
      const buffer = free.pop() ?? Buffer.allocUnsafeSlow(RANGE_LENGTH);
      readSync(large, buffer, 0, RANGE_LENGTH, RANGE_START);
      res.once('close', () => free.push(buffer));
      res.writeHead(206, {
        etag: ETAG,
        'content-type': 'application/octet-stream',
        'content-range': `bytes ${RANGE_START}-${RANGE_START + RANGE_LENGTH - 1}/${LARGE_SIZE}`,
        'content-length': RANGE_LENGTH,
      });
      res.end(buffer);
    },
    'node-304': (res) => {
      headers(res);
      res.writeHead(304).end();
    },
    'node-memory': (res) => {
      headers(res);
      res.setHeader('content-length', size);
      res.end(bytes);
    },
    'node-file-256k': (res) => {
      headers(res);
      return stream(res, false);
    },
    'node-file-exact': (res) => {
      headers(res);
      return stream(res, true);
    },
    'node-readfile': async (res) => {
      headers(res);
      const data = await (await import('node:fs/promises')).readFile(file);
      res.setHeader('content-length', data.length);
      res.end(data);
    },
  };
  let port: number;
  if (mode.startsWith('fastify')) {
    const app = Fastify({ logger: false });
    app.get('/f', async (_request, reply) => {
      reply.header('etag', ETAG).header('content-type', 'application/octet-stream');
      if (mode === 'fastify-304') return reply.code(304).send();
      return reply.send(bytes);
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  } else {
    const handler = handlers[mode]!;
    const server = createServer((_req, res) => void handler(res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  }
  process.send!({ port });
}

async function wrk(url: string, seconds: number, headers: string[]): Promise<number> {
  const argv = ['-t', values.threads, '-c', values.connections, '-d', `${seconds}s`, ...headers, url];
  const child = spawn('wrk', argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    out += text;
  });
  await once(child, 'exit');
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
}

async function main(): Promise<void> {
  if (values.serve) return serve(values.serve as Mode, values.file!);
  const dir = await mkdtemp(join(tmpdir(), 'conveyor-ceiling-'));
  const file = join(dir, 'small-10k.bin');
  await writeFile(file, randomBytes(10 * 1024));
  if (values.modes.includes('node-range-64k')) {
    await writeFile(`${file}.large`, Buffer.alloc(LARGE_SIZE, 7));
  }
  const self = fileURLToPath(import.meta.url);
  console.log('| Server | req/s |\n|---|--:|');
  try {
    for (const mode of values.modes.split(',') as Mode[]) {
      if (!(mode in MODES)) throw new Error(`unknown mode ${mode}`);
      const child = spawn(process.execPath, [self, '--serve', mode, '--file', file], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      const [{ port }] = (await once(child, 'message')) as [{ port: number }];
      const url = `http://127.0.0.1:${port}/f`;
      const headers = mode.endsWith('304') ? ['-H', `If-None-Match: ${ETAG}`] : [];
      if (Number(values.warmup) > 0) await wrk(url, Number(values.warmup), headers);
      const rps = await wrk(url, Number(values.duration), headers);
      console.log(`| ${MODES[mode]} | ${Math.round(rps).toLocaleString('en-US')} |`);
      child.kill('SIGTERM');
      await once(child, 'exit');
      await sleep(500);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
