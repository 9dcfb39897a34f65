import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { breakerLabel } from '../../src/ops/metrics.ts';
import { createTenant, startConveyor, type TestServer } from '../helpers/conveyor.ts';
import { request } from '../helpers/http.ts';

/**
 * Where /metrics is served and to whom: on the main port or a listener of its own (`metricsPort`), with
 * or without a bearer token (`metricsToken`); and what its labels tell about tenants (`metricsHostLabels`).
 */

const TOKEN = 'metrics-token-of-this-test';

const HOST = 'cdn.tenant-a.example';

/** Opens a breaker under tenant A's ingest host, as a failed fetch would. */
async function openIngestBreaker(server: TestServer): Promise<void> {
  const a = await createTenant(server, 'ingesting');
  const ingest = await server.json('POST', '/api/v1/ingest', { url: `https://${HOST}/x.jpg` }, a.key);
  assert.equal(ingest.status, 202, JSON.stringify(ingest.body));
  assert.equal(ingest.body.breakerKey, `host:${HOST}`);
  await server.conveyor.jobs.breakers.record(
    server.conveyor.db.kysely,
    `host:${HOST}`,
    { success: false, jobId: ingest.body.id, threshold: 1 },
    Date.now(),
  );
}

describe('breaker labels', () => {
  it('hash the host name of an ingest key, and any other key whole, unless host names may show', () => {
    const hex = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 12);
    assert.equal(breakerLabel(`host:${HOST}`, false), `host:h-${hex(HOST)}`);
    assert.equal(breakerLabel('cdn:x.example', false), `h-${hex('cdn:x.example')}`);
    assert.equal(breakerLabel(`host:${HOST}`, true), `host:${HOST}`);
  });

  for (const hostLabels of [false, true]) {
    it(`show ${hostLabels ? 'the host name' : 'a hash of the host name'} with metricsHostLabels=${hostLabels}`, async () => {
      const server = await startConveyor(undefined, { metricsHostLabels: hostLabels });
      try {
        await openIngestBreaker(server);
        const text = (await request(server, 'GET', '/metrics')).body.toString();
        const label = hostLabels ? `host:${HOST}` : breakerLabel(`host:${HOST}`, false);
        assert.ok(text.includes(`conveyor_job_breaker_state{key="${label}"} 2`), text);
        assert.equal(text.includes('tenant-a'), hostLabels, 'the host name shows in the metrics');
      } finally {
        await server.close();
      }
    });
  }
});

describe('/metrics on the main port, with a token', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor(undefined, { metricsToken: TOKEN });
  });
  after(() => server.close());

  it('answers 401 with WWW-Authenticate without the token, and the metrics with it', async () => {
    for (const authorization of [
      undefined,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(1)}`,
      TOKEN,
      'Bearer ',
    ]) {
      for (const method of ['GET', 'HEAD']) {
        const res = await request(server, method, '/metrics', authorization ? { authorization } : {});
        assert.equal(res.status, 401, `${method} ${authorization}`);
        const rejected = authorization?.startsWith('Bearer ');
        assert.equal(res.headers['www-authenticate'], rejected ? 'Bearer error="invalid_token"' : 'Bearer');
        assert.ok(!res.body.includes('conveyor_'), 'a 401 holds metrics');
      }
    }
    // RFC 9110 §11.1: the scheme is case-insensitive.
    for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`]) {
      const res = await request(server, 'GET', '/metrics', { authorization });
      assert.equal(res.status, 200, authorization);
      assert.match(res.body.toString(), /^conveyor_http_requests_total/m);
    }
  });
});

describe('/metrics: the process and runtime metrics', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor();
  });
  after(() => server.close());

  it("include prom-client's standard process_* and nodejs_* metrics beside Conveyor's own", async () => {
    const res = await request(server, 'GET', '/metrics', {});
    assert.equal(res.status, 200);
    const text = res.body.toString();
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'process_open_fds',
      'process_start_time_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_active_handles_total',
      'nodejs_version_info',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
      assert.match(text, new RegExp(`^${name}(\\{[^}]*\\})? [0-9.e+-]+$`, 'm'), `${name} has a value`);
    }
    assert.match(text, /^# TYPE conveyor_http_requests_total counter$/m);
  });
});

describe('/metrics on a port of its own (metricsPort)', () => {
  let server: TestServer;
  let metricsUrl: string;
  before(async () => {
    server = await startConveyor(undefined, { metricsPort: '0', metricsToken: TOKEN });
    metricsUrl = server.conveyor.metricsUrl()!;
  });
  after(() => server.close());

  it('serves the metrics there, with the token, and nowhere on the main port', async () => {
    assert.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.notEqual(new URL(metricsUrl).port, new URL(server.url).port);
    const metricsPort = { url: new URL(metricsUrl).origin };
    const auth = { authorization: `Bearer ${TOKEN}` };
    // Counted on the main port, read on the other.
    assert.equal((await request(server, 'GET', '/healthz')).status, 200);
    const res = await request(metricsPort, 'GET', '/metrics', auth);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.match(
      res.body.toString(),
      /^conveyor_http_requests_total\{method="GET",route="\/healthz",status="200"\} 1$/m,
    );
    const head = await request(metricsPort, 'HEAD', '/metrics', auth);
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);

    for (const [headers, status] of [
      [{}, 401],
      [{ authorization: 'Bearer wrong-token-of-16-chars' }, 401],
    ] as const) {
      const refused = await request(metricsPort, 'GET', '/metrics', headers);
      assert.equal(refused.status, status);
      const rejected = 'authorization' in headers;
      assert.equal(refused.headers['www-authenticate'], rejected ? 'Bearer error="invalid_token"' : 'Bearer');
      assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
    }
    assert.equal((await request(metricsPort, 'GET', '/other', auth)).status, 404);
    assert.equal((await request(metricsPort, 'POST', '/metrics', auth)).status, 405);

    for (const headers of [{}, auth]) {
      const main = await request(server, 'GET', '/metrics', headers);
      assert.equal(main.status, 404);
      assert.ok(!main.body.includes('conveyor_'), 'the main port serves metrics');
    }
  });
});
