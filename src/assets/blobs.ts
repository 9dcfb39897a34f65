import { setTimeout as sleep } from 'node:timers/promises';
import { type Kysely, type RawBuilder, sql } from 'kysely';
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
  /** Conditions, one per holding column, that a blob no row holds meets. */
  readonly #unheld: RawBuilder<boolean>[] = CONTENT.map(([table, column]) => unheldBy(table, column));
  readonly #cleanups: CollectCleanup[] = [];

  constructor(db: Kysely<Database>, store: BlobStore) {
    this.#db = db;
    this.#store = store;
  }

  /**
   * Declares that rows of `table` hold the blob their `column` names: a blob stays while any such row
   * does. Assets and versions hold their content from the start; a room whose rows name blobs of their
   * own registers them before the first collection.
   */
  holdBlobs<T extends keyof Database & string>(table: T, column: keyof Database[T] & string): void {
    this.#unheld.push(unheldBy(table, column));
  }

  /**
   * Runs `cleanup` at the start of every collection, before unreferenced blobs are looked for: a room
   * deletes there the rows that live only as long as something else does, so that the blobs they held
   * are collected in the same pass.
   */
  onCollect(cleanup: CollectCleanup): void {
    this.#cleanups.push(cleanup);
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
   * One garbage-collection pass. The registered cleanups run first; then rows no holder references are
   * marked (orphaned_at), and deleted only once marked for longer than `graceMs`; bytes in storage with
   * no row at all (left by a crash between staging and registering) are deleted once older than the
   * grace too, and so are stale temporaries.
   */
  async collect(
    graceMs: number,
  ): Promise<{ marked: number; deleted: number; strays: number; temporaries: number }> {
    const now = Date.now();
    const cutoff = now - graceMs;
    for (const cleanup of this.#cleanups) await cleanup(this.#db);
    const unreferenced = sql.join<boolean>(this.#unheld, sql` and `);

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

/** A room's part of a collection pass (see `BlobLedger.onCollect`). */
export type CollectCleanup = (db: Kysely<Database>) => Promise<unknown>;

/** The columns through which assets and versions hold their content. */
const CONTENT = [
  ['assets', 'sha256'],
  ['asset_versions', 'sha256'],
] as const;

function unheldBy(table: string, column: string): RawBuilder<boolean> {
  return sql<boolean>`not exists (select 1 from ${sql.table(table)} h where h.${sql.ref(column)} = blobs.sha256)`;
}

/**
 * SQL that holds when no asset or version has the content that `column` (`table.column`) names: for the
 * cleanups of rows that live as long as the content they describe or were made from.
 */
export function contentGone(column: string): RawBuilder<boolean> {
  return sql.join<boolean>(
    CONTENT.map(
      ([table, holder]) =>
        sql`not exists (select 1 from ${sql.table(table)} c where c.${sql.ref(holder)} = ${sql.ref(column)})`,
    ),
    sql` and `,
  );
}
