/** A stream progress is written to: stderr, whose `isTTY` says whether a person watches it redraw. */
export type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean };

/** A terminal's line is redrawn at most this often. */
const REDRAW_INTERVAL_MS = 200;
/** Without a terminal, a line is written each time the upload passes another this many percent. */
const LINE_STEP_PERCENT = 10;

const mib = (bytes: number) => (bytes / 1048576).toFixed(1);

/**
 * Progress of one transfer of `total` bytes. On a terminal one line is redrawn in place (`\r`); anywhere
 * else (a pipe, a log file, CI) plain lines are written, one per 10 % passed, so the output stays readable.
 * Either way the last report says 100 %, and it is made only when every byte was sent.
 */
export class Progress {
  readonly #out: ProgressStream;
  readonly #total: number;
  readonly #tty: boolean;
  readonly #now: () => number;
  #started = 0;
  #startOffset = 0;
  #sent = 0;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #lastStep = -1;
  #width = 0;
  #finished = false;

  constructor(out: ProgressStream, total: number, now: () => number = Date.now) {
    this.#out = out;
    this.#total = total;
    this.#tty = out.isTTY === true;
    this.#now = now;
  }

  /** Starts counting at `offset` bytes (what an earlier run already sent). */
  start(offset = 0): void {
    this.#started = this.#now();
    this.#startOffset = offset;
    this.#sent = offset;
    if (!this.#tty) this.#lastStep = Math.floor(this.#percent() / LINE_STEP_PERCENT) - 1;
    this.#report(false);
  }

  /** `sent` bytes of the total are through. */
  update(sent: number): void {
    this.#sent = Math.min(sent, this.#total);
    this.#report(false);
  }

  /** Every byte is through: reports 100 % and ends the line. */
  finish(): void {
    if (this.#finished) return;
    this.#sent = this.#total;
    this.#report(true);
    if (this.#tty) this.#out.write('\n');
    this.#finished = true;
  }

  /** Ends a terminal's line where it stands (the transfer stopped short), so later output starts afresh. */
  abandon(): void {
    if (this.#finished) return;
    if (this.#tty && this.#width > 0) this.#out.write('\n');
    this.#finished = true;
  }

  #percent(): number {
    return this.#total === 0 ? 100 : Math.floor((100 * this.#sent) / this.#total);
  }

  #report(final: boolean): void {
    const percent = this.#percent();
    if (this.#tty) {
      const now = this.#now();
      if (!final && now - this.#lastDraw < REDRAW_INTERVAL_MS) return;
      this.#lastDraw = now;
      const line = this.#line(percent);
      this.#out.write(`\r${line.padEnd(this.#width)}`);
      this.#width = line.length;
      return;
    }
    const step = Math.floor(percent / LINE_STEP_PERCENT);
    if (step <= this.#lastStep) return;
    this.#lastStep = step;
    this.#out.write(`${this.#line(percent)}\n`);
  }

  #line(percent: number): string {
    const seconds = Math.max(0.001, (this.#now() - this.#started) / 1000);
    const rate = (this.#sent - this.#startOffset) / 1048576 / seconds;
    return `uploading ${mib(this.#sent)} / ${mib(this.#total)} MiB (${percent}%, ${rate.toFixed(1)} MiB/s)`;
  }
}
