/** The bounds and policy of a Memo (see its contract). */
export interface MemoOptions<V> {
  /** How long a value is answered after it was remembered; by default for ever. */
  ttlMs?: number;
  maxEntries?: number;
  /** Bound on the sum of `weigh(value)` over the entries. */
  maxWeight?: number;
  weigh?: (value: V) => number;
  /** Whether a loaded value is remembered (e.g. only blobs small enough); by default every one. */
  keep?: (value: V) => boolean;
  /** The clock, in milliseconds (tests). */
  now?: () => number;
}

/** The part of a Memo that answers at once, for code that reads another owner's memo. */
export interface MemoView<V> {
  getNow(key: string): V | undefined;
}

interface Entry<V> {
  value: V;
  weight: number;
  expires: number;
  used: boolean;
}

/**
 * What a process remembers of answers it had to wait for, by key, so that the next request for the same
 * thing is answered at once: the one memo of the delivery path (found representations, small blobs' bytes,
 * what derive steps made; docs/architecture.md, "Answered at once"), and of the transform service's
 * accepted paths, source facts and renders in flight. Domain classes keep one asynchronous API; a caller
 * that wants an answer without a promise asks a memo with `getNow`, and on a miss takes the asynchronous
 * way, through `get`.
 *
 * Contract (test/delivery/memo.test.ts):
 * - `getNow(key)` answers the value remembered for `key` while it is fresh, else undefined. It never waits,
 *   never starts a load, and changes nothing but the entry's recency, so the caller may go on to `get` the
 *   same key.
 * - `get(key, load)` answers what `getNow` would, if anything; else joins the load in flight for `key`;
 *   else calls `load` once for every caller that comes meanwhile. Its value is remembered unless it is
 *   null or undefined (a miss, never remembered) or `keep(value)` says no; a rejection reaches the callers
 *   that waited for it and is not remembered.
 * - `set(key, value)` remembers a value got some other way.
 * - `delete(key)` and `clear()` forget; a load in flight still answers its callers, but no later caller
 *   joins it and its value is not remembered (it may predate the reason to forget).
 * - Bounds: an entry older than `ttlMs` is never answered; past `maxEntries` entries or `maxWeight` in
 *   total (`weigh(value)` each), the least recently used go first. A memo that can hold nothing (any of
 *   the three set to 0) remembers nothing and shares no load: each `get` calls its `load`.
 *
 * Recency is a flag set on use, and eviction gives a used entry a second chance (CLOCK), so that a hit
 * costs a Map lookup and no reordering.
 */
export class Memo<V> implements MemoView<V> {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #maxWeight: number;
  readonly #weigh: ((value: V) => number) | undefined;
  readonly #keep: ((value: V) => boolean) | undefined;
  readonly #now: () => number;
  /** Whether anything is ever remembered (every bound above 0). */
  readonly #remembers: boolean;
  readonly #entries = new Map<string, Entry<V>>();
  readonly #loading = new Map<string, Promise<V | null | undefined>>();
  #weight = 0;

  constructor(options: MemoOptions<V> = {}) {
    this.#ttlMs = options.ttlMs ?? Infinity;
    this.#maxEntries = options.maxEntries ?? Infinity;
    this.#maxWeight = options.maxWeight ?? Infinity;
    this.#weigh = options.weigh;
    this.#keep = options.keep;
    this.#now = options.now ?? Date.now;
    this.#remembers = this.#ttlMs > 0 && this.#maxEntries > 0 && this.#maxWeight > 0;
  }

  /** Entries remembered (fresh or not yet noticed to be stale). */
  get size(): number {
    return this.#entries.size;
  }

  /** The sum of the entries' weights. */
  get weight(): number {
    return this.#weight;
  }

  getNow(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires !== Infinity && entry.expires <= this.#now()) {
      this.#drop(key, entry);
      return undefined;
    }
    entry.used = true;
    return entry.value;
  }

  get(key: string, load: () => Promise<V>): Promise<V>;
  get<M extends null | undefined>(key: string, load: () => Promise<V | M>): Promise<V | M>;
  get<M extends null | undefined>(key: string, load: () => Promise<V | M>): Promise<V | M> {
    if (this.#remembers) {
      const hit = this.getNow(key);
      if (hit !== undefined) return Promise.resolve(hit);
      const running = this.#loading.get(key) as Promise<V | M> | undefined;
      if (running) return running;
    }
    let started: Promise<V | M>;
    try {
      started = load();
    } catch (error) {
      return Promise.reject(error);
    }
    if (!this.#remembers) return started;
    const loaded: Promise<V | M> = started.then(
      (value) => {
        if (this.#loading.get(key) === loaded) {
          this.#loading.delete(key);
          if (value !== null && value !== undefined && (this.#keep?.(value) ?? true)) this.set(key, value);
        }
        return value;
      },
      (error: unknown) => {
        if (this.#loading.get(key) === loaded) this.#loading.delete(key);
        throw error;
      },
    );
    this.#loading.set(key, loaded);
    return loaded;
  }

  set(key: string, value: V): void {
    if (!this.#remembers) return;
    const old = this.#entries.get(key);
    if (old) this.#drop(key, old);
    const weight = this.#weigh ? this.#weigh(value) : 1;
    const expires = this.#ttlMs === Infinity ? Infinity : this.#now() + this.#ttlMs;
    this.#entries.set(key, { value, weight, expires, used: false });
    this.#weight += weight;
    if (this.#entries.size > this.#maxEntries || this.#weight > this.#maxWeight) this.#evict();
  }

  delete(key: string): void {
    const entry = this.#entries.get(key);
    if (entry) this.#drop(key, entry);
    this.#loading.delete(key);
  }

  clear(): void {
    // A load in flight is remembered only while it is still the one listed for its key.
    this.#entries.clear();
    this.#loading.clear();
    this.#weight = 0;
  }

  #drop(key: string, entry: Entry<V>): void {
    this.#entries.delete(key);
    this.#weight -= entry.weight;
  }

  /**
   * Forgets entries, oldest first, until the bounds hold. An entry used since the sweep last saw it moves
   * to the end instead, unmarked (Map iteration visits it once more there); so every entry moves at most
   * once and the sweep ends.
   */
  #evict(): void {
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && this.#weight <= this.#maxWeight) return;
      this.#entries.delete(key);
      if (entry.used) {
        entry.used = false;
        this.#entries.set(key, entry);
      } else {
        this.#weight -= entry.weight;
      }
    }
  }
}
