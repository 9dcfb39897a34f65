import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { FastCounter, FastHistogram } from '../../src/ops/prom.ts';

const BUCKETS = [0.001, 0.01, 0.1, 1, 10];
const OBSERVED = [0, 0.0005, 0.001, 0.002, 0.5, 1, 9.99, 10, 10.01, 1e6];

describe('FastCounter and FastHistogram', () => {
  it("render exactly as prom-client's own counters and histograms", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const definitions = {
      plain: { name: 'x_bytes_total', help: 'bytes' },
      labelled: { name: 'x_requests_total', help: 'requests', labelNames: ['method', 'status'] as const },
      histogram: {
        name: 'x_seconds',
        help: 'time "quoted" \\ help',
        labelNames: ['route'] as const,
        buckets: BUCKETS,
      },
      untouched: { name: 'x_unused_seconds', help: 'never observed', buckets: BUCKETS },
    };
    const fast = {
      plain: new FastCounter({ ...definitions.plain, registers: [ours] }),
      labelled: new FastCounter({ ...definitions.labelled, registers: [ours] }),
      histogram: new FastHistogram({ ...definitions.histogram, registers: [ours] }),
      untouched: new FastHistogram({ ...definitions.untouched, registers: [ours] }),
    };
    const prom = {
      plain: new Counter({ ...definitions.plain, registers: [theirs] }),
      labelled: new Counter({ ...definitions.labelled, registers: [theirs] }),
      histogram: new Histogram({ ...definitions.histogram, registers: [theirs] }),
      untouched: new Histogram({ ...definitions.untouched, registers: [theirs] }),
    };

    fast.plain.inc(10);
    fast.plain.inc();
    prom.plain.inc(10);
    prom.plain.inc();
    for (const [method, status] of [
      ['GET', '200'],
      ['GET', '200'],
      ['POST', '201'],
      ['GET', '30"4\n'],
    ] as const) {
      fast.labelled.labels(method, status).inc();
      prom.labelled.labels(method, status).inc();
    }
    for (const [i, value] of OBSERVED.entries()) {
      const route = i % 3 === 0 ? '/a/:id' : '/api/v1/assets';
      fast.histogram.labels(route).observe(value);
      prom.histogram.labels(route).observe(value);
    }

    assert.equal(await ours.metrics(), await theirs.metrics());

    ours.resetMetrics();
    const reset = await ours.metrics();
    assert.match(reset, /^x_bytes_total 0$/m);
    assert.doesNotMatch(reset, /^x_requests_total\{/m);
    assert.doesNotMatch(reset, /^x_seconds_count\{/m);
  });

  it('a kept child is the one the metric renders', async () => {
    const registry = new Registry();
    const counter = new FastCounter({
      name: 'c_total',
      help: 'c',
      labelNames: ['kind'],
      registers: [registry],
    });
    const full = counter.labels('full');
    assert.equal(counter.labels('full'), full);
    full.inc(3);
    assert.match(await registry.metrics(), /^c_total\{kind="full"\} 3$/m);
  });

  it('refuses what prom-client refuses', () => {
    const registry = new Registry();
    const counter = new FastCounter({
      name: 'c_total',
      help: 'c',
      labelNames: ['a', 'b'],
      registers: [registry],
    });
    const histogram = new FastHistogram({ name: 'h', help: 'h', buckets: [1], registers: [registry] });
    assert.throws(() => counter.labels('only-one'), TypeError);
    assert.throws(() => counter.labels('x', 'y').inc(-1), TypeError);
    assert.throws(() => counter.labels('x', 'y').inc(Number.NaN), TypeError);
    assert.throws(() => counter.labels('x', 'y').inc(Number.POSITIVE_INFINITY), TypeError);
    assert.throws(() => histogram.labels().observe(Number.NaN), TypeError);
    assert.throws(
      () => new FastCounter({ name: 'c_total', help: 'again', registers: [registry] }),
      /already/,
    );
  });
});

/**
 * In a child with V8's natives syntax: children whose totals grew past the small-integer range (2^30) must
 * keep the hidden class of children that did not. A changed field representation deprecates the shared
 * class, and optimised code that had seen it then failed to install, over and over (src/ops/prom.ts).
 */
const SHAPE_CHILD = `
import { FastCounter, FastHistogram } from ${JSON.stringify(new URL('../../src/ops/prom.ts', import.meta.url).href)};
const counter = new FastCounter({ name: 'c_total', help: 'c', labelNames: ['k'], registers: [] });
const histogram = new FastHistogram({ name: 'h', help: 'h', labelNames: ['k'], buckets: [1], registers: [] });
const [small, large] = [counter.labels('small'), counter.labels('large')];
small.inc();
large.inc();
large.inc(2 ** 31);
const [quiet, busy] = [histogram.labels('quiet'), histogram.labels('busy')];
busy.observe(0.5);
for (let i = 0; i < 3; i++) busy.observe(2 ** 31);
console.log(JSON.stringify({
  counters: %HaveSameMap(small, large),
  histograms: %HaveSameMap(quiet, busy),
  values: [small.value, large.value, busy.sum, busy.count, quiet.count],
}));
`;

describe('metric children', () => {
  it('keep one hidden class whatever their totals grow to', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--allow-natives-syntax',
      '--input-type=module',
      '-e',
      SHAPE_CHILD,
    ]);
    assert.deepEqual(JSON.parse(stdout), {
      counters: true,
      histograms: true,
      values: [1, 2 ** 31 + 1, 0.5 + 3 * 2 ** 31, 4, 0],
    });
  });
});
