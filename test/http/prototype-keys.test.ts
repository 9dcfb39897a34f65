import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isRole, requireRole } from '../../src/tenancy/principal.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { assertProblem, readAnswer } from '../helpers/http.ts';
import { PROTOTYPE_NAMES } from '../helpers/prototype.ts';

// Every lookup keyed by what a client sends (roles, tiers, lanes, job types, ingest kinds, presets,
// extensions) is tried with each name Object.prototype lends to plain objects: each must be refused as
// unknown with a 4xx, never taken for an entry and never a 500.

describe('roles are checked against the enum, not the prototype chain', () => {
  it('isRole knows three roles and nothing inherited', () => {
    for (const role of ['admin', 'editor', 'viewer']) assert.equal(isRole(role), true, role);
    for (const name of PROTOTYPE_NAMES) assert.equal(isRole(name), false, name);
  });

  it('requireRole refuses a principal whose role is not one of ours', () => {
    for (const name of PROTOTYPE_NAMES) {
      const principal = { tenantId: 't', role: name as never, operator: false, keyId: null, actor: 'x' };
      assert.throws(() => requireRole(principal, 'viewer'), /needs the viewer role/, name);
    }
  });
});

describe('lookups keyed by request fields refuse Object.prototype names', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor(undefined, { ingestAllowAddresses: '127.0.0.1/32' });
  });
  after(async () => server?.close());

  const post = (path: string, body: unknown) => server.json('POST', path, body);

  for (const name of PROTOTYPE_NAMES) {
    it(`"${name}" as a tier, a key role, a lane, a job type, an ingest kind`, async () => {
      const cases: [string, Promise<{ status: number; headers: Headers; body: unknown }>][] = [
        ['tier', post('/api/v1/tenants', { name: 'x', tier: name })],
        ['key role', post('/api/v1/keys', { role: name })],
        ['job lane', post('/api/v1/jobs', { type: 'noop', lane: name })],
        ['job type', post('/api/v1/jobs', { type: name })],
        ['batch job type', post('/api/v1/jobs/batch', { jobs: [{ type: name }] })],
        [
          'schedule lane',
          post('/api/v1/schedules', { name: 's', cron: '0 3 * * *', type: 'noop', lane: name }),
        ],
        ['schedule type', post('/api/v1/schedules', { name: 's', cron: '0 3 * * *', type: name })],
        ['ingest kind', post('/api/v1/ingest', { url: 'http://127.0.0.1:9/x', kind: name })],
        [
          'batch ingest kind',
          post('/api/v1/ingest/batch', { items: [{ url: 'http://127.0.0.1:9/x', kind: name }] }),
        ],
      ];
      for (const [what, pending] of cases) {
        const answer = await pending;
        const problem = assertProblem(answer, 400, undefined, `${what} ${name}`);
        if (what.endsWith('ingest kind')) assert.match(JSON.stringify(problem), /unknown kind/, what);
      }
      // Nothing was made by any of them.
      const jobs = await server.conveyor.db.kysely.selectFrom('jobs').select('id').execute();
      assert.deepEqual(jobs, []);
    });
  }

  it('a preset or an extension named after an Object.prototype member is an unknown one', async () => {
    const asset = await upload(server, Buffer.from('not an image'), { filename: 'a.bin' });
    for (const name of PROTOTYPE_NAMES) {
      const preset = await readAnswer(await fetch(`${server.url}/t/_/preset:${name}/${asset.id}`));
      assert.ok(preset.status >= 400 && preset.status < 500, `preset ${name}: ${preset.status}`);
      const ext = await readAnswer(await fetch(`${server.url}/t/_/preset:thumb/${asset.id}.${name}`));
      assert.ok(ext.status >= 400 && ext.status < 500, `ext ${name}: ${ext.status}`);
    }
  });
});
