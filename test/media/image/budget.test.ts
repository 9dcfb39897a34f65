import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBudget } from '../../../src/media/image/index.ts';

/** A task that runs until `finish` is called, recording when it started. */
function held(log: string[], name: string) {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  return {
    task: async () => {
      log.push(`start ${name}`);
      await done;
      return name;
    },
    finish: () => finish(),
  };
}

/** Lets every settled promise's callbacks run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('MemoryBudget', () => {
  it('runs what fits at once and holds back what does not, until room is freed', async () => {
    const budget = new MemoryBudget(100);
    const log: string[] = [];
    const a = held(log, 'a');
    const b = held(log, 'b');
    const c = held(log, 'c');
    const ra = budget.run(60, a.task);
    const rb = budget.run(40, b.task);
    const rc = budget.run(30, c.task);
    await turn();
    assert.deepEqual(log, ['start a', 'start b']);
    assert.deepEqual(budget.load, { reserved: 100, running: 2, waiting: 1 });
    b.finish();
    assert.equal(await rb, 'b');
    await turn();
    assert.deepEqual(log, ['start a', 'start b', 'start c']);
    assert.deepEqual(budget.load, { reserved: 90, running: 2, waiting: 0 });
    a.finish();
    c.finish();
    assert.deepEqual(await Promise.all([ra, rc]), ['a', 'c']);
    assert.deepEqual(budget.load, { reserved: 0, running: 0, waiting: 0 });
  });

  it('serves in arrival order: a large request is not overtaken by small ones behind it', async () => {
    const budget = new MemoryBudget(100);
    const log: string[] = [];
    const first = held(log, 'first');
    const large = held(log, 'large');
    const small = held(log, 'small');
    const runs = [budget.run(50, first.task), budget.run(80, large.task), budget.run(10, small.task)];
    await turn();
    // 10 would fit next to 50, but the 80 ahead of it waits first.
    assert.deepEqual(log, ['start first']);
    first.finish();
    await turn();
    assert.deepEqual(log, ['start first', 'start large', 'start small']);
    large.finish();
    small.finish();
    await Promise.all(runs);
  });

  it('caps a reservation at the whole budget, so that it runs alone rather than never', async () => {
    const budget = new MemoryBudget(100);
    assert.equal(await budget.run(5000, async () => budget.load.reserved), 100);
  });

  it('gives the room back when the task fails', async () => {
    const budget = new MemoryBudget(100);
    await assert.rejects(
      budget.run(100, async () => {
        throw new Error('decoder failed');
      }),
      /decoder failed/,
    );
    assert.deepEqual(budget.load, { reserved: 0, running: 0, waiting: 0 });
  });

  it('stops waiting on abort, reserving nothing, and lets those behind go on', async () => {
    const budget = new MemoryBudget(100);
    const log: string[] = [];
    const running = held(log, 'running');
    const r = budget.run(70, running.task);
    const controller = new AbortController();
    const aborted = budget.run(50, async () => 'never', controller.signal);
    const behind = budget.run(30, async () => 'behind');
    await turn();
    assert.deepEqual(budget.load, { reserved: 70, running: 1, waiting: 2 });
    controller.abort(new Error('job cancelled'));
    await assert.rejects(aborted, /job cancelled/);
    assert.equal(await behind, 'behind');
    running.finish();
    await r;
    assert.deepEqual(budget.load, { reserved: 0, running: 0, waiting: 0 });
    // Already aborted: refused before reserving.
    await assert.rejects(
      budget.run(1, async () => 'x', controller.signal),
      /job cancelled/,
    );
  });
});
