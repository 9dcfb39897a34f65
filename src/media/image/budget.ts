/**
 * The memory budget of a process's image work: a weighted semaphore over bytes. Each pipeline
 * reserves its estimated working memory (cost.ts) before libvips starts, and gives it back when its
 * output exists; pipelines that do not fit wait, in arrival order. So image jobs and transforms
 * together hold at most `capacity` bytes of estimated libvips memory at once, whatever arrives.
 *
 * Counting pipelines instead would not bound memory: at the same 50 MP, one decoder streams in a few
 * MB while another holds a gigabyte (docs/benchmarks.md, "Hostile images").
 *
 * Strictly first come, first served: a large reservation at the head is not overtaken by small
 * ones behind it, so it cannot starve. A reservation is at most the whole budget (larger images are
 * refused before they get here, see checkWorkingMemory), so every one runs, alone if need be.
 */
export class MemoryBudget {
  readonly capacity: number;
  #used = 0;
  #running = 0;
  readonly #waiting: Waiter[] = [];

  constructor(capacity: number) {
    if (!(capacity >= 1)) throw new RangeError('a memory budget must be at least 1 byte');
    this.capacity = capacity;
  }

  /** Bytes reserved now, pipelines holding them, and pipelines waiting. */
  get load(): { reserved: number; running: number; waiting: number } {
    return { reserved: this.#used, running: this.#running, waiting: this.#waiting.length };
  }

  /**
   * Runs `task` once `bytes` (capped at the capacity) are free. An abort while waiting rejects with
   * the signal's reason and reserves nothing; once started, the task runs to its end.
   */
  async run<T>(bytes: number, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const need = Math.min(Math.max(Math.ceil(bytes), 1), this.capacity);
    await this.#reserve(need, signal);
    this.#running++;
    try {
      return await task();
    } finally {
      this.#running--;
      this.#used -= need;
      this.#wake();
    }
  }

  #reserve(need: number, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    if (this.#waiting.length === 0 && this.#used + need <= this.capacity) {
      this.#used += need;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        need,
        start: () => {
          signal?.removeEventListener('abort', abort);
          resolve();
        },
      };
      const abort = () => {
        const at = this.#waiting.indexOf(waiter);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(signal!.reason);
        // The head may have been what held the others back.
        this.#wake();
      };
      signal?.addEventListener('abort', abort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  /** Starts waiters from the head for as long as they fit. */
  #wake(): void {
    while (this.#waiting.length > 0 && this.#used + this.#waiting[0]!.need <= this.capacity) {
      const next = this.#waiting.shift()!;
      this.#used += next.need;
      next.start();
    }
  }
}

interface Waiter {
  need: number;
  start: () => void;
}
