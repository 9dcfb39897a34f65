import type { Job } from './types.ts';

/**
 * Collects the successes that arrive in one turn of the event loop and records them together, so a
 * worker finishing fifty no-op jobs at once commits once, not fifty times.
 */
export class CompletionBatch {
  readonly #record: (items: { job: Job; result: unknown }[]) => Promise<boolean[]>;
  #pending: { job: Job; result: unknown; done: (ok: boolean) => void; fail: (error: unknown) => void }[] = [];

  constructor(record: (items: { job: Job; result: unknown }[]) => Promise<boolean[]>) {
    this.#record = record;
  }

  /** Resolves once the success is recorded: true, or false when the job was no longer this worker's. */
  add(job: Job, result: unknown): Promise<boolean> {
    return new Promise((done, fail) => {
      if (this.#pending.length === 0) setImmediate(() => void this.#flush());
      this.#pending.push({ job, result, done, fail });
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    try {
      const outcome = await this.#record(batch.map(({ job, result }) => ({ job, result })));
      for (const [i, item] of batch.entries()) item.done(outcome[i]!);
    } catch (error) {
      for (const item of batch) item.fail(error);
    }
  }
}
