import { execFile, execFileSync } from 'node:child_process';
import { rmdirSync } from 'node:fs';
import { open, readdir, readFile, rm, rmdir, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { makeTempDir } from './tmp.ts';

const run = promisify(execFile);

/** Mount points are named `<PREFIX><pid>-<random>`, so a later run can tell whose they were. */
const PREFIX = 'conveyor-tmpfs-';

/** A small tmpfs of the test's own: a disk that can be filled without touching the machine's. */
export interface Tmpfs {
  path: string;
  /** Bytes free now (statfs `bavail`). */
  free(): Promise<number>;
  /**
   * Writes a filler file until `leaveBytes` are free (0: until the disk is full), and answers its path.
   * tmpfs counts whole pages, so `leaveBytes` is met to the page.
   */
  fill(leaveBytes?: number): Promise<string>;
  /** Removes every filler file. */
  drain(): Promise<void>;
  unmount(): Promise<void>;
}

/**
 * Mounts a tmpfs of `sizeBytes` (needs root, as CI has). Answers the mount, or a skip reason when it
 * cannot mount outside CI; in CI (CI=true) a failed mount fails the test instead of skipping it.
 */
export async function mountTmpfs(sizeBytes: number): Promise<Tmpfs | { skip: string }> {
  // Once per process: suites of one file build (and mount) concurrently.
  leftovers ??= unmountLeftovers();
  await leftovers;
  const dir = await makeTempDir(`${PREFIX}${process.pid}-`);
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0755`, 'tmpfs', dir.path]);
  } catch (error) {
    await dir.cleanup();
    const reason = `cannot mount a tmpfs (root is needed): ${(error as Error).message.split('\n')[0]}`;
    if (process.env['CI'] === 'true') throw new Error(`${reason}; CI must run these tests`);
    return { skip: reason };
  }
  const path = dir.path;
  // A suite that never ran (filtered out by --test-name-pattern) never runs its `after` either.
  let mounted = true;
  const atExit = () => {
    if (!mounted) return;
    try {
      execFileSync('umount', ['-l', path]);
      rmdirSync(path);
    } catch {
      // The next run removes it (see unmountLeftovers).
    }
  };
  process.once('exit', atExit);
  let fillers = 0;
  const free = async () => {
    const info = await statfs(path);
    return info.bavail * info.bsize;
  };
  return {
    path,
    free,
    async fill(leaveBytes = 0) {
      const filler = join(path, `filler-${fillers++}`);
      const file = await open(filler, 'wx');
      const chunk = Buffer.alloc(1024 * 1024, 0x5a);
      try {
        for (;;) {
          const room = (await free()) - leaveBytes;
          if (room <= 0) break;
          await file.write(chunk, 0, Math.min(chunk.length, room));
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      } finally {
        await file.close();
      }
      return filler;
    },
    async drain() {
      for (const name of await readdir(path)) {
        if (name.startsWith('filler-')) await rm(join(path, name), { force: true });
      }
    },
    async unmount() {
      await unmount(path);
      mounted = false;
      process.off('exit', atExit);
    },
  };
}

async function unmount(path: string): Promise<void> {
  // Lazy (-l) when busy: the mount goes once the last open file of it is closed.
  await run('umount', [path]).catch(() => run('umount', ['-l', path]));
  await rmdir(path).catch(() => rm(path, { recursive: true, force: true }));
}

let leftovers: Promise<void> | undefined;

/** Unmounts the tmpfs mounts that a test process which is gone (killed mid-test) left behind. */
async function unmountLeftovers(): Promise<void> {
  const mounts = await readFile('/proc/mounts', 'utf8').catch(() => '');
  const base = join(tmpdir(), PREFIX);
  for (const line of mounts.split('\n')) {
    const [, point, type] = line.split(' ');
    if (type !== 'tmpfs' || !point?.startsWith(base)) continue;
    const pid = Number(point.slice(base.length).split('-')[0]);
    if (Number.isSafeInteger(pid) && pid !== process.pid && !isRunning(pid))
      await unmount(point).catch(() => {});
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
