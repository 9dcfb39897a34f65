import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { FsBlobStore } from '../../src/storage/fs-store.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { blobStoreContract, pattern, sha256 } from './contract.ts';

blobStoreContract('FsBlobStore', async () => {
  const dir = await makeTempDir('conveyor-fs-store-');
  const store = await new FsBlobStore(dir.path).init();
  return {
    store,
    async teardown() {
      await store.close();
      await dir.cleanup();
    },
  };
});

blobStoreContract('FsBlobStore reading warm files on the event loop', async () => {
  const dir = await makeTempDir('conveyor-fs-store-');
  const store = await new FsBlobStore(dir.path, { syncReadMaxBytes: 64 * 1024 }).init();
  return {
    store,
    readsNow: true,
    async teardown() {
      await store.close();
      await dir.cleanup();
    },
  };
});

/**
 * When the fs store reads at once (the contract's readIntoNow test covers what it reads): only from a
 * file whose handle is open, only up to syncReadMaxBytes, and never with synchronous reads off.
 */
describe('FsBlobStore.readIntoNow', () => {
  async function fsStore(syncReadMaxBytes: number) {
    const dir = await makeTempDir('conveyor-read-now-');
    const store = await new FsBlobStore(dir.path, { syncReadMaxBytes }).init();
    const content = pattern(0, 4000, 5);
    const staged = await store.stage(Readable.from([content]), { maxBytes: content.length });
    await store.commit(staged);
    return { store, content, hash: staged.sha256, close: () => store.close().then(dir.cleanup) };
  }

  it('reads a warm file at once, exactly the range, and a cold one not at all', async (t) => {
    const { store, content, hash, close } = await fsStore(1000);
    t.after(close);
    const target = Buffer.alloc(600, 0xee);
    assert.equal(store.readIntoNow(hash, { start: 100, end: 599 }, target), false, 'cold: never opened');
    assert.ok(
      target.every((byte) => byte === 0xee),
      'a refusal writes nothing',
    );

    await store.readInto(hash, { start: 0, end: 0 }, target); // opens the handle
    target.fill(0xee);
    assert.equal(store.readIntoNow(hash, { start: 100, end: 599 }, target), true);
    assert.deepEqual(target.subarray(0, 500), content.subarray(100, 600));
    assert.ok(
      target.subarray(500).every((byte) => byte === 0xee),
      'nothing past the range',
    );

    const large = Buffer.alloc(1001);
    assert.equal(store.readIntoNow(hash, { start: 0, end: 1000 }, large), false, 'over syncReadMaxBytes');
    assert.throws(() => store.readIntoNow(hash, { start: 3900, end: 4099 }, target), /ended after 100/);
    assert.equal(store.readIntoNow(sha256(Buffer.from('absent')), { start: 0, end: 0 }, target), false);
  });

  it('never reads at once when synchronous reads are off', async (t) => {
    const { store, hash, close } = await fsStore(0);
    t.after(close);
    const target = Buffer.alloc(10);
    await store.readInto(hash, { start: 0, end: 9 }, target);
    assert.equal(store.readIntoNow(hash, { start: 0, end: 9 }, target), false);
  });
});
