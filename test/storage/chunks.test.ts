import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { FileSink, releaseChunk } from '../../src/storage/chunks.ts';
import { makeTempDir } from '../helpers/tmp.ts';

describe('releaseChunk', () => {
  it('empties a buffer that is the whole of its memory', () => {
    const chunk = Buffer.allocUnsafeSlow(65_536).fill(1);
    releaseChunk(chunk);
    assert.equal(chunk.length, 0);
    assert.equal(chunk.buffer.byteLength, 0);
    assert.equal(chunk.buffer.detached, true);
  });

  it('leaves slices and pooled buffers alone, since others share their memory', () => {
    const whole = Buffer.allocUnsafeSlow(1024).fill(2);
    const slice = whole.subarray(0, 512);
    releaseChunk(slice);
    assert.equal(slice.length, 512);
    assert.equal(whole[1023], 2);
    const tail = whole.subarray(512);
    releaseChunk(tail);
    assert.equal(tail.length, 512);
    const pooled = Buffer.from('small'); // a slice of Node's shared 8 KiB pool
    const neighbour = Buffer.from('other');
    releaseChunk(pooled);
    assert.equal(pooled.toString(), 'small');
    assert.equal(neighbour.toString(), 'other');
  });
});

describe('FileSink', () => {
  it('writes every byte in order, then hands each chunk to release', async () => {
    const dir = await makeTempDir('conveyor-chunks-');
    try {
      const chunks = Array.from({ length: 200 }, (_, i) => Buffer.allocUnsafeSlow(1000 + i).fill(i));
      const expected = createHash('sha256');
      for (const chunk of chunks) expected.update(chunk);
      const digest = expected.digest('hex');
      const released: number[] = [];
      const path = join(dir.path, 'out');
      await pipeline(
        Readable.from(chunks),
        new FileSink(path, (chunk) => {
          released.push(chunk.length);
          releaseChunk(chunk);
        }),
      );
      const written = await readFile(path);
      assert.equal(
        written.length,
        chunks.reduce((sum, _c, i) => sum + 1000 + i, 0),
      );
      assert.equal(createHash('sha256').update(written).digest('hex'), digest);
      assert.deepEqual(
        released,
        chunks.map((_c, i) => 1000 + i),
        'each chunk released once, after it was written',
      );
      assert.ok(chunks.every((c) => c.length === 0));
    } finally {
      await dir.cleanup();
    }
  });

  it('refuses to overwrite a file, and fails like the source when the source fails', async () => {
    const dir = await makeTempDir('conveyor-chunks-');
    try {
      const taken = join(dir.path, 'taken');
      await writeFile(taken, 'mine');
      await assert.rejects(pipeline(Readable.from([Buffer.from('x')]), new FileSink(taken)), {
        code: 'EEXIST',
      });
      assert.equal(await readFile(taken, 'utf8'), 'mine');
      const failing = new Readable({ read() {} });
      const done = pipeline(failing, new FileSink(join(dir.path, 'other')));
      failing.destroy(new Error('client went away'));
      await assert.rejects(done, /client went away/);
    } finally {
      await dir.cleanup();
    }
  });
});
