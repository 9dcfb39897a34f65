import { type Kysely, sql, type Transaction } from 'kysely';
import { isId, newId } from '../db/ids.ts';
import type { AssetsTable, AssetVersionsTable, Database, Visibility } from '../db/tables.ts';
import { notFound } from '../errors.ts';
import type { Lane } from '../glossary.ts';
import { step } from '../ops/steps.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { audit } from '../tenancy/audit.ts';
import { type Principal, requireRole } from '../tenancy/principal.ts';
import type { BlobLedger } from './blobs.ts';
import { sanitizeFilename } from './filename.ts';
import { type ContentInput, ContentIntake, nextContentTime, recordSource } from './intake.ts';

export interface AssetUrls {
  latest(assetId: string): string;
  version(versionId: string): string;
}

export interface AssetLimits {
  maxUploadBytes: number;
  maxFilenameBytes: number;
}

export interface AssetView {
  id: string;
  filename: string;
  contentType: string;
  size: number;
  etag: string;
  sha256: string;
  visibility: Visibility;
  versionCount: number;
  createdAt: string;
  updatedAt: string;
  contentUpdatedAt: string;
  url: string;
}

export interface VersionView {
  id: string;
  assetId: string;
  number: number;
  filename: string;
  contentType: string;
  size: number;
  etag: string;
  sha256: string;
  createdAt: string;
  url: string;
}

/** New content of an asset, told inside the transaction that commits it (so a job can join it). */
export interface ContentAdded {
  tenantId: string;
  assetId: string;
  sha256: string;
  contentType: string;
  lane: Lane | undefined;
  actor: string;
}

export interface ListFilter {
  limit: number;
  cursor?: string | undefined;
  contentType?: string | undefined;
  visibility?: Visibility | undefined;
  filenamePrefix?: string | undefined;
}

/** Quoted strong entity tag: the SHA-256 of the bytes, computed once at upload. */
export const etagOf = (sha256: string) => `"${sha256}"`;

export class AssetService {
  readonly #db: Kysely<Database>;
  readonly #intake: ContentIntake;
  readonly #ledger: BlobLedger;
  readonly #urls: AssetUrls;
  readonly #limits: AssetLimits;

  /** Told after every committed change to an asset's metadata (delivery caches listen). */
  readonly #changed: () => void;
  #contentAdded: (tx: Transaction<Database>, added: ContentAdded) => Promise<void>;

