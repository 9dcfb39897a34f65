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

/** Where a job stands, as its progress reports it. */
export interface JobStage {
  stage?: string | undefined;
  percent?: number | undefined;
  message?: string | undefined;
}

/**
 * Progress of a job, followed from its view: the stage it names (`probing`, `encoding h264-240p`, …) and
 * its percent. On a terminal one line is redrawn in place; elsewhere a line is written when the stage
 * changes or the percent passes another 10 %, so a log shows each stage without a line per poll.
 */
export class StageProgress {
  readonly #out: ProgressStream;
  readonly #tty: boolean;
  readonly #label: string;
  #stage: string | undefined;
  #lastStep = -1;
  #width = 0;

  constructor(out: ProgressStream, label: string) {
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.#label = label;
  }

  update(progress: JobStage): void {
    const percent = Math.max(0, Math.min(100, Math.floor(progress.percent ?? 0)));
    const stage = progress.stage ?? 'queued';
    const line = `${this.#label}: ${stage} ${percent}%${progress.message ? ` (${progress.message})` : ''}`;
    if (this.#tty) {
      this.#out.write(`\r${line.padEnd(this.#width)}`);
      this.#width = line.length;
      return;
    }
    const step = Math.floor(percent / LINE_STEP_PERCENT);
    if (stage === this.#stage && step <= this.#lastStep) return;
    this.#stage = stage;
    this.#lastStep = step;
    this.#out.write(`${line}\n`);
  }

  /** Ends a terminal's line, so that later output starts afresh. */
  end(): void {
    if (this.#tty && this.#width > 0) this.#out.write('\n');
    this.#width = 0;
  }
}
