import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { openGate } from '../fixtures/job-types.ts';
import { CHILD_GUARD_MS, childEnv, freePort, MAIN, ROOT } from '../helpers/child.ts';
import {
  BACKENDS,
  createTenant,
  skipIfNoPostgres,
  startConveyor,
  type TestServer,
} from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir } from '../helpers/tmp.ts';

interface Received {
  event: string;
  id?: string;
  data: any;
}

interface SseClient {
  status: number;
  headers: Headers;
  events: Received[];
  /** Resolves when the server ends the stream (or the client closes it). */
  ended: Promise<void>;
  close(): void;
}

/** A minimal EventSource over fetch: parses `event:`/`id:`/`data:` blocks as they arrive. */
async function openSse(
  url: string,
  key?: string | null,
  headers: Record<string, string> = {},
): Promise<SseClient> {
  const controller = new AbortController();
  const res = await fetch(url, {
    headers: { ...headers, ...(key ? { authorization: `Bearer ${key}` } : {}) },
    signal: controller.signal,
  });
  const events: Received[] = [];
  let ended = Promise.resolve();
  if (res.ok && res.body) {
    const body = res.body;
    ended = (async () => {
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for await (const chunk of body) {
          buffer += decoder.decode(chunk, { stream: true });
          for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const fields: Record<string, string> = {};
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) continue;
              const colon = line.indexOf(': ');
              fields[line.slice(0, colon)] = line.slice(colon + 2);
            }
            if (fields['event'] && fields['data'])
              events.push({ event: fields['event'], id: fields['id'], data: JSON.parse(fields['data']) });
          }
        }
      } catch {
        // Aborted by close().
      }
    })();
  } else {
    await res.arrayBuffer();
  }
  return { status: res.status, headers: res.headers, events, ended, close: () => controller.abort() };
}

interface WsClient {
  messages: { event: string; job: any }[];
  closed: Promise<number>;
  opened: Promise<boolean>;
  close(): void;
}

function openWs(url: string): WsClient {
  const socket = new WebSocket(url.replace(/^http/, 'ws'));
  const messages: WsClient['messages'] = [];
  socket.addEventListener('message', (event) => messages.push(JSON.parse(String(event.data))));
  const closed = new Promise<number>((resolve) =>
    socket.addEventListener('close', (event) => resolve(event.code)),
  );
  const opened = new Promise<boolean>((resolve) => {
    socket.addEventListener('open', () => resolve(true));
    socket.addEventListener('error', () => resolve(false));
  });
  return { messages, closed, opened, close: () => socket.close() };
}

const kinds = (events: { event: string }[]) => events.map((e) => e.event);

/** Job types for the worker process, among them `gated`, which the test moves on step by step. */
const JOB_MODULES = './test/fixtures/job-types.ts';

const SETTINGS = {
  jobPollMs: 20,
  jobHeartbeatMs: 50,
  jobProgressIntervalMs: 0,
  jobEventsPollMs: 50,
  jobEventsResumeMaxJobs: 3,
};

/** One slot in the low lane, so that a job running there holds back the next until it is cancelled. */
const ONE_LOW_SLOT = { jobLaneConcurrency: { critical: 3, high: 5, normal: 8, low: 1 } as any };

/**
 * Enqueues `body` in the low lane behind a running job, so that it stays queued, however fast the worker,
 * until `release()` cancels that job. What a client opening a stream sees first is then known.
 */
async function heldBack(server: TestServer, body: object) {
  const jobState = async (id: string) => (await server.json('GET', `/api/v1/jobs/${id}`)).body.state;
  const blocker = await server.json('POST', '/api/v1/jobs', {
    type: 'sleep',
    payload: { ms: 600_000 },
    priority: 'low',
  });
  assert.equal(blocker.status, 202);
  await waitFor('the blocking job to start', async () => (await jobState(blocker.body.id)) === 'active');
  const job = await server.json('POST', '/api/v1/jobs', { ...body, priority: 'low' });
  assert.equal(job.status, 202);
  return {
    job,
    async release() {
      const cancelled = await server.json('POST', `/api/v1/jobs/${blocker.body.id}/cancel`);
      assert.equal(cancelled.status, 200);
    },
  };
}