  constructor(deps: {
    db: Kysely<Database>;
    store: BlobStore;
    ledger: BlobLedger;
    urls: AssetUrls;
    limits: AssetLimits;
    changed?: () => void;
    /** Called in the committing transaction whenever an asset gets new content (media processing). */
    contentAdded?: (tx: Transaction<Database>, added: ContentAdded) => Promise<void>;
  }) {
    this.#db = deps.db;
    this.#intake = new ContentIntake({
      store: deps.store,
      ledger: deps.ledger,
      maxUploadBytes: deps.limits.maxUploadBytes,
    });
    this.#ledger = deps.ledger;
    this.#urls = deps.urls;
    this.#limits = deps.limits;
    this.#changed = deps.changed ?? (() => {});
    this.#contentAdded = deps.contentAdded ?? (async () => {});
  }

  /** Late wiring: the media pipeline is built after the service it listens to. */
  onContentAdded(listener: (tx: Transaction<Database>, added: ContentAdded) => Promise<void>): void {
    this.#contentAdded = listener;
  }

  async upload(
    by: Principal,
    input: ContentInput & { filename: string; visibility: Visibility },
  ): Promise<AssetView> {
    requireRole(by, 'editor');
    const filename = sanitizeFilename(input.filename, this.#limits.maxFilenameBytes);
    const { staged, contentType } = await this.#intake.stage(input);
    const now = Date.now();
    const row: AssetsTable = {
      id: newId('ast', now),
      tenant_id: by.tenantId,
      filename,
      content_type: contentType,
      size: staged.size,
      sha256: staged.sha256,
      visibility: input.visibility,
      version_count: 0,
      created_at: now,
      updated_at: now,
      content_updated_at: now,
    };
    await this.#db.transaction().execute(async (tx) => {
      await this.#ledger.claimInTransaction(tx, staged.sha256);
      await tx.insertInto('assets').values(row).execute();
      if (input.source) await recordSource(tx, row.id, input.source, now);
      await this.#contentAdded(tx, this.#added(by, row, input));
    });
    return this.#view(row);
  }

  async replaceContent(by: Principal, assetId: string, input: ContentInput): Promise<AssetView> {
    requireRole(by, 'editor');
    await this.#owned(this.#db, by, assetId);
    const { staged, contentType } = await this.#intake.stage(input);
    const row = await this.#db.transaction().execute(async (tx) => {
      const current = await this.#owned(tx, by, assetId);
      await this.#ledger.claimInTransaction(tx, staged.sha256);
      if (input.source) await recordSource(tx, assetId, input.source, Date.now());
      if (current.sha256 === staged.sha256 && current.content_type === contentType) return current;
      const now = nextContentTime(current.content_updated_at);
      const changes = {
        sha256: staged.sha256,
        size: staged.size,
        content_type: contentType,
        updated_at: now,
        content_updated_at: now,
      };
      await tx.updateTable('assets').set(changes).where('id', '=', assetId).execute();
      await audit(tx, {
        tenantId: by.tenantId,
        actor: by.actor,
        action: 'asset.replace',
        target: assetId,
        details: { from: current.sha256, to: staged.sha256 },
      });
      const updated = { ...current, ...changes };
      await this.#contentAdded(tx, this.#added(by, updated, input));
      return updated;
    });
    this.#changed();
    return this.#view(row);
  }

  async get(by: Principal, assetId: string): Promise<AssetView> {
    return this.#view(await this.#owned(this.#db, by, assetId));
  }

  async list(by: Principal, filter: ListFilter): Promise<{ items: AssetView[]; nextCursor: string | null }> {
    let query = this.#db.selectFrom('assets').selectAll().where('tenant_id', '=', by.tenantId);
    if (filter.cursor) query = query.where('id', '<', filter.cursor);
    if (filter.visibility) query = query.where('visibility', '=', filter.visibility);
    if (filter.contentType) query = query.where(startsWith('content_type', filter.contentType));
    if (filter.filenamePrefix) query = query.where(startsWith('filename', filter.filenamePrefix));
    const rows = await query
      .orderBy('id', 'desc')
      .limit(filter.limit + 1)
      .execute();
    const page = rows.slice(0, filter.limit);
    return {
      items: page.map((row) => this.#view(row)),
      nextCursor: rows.length > filter.limit ? page.at(-1)!.id : null,
    };
  }

  async update(
    by: Principal,
    assetId: string,
    patch: { filename?: string; visibility?: Visibility },
  ): Promise<AssetView> {
    requireRole(by, 'editor');
    const row = await this.#db.transaction().execute(async (tx) => {
      const current = await this.#owned(tx, by, assetId);
      const changes: Partial<AssetsTable> = { updated_at: Date.now() };
      if (patch.filename !== undefined)
        changes.filename = sanitizeFilename(patch.filename, this.#limits.maxFilenameBytes);
      if (patch.visibility !== undefined) changes.visibility = patch.visibility;
      await tx.updateTable('assets').set(changes).where('id', '=', assetId).execute();
      if (patch.visibility !== undefined && patch.visibility !== current.visibility) {
        await audit(tx, {
          tenantId: by.tenantId,
          actor: by.actor,
          action: 'asset.visibility',
          target: assetId,
          details: { from: current.visibility, to: patch.visibility },
        });
      }
      return { ...current, ...changes };
    });
    this.#changed();
    return this.#view(row);
  }

  /** Deletes the asset with its versions and tokens; the blobs are collected once nothing references them. */
  async delete(by: Principal, assetId: string): Promise<void> {
    requireRole(by, 'editor');
    await this.#db.transaction().execute(async (tx) => {
      const current = await this.#owned(tx, by, assetId);
      await tx.deleteFrom('assets').where('id', '=', assetId).execute();
      await audit(tx, {
        tenantId: by.tenantId,
        actor: by.actor,
        action: 'asset.delete',
        target: assetId,
        details: { filename: current.filename, sha256: current.sha256 },
      });
    });
    this.#changed();
  }

  /** Snapshots the current content as the next immutable version. */
  async publish(by: Principal, assetId: string): Promise<VersionView> {
    requireRole(by, 'editor');
    const version = await this.#db.transaction().execute(async (tx) => {
      await this.#owned(tx, by, assetId);
      step('publish.begun');
      // The increment takes the row lock on PostgreSQL, so concurrent publishes get distinct numbers.
      const asset = await tx
        .updateTable('assets')
        .set((eb) => ({ version_count: eb('version_count', '+', 1) }))
        .where('id', '=', assetId)
        .returningAll()
        .executeTakeFirstOrThrow();
      step('publish.counted');
      const now = Date.now();
      const row: AssetVersionsTable = {
        id: newId('ver', now),
        asset_id: assetId,
        tenant_id: by.tenantId,
        number: asset.version_count,
        sha256: asset.sha256,
        size: asset.size,
        content_type: asset.content_type,
        filename: asset.filename,
        created_at: now,
      };
      await tx.insertInto('asset_versions').values(row).execute();
      step('publish.recorded');
      await audit(tx, { tenantId: by.tenantId, actor: by.actor, action: 'asset.publish', target: row.id });
      step('publish.audited');
      return row;
    });
    step('publish.committed');
    return this.#versionView(version);
  }

  async listVersions(by: Principal, assetId: string, page: { limit: number; cursor?: string | undefined }) {
    await this.#owned(this.#db, by, assetId);
    let query = this.#db.selectFrom('asset_versions').selectAll().where('asset_id', '=', assetId);
    if (page.cursor) query = query.where('id', '<', page.cursor);
    const rows = await query
      .orderBy('id', 'desc')
      .limit(page.limit + 1)
      .execute();
    const items = rows.slice(0, page.limit);
    return {
      items: items.map((row) => this.#versionView(row)),
      nextCursor: rows.length > page.limit ? items.at(-1)!.id : null,
    };
  }

  /** One version of the caller's asset; 404 for anything else. */
  async getVersion(by: Principal, assetId: string, versionId: string): Promise<VersionView> {
    await this.#owned(this.#db, by, assetId);
    if (!isId('ver', versionId)) throw notFound('version');
    const row = await this.#db
      .selectFrom('asset_versions')
      .selectAll()
      .where('id', '=', versionId)
      .where('asset_id', '=', assetId)
      .executeTakeFirst();
    if (!row) throw notFound('version');
    return this.#versionView(row);
  }

  /** The asset if it exists and belongs to the caller's tenant; otherwise 404, never a hint it exists. */
  async #owned(db: Kysely<Database>, by: Principal, assetId: string): Promise<AssetsTable> {
    if (!isId('ast', assetId)) throw notFound('asset');
    const row = await db
      .selectFrom('assets')
      .selectAll()
      .where('id', '=', assetId)
      .where('tenant_id', '=', by.tenantId)
      .executeTakeFirst();
    if (!row) throw notFound('asset');
    return row;
  }

  #added(by: Principal, row: AssetsTable, input: ContentInput): ContentAdded {
    return {
      tenantId: row.tenant_id,
      assetId: row.id,
      sha256: row.sha256,
      contentType: row.content_type,
      lane: input.lane,
      actor: by.actor,
    };
  }

  #view(row: AssetsTable): AssetView {
    return {
      id: row.id,
      filename: row.filename,
      contentType: row.content_type,
      size: row.size,
      etag: etagOf(row.sha256),
      sha256: row.sha256,
      visibility: row.visibility,
      versionCount: row.version_count,
      createdAt: new Date(row.created_at).toISOString(),
      updatedAt: new Date(row.updated_at).toISOString(),
      contentUpdatedAt: new Date(row.content_updated_at).toISOString(),
      url: this.#urls.latest(row.id),
    };
  }

  #versionView(row: AssetVersionsTable): VersionView {
    return {
      id: row.id,
      assetId: row.asset_id,
      number: row.number,
      filename: row.filename,
      contentType: row.content_type,
      size: row.size,
      etag: etagOf(row.sha256),
      sha256: row.sha256,
      createdAt: new Date(row.created_at).toISOString(),
      url: this.#urls.version(row.id),
    };
  }
}

/** A prefix test that means the same on both dialects (LIKE escaping and collations differ). */
function startsWith(column: 'content_type' | 'filename', prefix: string) {
  return sql<boolean>`substr(${sql.ref(column)}, 1, ${[...prefix].length}) = ${prefix}`;
}
