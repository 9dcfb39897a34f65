import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { BlobLedger } from '../../src/assets/blobs.ts';
import { BACKENDS, skipIfNoPostgres, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

for (const backend of BACKENDS) {
  describe(`blob ledger on ${backend.database} + ${backend.storage}`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    before(async () => {
      if (!skip) server = await startConveyor(backend);
    });
    after(async () => server?.close());

    const stage = (content: string) =>
      server.conveyor.store.stage(Readable.from([Buffer.from(content)]), { maxBytes: 1 << 20 });
    const row = (hash: string) =>
      server.conveyor.db.kysely.selectFrom('blobs').selectAll().where('sha256', '=', hash).executeTakeFirst();

    /** Puts a blob row where the collector leaves it once it has claimed the row for deletion. */
    const markDeleting = (hash: string) =>
      server.conveyor.db.kysely
        .updateTable('blobs')
        .set({ state: 'deleting' })
        .where('sha256', '=', hash)
        .execute();

    it('keeps referenced blobs, marks then deletes unreferenced ones after the grace', { skip }, async () => {
      const kept = await upload(server, 'kept content');
      const staged = await stage('orphan content');
      await server.conveyor.ledger.store(staged);
      assert.equal((await row(staged.sha256))?.state, 'live');

      const first = await server.conveyor.ledger.collect(60_000);
      assert.equal(first.deleted, 0);
      assert.ok((await row(staged.sha256))?.orphaned_at, 'marked as orphaned');
      assert.ok(await server.conveyor.store.stat(staged.sha256), 'bytes survive within the grace');

      const second = await server.conveyor.ledger.collect(0);
      assert.equal(second.deleted, 1);
      assert.equal(await row(staged.sha256), undefined);
      assert.equal(await server.conveyor.store.stat(staged.sha256), null);
      assert.ok(await server.conveyor.store.stat(kept.sha256), 'referenced blob kept');
      assert.equal((await row(kept.sha256))?.orphaned_at, null);
    });

    it('a blob being deleted is never reused: a new upload waits and writes the bytes again', {
      skip,
    }, async () => {
      const content = 'contended content';
      const staged = await stage(content);
      await server.conveyor.ledger.store(staged);
      // The collector has claimed the row and is about to delete the bytes.
      await markDeleting(staged.sha256);

      const again = await stage(content);
      let stored = false;
      const storing = server.conveyor.ledger.store(again).then(() => {
        stored = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(stored, false, 'the upload waits while the row is deleting');
      await server.conveyor.ledger.collect(60_000); // finishes the interrupted deletion
      await storing;
      assert.equal((await row(staged.sha256))?.state, 'live');
      assert.ok(await server.conveyor.store.stat(staged.sha256), 'bytes written again after the deletion');
    });

    it('a reference cannot be taken on a row that is being deleted', { skip }, async () => {
      const staged = await stage('claimed while deleting');
      await server.conveyor.ledger.store(staged);
      await markDeleting(staged.sha256);
      await assert.rejects(
        server.conveyor.db.kysely
          .transaction()
          .execute((tx) => server.conveyor.ledger.claimInTransaction(tx, staged.sha256)),
        /garbage-collected/,
      );
      await server.conveyor.ledger.collect(60_000);
    });

    it('deletes stray bytes that have no row (a crash between staging and registering)', {
      skip,
    }, async () => {
      const staged = await stage('stray content');
      await server.conveyor.store.commit(staged);
      assert.equal(await row(staged.sha256), undefined);
      assert.equal((await server.conveyor.ledger.collect(60_000)).strays, 0, 'young strays are kept');
      assert.equal((await server.conveyor.ledger.collect(0)).strays, 1);
      assert.equal(await server.conveyor.store.stat(staged.sha256), null);
      assert.equal(await row(staged.sha256), undefined);
      assert.equal(sha('stray content'), staged.sha256);
    });

    it('sweeps staged temporaries left by a crash', { skip }, async () => {
      await stage('never committed');
      assert.equal((await server.conveyor.ledger.collect(0)).temporaries, 1);
    });

    it('keeps what a registered holder references, and runs registered cleanups first', {
      skip,
    }, async () => {
      const { db, store } = server.conveyor;
      // A ledger of its own, so that only what this test registers applies.
      const ledger = new BlobLedger(db.kysely, store);
      const held = await stage('held by a row of another room');
      const released = await stage('released by a cleanup');
      await ledger.store(held);
      await ledger.store(released);
      const holderRow = (key: string, sha256: string) => ({
        key,
        kind: 'transform' as const,
        source_sha256: 'f'.repeat(64),
        preset: null,
        format: 'webp',
        sha256,
        size: 1,
        content_type: 'image/webp',
        width: 1,
        height: 1,
        created_at: Date.now(),
      });
      await db.kysely
        .insertInto('media_derived')
        .values([holderRow('ledger-held', held.sha256), holderRow('ledger-released', released.sha256)])
        .execute();
      ledger.holdBlobs('media_derived', 'sha256');
      const order: string[] = [];
      ledger.onCollect(async (kysely) => {
        order.push('cleanup');
        await kysely.deleteFrom('media_derived').where('key', '=', 'ledger-released').execute();
      });

      const result = await ledger.collect(0);
      assert.deepEqual(order, ['cleanup']);
      assert.ok(result.deleted >= 1);
      assert.equal(await row(released.sha256), undefined, 'collected in the pass whose cleanup released it');
      assert.equal(await store.stat(released.sha256), null);
      assert.equal((await row(held.sha256))?.state, 'live', 'held by its row');
      assert.ok(await store.stat(held.sha256));
      await db.kysely.deleteFrom('media_derived').where('key', '=', 'ledger-held').execute();
    });
  });
}
