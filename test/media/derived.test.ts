import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DerivedBlobs, type DerivedOutput } from '../../src/media/derived.ts';
import { startConveyor, type TestServer } from '../helpers/conveyor.ts';

/**
 * DerivedBlobs stores outputs through the blob ledger and finds them by key in the database. It
 * remembers nothing itself: the origin does, for the metadata TTL (test/delivery/derive.test.ts).
 */
describe('DerivedBlobs', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor();
  });
  after(() => server.close());

  const output = (key: string, data = `bytes of ${key}`): DerivedOutput => ({
    key,
    kind: 'transform',
    sourceSha256: 'a'.repeat(64),
    preset: null,
    format: 'webp',
    contentType: 'image/webp',
    width: 1,
    height: 1,
    data: Buffer.from(data),
  });

  function blobs() {
    const { db, store, ledger } = server.conveyor;
    return new DerivedBlobs({ db: db.kysely, store, ledger });
  }

  it('finds a stored output by its key, and keeps the first of two stored under one key', async () => {
    const derived = blobs();
    assert.equal(await derived.find('k1'), undefined);
    const row = await derived.put(output('k1'));
    assert.deepEqual(await derived.find('k1'), row);
    const again = await derived.put(output('k1', 'other bytes'));
    assert.equal(again.sha256, row.sha256, 'the first row stays');
  });

  it('answers from the database: a row garbage collection deleted is gone at once', async () => {
    const derived = blobs();
    await derived.put(output('k2'));
    await server.conveyor.db.kysely.deleteFrom('media_derived').where('key', '=', 'k2').execute();
    assert.equal(await derived.find('k2'), undefined);
  });
});
