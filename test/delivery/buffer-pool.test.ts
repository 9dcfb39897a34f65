import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferPool, POISON } from '../../src/delivery/buffer-pool.ts';

const KiB = 1024;

describe('BufferPool', () => {
  it('lends views of exactly the asked length from power-of-two classes', () => {
    const pool = new BufferPool({ maxBufferBytes: 256 * KiB, maxPooledBytes: 1024 * KiB });
    const lease = pool.acquire(65_537);
    assert.equal(lease.bytes.length, 65_537);
    assert.equal(lease.bytes.buffer.byteLength, 128 * KiB);
    assert.equal(pool.acquire(0).bytes.length, 0);
  });

  it('reuses a released buffer for the next loan of its class, and only then', () => {
    const pool = new BufferPool({ maxBufferBytes: 256 * KiB, maxPooledBytes: 1024 * KiB });
    const first = pool.acquire(64 * KiB);
    const concurrent = pool.acquire(64 * KiB);
    assert.notEqual(concurrent.bytes.buffer, first.bytes.buffer, 'a buffer on loan is never lent twice');
    first.release();
    assert.equal(pool.pooledBytes, 64 * KiB);
    const next = pool.acquire(60 * KiB);
    assert.equal(next.bytes.buffer, first.bytes.buffer);
    assert.equal(pool.pooledBytes, 0);
    assert.notEqual(pool.acquire(64 * KiB).bytes.buffer, first.bytes.buffer, 'the pool is empty again');
  });

  it('ignores a second release of the same loan', () => {
    const pool = new BufferPool({ maxBufferBytes: 256 * KiB, maxPooledBytes: 1024 * KiB });
    const lease = pool.acquire(32 * KiB);
    lease.release();
    lease.release();
    assert.equal(pool.pooledBytes, 32 * KiB);
    const a = pool.acquire(32 * KiB);
    const b = pool.acquire(32 * KiB);
    assert.notEqual(a.bytes.buffer, b.bytes.buffer, 'the double release did not pool the buffer twice');
  });

  it('keeps at most maxPooledBytes of idle buffers', () => {
    const pool = new BufferPool({ maxBufferBytes: 256 * KiB, maxPooledBytes: 100 * KiB });
    const leases = [pool.acquire(64 * KiB), pool.acquire(64 * KiB), pool.acquire(16 * KiB)];
    for (const lease of leases) lease.release();
    assert.equal(pool.pooledBytes, 80 * KiB, 'the second 64 KiB buffer did not fit and was dropped');
  });

  it('overwrites a released buffer at once while poisonReleased is on', (t) => {
    BufferPool.poisonReleased = true;
    t.after(() => {
      BufferPool.poisonReleased = false;
    });
    const pool = new BufferPool({ maxBufferBytes: 256 * KiB, maxPooledBytes: 0 });
    const lease = pool.acquire(20 * KiB);
    const held = lease.bytes.fill(7);
    lease.release();
    assert.ok(
      held.every((byte) => byte === POISON),
      'even a buffer the pool does not keep',
    );
  });

  it('refuses lengths over its maximum', () => {
    const pool = new BufferPool({ maxBufferBytes: 64 * KiB, maxPooledBytes: 0 });
    assert.throws(() => pool.acquire(64 * KiB + 1), RangeError);
    assert.throws(() => pool.acquire(-1), RangeError);
  });
});
