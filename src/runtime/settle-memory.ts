import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** What one settle did. */
export interface Settled {
  rssBefore: number;
  rssAfter: number;
  ms: number;
}

type GcFunction = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * Gives the memory that start-up used and no longer needs back to the system (docs/operations.md,
 * "Memory"). Call it once, when start-up is done and before the process takes load.
 *
 * Start-up (loading modules, opening the database, building the routes) keeps many objects alive for a
 * while, so V8 grows its young generation to the most it may (about 64 MB reserved, over 45 MB of it
 * resident) and keeps it when they are gone: without this, an idle server holds 178 MB, 46 MB of it an
 * empty young generation. An ordinary full collection does not shrink it; V8's "last resort" collection,
 * the one it runs when memory is short, does, and returns the pages. It is reachable only through the `gc` function that
 * `--expose-gc` installs, which a new context created after setting the flag has; the flag is cleared again
 * at once, so no other context gets it. It takes about 100-150 ms, once.
 */
export function settleMemory(): Settled | undefined {
  const gc = lastResortGc();
  if (gc === undefined) return undefined;
  const rssBefore = process.memoryUsage.rss();
  const started = performance.now();
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return { rssBefore, rssAfter: process.memoryUsage.rss(), ms: performance.now() - started };
}

function lastResortGc(): GcFunction | undefined {
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return exposed as GcFunction;
  setFlagsFromString('--expose-gc');
  try {
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    return typeof gc === 'function' ? (gc as GcFunction) : undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}
