import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { isId, newId } from '../db/ids.ts';
import type { Database } from '../db/tables.ts';
import { ConveyorError, notFound } from '../errors.ts';
import { audit } from '../tenancy/audit.ts';
import { hashSecret } from '../tenancy/keys.ts';
import { type Principal, requireRole } from '../tenancy/principal.ts';
import { deliveryPath } from './lookup.ts';
import {
  type SigningKey,
  signPath,
  signPrefix,
  verifyPathSignature,
  verifyPrefixSignature,
} from './signed-url.ts';

/** Access tokens look like `cvt_<43 base64url characters>`; only their SHA-256 is stored. */
const TOKEN_PREFIX = 'cvt_';

export interface AccessLimits {
  tokenMaxTtlSeconds: number;
  signedUrlMaxTtlSeconds: number;
}

/** What a delivery request presented besides the URL path. */
export interface Credentials {
  token?: string | undefined;
  /** A single-path signature, or with `scope` a prefix signature (signed-url.ts). */
  signature?: { exp?: unknown; kid?: unknown; sig?: unknown; scope?: unknown } | undefined;
  principal?: Principal | null | undefined;
}

/** What delivery credentials amount to for one private asset (`AccessService.verdict`). */
export type AccessVerdict = 'granted' | 'expired' | 'revoked' | 'none';

/**
 * The two ways into private content: revocable access tokens (a database row each) and stateless signed
 * URLs (HMAC over path and expiry, keys rotated through `signingKeys`; the first key signs, all verify).
 */
export class AccessService {
  readonly #db: Kysely<Database>;
  readonly #keys: readonly SigningKey[];
  readonly #limits: AccessLimits;

  constructor(deps: { db: Kysely<Database>; signingKeys: readonly SigningKey[]; limits: AccessLimits }) {
    if (deps.signingKeys.length === 0) throw new Error('at least one signing key is required');
    this.#db = deps.db;
    this.#keys = deps.signingKeys;
    this.#limits = deps.limits;
  }

