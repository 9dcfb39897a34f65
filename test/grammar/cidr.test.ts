import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contains, parseCidr } from '../../src/grammar/cidr.ts';

describe('parseCidr', () => {
  it('reads single addresses as host routes and prefixes up to the family width', () => {
    assert.deepEqual(parseCidr('127.0.0.1'), { family: 4, base: 0x7f000001n, prefix: 32 });
    assert.deepEqual(parseCidr('10.0.0.0/8'), { family: 4, base: 0x0a000000n, prefix: 8 });
    assert.deepEqual(parseCidr(' ::1/128 '), { family: 6, base: 1n, prefix: 128 });
    assert.deepEqual(parseCidr('0.0.0.0/0'), { family: 4, base: 0n, prefix: 0 });
  });

  it('refuses malformed entries', () => {
    for (const s of [
      '',
      '10.0.0.0/33',
      '::/129',
      '10.0.0.0/',
      '10.0.0.0/-1',
      '10/8',
      'a/8',
      '1.2.3.4/8/8',
      'x',
    ]) {
      assert.equal(parseCidr(s), null, s);
    }
  });
});

describe('contains', () => {
  it('compares the prefix bits of one family only', () => {
    const net = parseCidr('10.0.0.0/8')!;
    assert.equal(contains(net, parseCidr('10.255.0.1')!), true);
    assert.equal(contains(net, parseCidr('11.0.0.0')!), false);
    assert.equal(contains(parseCidr('::/0')!, parseCidr('10.0.0.1')!), false);
    assert.equal(contains(parseCidr('::ffff:0:0/96')!, parseCidr('::ffff:7f00:1')!), true);
  });
});