for (const backend of BACKENDS) {
  describe(`live job events on ${backend.database}`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    before(async () => {
      if (skip) return;
      server = await startConveyor(backend, { serveWorkers: true, ...SETTINGS, ...ONE_LOW_SLOT });
    });
    after(() => server?.close());

    test('SSE for one job: a snapshot, progress, then succeeded, and the stream ends', {
      skip,
      timeout: 30_000,
    }, async () => {
      // Held back until the stream is open, so that the stream sees it start.
      const { job, release } = await heldBack(server, { type: 'sleep', payload: { ms: 300 } });
      const stream = await openSse(`${server.url}/api/v1/jobs/${job.body.id}/events`, server.adminKey);
      assert.equal(stream.status, 200);
      assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
      // The snapshot is read after the stream subscribed: once it is here, no event can be missed.
      await waitFor('the snapshot', async () => stream.events.length > 0);
      await release();
      await stream.ended;
      const seen = kinds(stream.events);
      assert.equal(seen[0], 'snapshot');
      assert.equal(stream.events[0]!.data.state, 'queued');
      assert.equal(seen.at(-1), 'succeeded');
      assert.ok(seen.includes('started'), seen.join());
      assert.ok(seen.includes('progress'), seen.join());
      assert.ok(seen.indexOf('started') < seen.indexOf('progress'));
      assert.deepEqual(stream.events.at(-1)!.data.result, { slept: 300 });
      assert.ok(stream.events.every((e) => e.data.id === job.body.id && e.data.links.self));
      // Each event's id is its change time, what a reconnecting client sends back as Last-Event-ID.
      assert.deepEqual(
        stream.events.map((e) => Number(e.id)),
        stream.events.map((e) => Date.parse(e.data.updatedAt)),
      );
    });

    test('SSE resumes from Last-Event-ID: what changed meanwhile comes as snapshots, then live events', {
      skip,
      timeout: 30_000,
    }, async () => {
      // A tenant of its own, so that only this test's jobs changed since the id it resumes from.
      const tenant = await createTenant(server, `resume-${backend.database}`);
      const enqueue = async () =>
        (await server.json('POST', '/api/v1/jobs', { type: 'noop' }, tenant.key)).body;
      const succeeded = (stream: SseClient, id: string) =>
        stream.events.some(
          (e) =>
            e.data.id === id && ['succeeded', 'snapshot'].includes(e.event) && e.data.state === 'succeeded',
        );

      const first = await openSse(`${server.url}/api/v1/events`, tenant.key);
      const a = await enqueue();
      await waitFor('job a on the first stream', async () => succeeded(first, a.id));
      first.close();
      const lastId = first.events.at(-1)!.id!;

      const b = await enqueue();
      await waitFor(
        'job b to succeed while no stream is open',
        async () =>
          (await server.json('GET', `/api/v1/jobs/${b.id}`, undefined, tenant.key)).body.state ===
          'succeeded',
      );
      const resumed = await openSse(`${server.url}/api/v1/events`, tenant.key, { 'last-event-id': lastId });
      try {
        await waitFor('job b replayed', async () => succeeded(resumed, b.id));
        const replayed = resumed.events.find((e) => e.data.id === b.id)!;
        assert.equal(replayed.event, 'snapshot');
        assert.equal(replayed.id, String(Date.parse(replayed.data.updatedAt)));
        const c = await enqueue();
        await waitFor('job c live', async () => succeeded(resumed, c.id));
        assert.deepEqual(kinds(resumed.events.filter((e) => e.data.id === c.id)), [
          'enqueued',
          'started',
          'succeeded',
        ]);
        assert.ok(resumed.events.every((e) => e.data.tenantId === tenant.tenantId));
      } finally {
        resumed.close();
      }

      // More changes than CONVEYOR_JOB_EVENTS_RESUME_MAX_JOBS (3 here: a, b, c and one more): one
      // `reset`, then live events.
      await enqueue();
      const many = await openSse(`${server.url}/api/v1/events`, tenant.key, { 'last-event-id': '1' });
      try {
        await waitFor('the reset event', async () => many.events.length > 0);
        assert.equal(many.events[0]!.event, 'reset');
        assert.match(many.events[0]!.data.reason, /more than 3 jobs changed/);
        const d = await enqueue();
        await waitFor('job d live after the reset', async () => succeeded(many, d.id));
        assert.ok(!many.events.some((e) => e.event === 'snapshot'));
      } finally {
        many.close();
      }

      // A garbled Last-Event-ID is ignored: a new stream, no replay.
      const garbled = await openSse(`${server.url}/api/v1/events`, tenant.key, { 'last-event-id': 'x1' });
      try {
        const e = await enqueue();
        await waitFor('job e live', async () => succeeded(garbled, e.id));
        assert.ok(garbled.events.every((event) => event.data.id === e.id));
      } finally {
        garbled.close();
      }
    });

    test("one job's stream resumed after its end answers 204, so EventSource stops reconnecting", {
      skip,
      timeout: 30_000,
    }, async () => {
      const job = await server.json('POST', '/api/v1/jobs', { type: 'noop' });
      const url = `${server.url}/api/v1/jobs/${job.body.id}/events`;
      const first = await openSse(url, server.adminKey);
      await first.ended;
      const last = first.events.at(-1)!;
      assert.equal(last.data.state, 'succeeded');
      const again = await openSse(url, server.adminKey, { 'last-event-id': last.id! });
      assert.equal(again.status, 204);
      assert.deepEqual(again.events, []);
      // From before its end: the snapshot of how it ended.
      const earlier = await openSse(url, server.adminKey, { 'last-event-id': String(Number(last.id) - 1) });
      await earlier.ended;
      assert.equal(earlier.status, 200);
      assert.deepEqual(kinds(earlier.events), ['snapshot']);
      assert.equal(earlier.events[0]!.data.state, 'succeeded');
    });

    test('a finished job answers its snapshot and ends at once', { skip, timeout: 30_000 }, async () => {
      const job = await server.json('POST', '/api/v1/jobs', { type: 'noop' });
      await waitFor(
        'the job to succeed',
        async () => (await server.json('GET', `/api/v1/jobs/${job.body.id}`)).body.state === 'succeeded',
      );
      const stream = await openSse(`${server.url}/api/v1/jobs/${job.body.id}/events`, server.adminKey);
      await stream.ended;
      assert.deepEqual(kinds(stream.events), ['snapshot']);
      assert.equal(stream.events[0]!.data.state, 'succeeded');
    });

    test('the tenant stream sees every job; ?type= filters', { skip, timeout: 30_000 }, async () => {
      const all = await openSse(`${server.url}/api/v1/events`, server.adminKey);
      const noops = await openSse(`${server.url}/api/v1/events?type=noop`, server.adminKey);
      try {
        const a = await server.json('POST', '/api/v1/jobs', { type: 'noop' });
        const b = await server.json('POST', '/api/v1/jobs', { type: 'sleep', payload: { ms: 5 } });
        const finished = (stream: SseClient, id: string) =>
          stream.events.some((e) => e.data.id === id && e.event === 'succeeded');
        await waitFor(
          'both jobs on the tenant stream',
          async () => finished(all, a.body.id) && finished(all, b.body.id),
        );
        await waitFor('the noop on the filtered stream', async () => finished(noops, a.body.id));
        assert.deepEqual(kinds(all.events.filter((e) => e.data.id === a.body.id)), [
          'enqueued',
          'started',
          'succeeded',
        ]);
        assert.ok(noops.events.every((e) => e.data.type === 'noop'));
      } finally {
        all.close();
        noops.close();
      }
    });

    test('tenant isolation: 404 for another tenant or an unknown id; their stream sees nothing of ours', {
      skip,
      timeout: 30_000,
    }, async () => {
      const other = await createTenant(server, `events-${backend.database}`);
      const ours = await server.json('POST', '/api/v1/jobs', { type: 'sleep', payload: { ms: 50 } });
      const foreign = await openSse(`${server.url}/api/v1/jobs/${ours.body.id}/events`, other.key);
      assert.equal(foreign.status, 404);
      const unknown = await openSse(`${server.url}/api/v1/jobs/job_doesnotexist/events`, server.adminKey);
      assert.equal(unknown.status, 404);
      const unauthenticated = await openSse(`${server.url}/api/v1/events`, null);
      assert.equal(unauthenticated.status, 401);

      const theirs = await openSse(`${server.url}/api/v1/events`, other.key);
      try {
        const mine = await server.json('POST', '/api/v1/jobs', { type: 'noop' });
        const own = await server.json('POST', '/api/v1/jobs', { type: 'noop' }, other.key);
        assert.equal(own.status, 202);
        // Their own job's end comes after ours was enqueued: had ours leaked, it would be there by then.
        await waitFor('their job on their stream', async () =>
          theirs.events.some((e) => e.data.id === own.body.id && e.event === 'succeeded'),
        );
        await waitFor(
          'our job to succeed',
          async () => (await server.json('GET', `/api/v1/jobs/${mine.body.id}`)).body.state === 'succeeded',
        );
        assert.ok(theirs.events.every((e) => e.data.tenantId === other.tenantId));
      } finally {
        theirs.close();
      }
    });

    test('WebSocket with ?access_token=: JSON messages for one job and for the tenant', {
      skip,
      timeout: 30_000,
    }, async () => {
      const tenantWs = openWs(`${server.url}/api/v1/events?access_token=${server.adminKey}`);
      assert.equal(await tenantWs.opened, true);
      const { job, release } = await heldBack(server, { type: 'sleep', payload: { ms: 20 } });
      const jobWs = openWs(`${server.url}/api/v1/jobs/${job.body.id}/events?access_token=${server.adminKey}`);
      assert.equal(await jobWs.opened, true);
      await waitFor('the snapshot', async () => jobWs.messages.length > 0);
      await release();
      assert.equal(await jobWs.closed, 1000);
      const seen = kinds(jobWs.messages);
      assert.equal(seen[0], 'snapshot');
      assert.equal(jobWs.messages[0]!.job.state, 'queued');
      assert.equal(seen.at(-1), 'succeeded');
      assert.ok(jobWs.messages.every((m) => m.job.id === job.body.id));
      await waitFor('the job on the tenant socket', async () =>
        tenantWs.messages.some((m) => m.job.id === job.body.id && m.event === 'succeeded'),
      );
      tenantWs.close();
      await tenantWs.closed;

      // TODO: a refused upgrade (401) holds the server's close open (see report); not tested here yet.
      // SSE takes the token too (EventSource cannot set headers either).
      const sse = await openSse(
        `${server.url}/api/v1/jobs/${job.body.id}/events?access_token=${server.adminKey}`,
        null,
      );
      assert.equal(sse.status, 200);
      await sse.ended;
      // Other API routes do not.
      const res = await fetch(`${server.url}/api/v1/jobs?access_token=${server.adminKey}`);
      assert.equal(res.status, 401);
      // An Authorization header wins over the query; a query token is read as the header's credential is.
      const events = `${server.url}/api/v1/jobs/${job.body.id}/events`;
      const headerWins = await fetch(`${events}?access_token=wrong`, {
        headers: { authorization: `Bearer ${server.adminKey}` },
      });
      assert.equal(headerWins.status, 200);
      await headerWins.text();
      const badHeader = await fetch(`${events}?access_token=${server.adminKey}`, {
        headers: { authorization: 'Bearer wrong' },
      });
      assert.equal(badHeader.status, 401);
      await badHeader.text();
      const padded = await fetch(`${events}?access_token=${encodeURIComponent(`  ${server.adminKey} `)}`);
      assert.equal(padded.status, 200);
      await padded.text();
      const twoWords = await fetch(`${events}?access_token=${encodeURIComponent(`${server.adminKey} x`)}`);
      assert.equal(twoWords.status, 401);
      assert.match(((await twoWords.json()) as { detail: string }).detail, /Use Authorization: Bearer/);
    });

    test('closed clients leave no subscriptions behind', { skip, timeout: 30_000 }, async () => {
      const stream = await openSse(`${server.url}/api/v1/events`, server.adminKey);
      stream.close();
      await stream.ended;
      const ws = openWs(`${server.url}/api/v1/events?access_token=${server.adminKey}`);
      await ws.opened;
      ws.close();
      await ws.closed;
      // The server notices the disconnects asynchronously: a fresh stream must still work and be the only one.
      const again = await openSse(`${server.url}/api/v1/events`, server.adminKey);
      const job = await server.json('POST', '/api/v1/jobs', { type: 'noop' });
      await waitFor('the job on the new stream', async () =>
        again.events.some((e) => e.data.id === job.body.id && e.event === 'succeeded'),
      );
      again.close();
    });
  });

  describe(`live job events across processes on ${backend.database}`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    let worker: ChildProcess | undefined;
    let output = '';
    before(async () => {
      if (skip) return;
      // An API-only server: every job runs in the separate worker process.
      server = await startConveyor(backend, { ...SETTINGS, serveWorkers: false, jobModules: JOB_MODULES });
    });
    after(async () => {
      if (worker && worker.exitCode === null && worker.signalCode === null) {
        const exited = once(worker, 'exit');
        worker.kill('SIGTERM');
        await exited;
      }
      await server?.close();
    });

    test('a job run by `conveyor worker` is seen live by an SSE client of the server, and on its /metrics', {
      skip,
      timeout: 2 * CHILD_GUARD_MS,
    }, async () => {
      const job = await server.json('POST', '/api/v1/jobs', { type: 'gated', payload: { steps: 2 } });
      assert.equal(job.status, 202);
      const stream = await openSse(`${server.url}/api/v1/jobs/${job.body.id}/events`, server.adminKey);
      const tenant = await openSse(`${server.url}/api/v1/events`, server.adminKey);
      const metricsPort = await freePort();
      const gates = await makeTempDir('conveyor-gates-');
      try {
        worker = spawn(process.execPath, [MAIN, 'worker'], {
          cwd: ROOT,
          env: childEnv({
            CONVEYOR_WORKER_METRICS_PORT: String(metricsPort),
            CONVEYOR_DATA_DIR: server.config.dataDir,
            ...(server.config.databaseUrl ? { CONVEYOR_DATABASE_URL: server.config.databaseUrl } : {}),
            CONVEYOR_JOB_MODULES: JOB_MODULES,
            CONVEYOR_LOG_LEVEL: 'warn',
            CONVEYOR_JOB_POLL_MS: '20',
            CONVEYOR_JOB_HEARTBEAT_MS: '50',
            CONVEYOR_JOB_PROGRESS_INTERVAL_MS: '0',
            TEST_EFFECTS_DIR: gates.path,
          }),
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        worker.stdout!.on('data', (text) => (output += text));
        worker.stderr!.on('data', (text) => (output += text));
        // The job moves on only once the stream has shown where it is: a SQLite poll or a PostgreSQL
        // notification reads the job's row as it is by then, so a state that passed quickly could be missed.
        const shown = (kind: string) =>
          waitFor(`${kind} on the stream`, async () => kinds(stream.events).includes(kind), CHILD_GUARD_MS);
        await shown('started');
        openGate(gates.path, job.body.id, 1);
        await shown('progress');
        openGate(gates.path, job.body.id, 2);
        await stream.ended;
        const seen = kinds(stream.events);
        assert.deepEqual(seen.slice(0, 3), ['snapshot', 'started', 'progress'], output);
        assert.equal(stream.events[0]!.data.state, 'queued');
        assert.equal(seen.at(-1), 'succeeded', output);
        assert.deepEqual(stream.events.at(-1)!.data.result, { steps: 2 });
        await waitFor('the job on the tenant stream', async () =>
          tenant.events.some((e) => e.data.id === job.body.id && e.event === 'succeeded'),
        );
        // The worker's own /metrics has the run, which the API-only server never saw.
        const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        assert.match(metrics, /^conveyor_job_run_seconds_count\{type="gated",lane="normal"\} 1$/m);
        assert.match(metrics, /^conveyor_job_wait_seconds_count\{type="gated",lane="normal"\} 1$/m);
        assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status, 404);
        const serverMetrics = await (await fetch(`${server.url}/metrics`)).text();
        assert.doesNotMatch(serverMetrics, /^conveyor_job_run_seconds_count\{type="gated"/m);
      } finally {
        tenant.close();
        stream.close();
        await gates.cleanup();
      }
    });
  });
}
