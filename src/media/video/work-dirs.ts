/**
 * The working folders of video jobs: named for the process that owns them, and swept when that process
 * is gone.
 *
 * An attempt removes its folder when it ends, but a worker killed mid-job (SIGKILL, OOM, a power cut)
 * cannot, and its folder holds a source copy and partial encodes, easily gigabytes. So the folder's name
 * carries the owner's host and pid, `conveyor-video-<host>-<pid>-XXXXXX`, and a VideoProcessor sweeps
 * once, before its first job, every folder of this host whose pid no process has any more
 * (`process.kill(pid, 0)` fails with ESRCH). The host is a short hash of the hostname, because the
 * folder may be shared storage that workers of other machines also use, and their pids mean nothing
 * here. A pid that a new process has taken keeps its old folder until a later sweep: keeping a dead
 * folder a little longer is safe, removing a live one is not. Folders of any other name are left alone.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

export const WORK_DIR_PREFIX = 'conveyor-video-';

/** This machine's tag in folder names: hostnames may hold characters a fixed pattern should not parse. */
const HOST = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
/** `mkdtemp` appends six characters of [A-Za-z0-9]. */
const NAME = /^conveyor-video-([0-9a-f]{8})-([1-9][0-9]*)-[A-Za-z0-9]{6}$/;

/** A fresh working folder in `parent`, named for this process. */
export function makeWorkDir(parent: string): Promise<string> {
  return mkdtemp(join(parent, `${WORK_DIR_PREFIX}${HOST}-${process.pid}-`));
}

/** The pid a working folder's name carries when a process of this host made it; undefined otherwise. */
export function ownerOf(name: string): number | undefined {
  const match = NAME.exec(name);
  if (match === null || match[1] !== HOST) return undefined;
  const pid = Number(match[2]);
  return Number.isSafeInteger(pid) ? pid : undefined;
}

/** Whether a process with this pid exists: only ESRCH says it does not (EPERM: another user's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes the working folders in `parent` whose owning process of this host is gone, and answers their
 * names. Housekeeping never fails a job: a parent that cannot be read, or a folder that cannot be
 * removed, is left for the next sweep.
 */
export async function sweepWorkDirs(parent: string, alive = processAlive): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = ownerOf(name);
    if (pid === undefined || pid === process.pid || alive(pid)) continue;
    try {
      await rm(join(parent, name), { recursive: true, force: true, maxRetries: 3 });
      removed.push(name);
    } catch {
      // left for the next sweep
    }
  }
  return removed;
}
