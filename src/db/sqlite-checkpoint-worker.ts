/**
 * The thread behind `startCheckpointer` (sqlite-checkpointer.ts): its own connection to the database file,
 * running a PASSIVE checkpoint every interval. PASSIVE never waits for readers or writers and never blocks
 * them: it copies what WAL frames it can into the database file (and fsyncs it), and the next writer
 * starts the WAL over once every frame is in.
 */
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

export interface CheckpointWorkerData {
  path: string;
  intervalMs: number;
}

const { path, intervalMs } = workerData as CheckpointWorkerData;
const db = new DatabaseSync(path, { timeout: 0 });
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

const timer = setInterval(() => {
  try {
    checkpoint.get();
  } catch {
    // SQLITE_BUSY: another connection's checkpoint is running; the next interval tries again.
  }
}, intervalMs);

parentPort!.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort!.close();
});
