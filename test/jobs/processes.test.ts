import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CHILD_GUARD_MS, childEnv, MAIN, ROOT } from '../helpers/child.ts';
import { skipIfNoPostgres } from '../helpers/conveyor.ts';
import { DATABASES, startEngine } from '../helpers/jobs.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const JOBS = 5000;
const WORKERS = 4;
const KILL_EVERY = 500;

/** Settings a worker process needs to share the test engine's database, with quick leases and polls. */
function workerEnv(config: { dataDir: string; databaseUrl: string | undefined }, effects: string) {
  return childEnv({
    CONVEYOR_DATA_DIR: config.dataDir,
    ...(config.databaseUrl ? { CONVEYOR_DATABASE_URL: config.databaseUrl } : {}),
    CONVEYOR_JOB_MODULES: './test/fixtures/job-types.ts',
    CONVEYOR_LOG_LEVEL: 'warn',
    CONVEYOR_WORKER_CONCURRENCY: '10',
    CONVEYOR_JOB_LANE_CONCURRENCY: 'normal=0',
    CONVEYOR_JOB_TIER_CONCURRENCY: 'enterprise=0',
    CONVEYOR_JOB_LEASE_MS: '1500',
    CONVEYOR_JOB_HEARTBEAT_MS: '100',
    CONVEYOR_JOB_POLL_MS: '50',
    CONVEYOR_JOB_RETRY_BASE_MS: '10',
    CONVEYOR_JOB_RETRY_MAX_MS: '100',
    TEST_EFFECTS_DIR: effects,
  });
}

for (const database of DATABASES) {
  describe(`worker processes on ${database}`, async () => {
    const skip = await skipIfNoPostgres(database);

    test(`${JOBS} jobs through ${WORKERS} workers while one is SIGKILLed after every ${KILL_EVERY}: every job once`, {
      skip,
      timeout: 3 * CHILD_GUARD_MS,
    }, async () => {
      const t = await startEngine(database, { jobModules: './test/fixtures/job-types.ts' });
      const effects = await makeTempDir('conveyor-effects-');
      const env = workerEnv(t.config, effects.path);
      const workers: ChildProcess[] = [];
      const start = (i: number) => {
        workers[i] = spawn(process.execPath, [MAIN, 'worker'], {
          cwd: ROOT,
          env,
          stdio: ['ignore', 'ignore', 'inherit'],
        });
      };
      let kills = 0;
      try {
        const { buildRegistry } = await import('../../src/jobs/modules.ts');
        const registry = await buildRegistry(t.config);
        const { JobEngine } = await import('../../src/jobs/engine.ts');
        const engine = new JobEngine(t.db, registry, t.config);
        const tenant = await t.tenant('enterprise');
        for (let i = 0; i < JOBS; i += 1000) {
          await engine.enqueuer.enqueueMany(
            tenant,
            Array.from({ length: 1000 }, (_, n) => ({ type: 'record', payload: { n: i + n } })),
          );
        }
        for (let i = 0; i < WORKERS; i++) start(i);
        const count = async (state: string) =>
          Number(
            (
              await t.db.kysely
                .selectFrom('jobs')
                .where('state', '=', state)
                .select((eb) => eb.fn.countAll<number>().as('n'))
                .executeTakeFirstOrThrow()
            ).n,
          );
        // Each time another KILL_EVERY jobs have succeeded, kill a random worker mid-flight and start a fresh
        // one in its place. Counted in jobs, not seconds: a fresh worker takes 2 s to start on an idle
        // machine and 20 s or more on a busy one, and kills on a timer then left no worker running long
        // enough to drain the queue. Gives up only when no job has succeeded for a while.
        let succeeded = 0;
        let progressAt = Date.now();
        while (succeeded < JOBS) {
          await sleep(50);
          const now = await count('succeeded');
          if (now > succeeded) progressAt = Date.now();
          else assert.ok(Date.now() - progressAt < CHILD_GUARD_MS, `stuck at ${now} of ${JOBS} jobs`);
          if (Math.floor(now / KILL_EVERY) > Math.floor(succeeded / KILL_EVERY) && now < JOBS) {
            const i = Math.floor(Math.random() * WORKERS);
            workers[i]!.kill('SIGKILL');
            kills++;
            start(i);
          }
          succeeded = now;
        }
        const rows = await t.db.kysely.selectFrom('jobs').select(['id', 'state', 'result']).execute();
        assert.equal(rows.length, JOBS);
        assert.ok(rows.every((r) => r.state === 'succeeded'));
        const effectFiles = readdirSync(effects.path).filter((f) => f.startsWith('job_'));
        assert.equal(effectFiles.length, JOBS, 'exactly one effect per job');
        assert.deepEqual(new Set(effectFiles), new Set(rows.map((r) => r.id)));
        const runs = readFileSync(join(effects.path, 'runs.log'), 'utf8').trim().split('\n').length;
        assert.ok(runs >= JOBS);
        assert.ok(kills >= 1, 'at least one worker was killed mid-run');
        // (Printed, not asserted: how many runs the kills made happen twice.)
        console.log(
          `${database}: ${kills} kills, ${runs - JOBS} duplicate runs absorbed by the idempotent effect`,
        );
      } finally {
        for (const w of workers) w?.kill('SIGKILL');
        await t.close();
        await effects.cleanup();
      }
    });
  });
}
