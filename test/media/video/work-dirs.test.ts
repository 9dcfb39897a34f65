import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  makeWorkDir,
  ownerOf,
  processAlive,
  sweepWorkDirs,
  WORK_DIR_PREFIX,
} from '../../../src/media/video/work-dirs.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';

/** The pid of a process that has run and exited (and been reaped): one no process has now. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(child, 'exit');
  assert.ok(child.pid !== undefined);
  assert.equal(processAlive(child.pid), false);
  return child.pid;
}

/** A working folder's name as the process `pid` of this host would have made it. */
function nameFor(pid: number, own: string): string {
  // This process's own folder gives the host tag and the pattern; only the pid differs.
  return own.replace(`-${process.pid}-`, `-${pid}-`);
}

describe('video working folders', () => {
  let parent: TempDir;
  before(async () => {
    parent = await makeTempDir('conveyor-work-dirs-');
  });
  after(() => parent.cleanup());

  it('names a folder for its process, and reads the pid back', async () => {
    const dir = await makeWorkDir(parent.path);
    const name = basename(dir);
    assert.ok(name.startsWith(WORK_DIR_PREFIX), name);
    assert.equal(ownerOf(name), process.pid);
    assert.equal(ownerOf('conveyor-video-AbC123'), undefined);
    assert.equal(ownerOf(name.replace(/-[0-9a-f]{8}-/, '-00000000-')), undefined, 'another host');
  });

  it('removes the folder of a dead process and keeps those of live ones and of others', async () => {
    const folder = join(parent.path, 'sweep');
    await mkdir(folder);
    const own = basename(await makeWorkDir(folder));
    const dead = nameFor(await deadPid(), own);
    // Its parent, the test runner, is alive for as long as this test runs.
    const live = nameFor(process.ppid, own);
    const otherHost = dead.replace(/-[0-9a-f]{8}-/, '-00000000-');
    const unrelated = 'conveyor-video-Ab12Cd';
    for (const name of [dead, live, otherHost, unrelated]) {
      await mkdir(join(folder, name, '720p'), { recursive: true });
    }

    assert.deepEqual(await sweepWorkDirs(folder), [dead]);
    assert.deepEqual((await readdir(folder)).sort(), [own, live, otherHost, unrelated].sort());
  });

  it('answers nothing for a parent that does not exist', async () => {
    assert.deepEqual(await sweepWorkDirs(join(parent.path, 'missing')), []);
  });
});
