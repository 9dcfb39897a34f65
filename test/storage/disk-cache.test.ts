import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { BlobStore } from '../../src/storage/blob-store.ts';
import { DiskCachedBlobStore, type DiskCacheOptions } from '../../src/storage/disk-cache.ts';
import { S3BlobStore } from '../../src/storage/s3-store.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { blobStoreContract, pattern, readAll, sha256 } from './contract.ts';

const MIB = 1024 * 1024;
const server = await startS3Server();
after(() => server.close());

/** An S3 store on the shared s3rver under a fresh prefix, counting whole-blob downloads. */
function s3Store(): { store: S3BlobStore; prefix: string; downloads: () => number } {
  const prefix = `t-${randomUUID()}/`;
  const store = new S3BlobStore({
    endpoint: server.endpoint,
    region: server.region,
    bucket: server.bucket,
    prefix,
    forcePathStyle: true,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    partSizeBytes: 5 * MIB,
    queueSize: 2,
  });
  let downloads = 0;
  const get = store.get.bind(store);
  store.get = (hash, range) => {
    if (!range) downloads++;
    return get(hash, range);
  };
  return { store, prefix, downloads: () => downloads };
}

async function cached(options: Partial<DiskCacheOptions> = {}) {
  const dir = await makeTempDir('conveyor-disk-cache-');
  const s3 = s3Store();
  const open = (extra: Partial<DiskCacheOptions> = {}) =>
    new DiskCachedBlobStore(s3.store, {
      dir: dir.path,
      maxBytes: 64 * MIB,
      openFiles: 8,
      syncReadMaxBytes: 1 * MIB,
      ...options,
      ...extra,
    }).init();
  const cache = await open();
  return { cache, dir, s3, open };
}

async function put(store: BlobStore, content: Buffer): Promise<string> {
  const staged = await store.stage(Readable.from([content]), { maxBytes: content.length });
  await store.commit(staged);
  return staged.sha256;
}

function client(): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
}

const blobKey = (prefix: string, hash: string) => `${prefix}blobs/${hash.slice(0, 2)}/${hash}`;

blobStoreContract('DiskCachedBlobStore over S3BlobStore on s3rver', async () => {
  const { cache, dir } = await cached();
  return {
    store: cache,
    async teardown() {
      await cache.close();
      await dir.cleanup();
    },
  };
});

