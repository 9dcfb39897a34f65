import type { Metric, Registry } from 'prom-client';

/**
 * Counters and histograms for the per-request path, registered in a prom-client `Registry` and rendered by
 * it exactly as its own would be.
 *
 * prom-client's counters and histograms hash and validate the label set on every `inc` and `observe`, even
 * through a `labels(...)` child; on a small response that is about 4 % of the CPU. Here a child is looked
 * up once and an observation is a few additions. Gauges, read only at scrape time, stay prom-client's.
 */

type LabelSet = Record<string, string>;

/** One sample as prom-client's registry renders it. */
interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
  sharedLabels?: LabelSet;
}

interface Definition<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registers: Registry[];
}

/** Shared by both kinds: label names, children by label values, registration. */
abstract class LabelledMetric<L extends string, C> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum';
  abstract readonly type: 'counter' | 'histogram';
  readonly #labelNames: readonly L[];
  #children = new Map<string, C>();

  constructor(definition: Definition<L>) {
    this.name = definition.name;
    this.help = definition.help;
    this.#labelNames = definition.labelNames ?? [];
    // The registry needs only what is implemented here (name, type, get, reset, aggregator); prom-client's
    // `Metric` type is the union of its own classes.
    for (const registry of definition.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The child for these label values, in label-name order; keep it to skip even this lookup. */
  labels(...values: string[]): C {
    const key = values.join('\0');
    let child = this.#children.get(key);
    if (child === undefined) {
      if (values.length !== this.#labelNames.length) {
        throw new TypeError(
          `${this.name} takes ${this.#labelNames.length} label values, got ${values.length}`,
        );
      }
      const labels: LabelSet = {};
      this.#labelNames.forEach((name, i) => {
        labels[name] = values[i] as string;
      });
      child = this.createChild(labels);
      this.#children.set(key, child);
    }
    return child;
  }

  protected abstract createChild(labels: LabelSet): C;
  protected abstract samples(child: C): Sample[];

  /** What the registry renders (an unlabelled metric shows 0 before its first observation, as prom-client's). */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    if (this.#labelNames.length === 0) this.labels();
    const values = [...this.#children.values()].flatMap((child) => this.samples(child));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#children = new Map();
  }
}

/**
 * The running totals live in Float64Arrays, not in number fields. A field that starts as a small integer
 * and later outgrows V8's small-integer range (2^30: a bytes counter after its first GiB, a request count
 * after a billion) changes representation, which deprecates the hidden class every child shares. Optimised
 * code that has seen that class then fails V8's final check ("Maps became deprecated during
 * optimization") on every attempt: with number fields, `recordRequest` is recompiled about 185 times a
 * second for minutes, on all four of V8's worker threads, doubling the CPU per response
 * (docs/benchmarks.md, "The recompilation loop").
 */
export class CounterChild {
  readonly labels: LabelSet;
  readonly #value = new Float64Array(1);

  constructor(labels: LabelSet) {
    this.labels = labels;
  }

  get value(): number {
    return this.#value[0] as number;
  }

  inc(amount = 1): void {
    if (!(amount >= 0 && amount < Number.POSITIVE_INFINITY)) {
      throw new TypeError(`a counter goes up by a finite amount, got ${amount}`);
    }
    (this.#value[0] as number) += amount;
  }
}

/** A Prometheus counter. */
export class FastCounter<L extends string = never> extends LabelledMetric<L, CounterChild> {
  readonly type = 'counter';
  #root: CounterChild | undefined;

  /** Adds to the unlabelled counter. */
  inc(amount = 1): void {
    this.#root ??= this.labels();
    this.#root.inc(amount);
  }

  override reset(): void {
    super.reset();
    this.#root = undefined;
  }

  protected createChild(labels: LabelSet): CounterChild {
    return new CounterChild(labels);
  }

  protected samples(child: CounterChild): Sample[] {
    return [{ value: child.value, labels: child.labels }];
  }
}

/** Totals in Float64Arrays for the reason given at CounterChild. */
export class HistogramChild {
  /** Observations per bucket (not cumulative); the last counts those above every bound. */
  readonly counts: Float64Array;
  readonly labels: LabelSet;
  readonly bounds: readonly number[];
  /** Sum and count of the observations. */
  readonly #totals = new Float64Array(2);

  constructor(labels: LabelSet, bounds: readonly number[]) {
    this.labels = labels;
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  get sum(): number {
    return this.#totals[0] as number;
  }

  get count(): number {
    return this.#totals[1] as number;
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`a histogram observes finite values, got ${value}`);
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    (this.counts[i] as number)++;
    (this.#totals[0] as number) += value;
    (this.#totals[1] as number)++;
  }
}

/** A Prometheus histogram with fixed bucket bounds. */
export class FastHistogram<L extends string = never> extends LabelledMetric<L, HistogramChild> {
  readonly type = 'histogram';
  readonly #bounds: readonly number[];

  constructor(definition: Definition<L> & { buckets: readonly number[] }) {
    super(definition);
    this.#bounds = [...definition.buckets].sort((a, b) => a - b);
  }

  protected createChild(labels: LabelSet): HistogramChild {
    return new HistogramChild(labels, this.#bounds);
  }

  protected samples(child: HistogramChild): Sample[] {
    const bucket = `${this.name}_bucket`;
    const out: Sample[] = [];
    let cumulative = 0;
    child.bounds.forEach((le, i) => {
      cumulative += child.counts[i] as number;
      out.push({ value: cumulative, labels: { le }, metricName: bucket, sharedLabels: child.labels });
    });
    out.push(
      { value: child.count, labels: { le: '+Inf' }, metricName: bucket, sharedLabels: child.labels },
      { value: child.sum, labels: {}, metricName: `${this.name}_sum`, sharedLabels: child.labels },
      { value: child.count, labels: {}, metricName: `${this.name}_count`, sharedLabels: child.labels },
    );
    return out;
  }
}
