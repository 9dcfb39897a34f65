import { ConveyorError } from '../errors.ts';

/**
 * A bounded work queue: at most `concurrency` tasks run, at most `queueSize` wait, and a task arriving
 * past that is refused at once with 503 and Retry-After rather than queued without bound. Waiting tasks
 * start in arrival order.
 */
export class Slots {
  readonly #concurrency: number;
  readonly #queueSize: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(concurrency: number, queueSize: number) {
    if (!(concurrency >= 1)) throw new RangeError('concurrency must be at least 1');
    this.#concurrency = concurrency;
    this.#queueSize = queueSize;
  }

  get load(): { running: number; waiting: number } {
    return { running: this.#running, waiting: this.#waiting.length };
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#concurrency) {
      if (this.#waiting.length >= this.#queueSize) {
        throw new ConveyorError('unavailable', 'Too many transforms in progress; retry shortly', {
          headers: { 'retry-after': '1' },
        });
      }
      // The slot is handed over by the finishing task (see below), so #running never drops in between.
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running++;
    }
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}
