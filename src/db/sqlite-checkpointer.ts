import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

/**
 * WAL checkpoints on a thread of their own.
 *
 * Left to itself, SQLite checkpoints in whichever connection commits when the WAL passes 1,000 pages:
 * that commit then copies about 4 MB into the database file and fsyncs it, on the event loop, for ten
 * milliseconds or more. Under a steady stream of enqueues that is the whole tail of the job engine's
 * enqueue-to-start latency (p99 10 ms with it, 2 ms without). So the writer's automatic checkpoint is
 * pushed far out (`FALLBACK_AUTOCHECKPOINT_PAGES`, a bound for the case this thread cannot keep up or
 * dies) and this thread checkpoints every `intervalMs` instead.
 */
export interface Checkpointer {
  stop(): Promise<void>;
}

/** The writer's own automatic checkpoint, kept only as a bound on the WAL (about 40 MB of 4 KiB pages). */
export const FALLBACK_AUTOCHECKPOINT_PAGES = 10_000;

export function startCheckpointer(path: string, intervalMs: number): Checkpointer {
  const worker = new Worker(new URL('./sqlite-checkpoint-worker.js', import.meta.url), {
    workerData: { path, intervalMs },
    // It runs one statement and allocates next to nothing (see the worker file for what this saves).
    resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8 },
  });
  // Never keeps the process alive by itself, and an error in it must not crash the process: it is a
  // warning on stderr, and the writer's fallback checkpoint still bounds the WAL.
  worker.unref();
  worker.on('error', (error) => {
    process.emitWarning(
      `SQLite checkpoint thread failed (${error.message}); SQLite's own checkpoints take over`,
    );
  });
  const exited = once(worker, 'exit').catch(() => {});
  return {
    async stop() {
      // Referenced again, or a process with nothing else to do would exit while waiting for it.
      worker.ref();
      worker.postMessage('stop');
      await exited;
    },
  };
}
