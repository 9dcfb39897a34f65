import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { newId } from '../../src/db/ids.ts';
import { parseSigningKeys } from '../../src/delivery/access.ts';
import { signPath } from '../../src/delivery/signed-url.ts';
import { buildTransformUrl } from '../../src/media/image/transform-url.ts';
import { hashSecret } from '../../src/tenancy/keys.ts';
import {
  BACKENDS,
  createTenant,
  havePostgres,
  startConveyor,
  type TestServer,
  upload,
} from '../helpers/conveyor.ts';
import { type Reply, request } from '../helpers/http.ts';

/**
 * Private content over real sockets: every way of asking without a credential that ever opened it gets
 * the very answer an unknown id gets (404), byte for byte; a grant of the content that has expired or been
 * revoked gets a 403 that says so; neither carries a byte (or a validator) of the content; the three valid
 * credentials open it, still uncacheable.
 */

/** Path and query of an absolute URL the API answered. */
function target(url: string): string {
  const u = new URL(url);
  return u.pathname + u.search;
}

/** Replaces one query parameter of a path-with-query, keeping the others as they were. */
function withParam(pathAndQuery: string, name: string, value: string): string {
  const u = new URL(pathAndQuery, 'http://x');
  u.searchParams.set(name, value);
  return u.pathname + u.search;
}

/**
 * What must be equal between the answer to private content and to an unknown id: everything but the
 * Date header, with each id in the body (the problem's `instance`) replaced by its placeholder. Both
 * requests carry the same X-Request-Id.
 */
function comparable(reply: Reply, ids: Record<string, string>): unknown {
  const { date: _date, ...headers } = reply.headers;
  let body = reply.body.toString('latin1');
  for (const [id, placeholder] of Object.entries(ids)) body = body.replaceAll(id, placeholder);
  return { status: reply.status, headers, body };
}

/** Well-formed ids that name nothing (the same length as real ones, so Content-Length is comparable). */
const UNKNOWN_ASSET = newId('ast');
const UNKNOWN_VERSION = newId('ver');

const TOKEN_MAX_TTL = 3600;
const SIGNED_URL_MAX_TTL = 600;

const postgresSkip = (await havePostgres()) ? false : 'PostgreSQL is not running';

