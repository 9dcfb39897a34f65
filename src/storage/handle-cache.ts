import { type FileHandle, open } from 'node:fs/promises';

interface Entry {
  handle: FileHandle;
  users: number;
  /** Used since the eviction sweep last passed it (the "second chance" of the CLOCK algorithm). */
  used: boolean;
}

/**
 * Open file handles of recently read blobs, so that serving a popular file does not cost an open and a
 * close (two thread-pool round trips) per request. Safe because blobs never change: a handle always reads
 * the bytes its name promises, and reads are positional (pread), so concurrent readers share one handle.
 * A handle in use is never closed; the cache may briefly exceed `max` while every entry is busy.
 * A blob deleted while its handle is cached stays readable through that handle until it is evicted,
 * which is harmless (same bytes) and is why `forget` exists: delete calls it to release the space.
 *
 * Entries are named by a key (BlobFiles uses the SHA-256) and opened at `pathOf(key)`, so that a hit costs
 * one Map lookup of a string the caller already has. Recency is a flag set on use; eviction, which only
 * happens when a new file is opened, gives a used entry a second chance (CLOCK) instead of every hit
 * moving its entry to the end of the Map.
 */
export class HandleCache {
  readonly #max: number;
  readonly #pathOf: (key: string) => string;
  readonly #entries = new Map<string, Entry>();
  readonly #opening = new Map<string, Promise<Entry>>();

  constructor(max: number, pathOf: (key: string) => string = (key) => key) {
    this.#max = max;
    this.#pathOf = pathOf;
  }

  /**
   * A handle for `key`; call `release` exactly once when done with it. `warm` says the handle was already
   * open, i.e. the file was read recently, so its pages are likely in the page cache.
   */
  async acquire(key: string): Promise<{ handle: FileHandle; warm: boolean; release: () => void }> {
    const entry = this.#entries.get(key);
    if (entry) {
      entry.used = true;
      return { ...this.#use(key, entry), warm: true };
    }
    let opening = this.#opening.get(key);
    if (!opening) {
      opening = open(this.#pathOf(key), 'r')
        .then((handle) => {
          const created = { handle, users: 0, used: false };
          this.#entries.set(key, created);
          return created;
        })
        .finally(() => this.#opening.delete(key));
      this.#opening.set(key, opening);
    }
    return { ...this.#use(key, await opening), warm: false };
  }

  /**
   * `acquire` at once: the handle of `key` if it is open already (the file was read recently), else
   * undefined, having opened nothing. For use before the caller's synchronous code returns, so it needs no
   * release: nothing can evict or close the handle in between.
   */
  acquireNow(key: string): FileHandle | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    entry.used = true;
    return entry.handle;
  }

  #use(key: string, held: Entry): { handle: FileHandle; release: () => void } {
    held.users++;
    let released = false;
    if (this.#entries.size > this.#max) this.#evict();
    return {
      handle: held.handle,
      release: () => {
        if (released) return;
        released = true;
        held.users--;
        if (this.#entries.get(key) !== held) {
          if (held.users === 0) void held.handle.close().catch(() => {});
        } else if (this.#entries.size > this.#max) this.#evict();
      },
    };
  }

  /** Drops the cached handle of `key` (closed once its last user releases it). */
  forget(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
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

  /**
   * Closes idle handles, oldest first, until `max` are left. A handle used since the sweep last saw it
   * moves to the end instead (Map iteration visits it once more there, by then unmarked); a busy one is
   * skipped. Every entry is moved at most once, so the sweep ends.
   */
  #evict(): void {
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= this.#max) return;
      if (entry.users > 0) continue;
      this.#entries.delete(key);
      if (entry.used) {
        entry.used = false;
        this.#entries.set(key, entry);
      } else {
        void entry.handle.close().catch(() => {});
      }
    }
  }
}
