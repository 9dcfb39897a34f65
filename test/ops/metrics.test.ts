import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { breakerLabel } from '../../src/ops/metrics.ts';
import { createTenant, startConveyor, type TestServer } from '../helpers/conveyor.ts';
import { request } from '../helpers/http.ts';

/** What /metrics labels tell about tenants (`metricsHostLabels`). */

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
