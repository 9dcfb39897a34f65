import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DerivedBlobs, type DerivedOutput } from '../../src/media/derived.ts';
import { startConveyor, type TestServer } from '../helpers/conveyor.ts';

/**
 * DerivedBlobs remembers found rows, but only for its TTL: garbage collection (in any process) deletes
 * the rows of content nothing refers to any more, and a row trusted for ever would outlive its blob.
 */
describe('DerivedBlobs memory', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor();
  });
  after(() => server.close());

  const output = (key: string): DerivedOutput => ({
    key,
    kind: 'transform',
    sourceSha256: 'a'.repeat(64),
    preset: null,
    format: 'webp',
    contentType: 'image/webp',
    width: 1,
    height: 1,
    data: Buffer.from(`bytes of ${key}`),
  });

  function blobs(ttlMs: number, clock: { now: number }) {
    const { db, store, ledger } = server.conveyor;
    return new DerivedBlobs({ db: db.kysely, store, ledger, maxEntries: 100, ttlMs, now: () => clock.now });
  }

  it('answers from memory within the TTL, and asks the database again after it', async () => {
    const clock = { now: 1_000_000 };
    const derived = blobs(5_000, clock);
    assert.equal(derived.known('k1'), undefined);
    const row = await derived.put(output('k1'));
    assert.equal(derived.known('k1'), row, 'remembered once stored');

    // Gone from the database (as garbage collection does): still known until the TTL runs out.
    await server.conveyor.db.kysely.deleteFrom('media_derived').where('key', '=', 'k1').execute();
    clock.now += 4_999;
    assert.equal(derived.known('k1'), row);
    clock.now += 1;
    assert.equal(derived.known('k1'), undefined, 'expired');
    assert.equal(await derived.find('k1'), undefined, 'and the database says it is gone');
  });

  it('with a TTL of 0 remembers nothing', async () => {
    const derived = blobs(0, { now: 0 });
    await derived.put(output('k2'));
    assert.equal(derived.known('k2'), undefined);
    assert.equal((await derived.find('k2'))?.key, 'k2', 'found in the database');
  });
});
