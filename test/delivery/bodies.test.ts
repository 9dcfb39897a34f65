import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BufferPool } from '../../src/delivery/buffer-pool.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { request } from '../helpers/http.ts';
import { waitFor } from '../helpers/jobs.ts';

/**
 * How delivery reads bodies, over real sockets: pooled buffers for bodies up to deliveryBufferMaxBytes,
 * streams beyond, and the local disk cache in front of S3. The protocol itself is covered by
 * test/http/delivery.test.ts; here the question is only whether every byte is right under reuse.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/** Deterministic bytes that differ for every (seed, position). */
function pattern(size: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) bytes[i] = Math.imul(i + seed * 0x9e3779b9, 0x9e3779b1) >>> 24;
  return bytes;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const path = (url: string) => new URL(url).pathname;

describe('delivery bodies from pooled buffers (SQLite + fs)', () => {
  let server: TestServer;
  const blobs: { path: string; bytes: Buffer }[] = [];
  before(async () => {
    // No memory cache, tiny buffers and pool: every body goes through the pool or the stream path.
    server = await startConveyor(undefined, {
      blobCacheBytes: 0,
      deliveryBufferMaxBytes: 16 * KiB,
      deliveryBufferPoolBytes: 64 * KiB,
    });
    for (const [size, seed] of [
      [10 * KiB, 1],
      [16 * KiB, 2],
      [100 * KiB, 3],
    ] as const) {
      const bytes = pattern(size, seed);
      blobs.push({ path: path((await upload(server, bytes)).url), bytes });
    }
  });
  after(() => server.close());

  it('answers many concurrent whole bodies and ranges with exactly their bytes', async () => {
    const cases: { blob: { path: string; bytes: Buffer }; range?: { start: number; end: number } }[] = [];
    for (let i = 0; i < 150; i++) {
      const blob = blobs[i % blobs.length]!;
      const start = (i * 997) % blob.bytes.length;
      const end = Math.min(blob.bytes.length - 1, start + ((i * 7919) % (24 * KiB)));
      cases.push(i % 3 === 0 ? { blob } : { blob, range: { start, end } });
    }
    const replies = await Promise.all(
      cases.map((c) =>
        request(
          server,
          'GET',
          c.blob.path,
          c.range ? { range: `bytes=${c.range.start}-${c.range.end}` } : {},
        ),
      ),
    );
    replies.forEach((reply, i) => {
      const { blob, range } = cases[i]!;
      const want = range ? blob.bytes.subarray(range.start, range.end + 1) : blob.bytes;
      assert.equal(reply.status, range ? 206 : 200);
      assert.equal(Number(reply.headers['content-length']), want.length);
      assert.ok(reply.body.equals(want), `case ${i}: ${blob.path} ${JSON.stringify(range)}`);
    });
  });

  it('answers HEAD and an empty blob without reading a buffer', async () => {
    const head = await request(server, 'HEAD', blobs[2]!.path);
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(100 * KiB));
    assert.equal(head.body.length, 0);
    const empty = path((await upload(server, Buffer.alloc(0))).url);
    const reply = await request(server, 'GET', empty);
    assert.equal(reply.status, 200);
    assert.equal(reply.body.length, 0);
  });
});

describe('a pooled buffer stays with its response until the socket has sent it', () => {
  let server: TestServer;
  let slow: { path: string; bytes: Buffer };
  let other: { path: string; bytes: Buffer };
  before(async () => {
    // Every released buffer is overwritten at once: a response still sending one shows it, whether or
    // not another response gets that buffer next.
    BufferPool.poisonReleased = true;
    server = await startConveyor(undefined, {
      blobCacheBytes: 0,
      deliveryBufferMaxBytes: 32 * MiB,
      deliveryBufferPoolBytes: 64 * MiB,
    });
    // Larger than what loopback socket buffers take in, so the response waits in Node's write queue.
    slow = { bytes: pattern(24 * MiB, 7), path: '' };
    slow.path = path((await upload(server, slow.bytes)).url);
    other = { bytes: pattern(24 * MiB, 8), path: '' };
    other.path = path((await upload(server, other.bytes)).url);
  });
  after(async () => {
    BufferPool.poisonReleased = false;
    await server.close();
  });

  it('sends a reader that stalls exactly its bytes, while other responses reuse the pool', async () => {
    const { hostname, port } = new URL(server.url);
    const accepted = once(server.conveyor.app.server, 'connection') as Promise<[net.Socket]>;
    const socket = net.connect(Number(port), hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    const [serverSide] = await accepted;
    socket.write(`GET ${slow.path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    socket.pause();
    // The server has written what the kernel takes, and the rest waits in its write queue.
    await waitFor('the response to back up', async () => serverSide.writableLength > 0);
    for (let i = 0; i < 3; i++) {
      const replies = await Promise.all([1, 2].map(() => request(server, 'GET', other.path)));
      for (const reply of replies) assert.equal(sha256(reply.body), sha256(other.bytes));
    }
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.resume();
    await new Promise((resolve) => socket.once('close', resolve));
    const all = Buffer.concat(chunks);
    const body = all.subarray(all.indexOf('\r\n\r\n') + 4);
    assert.equal(body.length, slow.bytes.length);
    assert.equal(
      sha256(body),
      sha256(slow.bytes),
      'no byte overwritten: its buffer was not released (nor poisoned) before it was sent',
    );
  });
});

describe('delivery from S3 through the local disk cache', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor({ database: 'sqlite', storage: 's3' }, { blobCacheBytes: 0 });
  });
  after(() => server.close());

  it('fills the cache on the first request and then serves without S3', async () => {
    const bytes = pattern(300 * KiB, 9);
    const asset = await upload(server, bytes);
    const hash = sha256(bytes);
    const first = await request(server, 'GET', path(asset.url), { range: 'bytes=100-199' });
    assert.equal(first.status, 206);
    assert.ok(first.body.equals(bytes.subarray(100, 200)), 'a miss is answered from S3');

    const cached = join(server.dataDir, 'blob-cache', hash.slice(0, 2));
    const listed = () => readdir(cached).catch((): string[] => []);
    await waitFor('the background fill', async () => (await listed()).includes(hash));
    assert.deepEqual(await readdir(cached), [hash], 'the background fill is under the final name');

    const { config } = server;
    const s3 = new S3Client({
      endpoint: config.s3Endpoint!,
      region: config.s3Region,
      forcePathStyle: true,
      credentials: { accessKeyId: config.s3AccessKeyId!, secretAccessKey: config.s3SecretAccessKey! },
    });
    after(() => s3.destroy());
    await s3.send(
      new DeleteObjectCommand({ Bucket: config.s3Bucket, Key: `blobs/${hash.slice(0, 2)}/${hash}` }),
    );
    const whole = await request(server, 'GET', path(asset.url));
    assert.equal(whole.status, 200);
    assert.ok(whole.body.equals(bytes), 'served from the disk cache');
    const range = await request(server, 'GET', path(asset.url), { range: 'bytes=-1000' });
    assert.ok(range.body.equals(bytes.subarray(-1000)));
  });
});
