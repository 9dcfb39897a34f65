/**
 * What the job benchmarks share: a Conveyor engine on a fresh SQLite file or PostgreSQL schema, a probe
 * job type that measures enqueue-to-start latency, percentiles, and waiting for a quiet machine.
 */
import { cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { openMigratedDatabase } from '../src/backends.ts';
import { type Config, type ConfigInput, loadConfig } from '../src/config/config.ts';
import type { Db } from '../src/db/database.ts';
import { newId } from '../src/db/ids.ts';
import { JobEngine } from '../src/jobs/engine.ts';
import { JobRegistry, registerBuiltinTypes } from '../src/jobs/registry.ts';
import { postgresSchema } from '../test/helpers/conveyor.ts';
import { makeTempDir } from '../test/helpers/tmp.ts';

export { POSTGRES_URL } from '../test/helpers/conveyor.ts';
export type Database = 'sqlite' | 'postgres';

/** Every start of a `probe` job is reported here with its enqueue-to-start latency in ms. */
export const probes = {
  onStart: (_latencyMs: number, _payload: { t: number; n?: number; tenant?: string }) => {},
};

export function benchRegistry(): JobRegistry {
  return registerBuiltinTypes(new JobRegistry()).register<{ t: number; n?: number; tenant?: string }>({
    type: 'probe',
    schema: { type: 'object', properties: { t: { type: 'number' } }, required: ['t'] },
    handler: async (payload) => {
      probes.onStart(Date.now() - payload.t, payload);
      return null;
    },
  });
}

/** Limits off (lanes, tiers), so what is measured is the engine, not the policy's defaults. */
export const UNLIMITED: ConfigInput = {
  jobLaneConcurrency: { critical: 0, high: 0, normal: 0, low: 0 },
  jobTierConcurrency: { free: 0, standard: 0, premium: 0, enterprise: 0 },
  jobTierDailyLimit: { free: 0, standard: 0, premium: 0, enterprise: 0 },
  logLevel: 'silent',
};

export interface Bench {
  db: Db;
  engine: JobEngine;
  config: Config;
  tenant(tier?: string): Promise<string>;
  close(): Promise<void>;
}

export async function openBench(database: Database, overrides: ConfigInput = {}): Promise<Bench> {
  const dir = await makeTempDir('conveyor-bench-jobs-');
  let dropSchema = async () => {};
  const settings: { -readonly [K in keyof ConfigInput]: ConfigInput[K] } = {
    ...UNLIMITED,
    dataDir: dir.path,
    ...overrides,
  };
  if (database === 'postgres') {
    const schema = await postgresSchema('bench');
    settings.databaseUrl = schema.url;
    dropSchema = schema.drop;
  }
  const config = loadConfig({}, settings);
  const db = await openMigratedDatabase(config);
  const engine = new JobEngine(db, benchRegistry(), config);
  return {
    db,
    engine,
    config,
    async tenant(tier = 'enterprise') {
      const id = newId('ten');
      await db.kysely.insertInto('tenants').values({ id, name: id, tier, created_at: Date.now() }).execute();
      return id;
    },
    async close() {
      await db.close();
      await dropSchema();
      await dir.cleanup();
    },
  };
}

export const silent = { info() {}, warn() {}, error() {} };

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function summary(values: number[]): { n: number; p50: number; p99: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

/** Waits (at most `timeoutS`) until the 1-minute load average is under a third of the cores. */
export async function quiet(log: (line: string) => void, timeoutS = 120): Promise<void> {
  const limit = cpus().length / 3;
  const deadline = Date.now() + timeoutS * 1000;
  while (loadavg()[0]! > limit && Date.now() < deadline) {
    log(`  waiting for a quiet machine (load ${loadavg()[0]!.toFixed(2)})`);
    await sleep(10_000);
  }
}

export async function countState(db: Db, state: string): Promise<number> {
  const row = await db.kysely
    .selectFrom('jobs')
    .where('state', '=', state)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
