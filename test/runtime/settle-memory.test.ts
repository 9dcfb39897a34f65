import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/child.ts';

const run = promisify(execFile);
const MODULE = new URL('src/runtime/settle-memory.ts', `file://${ROOT}`).href;

/**
 * A child that does what start-up does to the young generation (keeps many new objects alive for a
 * while, then drops them), settles, and reports the young generation's resident size around it.
 */
const CHILD = `
import { getHeapSpaceStatistics } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { settleMemory } from ${JSON.stringify(MODULE)};
const young = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').physical_space_size;
let kept = [];
for (let round = 0; round < 40; round++) {
  for (let i = 0; i < 50_000; i++) kept.push({ round, i, text: 'x'.repeat(i % 40) });
  if (kept.length > 400_000) kept = kept.slice(200_000);
  await new Promise((resolve) => setImmediate(resolve));
}
kept = undefined;
const before = young();
const settled = settleMemory();
console.log(JSON.stringify({
  before,
  after: young(),
  settled,
  globalGc: typeof globalThis.gc,
  contextGc: runInNewContext('typeof gc'),
}));
`;

describe('settleMemory', () => {
  it('returns an emptied young generation to the system and leaves no gc function behind', async () => {
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', CHILD], { cwd: ROOT });
    const report = JSON.parse(stdout) as {
      before: number;
      after: number;
      settled: { rssBefore: number; rssAfter: number; ms: number } | undefined;
      globalGc: string;
      contextGc: string;
    };
    assert.ok(report.before > 8 * 1024 * 1024, `the young generation grew to ${report.before} bytes only`);
    assert.ok(report.after < report.before / 4, `${report.before} -> ${report.after} bytes`);
    assert.ok(report.settled, 'no last-resort collection was available');
    assert.ok(report.settled.rssAfter < report.settled.rssBefore);
    assert.equal(report.globalGc, 'undefined');
    assert.equal(report.contextGc, 'undefined');
  });
});
