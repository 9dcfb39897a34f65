import { CompiledQuery, type Kysely } from 'kysely';
import { isId } from '../db/ids.ts';
import type { AssetsTable, AssetVersionsTable, Database, Visibility } from '../db/tables.ts';

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
 * Found representations may be remembered for `ttlMs`. Every change made through this process calls
 * `invalidate()`, so a single process always answers from current metadata; another process's change
 * (a second `serve` process or host) is seen within `ttlMs`. That bound is far below the CDN's own
 * s-maxage, and on SQLite the query it saves is mostly file-locking system calls (about a third of a 304's
 * cost). Misses are never remembered.
 */
export class DeliveryLookup {
  readonly #db: Kysely<Database>;
  readonly #latestSql: string;
  readonly #versionSql: string;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  #cache = new Map<string, { rep: Representation; expires: number }>();

  constructor(db: Kysely<Database>, options: { ttlMs?: number; maxEntries?: number } = {}) {
    this.#db = db;
    this.#ttlMs = options.ttlMs ?? 0;
    this.#maxEntries = options.maxEntries ?? 10_000;
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
    if (this.#cache.size > 0) this.#cache = new Map();
  }

  /**
   * The representation of `/a/<id>` (`latest`) or `/v/<id>` (`version`) if it is remembered and fresh,
   * without a query; undefined when only a query can tell (misses are never remembered).
   */
  known(kind: 'latest' | 'version', id: string): Representation | undefined {
    const hit = this.#cache.get(id);
    return hit && hit.rep.kind === kind && hit.expires > Date.now() ? hit.rep : undefined;
  }

  async latest(assetId: string): Promise<Representation | null> {
    if (!isId('ast', assetId)) return null;
    return this.#remembered(assetId, () => this.#queryLatest(assetId));
  }

  async version(versionId: string): Promise<Representation | null> {
    if (!isId('ver', versionId)) return null;
    return this.#remembered(versionId, () => this.#queryVersion(versionId));
  }

  async #remembered(id: string, query: () => Promise<Representation | null>): Promise<Representation | null> {
    if (this.#ttlMs === 0) return query();
    const now = Date.now();
    const hit = this.#cache.get(id);
    if (hit && hit.expires > now) return hit.rep;
    const cache = this.#cache;
    const rep = await query();
    // Only if no invalidation happened while the query ran (it replaces the map), or we'd keep stale data.
    if (rep && cache === this.#cache) {
      if (cache.size >= this.#maxEntries) cache.delete(cache.keys().next().value!);
      cache.set(id, { rep, expires: now + this.#ttlMs });
    }
    return rep;
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
