/**
 * The least a Node.js origin must do to answer bench/delivery.ts's scenarios: plain `node:http`, no
 * framework, no database, no metrics, no logging. It is the third server of every delivery round, so that
 * each Conveyor figure can be read against what Node itself reaches on this machine in the same minutes
 * (nginx is the reference; this one says how much of the gap is the runtime's).
 *
 *   node_modules/.bin/node bench/bare-node.ts <folder> [processes]   (started by the harnesses over IPC)
 *
 * With processes > 1 (the harnesses pass their --processes, as Conveyor gets CONVEYOR_PROCESSES), a
 * node:cluster primary forks that many servers sharing one port, as `conveyor serve` does.
 *
 * What it does per request, the same choices the origin makes (src/delivery/origin.ts):
 *   - the files of <folder> are looked up by name in a Map filled at start (the origin's metadata cache);
 *   - a matching If-None-Match answers 304 with the ETag (exact comparison: the bench sends the server's
 *     own ETag);
 *   - a single `bytes=a-b` range answers 206; anything else the whole file with 200;
 *   - files up to 256 KiB are sent from memory (the origin's blob cache); larger bodies are one
 *     synchronous pread into a pooled buffer that returns to the pool when the response closes.
 * What it does not do (and Conveyor does): validate the id, parse every conditional header, evaluate
 * If-Range and If-Modified-Since, multipart ranges, Content-Disposition, request ids, metrics, access
 * control, problem documents.
 */
import cluster from 'node:cluster';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { createServer, type OutgoingHttpHeaders } from 'node:http';
import { join } from 'node:path';

const IN_MEMORY_BYTES = 256 * 1024;
const RANGE = /^bytes=(\d+)-(\d+)$/;

interface File {
  fd: number;
  size: number;
  memory: Buffer | null;
  headers: OutgoingHttpHeaders;
  etag: string;
}

const folder = process.argv[2];
const processes = Number(process.argv[3] ?? 1);
if (!folder || !Number.isInteger(processes) || processes < 1) {
  throw new Error('usage: bare-node.ts <folder> [processes]');
}
if (cluster.isPrimary && processes > 1) await runPrimary(processes);
else await runServer(folder, Number(process.env['BARE_NODE_PORT'] ?? 0));

/** Forks the servers on one free port, reports it once all listen, and stops them when it is stopped. */
async function runPrimary(count: number): Promise<void> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as { port: number };
  probe.close();
  await once(probe, 'close');
  const workers = Array.from({ length: count }, () => cluster.fork({ BARE_NODE_PORT: String(port) }));
  await Promise.all(workers.map((worker) => once(worker, 'listening')));
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      for (const worker of workers) worker.kill(signal);
      process.exit(0);
    });
  }
  report(port);
}

function report(port: number): void {
  if (process.send) process.send({ port });
  else console.log(`listening on http://127.0.0.1:${port}`);
}

async function runServer(folder: string, fixedPort: number): Promise<void> {
  const files = new Map<string, File>();
  for (const name of readdirSync(folder)) {
    const path = join(folder, name);
    const info = statSync(path);
    if (!info.isFile()) continue;
    const { size, mtime } = info;
    const bytes = readFileSync(path);
    const etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;
    files.set(`/${name}`, {
      fd: openSync(path, 'r'),
      size,
      memory: size <= IN_MEMORY_BYTES ? bytes : null,
      etag,
      headers: {
        etag,
        'last-modified': mtime.toUTCString(),
        'cache-control': 'public, max-age=60, s-maxage=3600',
        'accept-ranges': 'bytes',
        'content-type': 'application/octet-stream',
      },
    });
  }

  const pool: Buffer[] = [];

  const server = createServer((req, res) => {
    const file = files.get(req.url!);
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    if (req.headers['if-none-match'] === file.etag) {
      res.writeHead(304, file.headers).end();
      return;
    }
    let start = 0;
    let end = file.size - 1;
    let status = 200;
    const headers: OutgoingHttpHeaders = { ...file.headers };
    const range = req.headers.range === undefined ? null : RANGE.exec(req.headers.range);
    if (range && Number(range[1]) <= Number(range[2]) && Number(range[2]) < file.size) {
      start = Number(range[1]);
      end = Number(range[2]);
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${file.size}`;
    }
    const length = end - start + 1;
    headers['content-length'] = length;
    if (file.memory) {
      res.writeHead(status, headers).end(file.memory.subarray(start, end + 1));
      return;
    }
    const buffer = pool.find((b) => b.length >= length) ?? Buffer.allocUnsafeSlow(length);
    if (pool.includes(buffer)) pool.splice(pool.indexOf(buffer), 1);
    readSync(file.fd, buffer, 0, length, start);
    res.once('close', () => pool.push(buffer));
    res.writeHead(status, headers).end(buffer.subarray(0, length));
  });
  server.keepAliveTimeout = 60_000;
  server.listen(fixedPort, '127.0.0.1');
  await once(server, 'listening');
  // A cluster worker's port is reported by its primary.
  if (cluster.isPrimary) report((server.address() as { port: number }).port);
}