  async createToken(by: Principal, assetId: string, ttlSeconds: number) {
    requireRole(by, 'editor');
    this.#checkTtl(ttlSeconds, this.#limits.tokenMaxTtlSeconds);
    await this.#ownedAsset(by, assetId);
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const now = Date.now();
    const row = {
      id: newId('tok', now),
      tenant_id: by.tenantId,
      asset_id: assetId,
      hash: hashSecret(token),
      expires_at: now + ttlSeconds * 1000,
      revoked_at: null,
      created_at: now,
      created_by: by.actor,
    };
    await this.#db.transaction().execute(async (tx) => {
      await tx.insertInto('access_tokens').values(row).execute();
      await audit(tx, { tenantId: by.tenantId, actor: by.actor, action: 'token.create', target: row.id });
    });
    return { id: row.id, token, expiresAt: new Date(row.expires_at).toISOString() };
  }

  async revokeToken(by: Principal, tokenId: string): Promise<void> {
    requireRole(by, 'editor');
    if (!isId('tok', tokenId)) throw notFound('token');
    await this.#db.transaction().execute(async (tx) => {
      const row = await tx
        .selectFrom('access_tokens')
        .select(['id', 'revoked_at'])
        .where('id', '=', tokenId)
        .where('tenant_id', '=', by.tenantId)
        .executeTakeFirst();
      if (!row) throw notFound('token');
      if (row.revoked_at !== null) return;
      await tx
        .updateTable('access_tokens')
        .set({ revoked_at: Date.now() })
        .where('id', '=', tokenId)
        .execute();
      await audit(tx, { tenantId: by.tenantId, actor: by.actor, action: 'token.revoke', target: tokenId });
    });
  }

  /**
   * Signs the delivery path of one of the caller's assets: its latest URL, or one of its versions.
   * Ownership is checked before the version, so another tenant learns nothing, not even which version
   * belongs to which asset. With `prefix: 'hls'` it signs the folder of the video's HLS ladder under that
   * URL (a prefix signature, signed-url.ts) and answers the master playlist's path.
   */
  async signUrl(
    by: Principal,
    assetId: string,
    versionId: string | undefined,
    ttlSeconds: number,
    prefix?: 'hls',
  ) {
    requireRole(by, 'viewer');
    this.#checkTtl(ttlSeconds, this.#limits.signedUrlMaxTtlSeconds);
    await this.#ownedAsset(by, assetId);
    if (versionId !== undefined) {
      const version = isId('ver', versionId)
        ? await this.#db
            .selectFrom('asset_versions')
            .select('id')
            .where('id', '=', versionId)
            .where('asset_id', '=', assetId)
            .executeTakeFirst()
        : undefined;
      if (!version) throw new ConveyorError('not_found', 'No such version of this asset');
    }
    const base = versionId === undefined ? deliveryPath.latest(assetId) : deliveryPath.version(versionId);
    const expiresAt = Math.floor(Date.now() / 1000) + ttlSeconds;
    const scope = `${base}/hls/`;
    const path = prefix === 'hls' ? `${scope}master.m3u8` : base;
    const params =
      prefix === 'hls'
        ? signPrefix(scope, expiresAt, this.#keys[0]!)
        : signPath(path, expiresAt, this.#keys[0]!);
    return {
      path,
      query: new URLSearchParams(params).toString(),
      expiresAt: new Date(expiresAt * 1000).toISOString(),
    };
  }

  /**
   * What the credentials amount to for the private asset at `path`: `granted`; `expired` or `revoked`
   * for a grant of this very asset that was genuine (a signed URL whose signature verifies for this path,
   * a token issued for this asset), since holding one proves earlier access and saying why it stopped
   * working gives nothing away; and `none` for everything else (no credential, an unknown token, a forged
   * or tampered signature, another asset's grant, another tenant's key), which delivery answers exactly as
   * an id that does not exist.
   */
  async verdict(
    asset: { id: string; tenantId: string },
    path: string,
    credentials: Credentials,
  ): Promise<AccessVerdict> {
    if (credentials.principal && credentials.principal.tenantId === asset.tenantId) return 'granted';
    let lapsed: 'expired' | 'revoked' | undefined;
    const { signature } = credentials;
    if (signature?.sig !== undefined) {
      const now = Math.floor(Date.now() / 1000);
      // A prefix signature covers only the paths under its scope, which names this asset or version.
      const check =
        signature.scope === undefined
          ? verifyPathSignature(path, signature, this.#keys, now)
          : verifyPrefixSignature(path, signature, this.#keys, now);
      if (check === 'valid') return 'granted';
      if (check === 'expired') lapsed = 'expired';
    }
    if (typeof credentials.token === 'string' && credentials.token.startsWith(TOKEN_PREFIX)) {
      const row = await this.#db
        .selectFrom('access_tokens')
        .select(['asset_id', 'expires_at', 'revoked_at'])
        .where('hash', '=', hashSecret(credentials.token))
        .executeTakeFirst();
      if (row && row.asset_id === asset.id) {
        if (row.revoked_at !== null) lapsed = 'revoked';
        else if (row.expires_at <= Date.now()) lapsed ??= 'expired';
        else return 'granted';
      }
    }
    return lapsed ?? 'none';
  }

  #checkTtl(ttlSeconds: number, max: number): void {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > max) {
      throw new ConveyorError('validation_failed', `ttlSeconds must be an integer from 1 to ${max}`);
    }
  }

  async #ownedAsset(by: Principal, assetId: string): Promise<void> {
    if (!isId('ast', assetId)) throw notFound('asset');
    const row = await this.#db
      .selectFrom('assets')
      .select('id')
      .where('id', '=', assetId)
      .where('tenant_id', '=', by.tenantId)
      .executeTakeFirst();
    if (!row) throw notFound('asset');
  }
}

/**
 * The signing keys: from config (`kid:secret,kid2:secret2`), or else one key generated on first use and
 * kept in the database, so that every process sharing the database signs and verifies alike.
 */
export async function loadSigningKeys(
  db: Kysely<Database>,
  configured: string | undefined,
): Promise<SigningKey[]> {
  if (configured) return parseSigningKeys(configured);
  const name = 'signing-key';
  await db
    .insertInto('server_secrets')
    .values({ name, value: `k1:${randomBytes(32).toString('base64url')}`, created_at: Date.now() })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
  const row = await db
    .selectFrom('server_secrets')
    .select('value')
    .where('name', '=', name)
    .executeTakeFirstOrThrow();
  return parseSigningKeys(row.value);
}

export function parseSigningKeys(value: string): SigningKey[] {
  return value.split(',').map((entry) => {
    const at = entry.indexOf(':');
    const id = entry.slice(0, at).trim();
    const secret = entry.slice(at + 1).trim();
    if (at < 1 || !/^[A-Za-z0-9_-]{1,32}$/.test(id) || secret.length < 32) {
      throw new Error(
        'CONVEYOR_SIGNING_KEYS: expected "kid:secret" pairs, kid [A-Za-z0-9_-]{1,32}, secret 32+ characters',
      );
    }
    return { id, secret: Buffer.from(secret, 'utf8') };
  });
}
