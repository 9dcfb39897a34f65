import type { Kysely } from 'kysely';
import { isId, newId } from '../db/ids.ts';
import type { Database, Role } from '../db/tables.ts';
import { ConveyorError, notFound } from '../errors.ts';
import type { Tier } from '../glossary.ts';
import { audit } from './audit.ts';
import { generateApiKey, hashSecret, looksLikeApiKey, visiblePrefix } from './keys.ts';
import { type Principal, requireOperator, requireRole } from './principal.ts';

export interface ApiKeyView {
  id: string;
  tenantId: string;
  role: Role;
  operator: boolean;
  name: string | null;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** last_used_at is refreshed at most this often, so authentication is not a write per request. */
const LAST_USED_RESOLUTION_MS = 60_000;

export class TenancyService {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /**
   * On an empty database, creates the default tenant and an operator admin key (the given one, or a new
   * one). Answers the key only when it was generated here, so the caller can print it once.
   */
  async bootstrap(
    adminKey: string | undefined,
  ): Promise<{ tenantId: string; generatedKey: string | null } | null> {
    return this.#db.transaction().execute(async (tx) => {
      const existing = await tx.selectFrom('tenants').select('id').limit(1).executeTakeFirst();
      if (existing) return null;
      if (adminKey !== undefined && !looksLikeApiKey(adminKey)) {
        throw new ConveyorError(
          'bad_request',
          'CONVEYOR_ADMIN_KEY must start with cvk_ and have 20+ characters',
        );
      }
      const key = adminKey ?? generateApiKey();
      const now = Date.now();
      const tenantId = newId('ten');
      await tx
        .insertInto('tenants')
        .values({ id: tenantId, name: 'default', tier: 'enterprise', created_at: now })
        .execute();
      const keyId = newId('key');
      await tx
        .insertInto('api_keys')
        .values({
          id: keyId,
          tenant_id: tenantId,
          role: 'admin',
          operator: 1,
          name: 'bootstrap',
          prefix: visiblePrefix(key),
          hash: hashSecret(key),
          created_at: now,
          last_used_at: null,
          revoked_at: null,
        })
        .execute();
      await audit(tx, { tenantId, actor: null, action: 'bootstrap', target: keyId });
      return { tenantId, generatedKey: adminKey === undefined ? key : null };
    });
  }

  /** Resolves an API key to its principal, or null when unknown or revoked. */
  async authenticateKey(key: string): Promise<Principal | null> {
    if (!looksLikeApiKey(key)) return null;
    const row = await this.#db
      .selectFrom('api_keys')
      .select(['id', 'tenant_id', 'role', 'operator', 'revoked_at', 'last_used_at'])
      .where('hash', '=', hashSecret(key))
      .executeTakeFirst();
    if (!row || row.revoked_at !== null) return null;
    const now = Date.now();
    if (row.last_used_at === null || now - row.last_used_at > LAST_USED_RESOLUTION_MS) {
      await this.#db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', row.id).execute();
    }
    return {
      tenantId: row.tenant_id,
      role: row.role,
      operator: row.operator === 1,
      keyId: row.id,
      actor: row.id,
    };
  }

  async tenantExists(tenantId: string): Promise<boolean> {
    if (!isId('ten', tenantId)) return false;
    const row = await this.#db
      .selectFrom('tenants')
      .select('id')
      .where('id', '=', tenantId)
      .executeTakeFirst();
    return row !== undefined;
  }

  async createTenant(by: Principal, input: { name: string; tier: Tier }) {
    requireOperator(by);
    const tenant = { id: newId('ten'), name: input.name, tier: input.tier, created_at: Date.now() };
    await this.#db.transaction().execute(async (tx) => {
      await tx.insertInto('tenants').values(tenant).execute();
      await audit(tx, {
        tenantId: tenant.id,
        actor: by.actor,
        action: 'tenant.create',
        target: tenant.id,
        details: input,
      });
    });
    return {
      id: tenant.id,
      name: tenant.name,
      tier: tenant.tier,
      createdAt: new Date(tenant.created_at).toISOString(),
    };
  }

  async listTenants(by: Principal) {
    requireOperator(by);
    const rows = await this.#db.selectFrom('tenants').selectAll().orderBy('id').execute();
    return rows.map((t) => ({
      id: t.id,
      name: t.name,
      tier: t.tier,
      createdAt: new Date(t.created_at).toISOString(),
    }));
  }

  /**
   * A tenant admin creates keys for its own tenant; an operator for any tenant. Only an operator can make
   * another operator key. The key itself is answered once and never stored.
   */
  async createKey(
    by: Principal,
    input: { tenantId?: string; role: Role; name?: string; operator?: boolean },
  ): Promise<{ key: string; view: ApiKeyView }> {
    requireRole(by, 'admin');
    const tenantId = input.tenantId ?? by.tenantId;
    if (tenantId !== by.tenantId) {
      // A tenant admin must not learn whether another tenant exists: same answer as a missing one.
      if (!by.operator) throw notFound('tenant');
    }
    if (!(await this.tenantExists(tenantId))) throw notFound('tenant');
    if (input.operator && !by.operator)
      throw new ConveyorError('forbidden', 'Only an operator may create operator keys');
    const key = generateApiKey();
    const row = {
      id: newId('key'),
      tenant_id: tenantId,
      role: input.role,
      operator: input.operator ? 1 : 0,
      name: input.name ?? null,
      prefix: visiblePrefix(key),
      hash: hashSecret(key),
      created_at: Date.now(),
      last_used_at: null,
      revoked_at: null,
    };
    await this.#db.transaction().execute(async (tx) => {
      await tx.insertInto('api_keys').values(row).execute();
      await audit(tx, {
        tenantId,
        actor: by.actor,
        action: 'key.create',
        target: row.id,
        details: { role: input.role, operator: Boolean(input.operator) },
      });
    });
    return { key, view: keyView(row) };
  }

  async listKeys(by: Principal, options: { tenantId?: string; limit: number; cursor?: string }) {
    requireRole(by, 'admin');
    const tenantId = options.tenantId ?? by.tenantId;
    if (tenantId !== by.tenantId && !by.operator) throw notFound('tenant');
    let query = this.#db.selectFrom('api_keys').selectAll().where('tenant_id', '=', tenantId);
    if (options.cursor) query = query.where('id', '>', options.cursor);
    const rows = await query
      .orderBy('id')
      .limit(options.limit + 1)
      .execute();
    const page = rows.slice(0, options.limit);
    return { items: page.map(keyView), nextCursor: rows.length > options.limit ? page.at(-1)!.id : null };
  }

  async revokeKey(by: Principal, keyId: string): Promise<void> {
    requireRole(by, 'admin');
    if (!isId('key', keyId)) throw notFound('key');
    await this.#db.transaction().execute(async (tx) => {
      let query = tx.selectFrom('api_keys').select(['id', 'tenant_id', 'revoked_at']).where('id', '=', keyId);
      if (!by.operator) query = query.where('tenant_id', '=', by.tenantId);
      const row = await query.executeTakeFirst();
      if (!row) throw notFound('key');
      if (row.revoked_at !== null) return;
      await tx.updateTable('api_keys').set({ revoked_at: Date.now() }).where('id', '=', keyId).execute();
      await audit(tx, { tenantId: row.tenant_id, actor: by.actor, action: 'key.revoke', target: keyId });
    });
  }
}

function keyView(row: Database['api_keys']): ApiKeyView {
  const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
  return {
    id: row.id,
    tenantId: row.tenant_id,
    role: row.role,
    operator: row.operator === 1,
    name: row.name,
    prefix: row.prefix,
    createdAt: new Date(row.created_at).toISOString(),
    lastUsedAt: iso(row.last_used_at),
    revokedAt: iso(row.revoked_at),
  };
}
