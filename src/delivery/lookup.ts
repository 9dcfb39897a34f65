import { CompiledQuery, type Kysely } from 'kysely';
import { isId } from '../db/ids.ts';
import type { AssetsTable, AssetVersionsTable, Database, Visibility } from '../db/tables.ts';
import { Memo, type MemoView } from './memo.ts';

/** What the origin needs to answer for one URL: the bytes to send and their metadata. */
export interface Representation {
  kind: 'latest' | 'version';
  assetId: string;
  tenantId: string;
  sha256: string;
  size: number;
  contentType: string;
  filename: string;
  lastModified: Date;
  visibility: Visibility;
  /** The version a `/v/<versionId>` URL names; absent for an asset's latest URL. */
  versionId?: string;
  /** Made from the content (a variant, a transform, a ladder file) rather than the content itself. */
  derived?: boolean;
}

/** Delivery paths: `/a/<assetId>` follows the latest content, `/v/<versionId>` is pinned forever. */
export const deliveryPath = {
  latest: (assetId: string) => `/a/${assetId}`,
  version: (versionId: string) => `/v/${versionId}`,
};

/**
 * One indexed query per delivery request; no tenant filter, since the URL itself names the content.
 * The two queries are built and compiled once: building a Kysely query costs more than running this one
 * on SQLite (about 15 of 22 microseconds), and delivery is the hot path.
 *
 * Found representations are remembered for `ttlMs` (`remembered`, a Memo keyed by the id, which the
 * origin reads to answer at once). Every change made through this process calls `invalidate()`, so a
 * single process always answers from current metadata; another process's change (a second `serve`
 * process or host) is seen within `ttlMs`. That bound is far below the CDN's own s-maxage, and on SQLite
 * the query it saves is mostly file-locking system calls (about a third of a 304's cost). Misses are never
 * remembered; concurrent lookups of one id share one query.
 */
export class DeliveryLookup {
  /** Representations found and still fresh, by asset or version id (whose prefix says which kind). */
  readonly remembered: MemoView<Representation>;
  readonly #db: Kysely<Database>;
  readonly #latestSql: string;
  readonly #versionSql: string;
  readonly #memo: Memo<Representation>;

  constructor(db: Kysely<Database>, options: { ttlMs?: number; maxEntries?: number } = {}) {
    this.#db = db;
    this.#memo = new Memo({ ttlMs: options.ttlMs ?? 0, maxEntries: options.maxEntries ?? 10_000 });
    this.remembered = this.#memo;
    this.#latestSql = db
      .selectFrom('assets')
      .select([
        'id',
        'tenant_id',
        'sha256',
        'size',
        'content_type',
        'filename',
        'content_updated_at',
        'visibility',
      ])
      .where('id', '=', '')
      .compile().sql;
    this.#versionSql = db
      .selectFrom('asset_versions as v')
      .innerJoin('assets as a', 'a.id', 'v.asset_id')
      .select([
        'v.asset_id',
        'v.tenant_id',
        'v.sha256',
        'v.size',
        'v.content_type',
        'v.filename',
        'v.created_at',
        'a.visibility',
      ])
      .where('v.id', '=', '')
      .compile().sql;
  }

  /** Forgets every remembered representation: metadata changed in this process. */
  invalidate(): void {
    this.#memo.clear();
  }

  async latest(assetId: string): Promise<Representation | null> {
    if (!isId('ast', assetId)) return null;
    return this.#memo.get(assetId, () => this.#queryLatest(assetId));
  }

  async version(versionId: string): Promise<Representation | null> {
    if (!isId('ver', versionId)) return null;
    return this.#memo.get(versionId, () => this.#queryVersion(versionId));
  }

  async #queryLatest(assetId: string): Promise<Representation | null> {
    const { rows } = await this.#db.executeQuery<LatestRow>(CompiledQuery.raw(this.#latestSql, [assetId]));
    const row = rows[0];
    if (!row) return null;
    return {
      kind: 'latest',
      assetId: row.id,
      tenantId: row.tenant_id,
      sha256: row.sha256,
      size: row.size,
      contentType: row.content_type,
      filename: row.filename,
      lastModified: new Date(row.content_updated_at),
      visibility: row.visibility,
    };
  }

  /** A version inherits the asset's current visibility: making an asset private closes its versions too. */
  async #queryVersion(versionId: string): Promise<Representation | null> {
    const { rows } = await this.#db.executeQuery<VersionRow>(
      CompiledQuery.raw(this.#versionSql, [versionId]),
    );
    const row = rows[0];
    if (!row) return null;
    return {
      kind: 'version',
      versionId,
      assetId: row.asset_id,
      tenantId: row.tenant_id,
      sha256: row.sha256,
      size: row.size,
      contentType: row.content_type,
      filename: row.filename,
      lastModified: new Date(row.created_at),
      visibility: row.visibility,
    };
  }
}

type LatestRow = Pick<
  AssetsTable,
  'id' | 'tenant_id' | 'sha256' | 'size' | 'content_type' | 'filename' | 'content_updated_at' | 'visibility'
>;
type VersionRow = Pick<
  AssetVersionsTable,
  'asset_id' | 'tenant_id' | 'sha256' | 'size' | 'content_type' | 'filename' | 'created_at'
> & { visibility: Visibility };