for (const backend of BACKENDS) {
  const skip = backend.database === 'postgres' ? postgresSkip : false;
  describe(`private delivery on ${backend.database} + ${backend.storage}`, { skip }, () => {
    let server: TestServer;
    let other: { tenantId: string; key: string };
    let otherAsset: any;

    /** One private asset under test, with every credential the tests present for it. */
    interface Subject {
      asset: any;
      content: Buffer;
      path: string;
      versionPath: string;
      token: { id: string; token: string };
      revokedToken: string;
      expiredToken: string;
      otherAssetToken: string;
      otherAssetExpiredToken: string;
      /** Path and query of a signed URL to the latest content, from the API. */
      signed: string;
      expiredSigned: string;
      otherAssetSignedQuery: string;
    }
    const subjects: Record<'uploaded' | 'switched', Subject> = {} as any;

    const mark = () => Buffer.from(`SECRET-${randomBytes(12).toString('hex')}-CONTENT`);

    async function createToken(assetId: string, ttlSeconds = 600) {
      const res = await server.json('POST', `/api/v1/assets/${assetId}/tokens`, { ttlSeconds });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body;
    }

    async function signedUrl(assetId: string, body: { ttlSeconds: number; versionId?: string }) {
      const res = await server.json('POST', `/api/v1/assets/${assetId}/signed-url`, body);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return target(res.body.url);
    }

    /** A token row that expired a minute ago, written straight into the database (no waiting). */
    async function expiredToken(assetId: string): Promise<string> {
      const token = `cvt_${randomBytes(32).toString('base64url')}`;
      const now = Date.now();
      await server.conveyor.db.kysely
        .insertInto('access_tokens')
        .values({
          id: newId('tok', now),
          tenant_id: server.tenantId,
          asset_id: assetId,
          hash: hashSecret(token),
          expires_at: now - 60_000,
          revoked_at: null,
          created_at: now - 120_000,
          created_by: 'test',
        })
        .execute();
      return token;
    }

    /** The server's signing key, generated on first start and kept in `server_secrets`. */
    async function signingKey() {
      const row = await server.conveyor.db.kysely
        .selectFrom('server_secrets')
        .select('value')
        .where('name', '=', 'signing-key')
        .executeTakeFirstOrThrow();
      return parseSigningKeys(row.value)[0]!;
    }

    async function prepare(asset: any, content: Buffer, versionId: string): Promise<Subject> {
      const path = `/a/${asset.id}`;
      const revoked = await createToken(asset.id);
      assert.equal((await server.json('DELETE', `/api/v1/tokens/${revoked.id}`)).status, 204);
      const expiredAt = Math.floor(Date.now() / 1000) - 5;
      return {
        asset,
        content,
        path,
        versionPath: `/v/${versionId}`,
        token: await createToken(asset.id),
        revokedToken: revoked.token,
        expiredToken: await expiredToken(asset.id),
        otherAssetToken: (await createToken(otherAsset.id)).token,
        otherAssetExpiredToken: await expiredToken(otherAsset.id),
        signed: await signedUrl(asset.id, { ttlSeconds: 300 }),
        expiredSigned: `${path}?${new URLSearchParams(signPath(path, expiredAt, await signingKey()))}`,
        otherAssetSignedQuery: new URL(await signedUrl(otherAsset.id, { ttlSeconds: 300 }), 'http://x')
          .search,
      };
    }

    const param = (pathAndQuery: string, name: string) =>
      new URL(pathAndQuery, 'http://x').searchParams.get(name)!;
    const randomToken = () => `cvt_${randomBytes(32).toString('base64url')}`;

    /**
     * Every way of asking for a private asset without a credential that ever opened it: [name, path,
     * headers]. Each is answered as the same request for an unknown id is.
     */
    const hidden: [string, (s: Subject) => [string, Record<string, string>]][] = [
      ['no credentials', (s) => [s.path, {}]],
      ['an unknown token', (s) => [`${s.path}?token=${randomToken()}`, {}]],
      ['a token without its prefix', (s) => [`${s.path}?token=${s.token.token.slice(4)}`, {}]],
      ["another asset's token", (s) => [`${s.path}?token=${s.otherAssetToken}`, {}]],
      ["another asset's expired token", (s) => [`${s.path}?token=${s.otherAssetExpiredToken}`, {}]],
      [
        'a tampered signature',
        (s) => {
          const sig = param(s.signed, 'sig');
          return [withParam(s.signed, 'sig', (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)), {}];
        },
      ],
      [
        'a tampered exp',
        (s) => [withParam(s.signed, 'exp', String(Number(param(s.signed, 'exp')) + 3600)), {}],
      ],
      ['an unknown kid', (s) => [withParam(s.signed, 'kid', 'nokey'), {}]],
      ["another asset's signed query", (s) => [`${s.path}${s.otherAssetSignedQuery}`, {}]],
      [
        "the latest URL's signature on the version URL",
        (s) => [`${s.versionPath}${new URL(s.signed, 'http://x').search}`, {}],
      ],
      ["another tenant's API key as Bearer", (s) => [s.path, { authorization: `Bearer ${other.key}` }]],
      [
        'an unknown API key as Bearer',
        (s) => [s.path, { authorization: `Bearer cvk_${randomBytes(32).toString('base64url')}` }],
      ],
      ['a Basic Authorization', (s) => [s.path, { authorization: 'Basic dXNlcjpwYXNz' }]],
      ['no credentials on the version URL', (s) => [s.versionPath, {}]],
      ['no credentials but a matching If-None-Match', (s) => [s.path, { 'if-none-match': s.asset.etag }]],
      ['no credentials but If-None-Match: *', (s) => [s.path, { 'if-none-match': '*' }]],
      [
        'no credentials but If-Modified-Since',
        (s) => [s.path, { 'if-modified-since': 'Fri, 01 Jan 2100 00:00:00 GMT' }],
      ],
      ['no credentials but a Range', (s) => [s.path, { range: 'bytes=0-3' }]],
    ];

    /** Grants of the asset itself that no longer open it: [name, path, what the 403 says]. */
    const lapsed: [string, (s: Subject) => string, RegExp][] = [
      ['an expired token', (s) => `${s.path}?token=${s.expiredToken}`, /expired/],
      ['an expired token on the version URL', (s) => `${s.versionPath}?token=${s.expiredToken}`, /expired/],
      ['a revoked token', (s) => `${s.path}?token=${s.revokedToken}`, /revoked/],
      ['an expired signed URL', (s) => s.expiredSigned, /expired/],
    ];

    /** The same request for ids that name nothing: the subject's ids in the path replaced. */
    const unknownTwin = (s: Subject, path: string) =>
      path.replaceAll(s.asset.id, UNKNOWN_ASSET).replaceAll(s.versionPath.slice(3), UNKNOWN_VERSION);

    /** The ids that differ between a request and its twin, each replaced by one placeholder. */
    const placeholders = (s: Subject) => ({
      [s.asset.id]: 'ID',
      [s.versionPath.slice(3)]: 'ID',
      [UNKNOWN_ASSET]: 'ID',
      [UNKNOWN_VERSION]: 'ID',
    });

    /** Asks for `path` and for its unknown twin, GET and HEAD, and asserts the answers are identical. */
    async function assertAnsweredAsUnknown(s: Subject, path: string, headers: Record<string, string>) {
      const ids = placeholders(s);
      const twin = unknownTwin(s, path);
      assert.notEqual(twin, path, 'the twin names other ids');
      for (const method of ['GET', 'HEAD']) {
        const sent = { ...headers, 'x-request-id': 'the-same-id' };
        const res = await request(server, method, path, sent);
        const unknown = await request(server, method, twin, sent);
        assert.equal(unknown.status, 404, `${method} ${twin}`);
        assert.deepEqual(comparable(res, ids), comparable(unknown, ids), `${method} ${path}`);
        // The random middle of the content (`SECRET-<hex>-CONTENT`) appears nowhere.
        assert.ok(!res.body.includes(s.content.subarray(7, 31)), 'the body holds the content');
        assert.ok(!res.body.includes(s.asset.sha256), 'the body holds the hash');
      }
    }

    before(async () => {
      server = await startConveyor(backend, {
        tokenMaxTtlSeconds: TOKEN_MAX_TTL,
        signedUrlMaxTtlSeconds: SIGNED_URL_MAX_TTL,
      });
      other = await createTenant(server, 'other');
      otherAsset = await upload(server, 'other private content', { visibility: 'private' });

      const uploadedContent = mark();
      const uploaded = await upload(server, uploadedContent, {
        filename: 'secret.txt',
        contentType: 'text/plain',
        visibility: 'private',
      });
      assert.equal(uploaded.visibility, 'private');
      const uploadedVersion = await server.json('POST', `/api/v1/assets/${uploaded.id}/publish`);
      subjects.uploaded = await prepare(uploaded, uploadedContent, uploadedVersion.body.id);

      const switchedContent = mark();
      const switched = await upload(server, switchedContent, {
        filename: 'later.txt',
        contentType: 'text/plain',
      });
      const switchedVersion = await server.json('POST', `/api/v1/assets/${switched.id}/publish`);
      const publicRes = await request(server, 'GET', `/a/${switched.id}`);
      assert.equal(publicRes.status, 200);
      assert.match(publicRes.headers['cache-control']!, /^public/);
      const patched = await server.json('PATCH', `/api/v1/assets/${switched.id}`, { visibility: 'private' });
      assert.equal(patched.status, 200);
      assert.equal(patched.body.visibility, 'private');
      subjects.switched = await prepare(switched, switchedContent, switchedVersion.body.id);
    });
    after(async () => server?.close());

    for (const which of ['uploaded', 'switched'] as const) {
      describe(`a private asset (${which === 'uploaded' ? 'uploaded private' : 'switched by PATCH'})`, () => {
        for (const [name, build] of hidden) {
          it(`answers ${name} exactly as an unknown id (404, GET and HEAD)`, async () => {
            const subject = subjects[which];
            const [path, headers] = build(subject);
            await assertAnsweredAsUnknown(subject, path, headers);
            const res = await request(server, 'GET', path, headers);
            const problem = JSON.parse(res.body.toString());
            assert.deepEqual(
              { code: problem.code, status: problem.status, cacheControl: res.headers['cache-control'] },
              {
                code: 'not_found',
                status: 404,
                // Negative caching (CONVEYOR_CACHE_NOT_FOUND_S_MAX_AGE), but never for an authorized request.
                cacheControl: headers.authorization ? 'no-store' : 'public, max-age=0, s-maxage=10',
              },
            );
            for (const field of ['etag', 'last-modified', 'content-disposition', 'content-range']) {
              assert.equal(res.headers[field], undefined, `${field} leaks`);
            }
          });
        }

        it('answers variants and transforms without a credential exactly as for an unknown id', async () => {
          const subject = subjects[which];
          const key = await signingKey();
          const versionId = subject.versionPath.slice(3);
          const transform = (id: string) => buildTransformUrl({ preset: 'small', format: 'png' }, id, key);
          // A transform URL is signed over its id, so the unknown twin needs its own signature.
          const pairs: [string, string][] = [
            [`${subject.path}/thumb.webp`, `/a/${UNKNOWN_ASSET}/thumb.webp`],
            [`${subject.versionPath}/small.jpg`, `/v/${UNKNOWN_VERSION}/small.jpg`],
            [transform(subject.asset.id), transform(UNKNOWN_ASSET)],
            [transform(versionId), transform(UNKNOWN_VERSION)],
          ];
          const futureExp = String(Math.floor(Date.now() / 1000) + 300);
          const forged = `exp=${futureExp}&kid=${key.id}&sig=${randomBytes(32).toString('base64url').slice(0, 43)}`;
          const credentials: [string, Record<string, string>][] = [
            ['', {}],
            [`?token=${randomToken()}`, {}],
            [`?token=${subject.otherAssetToken}`, {}],
            [subject.otherAssetSignedQuery, {}],
            [`?${forged}`, {}],
            ['', { authorization: `Bearer ${other.key}` }],
          ];
          const ids = placeholders(subject);
          for (const [path, twin] of pairs) {
            for (const [query, headers] of credentials) {
              for (const method of ['GET', 'HEAD']) {
                const sent = { ...headers, 'x-request-id': 'the-same-id' };
                const res = await request(server, method, path + query, sent);
                const unknown = await request(server, method, twin + query, sent);
                // Transform paths differ in their signature too: compare with both paths replaced.
                const both = { [path]: 'PATH', [twin]: 'PATH', ...ids };
                assert.equal(unknown.status, 404, `${method} ${twin}${query}`);
                assert.deepEqual(
                  comparable(res, both),
                  comparable(unknown, both),
                  `${method} ${path}${query}`,
                );
              }
            }
          }
        });

        for (const [name, build, reason] of lapsed) {
          it(`refuses ${name} with a 403 that says why, and nothing of the content`, async () => {
            const subject = subjects[which];
            const path = build(subject);
            const res = await request(server, 'GET', path);
            assert.equal(res.status, 403);
            assert.match(res.headers['content-type'] ?? '', /^application\/problem\+json/);
            const problem = JSON.parse(res.body.toString());
            assert.equal(problem.code, 'access_denied');
            assert.match(problem.detail, reason);
            assert.ok(!res.body.includes(subject.content.subarray(7, 31)), 'the body holds the content');
            assert.ok(!res.body.includes(subject.asset.sha256), 'the body holds the hash');
            const head = await request(server, 'HEAD', path);
            assert.equal(head.status, 403);
            assert.equal(head.body.length, 0);
            for (const r of [res, head]) {
              for (const field of [
                'etag',
                'last-modified',
                'content-disposition',
                'content-range',
                'accept-ranges',
              ]) {
                assert.equal(r.headers[field], undefined, `${field} leaks`);
              }
              assert.equal(r.headers['cache-control'], 'private, no-store');
            }
          });
        }

        it('opens with a valid token, on the latest and the version URL', async () => {
          const subject = subjects[which];
          for (const path of [subject.path, subject.versionPath]) {
            const res = await request(server, 'GET', `${path}?token=${subject.token.token}`);
            assert.equal(res.status, 200, path);
            assert.equal(res.headers['cache-control'], 'private, no-store');
            assert.deepEqual(res.body, subject.content);
          }
        });

        it('opens with a valid signed URL to the latest content and to a version', async () => {
          const subject = subjects[which];
          const latest = await signedUrl(subject.asset.id, { ttlSeconds: 60 });
          const version = await signedUrl(subject.asset.id, {
            ttlSeconds: 60,
            versionId: subject.versionPath.slice(3),
          });
          assert.ok(version.startsWith(`${subject.versionPath}?`), version);
          for (const path of [latest, version]) {
            const res = await request(server, 'GET', path);
            assert.equal(res.status, 200, path);
            assert.equal(res.headers['cache-control'], 'private, no-store');
            assert.deepEqual(res.body, subject.content);
          }
          // The signing key read from the database signs URLs the server accepts: the expired one above
          // failed for its expiry alone.
          const fresh = signPath(subject.path, Math.floor(Date.now() / 1000) + 60, await signingKey());
          const res = await request(server, 'GET', `${subject.path}?${new URLSearchParams(fresh)}`);
          assert.equal(res.status, 200);
        });

        it("opens with the owning tenant's API key as Bearer", async () => {
          const subject = subjects[which];
          const res = await request(server, 'GET', subject.path, {
            authorization: `Bearer ${server.adminKey}`,
          });
          assert.equal(res.status, 200);
          assert.equal(res.headers['cache-control'], 'private, no-store');
          assert.deepEqual(res.body, subject.content);
        });

        it('keeps private, no-store on 304 and 206 answers to a valid credential', async () => {
          const subject = subjects[which];
          const path = `${subject.path}?token=${subject.token.token}`;
          const notModified = await request(server, 'GET', path, { 'if-none-match': subject.asset.etag });
          assert.equal(notModified.status, 304);
          assert.equal(notModified.headers['cache-control'], 'private, no-store');
          const partial = await request(server, 'GET', path, { range: 'bytes=0-3' });
          assert.equal(partial.status, 206);
          assert.equal(partial.headers['cache-control'], 'private, no-store');
          assert.deepEqual(partial.body, subject.content.subarray(0, 4));
        });
      });
    }

    describe('the access API', () => {
      it('refuses a token or signed URL lifetime above the configured maximum with 400', async () => {
        const id = subjects.uploaded.asset.id;
        const token = await server.json('POST', `/api/v1/assets/${id}/tokens`, {
          ttlSeconds: TOKEN_MAX_TTL + 1,
        });
        assert.equal(token.status, 400);
        assert.match(token.headers.get('content-type')!, /^application\/problem\+json/);
        assert.equal(
          (await server.json('POST', `/api/v1/assets/${id}/tokens`, { ttlSeconds: 0 })).status,
          400,
        );
        assert.equal(
          (await server.json('POST', `/api/v1/assets/${id}/tokens`, { ttlSeconds: TOKEN_MAX_TTL })).status,
          201,
        );
        const signed = await server.json('POST', `/api/v1/assets/${id}/signed-url`, {
          ttlSeconds: SIGNED_URL_MAX_TTL + 1,
        });
        assert.equal(signed.status, 400);
      });

      it("answers 404 for a token, signed URL or revocation of another tenant's asset", async () => {
        const ours = subjects.uploaded.asset.id;
        const mine = await server.json('POST', `/api/v1/assets/${otherAsset.id}/tokens`, { ttlSeconds: 60 });
        assert.equal(mine.status, 201, 'sanity: the owner may');
        const theirs = await createTenant(server, 'third');
        const theirAsset = await upload(server, 'theirs', { visibility: 'private', key: theirs.key });
        const theirVersion = await server.json(
          'POST',
          `/api/v1/assets/${theirAsset.id}/publish`,
          undefined,
          theirs.key,
        );
        assert.equal(theirVersion.status, 201);
        const cases: [string, string, unknown, string][] = [
          ['POST', `/api/v1/assets/${theirAsset.id}/tokens`, { ttlSeconds: 60 }, server.adminKey],
          ['POST', `/api/v1/assets/${theirAsset.id}/signed-url`, { ttlSeconds: 60 }, server.adminKey],
          [
            'POST',
            `/api/v1/assets/${theirAsset.id}/signed-url`,
            { ttlSeconds: 60, versionId: theirVersion.body.id },
            server.adminKey,
          ],
          ['POST', `/api/v1/assets/${ours}/tokens`, { ttlSeconds: 60 }, theirs.key],
          ['POST', `/api/v1/assets/${ours}/signed-url`, { ttlSeconds: 60 }, theirs.key],
          [
            'POST',
            `/api/v1/assets/${ours}/signed-url`,
            { ttlSeconds: 60, versionId: subjects.uploaded.versionPath.slice(3) },
            theirs.key,
          ],
          // Our asset with their version id: the version must belong to the asset.
          [
            'POST',
            `/api/v1/assets/${ours}/signed-url`,
            { ttlSeconds: 60, versionId: theirVersion.body.id },
            server.adminKey,
          ],
          ['DELETE', `/api/v1/tokens/${subjects.uploaded.token.id}`, undefined, theirs.key],
        ];
        for (const [method, path, body, key] of cases) {
          const res = await server.json(method, path, body, key);
          assert.equal(
            res.status,
            404,
            `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`,
          );
        }
        // The attempted revocation by another tenant left the token working.
        const still = await request(
          server,
          'GET',
          `${subjects.uploaded.path}?token=${subjects.uploaded.token.token}`,
        );
        assert.equal(still.status, 200);
      });

      it('never stores a token in plain text, only its SHA-256', async () => {
        const created = await createToken(subjects.uploaded.asset.id);
        const res = await server.fetch(`/api/v1/assets/${subjects.uploaded.asset.id}/tokens`, {
          method: 'POST',
          body: JSON.stringify({ ttlSeconds: 60 }),
          headers: { 'content-type': 'application/json' },
        });
        assert.equal(res.status, 201);
        assert.equal(res.headers.get('cache-control'), 'no-store');
        assert.match(created.token, /^cvt_[A-Za-z0-9_-]{43}$/);
        const rows = await server.conveyor.db.kysely.selectFrom('access_tokens').selectAll().execute();
        const row = rows.find((r) => r.id === created.id);
        assert.ok(row);
        assert.equal(row.hash, hashSecret(created.token));
        assert.match(row.hash, /^[0-9a-f]{64}$/);
        const secretPart = created.token.slice(4);
        for (const r of rows) {
          for (const value of Object.values(r)) {
            assert.ok(
              !String(value).includes(secretPart),
              `access_tokens holds the token in ${JSON.stringify(r)}`,
            );
          }
        }
        const audit = await server.conveyor.db.kysely.selectFrom('audit_log').selectAll().execute();
        assert.ok(!JSON.stringify(audit).includes(secretPart), 'the audit log holds the token');
      });
    });
  });
}
