import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { BlobCache } from '../../src/delivery/blob-cache.ts';
import type { BlobStore } from '../../src/storage/blob-store.ts';

/** A store that serves fixed contents and counts reads. */
function fakeStore(contents: Record<string, Buffer>) {
  const reads: string[] = [];
  const store = {
    async get(sha256: string) {
      reads.push(sha256);
      return Readable.from([contents[sha256]!]);
    },
  } as unknown as BlobStore;
  return { store, reads };
}

describe('BlobCache', () => {
  it('reads a blob once, then serves it from memory', async () => {
    const { store, reads } = fakeStore({ a: Buffer.from('aaaa') });
    const cache = new BlobCache(store, { maxBytes: 100, maxItemBytes: 10 });
    assert.equal((await cache.get('a')).toString(), 'aaaa');
    assert.equal((await cache.get('a')).toString(), 'aaaa');
    assert.deepEqual(reads, ['a']);
  });

  it('shares one read between concurrent misses', async () => {
    const { store, reads } = fakeStore({ a: Buffer.from('aaaa') });
    const cache = new BlobCache(store, { maxBytes: 100, maxItemBytes: 10 });
    const results = await Promise.all([cache.get('a'), cache.get('a'), cache.get('a')]);
    assert.deepEqual(
      results.map((b) => b.toString()),
      ['aaaa', 'aaaa', 'aaaa'],
    );
    assert.deepEqual(reads, ['a']);
  });

  it('evicts the least recently used entries to stay within its budget', async () => {
    const { store, reads } = fakeStore({
      a: Buffer.alloc(4, 'a'),
      b: Buffer.alloc(4, 'b'),
      c: Buffer.alloc(4, 'c'),
    });
    const cache = new BlobCache(store, { maxBytes: 8, maxItemBytes: 8 });
    await cache.get('a');
    await cache.get('b');
    await cache.get('a'); // a is now the most recent
    await cache.get('c'); // evicts b
    assert.equal(cache.bytes, 8);
    await cache.get('a');
    await cache.get('b');
    assert.deepEqual(reads, ['a', 'b', 'c', 'b']);
  });

  it('peeks at a cached blob without reading, and counts the peek as a use', async () => {
    const { store, reads } = fakeStore({
      a: Buffer.alloc(4, 'a'),
      b: Buffer.alloc(4, 'b'),
      c: Buffer.alloc(4, 'c'),
    });
    const cache = new BlobCache(store, { maxBytes: 8, maxItemBytes: 8 });
    assert.equal(cache.peek('a'), undefined);
    await cache.get('a');
    await cache.get('b');
    assert.equal(cache.peek('a')?.toString(), 'aaaa'); // a is now the most recent
    await cache.get('c'); // evicts b
    assert.equal(cache.peek('b'), undefined);
    assert.equal(cache.peek('a')?.toString(), 'aaaa');
    assert.deepEqual(reads, ['a', 'b', 'c']);
  });

  it('accepts only blobs up to the item limit', () => {
    const cache = new BlobCache(fakeStore({}).store, { maxBytes: 100, maxItemBytes: 10 });
    assert.ok(cache.accepts(10));
    assert.ok(!cache.accepts(11));
    assert.ok(!new BlobCache(fakeStore({}).store, { maxBytes: 0, maxItemBytes: 10 }).accepts(1));
  });
});
