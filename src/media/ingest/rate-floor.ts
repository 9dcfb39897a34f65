/**
 * The minimum transfer rate of one download (src/media/ingest/downloader.ts): over a sliding window, the
 * body must arrive at `minBytesPerSecond` on average, else the download is too slow. An origin that
 * trickles a byte now and then never trips the idle timeout, and would hold its job's slot until the total
 * timeout; this catches it within a window.
 *
 * Cheap by construction: a chunk only adds to a counter. The downloader calls `sample()` from one interval
 * timer per download (a few times per window), which records (time, bytes) and compares the newest sample
 * with the newest one at least a window older; only the samples of about one window are kept. Time while
 * the consumer holds the download back (`pause()` .. `resume()`) does not count: a slow store is not a
 * slow origin.
 */
export interface TooSlow {
  bytesPerSecond: number;
  /** The span measured, at least the window (ms). */
  ms: number;
}

export class RateFloor {
  readonly minBytesPerSecond: number;
  readonly windowMs: number;
  readonly #now: () => number;
  readonly #start: number;
  #bytes = 0;
  #pausedMs = 0;
  #pausedAt: number | undefined;
  /** (active ms, bytes so far), oldest first; the first is the newest one at least a window old. */
  #samples: { at: number; bytes: number }[] = [{ at: 0, bytes: 0 }];

  constructor(minBytesPerSecond: number, windowMs: number, now: () => number = () => performance.now()) {
    this.minBytesPerSecond = minBytesPerSecond;
    this.windowMs = windowMs;
    this.#now = now;
    this.#start = now();
  }

  add(bytes: number): void {
    this.#bytes += bytes;
  }

  /** The consumer stopped reading: the time until `resume()` does not count. */
  pause(): void {
    this.#pausedAt ??= this.#now();
  }

  resume(): void {
    if (this.#pausedAt === undefined) return;
    this.#pausedMs += this.#now() - this.#pausedAt;
    this.#pausedAt = undefined;
  }

  /**
   * Records a sample; answers the rate when it has stayed under the minimum over the last window (or a
   * little more), undefined while it has not or less than a window has been measured.
   */
  sample(): TooSlow | undefined {
    if (this.#pausedAt !== undefined) return undefined;
    const at = this.#now() - this.#start - this.#pausedMs;
    this.#samples.push({ at, bytes: this.#bytes });
    let base = -1;
    for (let i = 0; i < this.#samples.length && this.#samples[i]!.at <= at - this.windowMs; i++) base = i;
    if (base < 0) return undefined;
    this.#samples.splice(0, base);
    const from = this.#samples[0]!;
    const ms = at - from.at;
    const bytesPerSecond = ((this.#bytes - from.bytes) * 1000) / ms;
    return bytesPerSecond < this.minBytesPerSecond ? { bytesPerSecond, ms } : undefined;
  }
}
