import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT, UnsecuredJWT } from 'jose';
import { newId } from '../../src/db/ids.ts';
import { createTenant, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { type Answer, assertProblem, readAnswer } from '../helpers/http.ts';
import { PROTOTYPE_NAMES } from '../helpers/prototype.ts';

const JWT_SECRET = 'a-test-secret-that-is-long-enough-for-hs256!';

async function request(url: string, init: RequestInit & { bearer?: string } = {}): Promise<Answer> {
  const { bearer, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (bearer !== undefined) headers.set('authorization', `Bearer ${bearer}`);
  return readAnswer(await fetch(url, { ...rest, headers }));
}

function uploadWith(server: TestServer, bearer: string, text = 'jwt upload'): Promise<Answer> {
  return request(`${server.url}/api/v1/assets?filename=jwt.txt`, {
    method: 'POST',
    body: text,
    headers: { 'content-type': 'text/plain' },
    bearer,
  });
}

async function mint(
  claims: Record<string, unknown>,
  options: { secret?: string; expiresIn?: string | number; issuedAt?: number; subject?: string | null } = {},
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' });
  if (options.subject !== null) jwt.setSubject(options.subject ?? 'user-1');
  jwt.setIssuedAt(options.issuedAt);
  if (options.expiresIn !== undefined) jwt.setExpirationTime(options.expiresIn);
  return jwt.sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}

describe('JWT authentication over HTTP', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor(undefined, { jwtSecret: JWT_SECRET });
  });
  after(async () => server?.close());

  it('an editor JWT of the default tenant can upload; the asset is the tenant’s', async () => {
    const token = await mint({ tenant: server.tenantId, role: 'editor' }, { expiresIn: '5m' });
    const res = await uploadWith(server, token);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    // Visible to the tenant's API key: the JWT acted for the default tenant.
    const seen = await server.json('GET', `/api/v1/assets/${res.body.id}`);
    assert.equal(seen.status, 200);
    const delivered = await fetch(res.body.url);
    assert.equal(await delivered.text(), 'jwt upload');
    // And the JWT reads, edits and deletes what it made.
    const patched = await request(`${server.url}/api/v1/assets/${res.body.id}`, {
      method: 'PATCH',
      body: JSON.stringify({ filename: 'renamed.txt' }),
      headers: { 'content-type': 'application/json' },
      bearer: token,
    });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.filename, 'renamed.txt');
    // An editor is not an admin: keys stay out of reach.
    assertProblem(await request(`${server.url}/api/v1/keys`, { bearer: token }), 403, 'forbidden');
    const deleted = await request(`${server.url}/api/v1/assets/${res.body.id}`, {
      method: 'DELETE',
      bearer: token,
    });
    assert.equal(deleted.status, 204);
  });

  it('a viewer JWT reads but cannot upload', async () => {
    const token = await mint({ tenant: server.tenantId, role: 'viewer' }, { expiresIn: '5m' });
    assertProblem(await uploadWith(server, token), 403, 'forbidden');
    assert.equal((await request(`${server.url}/api/v1/assets`, { bearer: token })).status, 200);
  });

  it('a JWT sees only its own tenant', async () => {
    const other = await createTenant(server, 'jwt-other');
    const asset = await upload(server, 'default tenant only');
    const token = await mint({ tenant: other.tenantId, role: 'admin' }, { expiresIn: '5m' });
    assertProblem(
      await request(`${server.url}/api/v1/assets/${asset.id}`, { bearer: token }),
      404,
      'not_found',
    );
    const list = await request(`${server.url}/api/v1/assets`, { bearer: token });
    assert.deepEqual(list.body.items, []);
    assertProblem(
      await request(`${server.url}/api/v1/tenants`, {
        method: 'POST',
        body: JSON.stringify({ name: 'x' }),
        headers: { 'content-type': 'application/json' },
        bearer: token,
      }),
      403,
      'forbidden',
    );
  });

  it('rejects unknown tenants, expired, forged and malformed tokens with 401', async () => {
    const count = async () =>
      (await server.conveyor.db.kysely.selectFrom('assets').select('id').execute()).length;
    const before = await count();
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, string][] = [
      ['unknown tenant', await mint({ tenant: newId('ten'), role: 'editor' }, { expiresIn: '5m' })],
      [
        'tenant id of the wrong shape',
        await mint({ tenant: 'default', role: 'editor' }, { expiresIn: '5m' }),
      ],
      [
        'expired',
        await mint(
          { tenant: server.tenantId, role: 'editor' },
          { issuedAt: now - 600, expiresIn: now - 300 },
        ),
      ],
      [
        'wrong secret',
        await mint({ tenant: server.tenantId, role: 'editor' }, { secret: 'x'.repeat(48), expiresIn: '5m' }),
      ],
      ['no expiry', await mint({ tenant: server.tenantId, role: 'editor' })],
      ['lifetime too long', await mint({ tenant: server.tenantId, role: 'editor' }, { expiresIn: '2d' })],
      ['unknown role', await mint({ tenant: server.tenantId, role: 'owner' }, { expiresIn: '5m' })],
      ['no tenant', await mint({ role: 'editor' }, { expiresIn: '5m' })],
      [
        'alg none',
        new UnsecuredJWT({ tenant: server.tenantId, role: 'admin' })
          .setIssuedAt()
          .setExpirationTime('5m')
          .encode(),
      ],
    ];
    for (const [name, token] of cases) {
      const res = await uploadWith(server, token);
      assertProblem(res, 401, 'unauthenticated', name);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"', name);
      // The detail never echoes the token.
      assert.ok(!JSON.stringify(res.body).includes(token.split('.')[1]!), name);
    }
    assert.equal(await count(), before);
  });

  it('a role claim naming an Object.prototype member is 401 and grants nothing', async () => {
    const keys = async () =>
      (await server.conveyor.db.kysely.selectFrom('api_keys').select('id').execute()).length;
    const before = await keys();
    for (const role of PROTOTYPE_NAMES) {
      const token = await mint({ tenant: server.tenantId, role }, { expiresIn: '5m' });
      // What such a token would be after: a permanent admin key, and the dead letters.
      const minted = await request(`${server.url}/api/v1/keys`, {
        method: 'POST',
        body: JSON.stringify({ role: 'admin' }),
        headers: { 'content-type': 'application/json' },
        bearer: token,
      });
      const problem = assertProblem(minted, 401, 'unauthenticated', role);
      assert.match(problem.detail, /"role" claim must be one of admin, editor, viewer/, role);
      assertProblem(
        await request(`${server.url}/api/v1/dead-letters/purge`, {
          method: 'POST',
          body: '{}',
          headers: { 'content-type': 'application/json' },
          bearer: token,
        }),
        401,
        'unauthenticated',
        role,
      );
    }
    assert.equal(await keys(), before);
  });
});

