/**
 * The job engine's drain, two builds side by side in one run: a commit (`--ref`, the "before") and the
 * working tree (the "after"). Each measurement is a fresh process running that build's own engine through
 * its own bench/jobs-setup.ts: N no-op jobs enqueued in batches of 1,000, then drained by one worker at
 * concurrency 50 (the drain of bench/jobs.ts's throughput scenario). Builds alternate, order swapped
 * every round, on each database, so a busy minute hits both alike. Reported: jobs/s and the process's CPU
 * µs per job (steadier than jobs/s on a shared machine), median of the rounds, and after ÷ before.
 *
 *   node_modules/.bin/node bench/jobs-ab.ts --ref <commit> [--rounds 6] [--jobs 20000]
 *     [--databases sqlite,postgres]
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    ref: { type: 'string' },
    rounds: { type: 'string', default: '6' },
    jobs: { type: 'string', default: '20000' },
    databases: { type: 'string', default: 'sqlite,postgres' },
    measure: { type: 'string' },
    database: { type: 'string' },
  },
});

interface Sample {
  perSecond: number;
  cpuUsPerJob: number;
}

if (values.measure) {
  console.log(JSON.stringify(await measure(values.measure, values.database!, Number(values.jobs))));
  process.exit(0);
}
if (!values.ref) {
  console.error(
    'usage: bench/jobs-ab.ts --ref <commit> [--rounds N] [--jobs N] [--databases sqlite,postgres]',
  );
  process.exit(2);
}

const work = await mkdtemp(join(tmpdir(), 'conveyor-jobs-ab-'));
try {
  const before = join(work, 'before');
  const commit = git('rev-parse', '--verify', `${values.ref}^{commit}`);
  spawnSync('mkdir', ['-p', before]);
  const archive = spawnSync('sh', ['-c', `git archive ${commit} | tar -x -C '${before}'`], { cwd: ROOT });
  if (archive.status !== 0) throw new Error(`git archive ${commit} failed`);
  await symlink(join(ROOT, 'node_modules'), join(before, 'node_modules'));
  const builds = [
    { label: commit.slice(0, 12), root: before },
    { label: `working tree at ${git('rev-parse', '--short=12', 'HEAD')}`, root: ROOT },
  ];
  const databases = values.databases.split(',');
  const samples = new Map<string, Sample[][]>(databases.map((db) => [db, [[], []]]));
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const database of databases) {
      for (const index of round % 2 === 0 ? [0, 1] : [1, 0]) {
        const run = spawnSync(
          process.execPath,
          [
            import.meta.filename,
            '--measure',
            builds[index]!.root,
            '--database',
            database,
            '--jobs',
            values.jobs,
          ],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
        );
        if (run.status !== 0) throw new Error(`${builds[index]!.label} on ${database} failed`);
        samples.get(database)![index]!.push(JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Sample);
      }
    }
    process.stderr.write(`round ${round + 1}/${values.rounds} done\n`);
  }
  console.log(`Before: ${builds[0]!.label}\nAfter: ${builds[1]!.label}`);
  console.log(`${values.rounds} alternating rounds, ${values.jobs} no-op jobs drained at concurrency 50\n`);
  console.log(
    '| Database | jobs/s before / after (median) | CPU µs/job before / after (median) | after ÷ before (CPU) |',
  );
  console.log('|---|--:|--:|--:|');
  for (const [database, [a, b]] of samples) {
    const m = (xs: Sample[], key: keyof Sample) => median(xs.map((x) => x[key]));
    console.log(
      `| ${database} | ${Math.round(m(a!, 'perSecond'))} / ${Math.round(m(b!, 'perSecond'))} | ` +
        `${m(a!, 'cpuUsPerJob').toFixed(1)} / ${m(b!, 'cpuUsPerJob').toFixed(1)} | ` +
        `${(m(b!, 'cpuUsPerJob') / m(a!, 'cpuUsPerJob')).toFixed(3)} |`,
    );
  }
} finally {
  await rm(work, { recursive: true, force: true });
}

function git(...argv: string[]): string {
  const run = spawnSync('git', argv, { cwd: ROOT, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`git ${argv.join(' ')}: ${run.stderr}`);
  return run.stdout.trim();
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** One drain with the engine of the build at `root`, in this process. */
async function measure(root: string, database: string, jobs: number): Promise<Sample> {
  const { openBench, countState, silent } = await import(join(root, 'bench/jobs-setup.ts'));
  const bench = await openBench(database, { workerConcurrency: 50 });
  try {
    const tenant = await bench.tenant();
    for (let i = 0; i < jobs; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, jobs - i) }, () => ({ type: 'noop' }));
      await bench.engine.enqueuer.enqueueMany(tenant, batch);
    }
    const worker = bench.engine.createWorker(silent, { concurrency: 50, pollMs: 200 });
    const start = performance.now();
    const cpu = process.cpuUsage();
    await worker.start();
    while ((await countState(bench.db, 'succeeded')) < jobs) await new Promise((r) => setTimeout(r, 20));
    const seconds = (performance.now() - start) / 1000;
    const used = process.cpuUsage(cpu);
    await worker.stop(0);
    return { perSecond: jobs / seconds, cpuUsPerJob: (used.user + used.system) / jobs };
  } finally {
    await bench.close();
  }
}