describe('DiskCachedBlobStore', () => {
  it('fills on a miss, then serves reads from disk without the object store', async (t) => {
    const { cache, dir, s3 } = await cached();
    t.after(() => dir.cleanup());
    t.after(() => cache.close());
    const content = pattern(0, 300_000, 1);
    const hash = await put(cache, content);
    assert.deepEqual(await readAll(await cache.get(hash, { start: 5, end: 9 })), content.subarray(5, 10));
    assert.ok(await cache.warm(hash), 'the miss started a fill that succeeds');
    assert.equal(s3.downloads(), 1);
    assert.deepEqual(await readFile(join(dir.path, hash.slice(0, 2), hash)), content);

    // Gone from the bucket: only the local copy can answer now.
    const s3client = client();
    t.after(() => s3client.destroy());
    await s3client.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: blobKey(s3.prefix, hash) }));
    assert.deepEqual(await readAll(await cache.get(hash)), content);
    const target = Buffer.alloc(1000);
    await cache.readInto(hash, { start: 1000, end: 1999 }, target);
    assert.deepEqual(target, content.subarray(1000, 2000));
    target.fill(0);
    assert.equal(cache.readIntoNow(hash, { start: 2000, end: 2999 }, target), true, 'warm: read at once');
    assert.deepEqual(target, content.subarray(2000, 3000));
    assert.equal(s3.downloads(), 1);
  });

  it('downloads a blob once for concurrent misses', async (t) => {
    const { cache, dir, s3 } = await cached();
    t.after(() => dir.cleanup());
    t.after(() => cache.close());
    const hash = await put(cache, pattern(0, 2 * MIB, 2));
    const reads = await Promise.all(Array.from({ length: 8 }, () => cache.get(hash, { start: 0, end: 99 })));
    for (const read of reads) assert.deepEqual(await readAll(read), pattern(0, 100, 2));
    assert.ok(await cache.warm(hash));
    assert.equal(s3.downloads(), 1, 'one fill for eight concurrent misses');
  });

  it('never caches bytes that do not hash to their name, and leaves no temporary', async (t) => {
    const { cache, dir, s3 } = await cached();
    t.after(() => dir.cleanup());
    t.after(() => cache.close());
    const hash = await put(cache, Buffer.from('the real content'));
    const s3client = client();
    t.after(() => s3client.destroy());
    // Corrupt the object behind the store's back.
    await s3client.send(
      new PutObjectCommand({
        Bucket: server.bucket,
        Key: blobKey(s3.prefix, hash),
        Body: 'tampered content',
      }),
    );
    assert.equal(await cache.warm(hash), false);
    assert.equal(cache.has(hash), false);
    await assert.rejects(stat(join(dir.path, hash.slice(0, 2), hash)), { code: 'ENOENT' });
    assert.deepEqual(await readdir(join(dir.path, 'tmp')), []);
  });

  it('does not cache a blob over an eighth of its size', async (t) => {
    const { cache, dir } = await cached({ maxBytes: 8 * 1000 });
    t.after(() => dir.cleanup());
    t.after(() => cache.close());
    const small = await put(cache, pattern(0, 1000, 3));
    const large = await put(cache, pattern(0, 1001, 3));
    assert.equal(await cache.warm(small), true);
    assert.equal(await cache.warm(large), false);
    assert.deepEqual(await readAll(await cache.get(large)), pattern(0, 1001, 3), 'still served from S3');
  });

  it('evicts the least recently read blobs to stay within its size', async (t) => {
    const { cache, dir } = await cached({ maxBytes: 8 * 1000 });
    t.after(() => dir.cleanup());
    t.after(() => cache.close());
    const hashes: string[] = [];
    for (let i = 0; i < 8; i++) hashes.push(await put(cache, pattern(0, 1000, 10 + i)));
    for (const hash of hashes) assert.ok(await cache.warm(hash));
    assert.equal(cache.bytes, 8000);
    await readAll(await cache.get(hashes[0]!)); // now the most recently read
    assert.ok(await cache.warm(await put(cache, pattern(0, 1000, 99))));
    assert.equal(cache.bytes, 8000);
    assert.equal(cache.has(hashes[0]!), true, 'recently read, kept');
    assert.equal(cache.has(hashes[1]!), false, 'least recently read, evicted');
    await assert.rejects(stat(join(dir.path, hashes[1]!.slice(0, 2), hashes[1]!)), { code: 'ENOENT' });
  });

  it('keeps its files across restarts and deletes temporaries of dead processes only', async (t) => {
    const { cache, dir, s3, open } = await cached();
    t.after(() => dir.cleanup());
    const content = pattern(0, 5000, 4);
    const hash = await put(cache, content);
    assert.ok(await cache.warm(hash));
    const stale = join(dir.path, 'tmp', `999999999-${randomUUID()}.part`); // no such process
    const live = join(dir.path, 'tmp', `${process.ppid}-${randomUUID()}.part`); // a running process
    await writeFile(stale, 'half a download');
    await writeFile(live, 'a download under way elsewhere');

    const again = await open();
    t.after(() => again.close());
    assert.equal(again.has(hash), true);
    assert.equal(again.bytes, 5000);
    assert.deepEqual(await readdir(join(dir.path, 'tmp')), [live.slice(live.lastIndexOf('/') + 1)]);
    assert.deepEqual(await readAll(await again.get(hash)), content);
    assert.equal(s3.downloads(), 1, 'served from the files of the earlier run');
  });

  it('drops the local copy when the blob is deleted', async (t) => {
    const { cache, dir } = await cached();
    t.after(() => dir.cleanup());
    t.after(() => cache.close());
    const hash = await put(cache, Buffer.from('short-lived'));
    assert.ok(await cache.warm(hash));
    await cache.delete(hash);
    assert.equal(cache.has(hash), false);
    await assert.rejects(stat(join(dir.path, hash.slice(0, 2), hash)), { code: 'ENOENT' });
    assert.equal(await cache.stat(hash), null);
    assert.equal(sha256(Buffer.from('short-lived')), hash);
  });
});
