/**
 * Memory under hostile images, end to end: seven small bombs (hostile-images.ts) uploaded at once to a
 * `conveyor serve` child process, each also asked for as a transform, while the test samples the
 * child's RSS from /proc. The child is configured as bin/conveyor runs it (glibc malloc tuned) with a
 * 512 MiB image memory budget, and light presets so that the run stays within a couple of minutes.
 *
 * What it proves: however many heavy decodes arrive together, the process's RSS rises by about the
 * budget, not by their sum (without the budget the same seven, with the default presets, take a server
 * 2.6-2.8 GB above its idle RSS; docs/benchmarks.md, "Hostile images"), and it comes back down once
 * the work is done. The ceilings have a wide margin for a loaded machine; the benchmark has the exact
 * figures.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { signTransformPath } from '../../../src/media/image/transform-url.ts';
import { type ServerProcess, startServerProcess } from '../../helpers/child.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';
import { type HostileImage, hostileImage, SEVEN_BOMBS } from './hostile-images.ts';
import { sceneJpeg } from './sample-images.ts';

const MB = 1e6;
const BUDGET = 512 * 1024 * 1024;
/** The budget, plus what it does not count: uploads, outputs, the allocator's slack. */
const PEAK_CEILING = BUDGET + 250 * MB;
/**
 * What the process may keep once the work is done. V8 gives back its share over the next idle
 * collections (10-20 s after such a run), so this is a state waited for, up to SETTLE_DEADLINE_MS.
 */
const SETTLED_CEILING = 200 * MB;
const SETTLE_DEADLINE_MS = 180_000;
const KEY = { id: 'test', secret: Buffer.from('k'.repeat(48)) };

function rss(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

describe('memory under hostile images', { timeout: 15 * 60_000 }, () => {
  let tmp: TempDir;
  let server: ServerProcess;
  let admin: string;
  const bombs = new Map<HostileImage, Buffer>();

  before(async () => {
    tmp = await makeTempDir('conveyor-hostile-');
    for (const [name, bytes] of await Promise.all(
      SEVEN_BOMBS.map(async (name) => [name, await hostileImage(name)] as const),
    )) {
      bombs.set(name, bytes);
    }
    admin = `cvk_${randomBytes(32).toString('base64url')}`;
    server = await startServerProcess({
      MALLOC_ARENA_MAX: '2',
      MALLOC_MMAP_THRESHOLD_: '131072',
      CONVEYOR_DATA_DIR: tmp.path,
      CONVEYOR_ADMIN_KEY: admin,
      CONVEYOR_SIGNING_KEYS: `${KEY.id}:${KEY.secret.toString()}`,
      CONVEYOR_LOG_LEVEL: 'warn',
      CONVEYOR_RATE_LIMIT_PER_KEY: '0',
      CONVEYOR_RATE_LIMIT_PER_ADDRESS: '0',
      CONVEYOR_GC_INTERVAL_SECONDS: '0',
      CONVEYOR_JOB_POLL_MS: '50',
      // A loaded machine must not turn slow decodes into timeouts: this test is about memory.
      CONVEYOR_IMAGE_TIMEOUT_SECONDS: '0',
      CONVEYOR_JOB_LANE_TIMEOUT_SECONDS: 'normal=3600',
      CONVEYOR_IMAGE_MEMORY_BUDGET_BYTES: String(BUDGET),
      CONVEYOR_IMAGE_PRESETS: 'thumb=w:64,h:64,fit:cover,g:attention;small=w:200,fit:inside',
      CONVEYOR_IMAGE_VARIANT_FORMATS: 'webp',
    });
  });
  after(async () => {
    await server?.stop();
    await tmp?.cleanup();
  });

  async function api(method: string, path: string, body?: Buffer): Promise<any> {
    const res = await fetch(server.url + path, {
      method,
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/octet-stream' },
      ...(body ? { body } : {}),
    });
    const text = await res.text();
    assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  }

  /** The image jobs of `ids`, once every one has ended. */
  async function jobsEnded(ids: readonly string[]): Promise<Map<string, any>> {
    for (;;) {
      const { items } = await api('GET', '/api/v1/jobs?type=image.process&limit=100');
      const ended = new Map<string, any>();
      for (const job of items) {
        if (ids.includes(job.payload.assetId) && ['succeeded', 'dead'].includes(job.state)) {
          ended.set(job.payload.assetId, job);
        }
      }
      if (ended.size === ids.length) return ended;
      await sleep(100);
    }
  }

  async function transform(id: string): Promise<number> {
    const signed = `/w:512,h:512,fit:inside,f:webp/${id}`;
    const res = await fetch(`${server.url}/t/${signTransformPath(signed, KEY)}${signed}`);
    await res.arrayBuffer();
    return res.status;
  }

  it('processes seven bombs at once within the budget, and gives the memory back', async (t) => {
    // Load the image library and its decoders with one ordinary image, so that the baseline has them.
    const warm = await api('POST', '/api/v1/assets?filename=warm.jpg', await sceneJpeg(800, 600));
    await jobsEnded([warm.id]);
    assert.equal(await transform(warm.id), 200);
    const pid = server.process.pid!;
    const baseline = rss(pid).rss;

    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rss(pid).rss);
    }, 20);
    let jobs: Map<string, any>;
    let statuses: number[];
    const names = [...bombs.keys()];
    try {
      const ids: string[] = await Promise.all(
        names.map(async (name) => (await api('POST', `/api/v1/assets?filename=${name}`, bombs.get(name))).id),
      );
      [statuses, jobs] = await Promise.all([Promise.all(ids.map(transform)), jobsEnded(ids)]);
      names.forEach((name, i) => {
        const job = jobs.get(ids[i]!)!;
        t.diagnostic(`${name}: job ${job.state} ${job.errors.at(-1)?.code ?? ''}, transform ${statuses[i]}`);
        if (name === 'avif-large') {
          // Its decode alone is estimated at 1 GB: more than the whole budget, so it is refused.
          assert.equal(job.state, 'dead');
          assert.equal(job.errors.at(-1).code, 'image_too_large');
          assert.equal(statuses[i], 413);
        } else {
          assert.equal(job.state, 'succeeded', `${name}: ${JSON.stringify(job.errors)}`);
          assert.equal(statuses[i], 200, name);
        }
      });
    } finally {
      clearInterval(sampler);
    }
    const done = rss(pid);
    peak = Math.max(peak, done.hwm);
    const deadline = Date.now() + SETTLE_DEADLINE_MS;
    let settled = done.rss;
    while (settled - baseline >= SETTLED_CEILING && Date.now() < deadline) {
      await sleep(250);
      settled = rss(pid).rss;
    }
    t.diagnostic(
      `RSS: baseline ${Math.round(baseline / MB)} MB, peak ${Math.round(peak / MB)} MB, ` +
        `when done ${Math.round(done.rss / MB)} MB, settled ${Math.round(settled / MB)} MB`,
    );
    assert.ok(
      peak - baseline < PEAK_CEILING,
      `peak RSS rose by ${Math.round((peak - baseline) / MB)} MB, more than ${PEAK_CEILING / MB} MB`,
    );
    assert.ok(
      settled - baseline < SETTLED_CEILING,
      `RSS stayed ${Math.round((settled - baseline) / MB)} MB above the baseline`,
    );
  });
});
