import type { Insertable, Transaction } from 'kysely';
import { isId, newId } from '../db/ids.ts';
import type { Database, JobsTable } from '../db/tables.ts';
import { ConveyorError } from '../errors.ts';
import { isLane, type Lane } from '../glossary.ts';
import { own } from '../own.ts';
import { type EngineContext, toJob } from './context.ts';
import { charge } from './credits.ts';
import { payloadHash, queueKey, secondsToNextUtcDay, utcDay } from './policy.ts';
import type { RegisteredType } from './registry.ts';
import { countDailyJobs } from './sql/daily-usage.ts';
import {
  enqueueTenant,
  freshSuccess,
  jobByIdempotencyKey,
  openBreakerUntil,
  tenantJobIds,
} from './sql/enqueue-checks.ts';
import { insertJobOnce, insertJobs } from './sql/insert-jobs.ts';
import type { EnqueueInput, EnqueueResult } from './types.ts';

/** Rows per multi-row insert: well inside SQLite's and PostgreSQL's limits on bound parameters. */
const INSERT_CHUNK = 250;

/** How many tenants the fast path's hint remembers before it starts again (a bound on memory, nothing more). */
const REMEMBERED_TENANTS = 10_000;

/** An enqueue request after validation: everything the insert needs, nothing left to check. */
interface Prepared {
  definition: RegisteredType;
  lane: Lane;
  payload: string;
  hash: string;
  runAt: number;
  breakerKey: string | null;
  idempotencyKey: string | null;
  parentId: string | null;
}

export interface EnqueueOptions {
  /** Join the caller's transaction, so that (say) an asset row and its processing job commit together. */
  trx?: Transaction<Database>;
  /** Who enqueued, for the credit ledger. */
  actor?: string;
}

/**
 * Enqueue: validation first (no database work for bad input), then one transaction that applies, in order,
 * idempotency (the same key returns the same job), freshness (an identical recent success is reused),
 * the tenant's daily limit (429 past it) and credits (402 when short). A refusal rolls everything back.
 */
export class Enqueuer {
  readonly #ctx: EngineContext;
  /** Tenants last seen without a credit balance, and their tier: the PostgreSQL fast path's hint. */
  readonly #plainTenants = new Map<string, string>();

  constructor(ctx: EngineContext) {
    this.#ctx = ctx;
  }

  async enqueue(tenantId: string, input: EnqueueInput, options: EnqueueOptions = {}): Promise<EnqueueResult> {
    const [result] = await this.enqueueMany(tenantId, [input], options);
    return result!;
  }

