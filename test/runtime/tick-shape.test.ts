import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/child.ts';

const run = promisify(execFile);
const MODULE = new URL('src/runtime/tick-shape.ts', `file://${ROOT}`).href;

/**
 * A child that ticks, collects all garbage, ticks again and prints V8's feedback for `process.nextTick`:
 * the state of every computed-key store of the tick-object literal, one line each.
 */
const CHILD = `
import { keepTickObjectShape } from ${JSON.stringify(MODULE)};
if (process.argv[1] === 'keep') keepTickObjectShape();
const ticks = async () => { for (let i = 0; i < 200; i++) await new Promise((r) => process.nextTick(r)); };
await ticks();
globalThis.gc();
globalThis.gc();
await ticks();
%DebugPrint(process.nextTick);
`;

async function literalStores(mode: 'keep' | 'plain'): Promise<string[]> {
  const { stdout } = await run(
    process.execPath,
    ['--allow-natives-syntax', '--expose-gc', '--input-type=module', '-e', CHILD, mode],
    { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout.split('\n').filter((line) => line.includes('DefineKeyedOwnPropertyInLiteral'));
}

describe('keepTickObjectShape', () => {
  it('keeps the tick-object literal stores monomorphic across a full collection', async () => {
    const stores = await literalStores('keep');
    assert.ok(stores.length > 0, 'V8 printed no feedback for the tick-object literal');
    assert.deepEqual(
      stores.filter((line) => line.includes('MEGAMORPHIC')),
      [],
    );
  });

  it('is needed: without it the same run leaves a store megamorphic', async () => {
    // If this fails after a Node upgrade, V8 or Node fixed the slow path and src/runtime/tick-shape.ts can go.
    const stores = await literalStores('plain');
    assert.ok(stores.some((line) => line.includes('MEGAMORPHIC')));
  });
});
