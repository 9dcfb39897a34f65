import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  BlobNotFoundError,
  type BlobStat,
  type BlobStore,
  BlobTooLargeError,
} from '../../src/storage/blob-store.ts';

export interface ContractSubject {
  store: BlobStore;
  /** The store reads a blob it has just read at once (`readIntoNow` answers true for a small range). */
  readsNow?: boolean;
  teardown(): Promise<void>;
}

const MIB = 1024 * 1024;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const NO_LIMIT = Number.MAX_SAFE_INTEGER;
/** Larger than any S3 part size the tests use (the 5 MiB minimum), so uploads span several parts. */
const MULTI_PART_SIZE = 12 * MIB + 123;

/**
 * The BlobStore contract (src/storage/blob-store.ts), run against one implementation. `setup` is called
 * for every test and must return an empty store.
 */
export function blobStoreContract(name: string, setup: () => Promise<ContractSubject>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let subject: ContractSubject;
    let store: BlobStore;
    beforeEach(async () => {
      subject = await setup();
      store = subject.store;
    });
    afterEach(async () => {
      await subject.teardown();
    });

    async function put(content: Buffer): Promise<string> {
      const staged = await store.stage(Readable.from([content]), { maxBytes: NO_LIMIT });
      await store.commit(staged);
      return staged.sha256;
    }

    async function assertEmpty(): Promise<void> {
      assert.equal(await store.sweepTemporary(0), 0, 'no temporary left behind');
      assert.deepEqual(await listAll(store), [], 'no blob visible');
    }

    it('stages, commits and reads back with the right SHA-256 and size', async () => {
      const content = Buffer.from('the quick brown fox jumps over the lazy dog\n');
      const staged = await store.stage(Readable.from([content]), { maxBytes: 1024 });
      assert.equal(staged.sha256, sha256(content));
      assert.equal(staged.size, content.length);
      await store.commit(staged);
      assert.deepEqual(await readAll(await store.get(staged.sha256)), content);
      const stat = await store.stat(staged.sha256);
      assert.equal(stat?.sha256, staged.sha256);
      assert.equal(stat?.size, content.length);
      assert.ok(stat?.modifiedAt instanceof Date && !Number.isNaN(stat.modifiedAt.getTime()));
    });

    it('stores identical content once', async () => {
      const content = Buffer.from('same bytes, uploaded twice');
      const first = await put(content);
      const second = await put(content);
      assert.equal(first, second);
      assert.deepEqual(
        (await listAll(store)).map((blob) => blob.sha256),
        [first],
      );
      assert.equal(await store.sweepTemporary(0), 0, 'the second temporary was cleaned up');
      assert.deepEqual(await readAll(await store.get(first)), content);
    });

    it('stores an empty blob', async () => {
      const staged = await store.stage(Readable.from([]), { maxBytes: 0 });
      assert.equal(staged.sha256, EMPTY_SHA256);
      assert.equal(staged.size, 0);
      await store.commit(staged);
      assert.equal((await readAll(await store.get(EMPTY_SHA256))).length, 0);
      assert.equal((await store.stat(EMPTY_SHA256))?.size, 0);
    });

    it('reads inclusive byte ranges', async () => {
      const content = pattern(0, 100, 7);
      const hash = await put(content);
      const read = async (start: number, end: number) => readAll(await store.get(hash, { start, end }));
      assert.deepEqual(await read(0, 0), content.subarray(0, 1), 'first byte');
      assert.deepEqual(await read(40, 59), content.subarray(40, 60), 'middle');
      assert.deepEqual(await read(99, 99), content.subarray(99, 100), 'last byte');
      assert.deepEqual(await read(0, 99), content, 'everything');
    });

    it('keeps serving a blob after a reader gave up half-way', async () => {
      // Large enough to be streamed in several chunks rather than read at once.
      const content = pattern(0, 3 * 1024 * 1024, 11);
      const hash = await put(content);
      for (const range of [undefined, { start: 10, end: content.length - 10 }]) {
        const abandoned = await store.get(hash, range);
        await new Promise((resolve) => abandoned.once('data', resolve));
        abandoned.destroy();
        await new Promise((resolve) => abandoned.once('close', resolve));
      }
      assert.deepEqual(await readAll(await store.get(hash)), content);
      const into = Buffer.alloc(100);
      await store.readInto(hash, { start: 5, end: 104 }, into);
      assert.deepEqual(into, content.subarray(5, 105));
    });

    it('reads inclusive byte ranges into a caller buffer', async () => {
      const content = pattern(0, 100, 8);
      const hash = await put(content);
      const target = Buffer.alloc(120, 0xff);
      await store.readInto(hash, { start: 10, end: 29 }, target);
      assert.deepEqual(target.subarray(0, 20), content.subarray(10, 30), 'middle');
      assert.equal(target[20], 0xff, 'nothing written past the range');
      await store.readInto(hash, { start: 0, end: 99 }, target);
      assert.deepEqual(target.subarray(0, 100), content, 'everything');
      await assert.rejects(store.readInto(hash, { start: 90, end: 109 }, target), 'past the end');
      await assert.rejects(
        store.readInto(sha256(Buffer.from('absent')), { start: 0, end: 0 }, target),
        BlobNotFoundError,
      );
    });

    it('reads at once, where it can, exactly what readInto reads, and otherwise writes nothing', async () => {
      const { readIntoNow } = store;
      if (!readIntoNow) {
        // Optional: without it the origin always takes the asynchronous read. A store said to read at
        // once must have it.
        assert.ok(!subject.readsNow, 'a store that reads at once implements readIntoNow');
        return;
      }
      const now = readIntoNow.bind(store);
      const content = pattern(0, 4000, 5);
      const hash = await put(content);
      const ranges = [
        { start: 0, end: 0 },
        { start: 100, end: 599 },
        { start: 0, end: 3999 },
        { start: 3999, end: 3999 },
      ];
      let answered = 0;
      for (const phase of ['cold', 'warm']) {
        // Warm: the store has just read the blob, so whatever it keeps to read at once, it has.
        if (phase === 'warm') await store.readInto(hash, { start: 0, end: 0 }, Buffer.alloc(1));
        for (const range of ranges) {
          const length = range.end - range.start + 1;
          const target = Buffer.alloc(length + 10, 0xee);
          const label = `${phase} ${range.start}-${range.end}`;
          if (now(hash, range, target)) {
            answered++;
            assert.deepEqual(target.subarray(0, length), content.subarray(range.start, range.end + 1), label);
          } else {
            assert.ok(
              target.subarray(0, length).every((byte) => byte === 0xee),
              `${label}: refused, untouched`,
            );
          }
          assert.ok(
            target.subarray(length).every((byte) => byte === 0xee),
            `${label}: nothing past the range`,
          );
        }
      }
      if (subject.readsNow) {
        assert.ok(answered > 0, 'a blob just read is read at once');
        assert.equal(now(hash, { start: 100, end: 599 }, Buffer.alloc(500)), true);
      }
      // Past the end: an error, as readInto's rejection, or a refusal; never a short read passed as whole.
      let past: boolean | Error;
      try {
        past = now(hash, { start: 3900, end: 4099 }, Buffer.alloc(200));
      } catch (error) {
        past = error as Error;
      }
      assert.notEqual(past, true, 'past the end');
      assert.equal(now(sha256(Buffer.from('absent')), { start: 0, end: 0 }, Buffer.alloc(1)), false);
    });

    it('hands each staged chunk to release once its bytes are stored, and reads it no more', async () => {
      // Spans two S3 parts (5 MiB each), in the 64 KiB chunks a socket delivers.
      const size = 6 * MIB + 123;
      const chunks: Buffer[] = [];
      for (let offset = 0; offset < size; offset += 64 * 1024) {
        chunks.push(pattern(offset, Math.min(size, offset + 64 * 1024), 13));
      }
      const expected = sha256(pattern(0, size, 13));
      const released = new Map<Buffer, number>();
      const staged = await store.stage(Readable.from(chunks), {
        maxBytes: NO_LIMIT,
        release: (chunk) => {
          released.set(chunk, (released.get(chunk) ?? 0) + 1);
          // Poisoned, as if its memory were reused at once: a store that still read it would keep this.
          chunk.fill(0xdb);
        },
      });
      assert.equal(staged.sha256, expected);
      assert.equal(released.size, chunks.length, 'every chunk released');
      assert.ok(
        [...released.values()].every((count) => count === 1),
        'each once',
      );
      await store.commit(staged);
      assert.equal(await hashStream(await store.get(staged.sha256)), expected, 'the stored bytes');
    });

    it('makes nothing visible before commit', async () => {
      const content = Buffer.from('not yet');
      const staged = await store.stage(Readable.from([content]), { maxBytes: NO_LIMIT });
      assert.equal(await store.stat(staged.sha256), null);
      await assert.rejects(store.get(staged.sha256), BlobNotFoundError);
      assert.deepEqual(await listAll(store), []);
      await store.commit(staged);
      assert.deepEqual(await readAll(await store.get(staged.sha256)), content);
    });

    it('commits idempotently', async () => {
      const content = Buffer.from('commit me twice');
      const staged = await store.stage(Readable.from([content]), { maxBytes: NO_LIMIT });
      await store.commit(staged);
      await store.commit(staged);
      assert.deepEqual(await readAll(await store.get(staged.sha256)), content);
      assert.equal((await listAll(store)).length, 1);
      assert.equal(await store.sweepTemporary(0), 0);
    });

    it('discards a temporary, twice and after commit without harm', async () => {
      const staged = await store.stage(Readable.from([Buffer.from('throw me away')]), { maxBytes: NO_LIMIT });
      await store.discard(staged);
      await store.discard(staged);
      await assertEmpty();

      const kept = await store.stage(Readable.from([Buffer.from('keep me')]), { maxBytes: NO_LIMIT });
      await store.commit(kept);
      await store.discard(kept);
      assert.deepEqual(await readAll(await store.get(kept.sha256)), Buffer.from('keep me'));
    });

    it('rejects a source stream that fails and leaves nothing behind', async () => {
      for (const size of [10, 6 * MIB]) {
        const failure = new Error(`source failed after ${size} bytes`);
        await assert.rejects(
          store.stage(failingStream(size, failure), { maxBytes: NO_LIMIT }),
          (error) => error === failure,
        );
        await assertEmpty();
      }
    });

    it('rejects content over maxBytes with BlobTooLargeError and leaves nothing behind', async () => {
      for (const [limit, size] of [
        [10, 11],
        [6 * MIB, 8 * MIB],
      ] as const) {
        await assert.rejects(store.stage(patternStream(size, 3), { maxBytes: limit }), (error) => {
          assert.ok(error instanceof BlobTooLargeError, `got ${String(error)}`);
          assert.equal(error.limit, limit);
          return true;
        });
        await assertEmpty();
      }
      const exact = await store.stage(patternStream(10, 3), { maxBytes: 10 });
      assert.equal(exact.size, 10, 'exactly maxBytes is allowed');
      await store.discard(exact);
    });

    it('reports a missing blob', async () => {
      const missing = sha256(Buffer.from('never stored'));
      assert.equal(await store.stat(missing), null);
      await assert.rejects(store.get(missing), BlobNotFoundError);
      await assert.rejects(store.get(missing, { start: 0, end: 0 }), BlobNotFoundError);
    });

    it('deletes idempotently', async () => {
      const hash = await put(Buffer.from('short-lived'));
      await store.delete(hash);
      assert.equal(await store.stat(hash), null);
      await assert.rejects(store.get(hash), BlobNotFoundError);
      await store.delete(hash);
      await store.delete(sha256(Buffer.from('never stored')));
    });

    it('lists committed blobs by hash prefix', async () => {
      const hashes = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((text) => put(Buffer.from(text))));
      const listed = async (prefix?: string) =>
        (await listAll(store, prefix)).map((blob) => blob.sha256).sort();
      assert.deepEqual(await listed(), [...hashes].sort());
      assert.deepEqual(await listed(''), [...hashes].sort());
      const target = hashes[0]!;
      for (const length of [1, 2, 3, 64]) {
        const prefix = target.slice(0, length);
        const expected = hashes.filter((hash) => hash.startsWith(prefix)).sort();
        assert.deepEqual(await listed(prefix), expected, `prefix ${prefix}`);
      }
      const unused = ['0', '1', '2', '3', '4', '5', '6'].find(
        (c) => !hashes.some((hash) => hash.startsWith(c)),
      )!;
      assert.deepEqual(await listed(unused), []);
      const blob = (await listAll(store, target))[0];
      assert.equal(blob?.size, 1);
      assert.ok(blob?.modifiedAt instanceof Date);
    });

    it('sweeps only temporaries older than the cutoff', async () => {
      const committed = await put(Buffer.from('committed'));
      const pending = await store.stage(Readable.from([Buffer.from('pending')]), { maxBytes: NO_LIMIT });
      assert.equal(await store.sweepTemporary(60 * 60 * 1000), 0, 'a fresh temporary is not stale');
      await store.commit(pending);
      assert.deepEqual(await readAll(await store.get(pending.sha256)), Buffer.from('pending'));

      await store.stage(Readable.from([Buffer.from('abandoned')]), { maxBytes: NO_LIMIT });
      assert.equal(await store.sweepTemporary(0), 1);
      assert.equal(await store.sweepTemporary(0), 0);
      assert.equal((await store.stat(committed))?.size, 'committed'.length, 'blobs are not temporaries');
      assert.equal((await listAll(store)).length, 2);
    });

    it('round-trips a blob spanning several upload parts', async () => {
      const seed = 11;
      let progress = 0;
      const staged = await store.stage(patternStream(MULTI_PART_SIZE, seed), {
        maxBytes: MULTI_PART_SIZE,
        onProgress: (bytes) => {
          assert.ok(bytes >= progress, 'progress only grows');
          progress = bytes;
        },
      });
      assert.equal(staged.size, MULTI_PART_SIZE);
      assert.equal(staged.sha256, await hashStream(patternStream(MULTI_PART_SIZE, seed)));
      assert.equal(progress, MULTI_PART_SIZE);
      await store.commit(staged);
      assert.equal(await hashStream(await store.get(staged.sha256)), staged.sha256);
      assert.equal((await store.stat(staged.sha256))?.size, MULTI_PART_SIZE);
      const start = 5 * MIB - 17;
      const end = 5 * MIB + 17;
      const across = await readAll(await store.get(staged.sha256, { start, end }));
      assert.deepEqual(across, pattern(start, end + 1, seed), 'a range across a part boundary');
      assert.equal(await store.sweepTemporary(0), 0);
    });

    it('answers ping', async () => {
      await store.ping();
    });
  });
}

export function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function hashStream(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function listAll(store: BlobStore, prefix?: string): Promise<BlobStat[]> {
  const found: BlobStat[] = [];
  for await (const blob of store.list(prefix)) found.push(blob);
  return found;
}

/**
 * Bytes `start`..`end - 1` of a deterministic, non-repeating (at test sizes) sequence, so any slice of a
 * large generated blob can be checked without holding the whole blob.
 */
export function pattern(start: number, end: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(end - start);
  for (let i = start; i < end; i++) bytes[i - start] = Math.imul(i + seed * 0x9e3779b9, 0x9e3779b1) >>> 24;
  return bytes;
}

/** `size` pattern bytes as a stream of 64 KiB chunks. */
export function patternStream(size: number, seed: number): Readable {
  const chunk = 64 * 1024;
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < size; offset += chunk)
        yield pattern(offset, Math.min(size, offset + chunk), seed);
    })(),
    { objectMode: false },
  );
}

/** Emits `size` bytes, then fails with `error`. */
export function failingStream(size: number, error: Error): Readable {
  const source = patternStream(size, 5);
  return Readable.from(
    (async function* () {
      yield* source;
      throw error;
    })(),
    { objectMode: false },
  );
}
