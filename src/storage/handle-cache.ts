import { type FileHandle, open } from 'node:fs/promises';

interface Entry {
  handle: FileHandle;
  users: number;
}

/**
 * Open file handles of recently read blobs, so that serving a popular file does not cost an open and a
 * close (two thread-pool round trips) per request. Safe because blobs never change: a handle always reads
 * the bytes its name promises, and reads are positional (pread), so concurrent readers share one handle.
 * A handle in use is never closed; the cache may briefly exceed `max` while every entry is busy.
 * A blob deleted while its handle is cached stays readable through that handle until it is evicted,
 * which is harmless (same bytes) and is why `forget` exists: delete calls it to release the space.
 */
export class HandleCache {
  readonly #max: number;
  readonly #entries = new Map<string, Entry>();
  readonly #opening = new Map<string, Promise<Entry>>();

  constructor(max: number) {
    this.#max = max;
  }

  /**
   * A handle for `path`; call `release` exactly once when done with it. `warm` says the handle was already
   * open, i.e. the file was read recently, so its pages are likely in the page cache.
   */
  async acquire(path: string): Promise<{ handle: FileHandle; warm: boolean; release: () => void }> {
    const ready = this.acquireOpen(path);
    if (ready) return { ...ready, warm: true };
    let opening = this.#opening.get(path);
    if (!opening) {
      opening = open(path, 'r')
        .then((handle) => {
          const created = { handle, users: 0 };
          this.#entries.set(path, created);
          return created;
        })
        .finally(() => this.#opening.delete(path));
      this.#opening.set(path, opening);
    }
    return { ...this.#use(path, await opening), warm: false };
  }

  /** `acquire` without waiting: the handle if it is open already (the file was read recently), else null. */
  acquireOpen(path: string): { handle: FileHandle; release: () => void } | null {
    const entry = this.#entries.get(path);
    if (!entry) return null;
    // Refresh recency: Map iteration order is insertion order, so the first key is the coldest.
    this.#entries.delete(path);
    this.#entries.set(path, entry);
    return this.#use(path, entry);
  }

  #use(path: string, held: Entry): { handle: FileHandle; release: () => void } {
    held.users++;
    let released = false;
    this.#evict();
    return {
      handle: held.handle,
      release: () => {
        if (released) return;
        released = true;
        held.users--;
        if (!this.#entries.has(path) && held.users === 0) void held.handle.close().catch(() => {});
        else this.#evict();
      },
    };
  }

  /** Drops the cached handle of `path` (closed once its last user releases it). */
  forget(path: string): void {
    const entry = this.#entries.get(path);
    if (!entry) return;
    this.#entries.delete(path);
    if (entry.users === 0) void entry.handle.close().catch(() => {});
  }

  async close(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(entries.map((entry) => entry.handle.close().catch(() => {})));
  }

  get size(): number {
    return this.#entries.size;
  }

  #evict(): void {
    for (const [path, entry] of this.#entries) {
      if (this.#entries.size <= this.#max) return;
      if (entry.users > 0) continue;
      this.#entries.delete(path);
      void entry.handle.close().catch(() => {});
    }
  }
}
