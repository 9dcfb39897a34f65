import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HandleCache } from '../../src/storage/handle-cache.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';

describe('HandleCache', () => {
  let dir: TempDir;
  const file = (name: string) => join(dir.path, name);
  before(async () => {
    dir = await makeTempDir('conveyor-handles-');
    for (const name of ['a', 'b', 'c']) await writeFile(file(name), name.repeat(10));
  });
  after(async () => dir.cleanup());

  it('shares one handle between readers of the same file', async () => {
    const cache = new HandleCache(4);
    const [one, two] = await Promise.all([cache.acquire(file('a')), cache.acquire(file('a'))]);
    assert.equal(one.handle, two.handle);
    one.release();
    two.release();
    assert.equal(cache.size, 1);
    await cache.close();
  });

  it('evicts idle handles beyond its size, never one in use', async () => {
    const cache = new HandleCache(1);
    const a = await cache.acquire(file('a'));
    const b = await cache.acquire(file('b'));
    assert.equal(cache.size, 2, 'both are in use, so the cache runs over');
    const read = await a.handle.read(Buffer.alloc(3), 0, 3, 0);
    assert.equal(read.buffer.toString(), 'aaa', 'a busy handle stays open');
    a.release();
    assert.equal(cache.size, 1, 'the idle one goes once released');
    b.release();
    const c = await cache.acquire(file('c'));
    c.release();
    assert.equal(cache.size, 1);
    await cache.close();
  });

  it('closes a forgotten handle once its last user releases it', async () => {
    const cache = new HandleCache(4);
    const a = await cache.acquire(file('a'));
    cache.forget(file('a'));
    assert.equal(cache.size, 0);
    assert.equal((await a.handle.read(Buffer.alloc(1), 0, 1, 0)).bytesRead, 1, 'still readable while held');
    a.release();
    assert.equal(a.handle.fd, -1, 'closed on release (FileHandle.close marks the fd at once)');
    await cache.close();
  });

  it('closes the least recently used idle handle first (a used one gets a second chance)', async () => {
    const cache = new HandleCache(2);
    const a = await cache.acquire(file('a'));
    a.release();
    const b = await cache.acquire(file('b'));
    b.release();
    assert.ok(cache.acquireNow(file('a')), 'a is used again, so b is now the coldest');
    const c = await cache.acquire(file('c'));
    c.release();
    assert.equal(cache.size, 2);
    assert.equal(b.handle.fd, -1, 'b was closed');
    assert.equal(cache.acquireNow(file('b')), undefined);
    assert.equal(cache.acquireNow(file('a')), a.handle, 'a survived');
    assert.equal(cache.acquireNow(file('c')), c.handle);
    await cache.close();
  });

  it('closes a forgotten handle on release even when the file was opened again meanwhile', async () => {
    const cache = new HandleCache(4);
    const old = await cache.acquire(file('a'));
    cache.forget(file('a'));
    const renewed = await cache.acquire(file('a'));
    assert.notEqual(renewed.handle, old.handle, 'a fresh handle after forget');
    old.release();
    assert.equal(old.handle.fd, -1, 'the forgotten handle is closed');
    assert.notEqual(renewed.handle.fd, -1, 'the new one stays open');
    renewed.release();
    await cache.close();
  });

  it('opens each key at the path its pathOf names', async () => {
    const cache = new HandleCache(4, (key) => file(key));
    const a = await cache.acquire('a');
    const read = await a.handle.read(Buffer.alloc(3), 0, 3, 0);
    assert.equal(read.buffer.toString(), 'aaa');
    a.release();
    assert.equal(cache.acquireNow('a'), a.handle);
    await cache.close();
  });

  it('rejects a missing file with ENOENT and caches nothing', async () => {
    const cache = new HandleCache(4);
    await assert.rejects(cache.acquire(file('missing')), { code: 'ENOENT' });
    assert.equal(cache.size, 0);
  });
});

/**
 * `acquireNow`, the synchronous twin of `acquire` that BlobFiles.readIntoNow reads through: it answers the
 * very handle `acquire` would, and only one that is open already (it never opens, so never waits).
 */
describe('HandleCache.acquireNow', () => {
  it('hands out only handles that are open already, and follows forget', async (t) => {
    const dir = await makeTempDir('conveyor-handles-');
    const path = join(dir.path, 'f');
    await writeFile(path, 'bytes');
    const handles = new HandleCache(4);
    t.after(() => handles.close().then(dir.cleanup));

    assert.equal(handles.acquireNow(path), undefined);
    const first = await handles.acquire(path);
    assert.equal(first.warm, false);
    first.release();
    const open = handles.acquireNow(path);
    assert.ok(open, 'open after the first acquire');
    assert.equal(open, first.handle, 'the same shared handle');
    const second = await handles.acquire(path);
    assert.equal(second.warm, true);
    second.release();
    handles.forget(path);
    assert.equal(handles.acquireNow(path), undefined);
  });
});
