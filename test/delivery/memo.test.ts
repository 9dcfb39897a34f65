import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Memo } from '../../src/delivery/memo.ts';

/** A load that counts its calls and resolves (or rejects) when told to. */
function controlled<V>() {
  let calls = 0;
  const pending: { resolve(value: V): void; reject(error: unknown): void }[] = [];
  return {
    load: () => {
      calls++;
      return new Promise<V>((resolve, reject) => pending.push({ resolve, reject }));
    },
    get calls() {
      return calls;
    },
    resolve: (value: V) => pending.shift()!.resolve(value),
    reject: (error: unknown) => pending.shift()!.reject(error),
  };
}

const value = (v: string) => () => Promise.resolve(v);

/** The Memo contract (src/delivery/memo.ts): `getNow` answers what `get` would have, at once, or nothing. */
describe('Memo', () => {
  it('answers at once only what a load has brought, and never starts one', async () => {
    const memo = new Memo<string>();
    const source = controlled<string>();
    assert.equal(memo.getNow('a'), undefined);
    assert.equal(source.calls, 0, 'getNow loads nothing');
    const got = memo.get('a', source.load);
    assert.equal(memo.getNow('a'), undefined, 'nothing while the load runs');
    source.resolve('A');
    assert.equal(await got, 'A');
    assert.equal(memo.getNow('a'), 'A');
    assert.equal(await memo.get('a', source.load), 'A', 'get answers what getNow does');
    assert.equal(source.calls, 1);
  });

  it('shares one load between concurrent callers', async () => {
    const memo = new Memo<string>();
    const source = controlled<string>();
    const all = Promise.all([
      memo.get('a', source.load),
      memo.get('a', source.load),
      memo.get('a', source.load),
    ]);
    source.resolve('A');
    assert.deepEqual(await all, ['A', 'A', 'A']);
    assert.equal(source.calls, 1);
  });

  it('never remembers a miss or a failure, and hands a failure to every caller that waited', async () => {
    const memo = new Memo<string>();
    assert.equal(await memo.get('a', () => Promise.resolve(null)), null);
    assert.equal(await memo.get('b', () => Promise.resolve(undefined)), undefined);
    assert.equal(memo.size, 0);
    const source = controlled<string>();
    const waiting = [memo.get('c', source.load), memo.get('c', source.load)];
    const failure = new Error('storage failed');
    source.reject(failure);
    for (const caller of waiting) await assert.rejects(caller, (error) => error === failure);
    assert.equal(memo.getNow('c'), undefined);
    assert.equal(await memo.get('c', value('C')), 'C', 'the next get loads again');
    await assert.rejects(
      memo.get('d', () => {
        throw failure;
      }),
      (error) => error === failure,
      'a load that throws rejects',
    );
  });

  it('answers a value `keep` refuses, without remembering it', async () => {
    const memo = new Memo<string>({ keep: (v) => v.length <= 3 });
    assert.equal(await memo.get('short', value('abc')), 'abc');
    assert.equal(await memo.get('long', value('abcd')), 'abcd');
    assert.equal(memo.getNow('short'), 'abc');
    assert.equal(memo.getNow('long'), undefined);
  });

  it('answers a value for its TTL and not after', async () => {
    const clock = { now: 1_000 };
    const memo = new Memo<string>({ ttlMs: 500, now: () => clock.now });
    await memo.get('a', value('A'));
    clock.now += 499;
    assert.equal(memo.getNow('a'), 'A');
    clock.now += 1;
    assert.equal(memo.getNow('a'), undefined, 'expired');
    assert.equal(await memo.get('a', value('A2')), 'A2', 'loaded again');
  });

  it('with nothing to hold, remembers nothing and shares no load', async () => {
    for (const options of [{ ttlMs: 0 }, { maxEntries: 0 }, { maxWeight: 0 }]) {
      const memo = new Memo<string>(options);
      const source = controlled<string>();
      const first = memo.get('a', source.load);
      const second = memo.get('a', source.load);
      assert.equal(source.calls, 2, JSON.stringify(options));
      source.resolve('A');
      source.resolve('A');
      await Promise.all([first, second]);
      memo.set('b', 'B');
      assert.equal(memo.getNow('a'), undefined);
      assert.equal(memo.getNow('b'), undefined);
    }
  });

  it('forgets the least recently used entries first, and a getNow counts as a use', async () => {
    const memo = new Memo<Buffer>({ maxWeight: 8, weigh: (b) => b.length });
    const loads: string[] = [];
    const blob = (name: string) => () => {
      loads.push(name);
      return Promise.resolve(Buffer.alloc(4, name));
    };
    await memo.get('a', blob('a'));
    await memo.get('b', blob('b'));
    assert.equal(memo.getNow('a')?.toString(), 'aaaa'); // a is now the most recent
    await memo.get('c', blob('c')); // forgets b
    assert.equal(memo.weight, 8);
    assert.equal(memo.getNow('b'), undefined);
    await memo.get('a', blob('a'));
    await memo.get('b', blob('b')); // forgets c
    assert.deepEqual(loads, ['a', 'b', 'c', 'b']);
    assert.equal(memo.getNow('c'), undefined);

    const counted = new Memo<string>({ maxEntries: 2 });
    counted.set('x', 'X');
    counted.set('y', 'Y');
    counted.set('z', 'Z');
    assert.deepEqual([counted.getNow('x'), counted.getNow('y'), counted.getNow('z')], [undefined, 'Y', 'Z']);
  });

  it('forgets on delete and clear, and does not remember a load that was running then', async () => {
    const memo = new Memo<string>();
    memo.set('a', 'A');
    memo.set('b', 'B');
    memo.delete('a');
    assert.equal(memo.getNow('a'), undefined);
    assert.equal(memo.getNow('b'), 'B');
    memo.clear();
    assert.equal(memo.getNow('b'), undefined);
    assert.equal(memo.size, 0);

    for (const forget of [() => memo.clear(), () => memo.delete('c')]) {
      const before = controlled<string>();
      const stale = memo.get('c', before.load);
      forget();
      const after = controlled<string>();
      const fresh = memo.get('c', after.load);
      assert.equal(after.calls, 1, 'a caller after the change does not join the load from before it');
      before.resolve('old');
      assert.equal(await stale, 'old', 'the load still answers its own callers');
      assert.equal(memo.getNow('c'), undefined, 'but is not remembered');
      after.resolve('new');
      assert.equal(await fresh, 'new');
      assert.equal(memo.getNow('c'), 'new');
      memo.clear();
    }
  });

  it('remembers a value set from elsewhere, replacing the old one', () => {
    const memo = new Memo<string>({ maxWeight: 10, weigh: (v) => v.length });
    memo.set('a', 'one');
    memo.set('a', 'three');
    assert.equal(memo.getNow('a'), 'three');
    assert.equal(memo.weight, 5);
  });
});
