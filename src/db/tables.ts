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
  /** Credits left for billable jobs; null when the tenant does not use credits. */
  credit_balance: number | null;
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

/** One row per job; the words (lane, lease, attempt, ...) are defined in src/jobs/types.ts. */
export interface JobsTable {
  id: string;
  tenant_id: string;
  type: string;
  lane: string;
  /** `lane/type/tenant_id`: the claim's unit of fairness (a group), one indexed column for its loose scan. */
  queue: string;
  state: string;
  payload: string;
  /** SHA-256 of the canonical payload: the identity of "the same request" for result freshness. */
  payload_hash: string;
  result: string | null;
  /** JSON array of every failed attempt's error, oldest first. */
  errors: string;
  attempts: number;
  max_attempts: number;
  /** When the job may next start (enqueue time, a requested delay, or the end of a retry backoff). */
  run_at: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  progress_percent: number | null;
  progress_stage: string | null;
  progress_message: string | null;
  idempotency_key: string | null;
  parent_id: string | null;
  breaker_key: string | null;
  /** Credits reserved at enqueue (0 for free job types or tenants without credits). */
  cost: number;
  created_at: number;
  updated_at: number;
  /** When the current (or last) attempt started. */
  started_at: number | null;
  finished_at: number | null;
}

export interface JobBreakersTable {
  key: string;
  state: 'closed' | 'open' | 'half_open';
  failures: number;
  opened_at: number | null;
  open_until: number | null;
  probe_job_id: string | null;
  updated_at: number;
}

export interface JobRateLimitsTable {
  key: string;
  tat: number;
}

export interface TenantJobUsageTable {
  tenant_id: string;
  /** UTC day, YYYY-MM-DD. */
  day: string;
  jobs: number;
}

export interface CreditLedgerTable {
  id: string;
  tenant_id: string;
  job_id: string | null;
  /** Positive for a grant or refund, negative for a charge. */
  amount: number;
  /** The balance after this movement. */
  balance: number;
  reason: string;
  actor: string | null;
  created_at: number;
}

export interface JobWorkersTable {
  id: string;
  host: string;
  pid: number;
  /** JSON arrays of the lanes and types this worker claims ([] = all). */
  lanes: string;
  types: string;
  concurrency: number;
  running: number;
  started_at: number;
  seen_at: number;
  stopped_at: number | null;
}

export interface JobSchedulesTable {
  id: string;
  tenant_id: string;
  name: string;
  cron: string;
  /** IANA time zone the cron expression is read in. */
  timezone: string;
  type: string;
  payload: string;
  lane: string;
  next_run_at: number;
  last_run_at: number | null;
  last_job_id: string | null;
  last_error: string | null;
  created_at: number;
}

export interface JobTurnsTable {
  tenant_id: string;
  /** When a claim last took one of the tenant's jobs. */
  claimed_at: number;
}

export interface AlertDeliveriesTable {
  /** `rule/subject`. */
  key: string;
  /** When the alert last reached the webhook (0: a failed delivery's claim, handed back). */
  sent_at: number;
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
  jobs: JobsTable;
  job_breakers: JobBreakersTable;
  job_rate_limits: JobRateLimitsTable;
  tenant_job_usage: TenantJobUsageTable;
  credit_ledger: CreditLedgerTable;
  job_workers: JobWorkersTable;
  job_schedules: JobSchedulesTable;
  job_turns: JobTurnsTable;
  alert_deliveries: AlertDeliveriesTable;
  media_info: MediaInfoTable;
  media_derived: MediaDerivedTable;
  asset_sources: AssetSourcesTable;
  video_info: VideoInfoTable;
  video_ladders: VideoLaddersTable;
  video_files: VideoFilesTable;
}

/** What image analysis learned about some content (keyed by its SHA-256, like `blobs`). */
export interface MediaInfoTable {
  sha256: string;
  format: string;
  /** As displayed: after the EXIF orientation is applied. */
  width: number;
  height: number;
  orientation: number | null;
  has_alpha: number;
  pages: number;
  /** `#rrggbb`. */
  dominant_color: string | null;
  thumbhash: string | null;
  blurhash: string | null;
  /** 64-bit perceptual hash, 16 hex digits. */
  phash: string | null;
  /** JSON object of the safe EXIF subset. */
  exif: string | null;
  created_at: number;
}

/** A blob made from another: a preset variant or a cached on-the-fly transform. */
export interface MediaDerivedTable {
  /** Canonical name of the request: identical requests share the row. */
  key: string;
  kind: 'variant' | 'transform';
  source_sha256: string;
  preset: string | null;
  format: string;
  sha256: string;
  size: number;
  content_type: string;
  width: number;
  height: number;
  created_at: number;
}

/** Where an ingested asset came from, with the validators the origin answered. */
export interface AssetSourcesTable {
  asset_id: string;
  url: string;
  final_url: string;
  etag: string | null;
  last_modified: string | null;
  fetched_at: number;
}

/** What ffprobe learned about some video content (keyed by its SHA-256, like `media_info`). */
export interface VideoInfoTable {
  sha256: string;
  /** JSON of the whole probe (streams, rotation, frame rate, bit rates, channels). */
  probe: string;
  duration_ms: number;
  /** As displayed: after the rotation is applied. */
  width: number;
  height: number;
  has_audio: number;
  container: string;
  video_codec: string;
  audio_codec: string | null;
  /** JSON of the EBU R128 measurement, when a loudness-normalising preset made one. */
  loudness: string | null;
  created_at: number;
}

/** One HLS ladder of some content: a set of renditions encoded with one set of output settings. */
export interface VideoLaddersTable {
  source_sha256: string;
  /** Short hash of what shapes the outputs (src/media/video/keys.ts, `ladderKey`). */
  ladder: string;
  state: 'encoding' | 'complete' | 'failed';
  /** The master playlist; null until complete. */
  master: string | null;
  /** JSON array of what was measured of each rendition; null until complete. */
  renditions: string | null;
  encoder: string | null;
  /** JSON array of the encoder fallbacks taken. */
  fallbacks: string | null;
  error: string | null;
  /** JSON: the chunk plan of a ladder encoded in chunks (src/media/video/chunks.ts); null otherwise. */
  chunk_plan: string | null;
  created_at: number;
  updated_at: number;
  completed_at: number | null;
}

/** One file of a ladder (a segment, a playlist, the poster...), stored as a blob. */
export interface VideoFilesTable {
  source_sha256: string;
  ladder: string;
  /** Relative path inside the ladder, e.g. `720p/seg_00001.m4s`. */
  path: string;
  /** The rendition it belongs to; null for files of the whole ladder (poster, sprite, MP4 fallback). */
  rendition: string | null;
  sha256: string;
  size: number;
  content_type: string;
  created_at: number;
}
