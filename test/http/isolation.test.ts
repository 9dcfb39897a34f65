import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { newId } from '../../src/db/ids.ts';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import {
  BACKENDS,
  createTenant,
  skipIfNoPostgres,
  startConveyor,
  type TestServer,
  upload,
} from '../helpers/conveyor.ts';
import { type Answer, assertProblem, readAnswer } from '../helpers/http.ts';

/** A request with any body: JSON objects are sent as JSON, Buffers as raw octets. */
async function call(
  server: TestServer,
  method: string,
  path: string,
  body?: unknown,
  key?: string | null,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const init: RequestInit & { key?: string | null } = { method, headers: { ...headers } };
  if (key !== undefined) init.key = key;
  if (Buffer.isBuffer(body)) {
    init.body = body;
    (init.headers as Record<string, string>)['content-type'] ??= 'application/octet-stream';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  return readAnswer(await server.fetch(path, init));
}

/** Every /api/v1 route that names an asset, with a body that would be accepted for an owned asset. */
function assetRoutes(id: string): [method: string, path: string, body?: unknown][] {
  return [
    ['GET', `/api/v1/assets/${id}`],
    ['PATCH', `/api/v1/assets/${id}`, { visibility: 'private', filename: 'stolen.txt' }],
    ['PUT', `/api/v1/assets/${id}/content`, Buffer.from('overwritten by another tenant')],
    ['POST', `/api/v1/assets/${id}/publish`],
    ['GET', `/api/v1/assets/${id}/versions`],
    ['POST', `/api/v1/assets/${id}/tokens`, { ttlSeconds: 60 }],
    ['POST', `/api/v1/assets/${id}/signed-url`, { ttlSeconds: 60 }],
    ['POST', `/api/v1/assets/${id}/transform-url`, { width: 10 }],
    ['POST', '/api/v1/ingest', { url: 'http://example.com/a.jpg', assetId: id }],
    ['DELETE', `/api/v1/assets/${id}`],
  ];
}

for (const backend of BACKENDS) {
  describe(`tenant isolation on ${backend.database} + ${backend.storage}`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    /** Tenant A is the default tenant (server.adminKey); B is a second tenant with its own admin. */
    let b: { tenantId: string; key: string };
    let assetA: any;
    let privateA: any;
    let versionA: any;
    let tokenA: { id: string; token: string; url: string };
    let viewerKey: string;
    let editorKey: string;

    before(async () => {
      if (skip) return;
      server = await startConveyor(backend);
      b = await createTenant(server, 'tenant-b');
      assetA = await upload(server, 'tenant A public bytes', {
        filename: 'a.txt',
        contentType: 'text/plain',
      });
      privateA = await upload(server, 'tenant A private bytes', {
        filename: 'secret.txt',
        contentType: 'text/plain',
        visibility: 'private',
      });
      const published = await server.json('POST', `/api/v1/assets/${assetA.id}/publish`);
      assert.equal(published.status, 201);
      versionA = published.body;
      const token = await server.json('POST', `/api/v1/assets/${privateA.id}/tokens`, { ttlSeconds: 600 });
      assert.equal(token.status, 201);
      tokenA = token.body;
      const viewer = await server.json('POST', '/api/v1/keys', { role: 'viewer', name: 'viewer' });
      const editor = await server.json('POST', '/api/v1/keys', { role: 'editor', name: 'editor' });
      assert.equal(viewer.status, 201);
      assert.equal(editor.status, 201);
      viewerKey = viewer.body.key;
      editorKey = editor.body.key;
    });
    after(async () => server?.close());

    it("answers 404 (not 403) for another tenant's asset on every asset route", { skip }, async () => {
      for (const target of [assetA, privateA]) {
        for (const [method, path, body] of assetRoutes(target.id)) {
          assertProblem(await call(server, method, path, body, b.key), 404, 'not_found', `${method} ${path}`);
        }
      }
      // Nothing of A changed: same content, visibility, name and version count, and it still delivers.
      const still = await server.json('GET', `/api/v1/assets/${assetA.id}`);
      assert.equal(still.status, 200);
      assert.equal(still.body.filename, 'a.txt');
      assert.equal(still.body.visibility, 'public');
      assert.equal(still.body.sha256, assetA.sha256);
      assert.equal(still.body.versionCount, 1);
      assert.equal(await (await fetch(assetA.url)).text(), 'tenant A public bytes');
      const versions = await server.json('GET', `/api/v1/assets/${assetA.id}/versions`);
      assert.deepEqual(
        versions.body.items.map((v: { id: string }) => v.id),
        [versionA.id],
      );
    });

    it("a foreign asset's 404 is indistinguishable from a missing asset's", { skip }, async () => {
      const missing = newId('ast');
      const foreign = assetRoutes(assetA.id);
      const absent = assetRoutes(missing);
      for (let i = 0; i < foreign.length; i++) {
        const [method, path, body] = foreign[i]!;
        const a = assertProblem(await call(server, method, path, body, b.key), 404, 'not_found', path);
        const m = assertProblem(await call(server, method, absent[i]![1], body, b.key), 404, 'not_found');
        assert.equal(a.detail, m.detail, `${method} ${path}`);
        assert.equal(a.title, m.title, `${method} ${path}`);
      }
    });

    it("a signed-url request naming another tenant's version answers like a missing asset", {
      skip,
    }, async () => {
      // With B's key, whether version V belongs to asset X must not be learnable: every combination of
      // A's ids (and made-up ones) has to give B the same answer as an asset that does not exist.
      const answers = [];
      for (const [assetId, versionId] of [
        [assetA.id, versionA.id],
        [assetA.id, newId('ver')],
        [newId('ast'), versionA.id],
        [newId('ast'), newId('ver')],
      ]) {
        const res = await call(
          server,
          'POST',
          `/api/v1/assets/${assetId}/signed-url`,
          { ttlSeconds: 60, versionId },
          b.key,
        );
        const problem = assertProblem(res, 404, 'not_found');
        answers.push(problem.detail);
      }
      assert.equal(new Set(answers).size, 1, `answers differ: ${JSON.stringify(answers)}`);
    });

    it("never lists another tenant's assets", { skip }, async () => {
      const own = await upload(server, 'tenant B bytes', { filename: 'a.txt', key: b.key });
      for (const query of [
        '',
        '?visibility=private',
        '?visibility=public',
        '?filename=a',
        '?contentType=text/',
      ]) {
        const list = await server.json('GET', `/api/v1/assets${query}`, undefined, b.key);
        assert.equal(list.status, 200);
        const ids = list.body.items.map((a: { id: string }) => a.id);
        assert.ok(!ids.includes(assetA.id), query);
        assert.ok(!ids.includes(privateA.id), query);
        for (const item of list.body.items) assert.equal(item.id, own.id, query);
      }
      // A cursor taken from A's ids gives no window into A's rows either.
      const cursor = await server.json('GET', `/api/v1/assets?cursor=${newId('ast')}`, undefined, b.key);
      assert.deepEqual(
        cursor.body.items.map((a: { id: string }) => a.id),
        [own.id],
      );
      assert.equal((await server.json('DELETE', `/api/v1/assets/${own.id}`, undefined, b.key)).status, 204);
    });

    it("cannot revoke another tenant's key or token, nor list its keys", { skip }, async () => {
      const keysA = await server.json('GET', '/api/v1/keys');
      assert.equal(keysA.status, 200);
      assert.ok(keysA.body.items.length >= 3);
      for (const key of keysA.body.items) {
        assertProblem(
          await call(server, 'DELETE', `/api/v1/keys/${key.id}`, undefined, b.key),
          404,
          'not_found',
        );
      }
      assertProblem(
        await call(server, 'DELETE', `/api/v1/tokens/${tokenA.id}`, undefined, b.key),
        404,
        'not_found',
      );
      assertProblem(
        await call(server, 'GET', `/api/v1/keys?tenantId=${server.tenantId}`, undefined, b.key),
        404,
        'not_found',
      );
      // A's keys and token still work.
      assert.equal((await server.json('GET', '/api/v1/assets', undefined, viewerKey)).status, 200);
      assert.equal((await server.json('GET', '/api/v1/assets')).status, 200);
      const delivered = await fetch(tokenA.url);
      assert.equal(delivered.status, 200);
      assert.equal(await delivered.text(), 'tenant A private bytes');
      const after = await server.json('GET', '/api/v1/keys');
      assert.ok(after.body.items.every((k: { revokedAt: unknown }) => k.revokedAt === null));
    });

    it('a tenant admin cannot create keys for another tenant (404) nor manage tenants (403)', {
      skip,
    }, async () => {
      for (const tenantId of [server.tenantId, newId('ten'), 'not-a-tenant']) {
        assertProblem(
          await call(server, 'POST', '/api/v1/keys', { tenantId, role: 'admin' }, b.key),
          404,
          'not_found',
          tenantId,
        );
      }
      assertProblem(
        await call(server, 'POST', '/api/v1/keys', { role: 'admin', operator: true }, b.key),
        403,
        'forbidden',
      );
      assertProblem(
        await call(server, 'POST', '/api/v1/tenants', { name: 'x', tier: 'free' }, b.key),
        403,
        'forbidden',
      );
      assertProblem(await call(server, 'GET', '/api/v1/tenants', undefined, b.key), 403, 'forbidden');
      // Its own tenant is fine.
      const own = await server.json('POST', '/api/v1/keys', { role: 'viewer' }, b.key);
      assert.equal(own.status, 201);
      assert.equal(own.body.tenantId, b.tenantId);
    });

    it('enforces roles: viewers read only, editors cannot manage keys or tenants', { skip }, async () => {
      for (const [method, path, body] of [
        ['POST', '/api/v1/assets?filename=v.txt', Buffer.from('viewer upload')],
        ['PUT', `/api/v1/assets/${assetA.id}/content`, Buffer.from('viewer replace')],
        ['PATCH', `/api/v1/assets/${assetA.id}`, { filename: 'viewer.txt' }],
        ['DELETE', `/api/v1/assets/${assetA.id}`],
        ['POST', `/api/v1/assets/${assetA.id}/publish`],
        ['POST', `/api/v1/assets/${assetA.id}/tokens`, { ttlSeconds: 60 }],
        ['DELETE', `/api/v1/tokens/${tokenA.id}`],
        ['POST', '/api/v1/keys', { role: 'viewer' }],
        ['GET', '/api/v1/keys'],
        ['POST', '/api/v1/tenants', { name: 'x' }],
      ] as const) {
        assertProblem(
          await call(server, method, path, body, viewerKey),
          403,
          'forbidden',
          `viewer ${method} ${path}`,
        );
      }
      for (const [method, path] of [
        ['GET', `/api/v1/assets/${assetA.id}`],
        ['GET', '/api/v1/assets'],
        ['GET', `/api/v1/assets/${assetA.id}/versions`],
      ] as const) {
        assert.equal((await call(server, method, path, undefined, viewerKey)).status, 200, `viewer ${path}`);
      }
      const keyId = (await server.json('GET', '/api/v1/keys')).body.items[0].id;
      for (const [method, path, body] of [
        ['POST', '/api/v1/keys', { role: 'viewer' }],
        ['POST', '/api/v1/keys', { role: 'admin' }],
        ['GET', '/api/v1/keys'],
        ['DELETE', `/api/v1/keys/${keyId}`],
        ['POST', '/api/v1/tenants', { name: 'x' }],
        ['GET', '/api/v1/tenants'],
      ] as const) {
        assertProblem(
          await call(server, method, path, body, editorKey),
          403,
          'forbidden',
          `editor ${method} ${path}`,
        );
      }
      const asset = await upload(server, 'editor upload', { key: editorKey });
      assert.equal(
        (await server.json('DELETE', `/api/v1/assets/${asset.id}`, undefined, editorKey)).status,
        204,
      );
      // Nothing the viewer tried took effect.
      const unchanged = await server.json('GET', `/api/v1/assets/${assetA.id}`);
      assert.equal(unchanged.body.filename, 'a.txt');
      assert.equal(unchanged.body.versionCount, 1);
      assert.equal(unchanged.body.sha256, assetA.sha256);
    });

    it('answers 401 problem+json with WWW-Authenticate for missing, malformed, unknown and revoked keys', {
      skip,
    }, async () => {
      const created = await server.json('POST', '/api/v1/keys', { role: 'editor', name: 'to revoke' });
      assert.equal(created.status, 201);
      assert.equal((await server.json('GET', '/api/v1/assets', undefined, created.body.key)).status, 200);
      assert.equal((await server.json('DELETE', `/api/v1/keys/${created.body.id}`)).status, 204);

      const cases: [string, Record<string, string>][] = [
        ['missing', {}],
        ['empty', { authorization: '' }],
        ['basic scheme', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }],
        ['bearer without credential', { authorization: 'Bearer' }],
        ['bearer with two words', { authorization: `Bearer ${server.adminKey} extra` }],
        ['not a key', { authorization: 'Bearer hello' }],
        ['truncated key', { authorization: `Bearer ${server.adminKey.slice(0, -1)}` }],
        ['unknown key', { authorization: `Bearer ${generateApiKey()}` }],
        ['JWT without JWT support', { authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln' }],
        ['revoked key', { authorization: `Bearer ${created.body.key}` }],
      ];
      for (const [name, headers] of cases) {
        for (const [method, path, body] of [
          ['GET', '/api/v1/assets'],
          ['POST', '/api/v1/assets?filename=x', Buffer.from('x')],
          ['GET', `/api/v1/assets/${assetA.id}`],
          ['DELETE', `/api/v1/assets/${assetA.id}`],
          ['GET', '/api/v1/keys'],
          ['POST', '/api/v1/tenants', { name: 'x' }],
        ] as const) {
          const res = await call(server, method, path, body, null, headers);
          assertProblem(res, 401, 'unauthenticated', `${name}: ${method} ${path}`);
          // RFC 6750 §3.1: a Bearer credential given and rejected is an invalid_token; none given, no error.
          const given = /^Bearer/.test(headers['authorization'] ?? '');
          assert.equal(
            res.headers.get('www-authenticate'),
            given ? 'Bearer error="invalid_token"' : 'Bearer',
            name,
          );
        }
      }
      // Still there after all of that.
      assert.equal((await server.json('GET', `/api/v1/assets/${assetA.id}`)).status, 200);
    });

    it('a revoked key stops working with the very next request', { skip }, async () => {
      const created = await server.json('POST', '/api/v1/keys', { role: 'admin', name: 'short-lived' });
      const key = created.body.key;
      // Used many times first, so any cache of the key would be warm.
      for (let i = 0; i < 5; i++)
        assert.equal((await server.json('GET', '/api/v1/assets', undefined, key)).status, 200);
      const revoke = await call(server, 'DELETE', `/api/v1/keys/${created.body.id}`, undefined, key);
      assert.equal(revoke.status, 204);
      const res = await call(server, 'GET', '/api/v1/assets', undefined, key);
      assertProblem(res, 401, 'unauthenticated');
      assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
      // Revoking twice is harmless, and the list shows the revocation.
      assert.equal((await server.json('DELETE', `/api/v1/keys/${created.body.id}`)).status, 204);
      const listed = (await server.json('GET', '/api/v1/keys')).body.items.find(
        (k: { id: string }) => k.id === created.body.id,
      );
      assert.equal(typeof listed.revokedAt, 'string');
    });

    it('never returns a key secret or hash from GET /api/v1/keys', { skip }, async () => {
      const secrets = [server.adminKey, viewerKey, editorKey];
      const made = await server.json('POST', '/api/v1/keys', { role: 'viewer', name: 'listed' });
      assert.equal(made.headers.get('cache-control'), 'no-store');
      secrets.push(made.body.key);
      const hashes = secrets.map((s) => createHash('sha256').update(s).digest('hex'));
      let cursor: string | null = null;
      let seen = 0;
      do {
        const res = await server.fetch(`/api/v1/keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(res.status, 200);
        const text = await res.text();
        for (const value of [...secrets, ...hashes])
          assert.ok(!text.includes(value), 'secret material listed');
        const page = JSON.parse(text);
        for (const item of page.items) {
          seen++;
          assert.equal(item.key, undefined);
          assert.equal(item.hash, undefined);
          assert.match(item.prefix, /^cvk_.{8}$/);
          for (const value of Object.values(item)) {
            if (typeof value === 'string') assert.ok(value.length < 43, `long value ${value}`);
          }
        }
        cursor = page.nextCursor;
      } while (cursor);
      assert.ok(seen >= 4);
    });

    it('every error response is problem+json with type, title, status and code', { skip }, async () => {
      const cases: [Answer, number][] = [
        [await call(server, 'GET', '/api/v1/nope'), 404],
        [await call(server, 'GET', '/nope', undefined, null), 404],
        [await call(server, 'GET', `/api/v1/assets/${newId('ast')}`), 404],
        [await call(server, 'GET', '/api/v1/assets?limit=0'), 400],
        [await call(server, 'PATCH', `/api/v1/assets/${assetA.id}`, { visibility: 'nope' }), 400],
        [await call(server, 'POST', '/api/v1/keys', { role: 'root' }), 400],
        [await call(server, 'GET', '/api/v1/assets', undefined, null), 401],
        [await call(server, 'GET', '/api/v1/keys', undefined, viewerKey), 403],
        [await call(server, 'GET', `/a/${newId('ast')}`, undefined, null), 404],
        // Private content without a credential is answered as an unknown id.
        [await call(server, 'GET', privateA.url.replace(server.url, ''), undefined, null), 404],
      ];
      for (const [answer, status] of cases) assertProblem(answer, status);
    });

    it('paginates newest first, each asset exactly once', { skip }, async () => {
      const c = await createTenant(server, 'tenant-c');
      const uploaded: string[] = [];
      for (let i = 0; i < 5; i++) {
        // Ids sort by creation millisecond, so keep the uploads in distinct milliseconds.
        const before = Date.now();
        while (Date.now() === before) await sleep(1);
        uploaded.push((await upload(server, `page item ${i}`, { filename: `p${i}.txt`, key: c.key })).id);
      }
      const seen: string[] = [];
      const sizes: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query = new URLSearchParams({ limit: '2' });
        if (cursor) query.set('cursor', cursor);
        const page = await server.json('GET', `/api/v1/assets?${query}`, undefined, c.key);
        assert.equal(page.status, 200);
        sizes.push(page.body.items.length);
        seen.push(...page.body.items.map((a: { id: string }) => a.id));
        cursor = page.body.nextCursor;
        assert.ok(++pages <= 5, 'pagination does not end');
      } while (cursor);
      assert.deepEqual(sizes, [2, 2, 1]);
      assert.deepEqual(seen, uploaded.toReversed());
      assert.equal(new Set(seen).size, 5);
    });

    it('writes audit rows for key create/revoke, asset delete and visibility change', { skip }, async () => {
      const db = server.conveyor.db.kysely;
      const created = await server.json('POST', '/api/v1/keys', { role: 'viewer', name: 'audited' }, b.key);
      assert.equal(created.status, 201);
      assert.equal(
        (await server.json('DELETE', `/api/v1/keys/${created.body.id}`, undefined, b.key)).status,
        204,
      );
      const asset = await upload(server, 'audited asset', { key: b.key });
      assert.equal(
        (await server.json('PATCH', `/api/v1/assets/${asset.id}`, { visibility: 'private' }, b.key)).status,
        200,
      );
      // Not a change: no audit row.
      assert.equal(
        (await server.json('PATCH', `/api/v1/assets/${asset.id}`, { visibility: 'private' }, b.key)).status,
        200,
      );
      assert.equal((await server.json('DELETE', `/api/v1/assets/${asset.id}`, undefined, b.key)).status, 204);

      const bKeyId = (await server.json('GET', '/api/v1/keys', undefined, b.key)).body.items.find(
        (k: { prefix: string }) => b.key.startsWith(k.prefix),
      ).id;
      const rows = await db
        .selectFrom('audit_log')
        .selectAll()
        .where('target', 'in', [created.body.id, asset.id])
        .orderBy('id')
        .execute();
      const actions = rows.map((r) => `${r.action} ${r.target}`);
      assert.deepEqual(actions.toSorted(), [
        `asset.delete ${asset.id}`,
        `asset.visibility ${asset.id}`,
        `key.create ${created.body.id}`,
        `key.revoke ${created.body.id}`,
      ]);
      for (const row of rows) {
        assert.equal(row.tenant_id, b.tenantId, row.action);
        assert.equal(row.actor, bKeyId, row.action);
        assert.equal(typeof Number(row.created_at), 'number');
      }
      const visibility = rows.find((r) => r.action === 'asset.visibility')!;
      assert.deepEqual(JSON.parse(visibility.details!), { from: 'public', to: 'private' });
      // Failed attempts by B on A's data left no audit rows naming A's ids with B as actor.
      const foreign = await db
        .selectFrom('audit_log')
        .select('action')
        .where('actor', '=', bKeyId)
        .where('target', 'in', [assetA.id, privateA.id, tokenA.id])
        .execute();
      assert.deepEqual(foreign, []);
    });
  });
}
