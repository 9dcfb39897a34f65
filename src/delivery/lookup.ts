import type { Kysely } from 'kysely';
import { isId } from '../db/ids.ts';
import type { Database, Visibility } from '../db/tables.ts';

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

/** One indexed query per delivery request; no tenant filter, since the URL itself names the content. */
export class DeliveryLookup {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async latest(assetId: string): Promise<Representation | null> {
    if (!isId('ast', assetId)) return null;
    const row = await this.#db
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
      .where('id', '=', assetId)
      .executeTakeFirst();
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
  async version(versionId: string): Promise<Representation | null> {
    if (!isId('ver', versionId)) return null;
    const row = await this.#db
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
      .where('v.id', '=', versionId)
      .executeTakeFirst();
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