describe('rate limiting over HTTP', () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  async function burst(n: number, go: () => Promise<Answer>): Promise<Answer[]> {
    return Promise.all(Array.from({ length: n }, go));
  }

  function assertLimited(answer: Answer, name: string, limit: number): void {
    assertProblem(answer, 429, 'rate_limited', name);
    const retryAfter = answer.headers.get('retry-after');
    assert.match(retryAfter ?? '', /^[1-9]\d*$/, `Retry-After ${retryAfter}`);
    assert.match(answer.headers.get('ratelimit-policy') ?? '', new RegExp(`"${name}";q=${limit};w=60`));
    assert.match(answer.headers.get('ratelimit') ?? '', new RegExp(`"${name}";r=0;t=[1-9]\\d*`));
  }

  it('the fourth request in a burst on one key is 429 with Retry-After and RateLimit headers', async () => {
    const server = await startConveyor(undefined, { rateLimitPerKey: 3 });
    servers.push(server);
    const answers = await burst(4, () => request(`${server.url}/api/v1/assets`, { bearer: server.adminKey }));
    const ok = answers.filter((a) => a.status === 200);
    const limited = answers.filter((a) => a.status === 429);
    assert.equal(ok.length, 3, answers.map((a) => a.status).join());
    assert.equal(limited.length, 1);
    assertLimited(limited[0]!, 'api-key', 3);
    for (const a of ok) {
      assert.match(a.headers.get('ratelimit-policy') ?? '', /"api-key";q=3;w=60/);
      assert.match(a.headers.get('ratelimit') ?? '', /"api-key";r=[0-2];t=\d+/);
    }
    assert.deepEqual(ok.map((a) => /r=(\d)/.exec(a.headers.get('ratelimit')!)![1]).toSorted(), [
      '0',
      '1',
      '2',
    ]);
    // Another key has its own budget; uploads count like any other request.
    const other = await server.json('POST', '/api/v1/keys', { role: 'editor' }).catch(() => null);
    assert.equal(other?.status, 429, 'the admin key is still limited');
    const [fresh] = await server.conveyor.tenancy
      .createKey(
        { tenantId: server.tenantId, role: 'admin', operator: true, keyId: null, actor: 'test' },
        { role: 'editor' },
      )
      .then((r) => [r.key]);
    const uploads = await burst(4, () =>
      request(`${server.url}/api/v1/assets?filename=r.bin`, { method: 'POST', body: 'x', bearer: fresh! }),
    );
    assert.deepEqual(uploads.map((a) => a.status).toSorted(), [201, 201, 201, 429]);
    // An unauthenticated request is refused as such, not charged to anyone's key.
    assertProblem(await request(`${server.url}/api/v1/assets`), 401, 'unauthenticated');
  });

  it('JWTs of different tenants do not share one per-key budget', async () => {
    // Tokens without `sub` are all "anonymous": one tenant's must not use up another tenant's quota.
    const server = await startConveyor(undefined, { rateLimitPerKey: 2, jwtSecret: JWT_SECRET });
    servers.push(server);
    const other = await createTenant(server, 'rate-other');
    const tokenA = await mint(
      { tenant: server.tenantId, role: 'viewer' },
      { expiresIn: '5m', subject: null },
    );
    const tokenB = await mint({ tenant: other.tenantId, role: 'viewer' }, { expiresIn: '5m', subject: null });
    const a = await burst(3, () => request(`${server.url}/api/v1/assets`, { bearer: tokenA }));
    assert.deepEqual(a.map((x) => x.status).toSorted(), [200, 200, 429]);
    const b = await request(`${server.url}/api/v1/assets`, { bearer: tokenB });
    assert.equal(b.status, 200, `tenant B was limited by tenant A's requests: ${JSON.stringify(b.body)}`);
  });

  it('the address limit applies across keys and before authentication', async () => {
    const server = await startConveyor(undefined, { rateLimitPerAddress: 3 });
    servers.push(server);
    const keys = await Promise.all(
      ['a', 'b', 'c', 'd'].map(async (name) =>
        server.conveyor.tenancy
          .createKey(
            { tenantId: server.tenantId, role: 'admin', operator: true, keyId: null, actor: 'test' },
            { role: 'viewer', name },
          )
          .then((r) => r.key),
      ),
    );
    const answers = await Promise.all(
      keys.map((key) => request(`${server.url}/api/v1/assets`, { bearer: key })),
    );
    assert.deepEqual(answers.map((a) => a.status).toSorted(), [200, 200, 200, 429]);
    assertLimited(answers.find((a) => a.status === 429)!, 'api-address', 3);
    // Even without credentials the address is out of quota.
    assertLimited(await request(`${server.url}/api/v1/assets`), 'api-address', 3);
  });

  it('delivery is not limited by default, even with tight API limits', async () => {
    const server = await startConveyor(undefined, { rateLimitPerKey: 2, rateLimitPerAddress: 2 });
    servers.push(server);
    const asset = await upload(server, 'popular');
    const answers = await burst(20, () => request(asset.url));
    assert.ok(
      answers.every((a) => a.status === 200),
      answers.map((a) => a.status).join(),
    );
    for (const a of answers) {
      assert.equal(a.headers.get('ratelimit'), null);
      assert.equal(a.headers.get('ratelimit-policy'), null);
    }
  });

  it('delivery is limited per address with rateLimitDelivery', async () => {
    const server = await startConveyor(undefined, { rateLimitDelivery: 2 });
    servers.push(server);
    const asset = await upload(server, 'popular');
    const published = await server.json('POST', `/api/v1/assets/${asset.id}/publish`);
    const answers = await burst(3, () => request(asset.url));
    assert.deepEqual(answers.map((a) => a.status).toSorted(), [200, 200, 429]);
    assertLimited(answers.find((a) => a.status === 429)!, 'delivery', 2);
    for (const a of answers.filter((x) => x.status === 200)) {
      assert.match(a.headers.get('ratelimit-policy') ?? '', /"delivery";q=2;w=60/);
    }
    // The budget covers every delivery URL of the address, versions and HEAD included.
    assertLimited(await request(published.body.url), 'delivery', 2);
    const head = await fetch(asset.url, { method: 'HEAD' });
    assert.equal(head.status, 429);
    assert.match(head.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
    // The API is not charged for delivery.
    assert.equal((await server.json('GET', '/api/v1/assets')).status, 200);
  });
});