  /** All or nothing: one bad item (reported with its index) or one refusal enqueues none. */
  async enqueueMany(
    tenantId: string,
    inputs: readonly EnqueueInput[],
    options: EnqueueOptions = {},
  ): Promise<EnqueueResult[]> {
    if (inputs.length > this.#ctx.settings.batchMax) {
      throw new ConveyorError(
        'validation_failed',
        `A batch holds at most ${this.#ctx.settings.batchMax} jobs`,
        {
          extra: { limit: this.#ctx.settings.batchMax },
        },
      );
    }
    const now = this.#ctx.now();
    const prepared = inputs.map((input, index) =>
      this.#prepare(input, now, inputs.length > 1 ? index : null),
    );
    await this.#checkParents(tenantId, prepared, options.trx);
    if (!options.trx) {
      const fast = await this.#insertPlain(tenantId, prepared, now);
      if (fast) {
        this.#ctx.wakeHere();
        for (const r of fast) this.#ctx.emit('enqueued', r.job);
        return fast;
      }
    }
    const run = async (trx: Transaction<Database>) => {
      const tenant = await enqueueTenant(trx, tenantId);
      if (!tenant) throw new ConveyorError('not_found', 'No such tenant');
      this.#rememberTenant(tenantId, tenant);
      const results = new Array<EnqueueResult>(prepared.length);
      const usesCredits = tenant.credit_balance !== null;
      // Most jobs need no lookup before their insert (no idempotency key, freshness, breaker or charge):
      // those go in multi-row inserts, which is what makes a 1,000-job batch one statement, not 1,000.
      const plain: { index: number; row: Insertable<JobsTable> }[] = [];
      for (const [index, item] of prepared.entries()) {
        const charged = usesCredits && (item.definition.cost ?? 0) > 0;
        if (isPlain(item) && !charged) {
          plain.push({ index, row: this.#row(tenantId, item, item.runAt, 0, now) });
        } else {
          results[index] = await this.#insert(trx, tenantId, item, now, usesCredits, options.actor);
        }
      }
      for (let i = 0; i < plain.length; i += INSERT_CHUNK) {
        const chunk = plain.slice(i, i + INSERT_CHUNK);
        const rows = await insertJobs(
          trx,
          chunk.map((p) => p.row),
        );
        const byId = new Map(rows.map((r) => [r.id, r]));
        for (const { index, row } of chunk)
          results[index] = { job: toJob(byId.get(row.id)!), outcome: 'created' };
      }
      const created = results.filter((r) => r.outcome === 'created');
      await this.#countDaily(trx, tenantId, tenant.tier, created.length, now);
      if (created.length > 0) await (options.trx ? this.#ctx.wake(trx) : this.#ctx.wakeOthers(trx));
      return results;
    };
    const results = options.trx ? await run(options.trx) : await this.#ctx.db.transaction().execute(run);
    const created = results.filter((r) => r.outcome === 'created');
    if (!options.trx && created.length > 0) this.#ctx.wakeHere();
    for (const r of created) this.#ctx.emit('enqueued', r.job);
    return results;
  }

  /**
   * The fast path for the common enqueue, where the database has one (sql/enqueue-plain.ts, PostgreSQL):
   * jobs that need no lookup first (see `isPlain`), for a tenant last seen without credits. It is one
   * statement instead of a transaction of five round trips (BEGIN, tenant, INSERT, NOTIFY, COMMIT), which
   * at hundreds of enqueues a second is most of the database's and the pool's work. When the statement's
   * checks refuse, it inserts nothing and this answers null, and the caller takes the full path, which
   * finds out why (no such tenant, credits, 429) and refreshes what is remembered of the tenant.
   */
  async #insertPlain(
    tenantId: string,
    prepared: readonly Prepared[],
    now: number,
  ): Promise<EnqueueResult[] | null> {
    const insertPlainJobs = this.#ctx.statements.insertPlainJobs;
    const tier = this.#plainTenants.get(tenantId);
    if (!insertPlainJobs || tier === undefined) return null;
    if (prepared.length === 0 || !prepared.every(isPlain)) return null;
    const rows = prepared.map((item) => this.#row(tenantId, item, item.runAt, 0, now));
    const dailyLimit = own(this.#ctx.settings.tierDailyLimit, tier) ?? 0;
    if (dailyLimit > 0 && rows.length > dailyLimit) return null;
    const inserted = await insertPlainJobs(this.#ctx.db, {
      tenantId,
      tier,
      rows,
      dailyLimit,
      day: utcDay(now),
      instanceId: this.#ctx.instanceId,
    });
    if (inserted.length === 0) {
      this.#plainTenants.delete(tenantId);
      return null;
    }
    const byId = new Map(inserted.map((row) => [row.id, row]));
    return rows.map((row) => ({ job: toJob(byId.get(row.id as string)!), outcome: 'created' as const }));
  }

  /**
   * A parent must be a job of the same tenant: a parent id is shown with the job and followed by whoever
   * reads it, so naming another tenant's job (or one that never was) would store a reference nobody may
   * follow and confirm nothing. Unknown and foreign ids are the same 404, so neither leaks existence. A
   * parent that retention deletes later leaves the id as history, as it does for any finished parent.
   */
  async #checkParents(
    tenantId: string,
    prepared: readonly Prepared[],
    trx: Transaction<Database> | undefined,
  ): Promise<void> {
    const ids = [...new Set(prepared.flatMap((p) => p.parentId ?? []))];
    if (ids.length === 0) return;
    const shaped = ids.filter((id) => isId('job', id));
    const known = new Set(
      shaped.length === 0 ? [] : await tenantJobIds(trx ?? this.#ctx.db, tenantId, shaped),
    );
    const missing = ids.find((id) => !known.has(id));
    if (missing !== undefined) {
      throw new ConveyorError('not_found', `No such parent job ${JSON.stringify(missing)}`, {
        extra: { parentId: missing },
      });
    }
  }

  /** Remembers (boundedly) whether a tenant can take the fast path: it has no credit balance. */
  #rememberTenant(tenantId: string, tenant: { tier: string; credit_balance: number | null }): void {
    if (tenant.credit_balance !== null) {
      this.#plainTenants.delete(tenantId);
      return;
    }
    if (this.#plainTenants.size >= REMEMBERED_TENANTS) this.#plainTenants.clear();
    this.#plainTenants.set(tenantId, tenant.tier);
  }

  #prepare(input: EnqueueInput, now: number, index: number | null): Prepared {
    const where = index === null ? '' : `jobs[${index}]: `;
    const bad = (detail: string, extra: Record<string, unknown> = {}) =>
      new ConveyorError('validation_failed', where + detail, {
        extra: { ...extra, ...(index === null ? {} : { index }) },
      });
    const definition = this.#ctx.registry.get(input.type);
    if (!definition)
      throw bad(`Unknown job type ${JSON.stringify(input.type)}`, { knownTypes: this.#ctx.registry.types() });
    if (input.lane !== undefined && !isLane(input.lane))
      throw bad(`Unknown lane ${JSON.stringify(input.lane)}`);
    const payloadValue = input.payload ?? {};
    let payload: string;
    try {
      payload = JSON.stringify(payloadValue);
    } catch (error) {
      // A payload handed over in code (HTTP bodies are bounded at the door, src/http/json-body.ts) may be
      // circular or nest deeper than the stack goes.
      throw bad(`The payload cannot be stored as JSON: ${(error as Error).message}`);
    }
    if (Buffer.byteLength(payload) > this.#ctx.settings.maxPayloadBytes) {
      throw bad(`The payload is larger than ${this.#ctx.settings.maxPayloadBytes} bytes`, {
        limit: this.#ctx.settings.maxPayloadBytes,
      });
    }
    // Validate a copy: Ajv fills defaults in place, and the stored payload should be the validated one.
    const checked = JSON.parse(payload) as unknown;
    if (!definition.validate(checked)) {
      const errors = (definition.validate.errors ?? []).map((e) => ({
        path: `/payload${e.instancePath}`,
        message: e.message,
      }));
      throw bad(`The payload does not match the schema of ${definition.type}`, { errors });
    }
    const runAt = input.runAt ?? now;
    if (!Number.isFinite(runAt)) throw bad('runAt is not a valid time');
    if (runAt > now + this.#ctx.settings.maxDelayMs) {
      throw bad(`runAt is more than ${this.#ctx.settings.maxDelayMs / 1000} s ahead`, {
        limit: this.#ctx.settings.maxDelayMs / 1000,
      });
    }
    const breakerKey = input.breakerKey ?? definition.breakerKey?.(checked) ?? null;
    return {
      definition,
      lane: input.lane ?? definition.lane ?? 'normal',
      payload: JSON.stringify(checked),
      hash: payloadHash(definition.type, checked),
      runAt: Math.max(Math.trunc(runAt), 0),
      breakerKey,
      idempotencyKey: input.idempotencyKey ?? null,
      parentId: input.parentId ?? null,
    };
  }

  async #insert(
    trx: Transaction<Database>,
    tenantId: string,
    item: Prepared,
    now: number,
    usesCredits: boolean,
    actor: string | undefined,
  ): Promise<EnqueueResult> {
    const key = item.idempotencyKey;
    if (key !== null) {
      const found = await jobByIdempotencyKey(trx, tenantId, key);
      if (found) return { job: toJob(found), outcome: 'existing' };
    }
    if (item.definition.freshnessMs) {
      const since = now - item.definition.freshnessMs;
      const fresh = await freshSuccess(trx, tenantId, item.definition.type, item.hash, since);
      if (fresh) return { job: toJob(fresh), outcome: 'fresh' };
    }
    let runAt = item.runAt;
    if (item.breakerKey !== null) {
      // A job that needs an open breaker waits for it from the start, as the queued ones were deferred.
      const openUntil = await openBreakerUntil(trx, item.breakerKey);
      if (openUntil) runAt = Math.max(runAt, openUntil);
    }
    const cost = usesCredits ? (item.definition.cost ?? 0) : 0;
    const inserted = await insertJobOnce(trx, this.#row(tenantId, item, runAt, cost, now));
    if (!inserted) {
      // Another enqueue with the same key won the race past the lookup above: its job is the answer.
      const winner = key === null ? undefined : await jobByIdempotencyKey(trx, tenantId, key);
      if (!winner) throw new Error('idempotent enqueue found neither its insert nor the conflicting job');
      return { job: toJob(winner), outcome: 'existing' };
    }
    if (cost > 0) {
      await charge(trx, {
        tenantId,
        jobId: inserted.id,
        amount: cost,
        reason: `reserve ${item.definition.type}`,
        now,
        actor: actor ?? null,
      });
    }
    return { job: toJob(inserted), outcome: 'created' };
  }

  #row(tenantId: string, item: Prepared, runAt: number, cost: number, now: number): Insertable<JobsTable> {
    return {
      id: newId('job', now),
      tenant_id: tenantId,
      type: item.definition.type,
      lane: item.lane,
      queue: queueKey(item.lane, item.definition.type, tenantId),
      state: 'queued',
      payload: item.payload,
      payload_hash: item.hash,
      errors: '[]',
      attempts: 0,
      max_attempts: this.#ctx.maxAttemptsOf(item.definition.type),
      run_at: runAt,
      idempotency_key: item.idempotencyKey,
      parent_id: item.parentId,
      breaker_key: item.breakerKey,
      cost,
      created_at: now,
      updated_at: now,
    };
  }

  /** Counts created jobs against the tenant's daily limit, atomically; 429 until midnight UTC past it. */
  async #countDaily(
    trx: Transaction<Database>,
    tenantId: string,
    tier: string,
    created: number,
    now: number,
  ) {
    if (created === 0) return;
    const limit = own(this.#ctx.settings.tierDailyLimit, tier) ?? 0;
    const refuse = () =>
      new ConveyorError('rate_limited', `The daily limit of ${limit} jobs for the ${tier} tier is reached`, {
        headers: { 'retry-after': String(secondsToNextUtcDay(now)) },
        extra: { limit },
      });
    if (limit === 0) return;
    if (created > limit) throw refuse();
    if (!(await countDailyJobs(trx, tenantId, utcDay(now), created, limit))) throw refuse();
  }
}

/** A job that needs no lookup before its insert: no idempotency key, freshness window or breaker. */
function isPlain(item: Prepared): boolean {
  return item.idempotencyKey === null && !item.definition.freshnessMs && item.breakerKey === null;
}
