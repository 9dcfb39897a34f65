import { setTimeout as sleep } from 'node:timers/promises';
import { type Kysely, sql } from 'kysely';
import type { Database } from '../db/tables.ts';
import { ConveyorError } from '../errors.ts';
import { step } from '../ops/steps.ts';
import type { BlobStore, StagedBlob } from '../storage/blob-store.ts';

/**
 * The blob ledger keeps the `blobs` table and the blob store in step, so that a crash at any point leaves
 * at worst an unreferenced blob (collected later) and never a reference to missing bytes.
 *
 * Writing (see `store`):   stage bytes -> tx: upsert row `live` -> commit bytes -> caller's tx references it
 * Collecting (see `collect`): tx: mark `deleting` (only if unreferenced and orphaned longer than the grace)
 *                             -> delete bytes -> tx: delete row (only if still `deleting`)
 *
 * A row in `deleting` is never reused: `store` waits until the collector has finished with it and then
 * writes the bytes again, so a collector can never delete bytes that a new upload relies on. The caller's
 * transaction that references the blob re-checks that the row is `live` (`claimInTransaction`).
 */
export class BlobLedger {
  readonly #db: Kysely<Database>;
  readonly #store: BlobStore;

  constructor(db: Kysely<Database>, store: BlobStore) {
    this.#db = db;
    this.#store = store;
  }

  /** Registers and commits a staged blob; afterwards the bytes are readable and the row is `live`. */
  async store(staged: StagedBlob): Promise<void> {
    step('blob.staged');
    for (let attempt = 0; ; attempt++) {
      const now = Date.now();
      const result = await this.#db
        .insertInto('blobs')
        .values({
          sha256: staged.sha256,
          size: staged.size,
          state: 'live',
          created_at: now,
          orphaned_at: null,
        })
        .onConflict((oc) =>
          oc.column('sha256').doUpdateSet({ orphaned_at: null }).where('blobs.state', '=', 'live'),
        )
        .executeTakeFirst();
      if (Number(result.numInsertedOrUpdatedRows ?? 0) > 0) break;
      // The collector is deleting this very content right now; it finishes within one store round trip.
      if (attempt >= 50)
        throw new ConveyorError('unavailable', 'Storage is busy collecting this content; retry');
      await sleep(20 + attempt * 20);
    }
    step('blob.registered');
    await this.#store.commit(staged);
    step('blob.committed');
  }

  /**
   * Inside the transaction that makes an asset or version point at the blob: confirms the row is still
   * `live` and clears any orphan mark, so the collector cannot have started deleting it.
   */
  async claimInTransaction(tx: Kysely<Database>, sha256: string): Promise<void> {
    const result = await tx
      .updateTable('blobs')
      .set({ orphaned_at: null })
      .where('sha256', '=', sha256)
      .where('state', '=', 'live')
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) {
      throw new ConveyorError('unavailable', 'The content was being garbage-collected; retry the request');
    }
  }

  /**
   * One garbage-collection pass. Unreferenced rows are first marked (orphaned_at), and deleted only
   * once marked for longer than `graceMs`; bytes in storage with no row at all (left by a crash between
   * staging and registering) are deleted once older than the grace too, and so are stale temporaries.
   */
  async collect(
    graceMs: number,
  ): Promise<{ marked: number; deleted: number; strays: number; temporaries: number }> {
    const now = Date.now();
    const cutoff = now - graceMs;
    // Derived blobs (variants, cached transforms) and analysis results live as long as the content they
    // were made from: dropping their rows here lets the passes below collect the derived bytes too.
    const sourceGone = (column: string) =>
      sql<boolean>`not exists (select 1 from assets a where a.sha256 = ${sql.ref(column)})
        and not exists (select 1 from asset_versions v where v.sha256 = ${sql.ref(column)})`;
    await this.#db.deleteFrom('media_derived').where(sourceGone('media_derived.source_sha256')).execute();
    await this.#db.deleteFrom('media_info').where(sourceGone('media_info.sha256')).execute();
    const unreferenced = sql<boolean>`not exists (select 1 from assets a where a.sha256 = blobs.sha256)
      and not exists (select 1 from asset_versions v where v.sha256 = blobs.sha256)
      and not exists (select 1 from media_derived d where d.sha256 = blobs.sha256)`;

    const marked = await this.#db
      .updateTable('blobs')
      .set({ orphaned_at: now })
      .where('state', '=', 'live')
      .where('orphaned_at', 'is', null)
      .where(unreferenced)
      .executeTakeFirst();

    const doomed = await this.#db
      .updateTable('blobs')
      .set({ state: 'deleting' })
      .where((eb) =>
        eb.or([
          eb.and([eb('state', '=', 'live'), eb('orphaned_at', '<=', cutoff), unreferenced]),
          // A previous pass that died half-way left these behind.
          eb('state', '=', 'deleting'),
        ]),
      )
      .returning('sha256')
      .execute();
    for (const { sha256 } of doomed) await this.#deleteMarked(sha256);

    let strays = 0;
    for await (const blob of this.#store.list()) {
      if (blob.modifiedAt.getTime() > cutoff) continue;
      const known = await this.#db
        .selectFrom('blobs')
        .select('sha256')
        .where('sha256', '=', blob.sha256)
        .executeTakeFirst();
      if (known) continue;
      // Claim the stray through a `deleting` row so a concurrent upload of the same bytes waits for us.
      const claimed = await this.#db
        .insertInto('blobs')
        .values({
          sha256: blob.sha256,
          size: blob.size,
          state: 'deleting',
          created_at: now,
          orphaned_at: now,
        })
        .onConflict((oc) => oc.column('sha256').doNothing())
        .executeTakeFirst();
      if (Number(claimed.numInsertedOrUpdatedRows ?? 0) === 0) continue;
      await this.#deleteMarked(blob.sha256);
      strays++;
    }

    const temporaries = await this.#store.sweepTemporary(graceMs);
    return { marked: Number(marked.numUpdatedRows), deleted: doomed.length, strays, temporaries };
  }

  async #deleteMarked(sha256: string): Promise<void> {
    await this.#store.delete(sha256);
    await this.#db.deleteFrom('blobs').where('sha256', '=', sha256).where('state', '=', 'deleting').execute();
  }
}
