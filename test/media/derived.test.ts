import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BlobLedger } from '../../src/assets/blobs.ts';
import { DerivedBlobs, type DerivedOutput } from '../../src/media/derived.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';

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

  it('stores the time an output was made when it says so, so its Last-Modified does not move', async () => {
    const derived = blobs();
    const madeAt = Date.now() - 5_000;
    const row = await derived.put({ ...output('k3'), createdAt: madeAt });
    assert.equal(row.created_at, madeAt);
    assert.equal((await derived.find('k3'))?.created_at, madeAt);
  });

  it('answers from the database: a row garbage collection deleted is gone at once', async () => {
    const derived = blobs();
    await derived.put(output('k2'));
    await server.conveyor.db.kysely.deleteFrom('media_derived').where('key', '=', 'k2').execute();
    assert.equal(await derived.find('k2'), undefined);
  });
});

/**
 * Derived blobs and analysis results live as long as the content they were made from: the media room
 * registers that with the blob ledger (collectMedia, through attachMedia), and the ledger knows nothing of
 * media's tables otherwise.
 */
describe('garbage collection of media', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor();
  });
  after(() => server.close());

  it("drops the rows of content nothing has any more, and their blobs, through media's registration", async () => {
    const { db, store, ledger } = server.conveyor;
    const kept = await upload(server, 'content an asset still has');
    const gone = 'e'.repeat(64);
    const derived = new DerivedBlobs({ db: db.kysely, store, ledger });
    const output = (key: string, sourceSha256: string): DerivedOutput => ({
      key,
      kind: 'variant',
      sourceSha256,
      preset: 'thumb',
      format: 'webp',
      contentType: 'image/webp',
      width: 1,
      height: 1,
      data: Buffer.from(`bytes of ${key}`),
    });
    const keptRow = await derived.put(output('gc-kept', kept.sha256));
    const goneRow = await derived.put(output('gc-gone', gone));
    const info = (sha256: string) => ({
      sha256,
      format: 'png',
      width: 1,
      height: 1,
      orientation: null,
      has_alpha: 0,
      pages: 1,
      dominant_color: null,
      thumbhash: null,
      blurhash: null,
      phash: null,
      exif: null,
      created_at: Date.now(),
    });
    await db.kysely
      .insertInto('media_info')
      .values([info(kept.sha256), info(gone)])
      .execute();
    const rows = async () => ({
      derived: (await db.kysely.selectFrom('media_derived').select('key').orderBy('key').execute()).map(
        (r) => r.key,
      ),
      info: (await db.kysely.selectFrom('media_info').select('sha256').orderBy('sha256').execute()).map(
        (r) => r.sha256,
      ),
    });

    // A ledger without the media room's registration leaves media's rows alone.
    await new BlobLedger(db.kysely, store).collect(60_000);
    assert.deepEqual(await rows(), { derived: ['gc-gone', 'gc-kept'], info: [kept.sha256, gone].sort() });

    await ledger.collect(0);
    assert.deepEqual(await rows(), { derived: ['gc-kept'], info: [kept.sha256] });
    assert.equal(await store.stat(goneRow.sha256), null, "the gone content's derived blob is collected");
    assert.ok(await store.stat(keptRow.sha256), 'a derived blob is held by its row');
    assert.ok(await store.stat(kept.sha256));
  });
});
