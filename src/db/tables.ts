/**
 * Row types of the metadata database, shared by both dialects. Times are integer milliseconds since the
 * epoch on both (BIGINT on PostgreSQL, parsed to number), so no code depends on a driver's Date handling.
 */

export type Role = 'admin' | 'editor' | 'viewer';
export type Visibility = 'public' | 'private';

export interface TenantsTable {
  id: string;
  name: string;
  tier: string;
  created_at: number;
}

export interface ApiKeysTable {
  id: string;
  tenant_id: string;
  role: Role;
  /** 1 for operator keys, which may manage tenants (the bootstrap key). */
  operator: number;
  name: string | null;
  /** The visible start of the key, e.g. `cvk_ab12cd34`, to recognise it in lists. */
  prefix: string;
  /** SHA-256 of the whole key: keys are 256-bit random, so a fast hash is enough (no stretching needed). */
  hash: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** One row per stored blob; see docs/architecture.md, "Blob lifecycle and garbage collection". */
export interface BlobsTable {
  sha256: string;
  size: number;
  /** `live`, or `deleting` while the collector removes the bytes. */
  state: 'live' | 'deleting';
  created_at: number;
  /** When the collector first saw the blob unreferenced; null while referenced. */
  orphaned_at: number | null;
}

export interface AssetsTable {
  id: string;
  tenant_id: string;
  filename: string;
  content_type: string;
  size: number;
  sha256: string;
  visibility: Visibility;
  version_count: number;
  created_at: number;
  updated_at: number;
  /** When the content last changed: the Last-Modified of the latest URL. */
  content_updated_at: number;
}

export interface AssetVersionsTable {
  id: string;
  asset_id: string;
  tenant_id: string;
  number: number;
  sha256: string;
  size: number;
  content_type: string;
  filename: string;
  created_at: number;
}

export interface AccessTokensTable {
  id: string;
  tenant_id: string;
  asset_id: string;
  hash: string;
  expires_at: number;
  revoked_at: number | null;
  created_at: number;
  created_by: string | null;
}

export interface AuditLogTable {
  id: string;
  tenant_id: string | null;
  actor: string | null;
  action: string;
  target: string | null;
  details: string | null;
  created_at: number;
}

export interface ServerSecretsTable {
  name: string;
  value: string;
  created_at: number;
}

export interface Database {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  blobs: BlobsTable;
  assets: AssetsTable;
  asset_versions: AssetVersionsTable;
  access_tokens: AccessTokensTable;
  audit_log: AuditLogTable;
  server_secrets: ServerSecretsTable;
}
