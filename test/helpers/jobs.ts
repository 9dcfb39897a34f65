import { openMigratedDatabase } from '../../src/backends.ts';
import { type Config, type ConfigInput, loadConfig } from '../../src/config/config.ts';
import type { Db } from '../../src/db/database.ts';
import { newId } from '../../src/db/ids.ts';
import { JobEngine } from '../../src/jobs/engine.ts';
import { JobRegistry, registerBuiltinTypes } from '../../src/jobs/registry.ts';
import { postgresSchema } from './conveyor.ts';
import { makeTempDir } from './tmp.ts';

export type Database = 'sqlite' | 'postgres';
export const DATABASES: Database[] = ['sqlite', 'postgres'];

/** A settable clock for claim-level tests: nothing in the engine reads Date.now() when given one. */
export class Clock {
  t = Date.UTC(2026, 10, 24, 12, 0, 0);
  now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface TestEngine {
  engine: JobEngine;
  db: Db;
  config: Config;
  registry: JobRegistry;
  /** Creates a tenant of `tier` (and a credit balance when given) and answers its id. */
  tenant(tier?: string, credits?: number | null): Promise<string>;
  /** A worker-id to claim with, as a real worker would have. */
  claim(slots: number, options?: { lanes?: string[] | null; workerId?: string }): Promise<any[]>;
  close(): Promise<void>;
}

export const quietLog = { info() {}, warn() {}, error() {} };

/** A migrated database (SQLite in a temporary folder, or a fresh PostgreSQL schema) and an engine on it. */
export async function startEngine(
  database: Database,
  overrides: ConfigInput = {},
  options: { registry?: JobRegistry; clock?: Clock } = {},
): Promise<TestEngine> {
  const dir = await makeTempDir('conveyor-jobs-');
  const schema = database === 'postgres' ? await postgresSchema() : undefined;
  const config = loadConfig(
    {},
    {
      dataDir: dir.path,
      logLevel: 'silent',
      ...(schema ? { databaseUrl: schema.url } : {}),
      ...overrides,
    },
  );
  const db = await openMigratedDatabase(config);
  const registry = options.registry ?? registerBuiltinTypes(new JobRegistry());
  const engine = new JobEngine(db, registry, config, options.clock ? { now: options.clock.now } : {});
  return {
    engine,
    db,
    config,
    registry,
    async tenant(tier = 'enterprise', credits = null) {
      const id = newId('ten');
      await db.kysely
        .insertInto('tenants')
        .values({ id, name: id, tier, created_at: Date.now(), credit_balance: credits })
        .execute();
      return id;
    },
    async claim(slots, claimOptions = {}) {
      const result = await engine.claimer.claim({
        workerId: claimOptions.workerId ?? 'wkr_test',
        slots,
        lanes: (claimOptions.lanes ?? null) as any,
        types: registry.types(),
      });
      return result.jobs;
    },
    async close() {
      await db.close();
      await schema?.drop();
      await dir.cleanup();
    },
  };
}

/** Polls `check` until it answers something truthy; fails after `timeoutMs` with `what`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Worker settings for tests: quick polls and heartbeats, so waiting is short without depending on timing. */
export const FAST_WORKER = { pollMs: 20, heartbeatMs: 50, progressIntervalMs: 0 };
