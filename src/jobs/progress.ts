import type { JobProgress } from './types.ts';

/** Throttles a job's progress writes to one per interval; the latest update always lands (trailing write). */
export class ProgressWriter {
  readonly #intervalMs: number;
  readonly #write: (progress: JobProgress) => Promise<void>;
  #current: JobProgress = { percent: null, stage: null, message: null };
  #lastWrite = 0;
  #pending = false;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> = Promise.resolve();

  constructor(intervalMs: number, write: (progress: JobProgress) => Promise<void>) {
    this.#intervalMs = intervalMs;
    this.#write = write;
  }

  update(update: { percent?: number; stage?: string; message?: string }): void {
    const percent =
      update.percent === undefined
        ? this.#current.percent
        : Math.max(0, Math.min(100, Number(update.percent) || 0));
    const stage = update.stage === undefined ? this.#current.stage : String(update.stage).slice(0, 200);
    // A message tells about the stage it came with (an encoder's speed, a file's name): a new stage
    // without one has none, rather than the last stage's.
    let message =
      update.message === undefined ? this.#current.message : String(update.message).slice(0, 1000);
    if (update.message === undefined && stage !== this.#current.stage) message = null;
    this.#current = { percent, stage, message };
    this.#pending = true;
    const wait = this.#lastWrite + this.#intervalMs - Date.now();
    if (wait <= 0) this.#send();
    else this.#timer ??= setTimeout(() => this.#send(), wait);
  }

  /** Writes what is pending now (before the outcome, so progress never lands after it). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending) this.#send();
    await this.#inFlight;
  }

  #send(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = false;
    this.#lastWrite = Date.now();
    const snapshot = this.#current;
    this.#inFlight = this.#inFlight.then(() => this.#write(snapshot)).catch(() => {});
  }
}
