import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  base64url,
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';
import {
  createJwtVerifier,
  JwksUnavailableError,
  type JwtConfig,
  JwtError,
  type JwtPrincipal,
  looksLikeJwt,
} from '../../src/tenancy/jwt.ts';
import { PROTOTYPE_NAMES } from '../helpers/prototype.ts';

const SECRET = 'an-hs256-secret-of-at-least-32-bytes!';
const BASE: JwtConfig = {
  tenantClaim: 'tenant',
  roleClaim: 'role',
  clockToleranceSeconds: 5,
  maxLifetimeSeconds: 3600,
};

type Verify = (token: string) => Promise<JwtPrincipal>;

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Claims of a valid token, with `undefined` overrides dropping a claim. */
function claims(overrides: Record<string, unknown> = {}): JWTPayload {
  const now = nowSeconds();
  return { tenant: 'acme', role: 'editor', sub: 'user-1', iat: now, exp: now + 600, ...overrides };
}

function hs256(payload: JWTPayload, secret: string | Uint8Array = SECRET): Promise<string> {
  const key = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
}

function unsigned(header: object, payload: object, signature = ''): string {
  const part = (v: object) => base64url.encode(JSON.stringify(v));
  return `${part(header)}.${part(payload)}.${signature}`;
}

async function rejects(verify: Verify, token: string, message: RegExp, type: typeof JwtError = JwtError) {
  await assert.rejects(verify(token), (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    assert.match(err.message, message);
    for (const segment of token.split('.').filter((s) => s.length > 8)) {
      assert.ok(!err.message.includes(segment), 'error message must not echo the token');
    }
    return true;
  });
}

describe('looksLikeJwt', () => {
  it('accepts three base64url segments and nothing else', async () => {
    assert.equal(looksLikeJwt(await hs256(claims())), true);
    assert.equal(looksLikeJwt(unsigned({ alg: 'none' }, {})), true, 'unsigned tokens still route to JWT');
    assert.equal(looksLikeJwt('cvk_live_0123456789abcdef'), false);
    assert.equal(looksLikeJwt('a.b'), false);
    assert.equal(looksLikeJwt('a.b.c.d'), false);
    assert.equal(looksLikeJwt('..sig'), false);
    assert.equal(looksLikeJwt('a+b.c/d.e='), false);
    assert.equal(looksLikeJwt(`${'a'.repeat(9000)}.b.c`), false);
  });
});

describe('createJwtVerifier configuration', () => {
  it('returns null when neither a secret nor a JWKS URL is configured', () => {
    assert.equal(createJwtVerifier(BASE), null);
  });

  it('refuses a secret shorter than 32 bytes', () => {
    assert.throws(() => createJwtVerifier({ ...BASE, secret: 'x'.repeat(31) }), /at least 32 bytes/);
    assert.throws(() => createJwtVerifier({ ...BASE, secret: '' }), /at least 32 bytes/);
    assert.ok(createJwtVerifier({ ...BASE, secret: 'x'.repeat(32) }));
  });

  it('refuses a JWKS URL that is not http(s) and nonsensical limits', () => {
    assert.throws(() => createJwtVerifier({ ...BASE, jwksUrl: 'not a url' }), /valid URL/);
    assert.throws(() => createJwtVerifier({ ...BASE, jwksUrl: 'file:///etc/jwks.json' }), /http/);
    assert.throws(() => createJwtVerifier({ ...BASE, secret: SECRET, maxLifetimeSeconds: 0 }), /lifetime/);
    assert.throws(
      () => createJwtVerifier({ ...BASE, secret: SECRET, clockToleranceSeconds: -1 }),
      /tolerance/,
    );
    assert.throws(() => createJwtVerifier({ ...BASE, secret: SECRET, tenantClaim: '' }), /tenant claim/);
  });
});

describe('HS256', () => {
  const verify = createJwtVerifier({ ...BASE, secret: SECRET })!;

  it('accepts a valid token', async () => {
    const exp = nowSeconds() + 600;
    assert.deepEqual(await verify(await hs256(claims({ exp, role: 'admin' }))), {
      tenantId: 'acme',
      role: 'admin',
      subject: 'user-1',
      expiresAt: new Date(exp * 1000),
    });
  });

  it('maps a missing subject to null', async () => {
    const principal = await verify(await hs256(claims({ sub: undefined, role: 'viewer' })));
    assert.equal(principal.subject, null);
    assert.equal(principal.role, 'viewer');
  });

  it('rejects an expired token, within clock tolerance only', async () => {
    const now = nowSeconds();
    await rejects(verify, await hs256(claims({ iat: now - 100, exp: now - 10 })), /expired/);
    await verify(await hs256(claims({ iat: now - 100, exp: now - 2 })));
  });

  it('rejects a token signed with another secret', async () => {
    await rejects(
      verify,
      await hs256(claims(), 'another-secret-also-long-enough-32b'),
      /signature is invalid/,
    );
  });

  it('rejects a tampered payload', async () => {
    const [header, , signature] = (await hs256(claims({ role: 'viewer' }))).split('.');
    const forged = `${header}.${base64url.encode(JSON.stringify(claims({ role: 'admin' })))}.${signature}`;
    await rejects(verify, forged, /signature is invalid/);
  });

  it('rejects alg none, with or without a signature segment', async () => {
    await rejects(verify, unsigned({ alg: 'none', typ: 'JWT' }, claims()), /algorithm is not accepted/);
    await rejects(verify, unsigned({ alg: 'none' }, claims(), 'c2lnbmF0dXJl'), /algorithm is not accepted/);
  });

  it('rejects other HMAC algorithms', async () => {
    const key = new TextEncoder().encode(SECRET.repeat(2));
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS512' }).sign(key);
    await rejects(verify, token, /algorithm is not accepted/);
  });

  it('rejects garbage that merely looks like a JWT', async () => {
    await rejects(verify, 'aaaa.bbbb.cccc', /malformed/);
    await rejects(
      verify,
      unsigned({ alg: 'HS256' }, [1, 2, 3] as unknown as object, 'AAAA'),
      /malformed|invalid/,
    );
    await rejects(verify, `${'a'.repeat(9000)}.b.c`, /too large/);
  });

  it('requires exp', async () => {
    await rejects(verify, await hs256(claims({ exp: undefined })), /missing the "exp" claim/);
  });

  it('requires a non-empty string tenant claim', async () => {
    await rejects(verify, await hs256(claims({ tenant: undefined })), /"tenant" claim/);
    await rejects(verify, await hs256(claims({ tenant: '' })), /"tenant" claim/);
    await rejects(verify, await hs256(claims({ tenant: 42 })), /"tenant" claim/);
  });

  it('requires the role claim to be one of the three roles', async () => {
    await rejects(verify, await hs256(claims({ role: undefined })), /"role" claim/);
    await rejects(verify, await hs256(claims({ role: 'owner' })), /"role" claim/);
    await rejects(verify, await hs256(claims({ role: 'Admin' })), /"role" claim/);
    await rejects(verify, await hs256(claims({ role: ['admin'] })), /"role" claim/);
  });

  it('refuses role claims that name Object.prototype members, not only unknown words', async () => {
    for (const role of PROTOTYPE_NAMES) {
      await rejects(
        verify,
        await hs256(claims({ role })),
        /"role" claim must be one of admin, editor, viewer/,
      );
    }
  });

  it('reads claims the payload holds, never ones it inherits', async () => {
    // A tenant claim named like an Object.prototype member is absent unless the token carries it.
    const inherited = createJwtVerifier({ ...BASE, secret: SECRET, tenantClaim: 'constructor' })!;
    await rejects(inherited, await hs256(claims()), /"constructor" claim must be a non-empty string/);
  });

  it('uses the configured claim names', async () => {
    const custom = createJwtVerifier({
      ...BASE,
      secret: SECRET,
      tenantClaim: 'https://conveyor.example/tenant',
      roleClaim: 'conveyor_role',
    })!;
    const token = await hs256(
      claims({ 'https://conveyor.example/tenant': 'globex', conveyor_role: 'viewer' }),
    );
    assert.equal((await custom(token)).tenantId, 'globex');
    await rejects(custom, await hs256(claims()), /"https:\/\/conveyor.example\/tenant" claim/);
  });

  it('rejects a non-string subject', async () => {
    await rejects(verify, await hs256(claims({ sub: 7 })), /"sub" claim/);
  });

  it('rejects tokens that live longer than maxLifetimeSeconds', async () => {
    const now = nowSeconds();
    await verify(await hs256(claims({ iat: now, exp: now + 3600 })));
    await rejects(verify, await hs256(claims({ iat: now, exp: now + 3601 })), /lifetime is too long/);
    // Long-lived but issued long ago: the lifetime, not the time left, is what counts.
    await rejects(verify, await hs256(claims({ iat: now - 7000, exp: now + 60 })), /lifetime is too long/);
    // Without iat the time left is what is bounded.
    await verify(await hs256(claims({ iat: undefined, exp: now + 3600 })));
    await rejects(verify, await hs256(claims({ iat: undefined, exp: now + 7200 })), /lifetime is too long/);
    // A future iat would otherwise let a short-looking lifetime start a year from now.
    const year = 365 * 86_400;
    await rejects(verify, await hs256(claims({ iat: now + year, exp: now + year + 60 })), /in the future/);
  });

  it('rejects a token that is not valid yet', async () => {
    await rejects(verify, await hs256(claims({ nbf: nowSeconds() + 60 })), /not valid yet/);
  });

  it('checks issuer and audience when configured', async () => {
    const strict = createJwtVerifier({
      ...BASE,
      secret: SECRET,
      issuer: 'https://auth.example',
      audience: 'conveyor',
    })!;
    const good = { iss: 'https://auth.example', aud: 'conveyor' };
    await strict(await hs256(claims(good)));
    await strict(await hs256(claims({ ...good, aud: ['billing', 'conveyor'] })));
    await rejects(
      strict,
      await hs256(claims({ ...good, iss: 'https://evil.example' })),
      /issuer is not accepted/,
    );
    await rejects(strict, await hs256(claims({ ...good, iss: undefined })), /missing the "iss" claim/);
    await rejects(strict, await hs256(claims({ ...good, aud: 'billing' })), /audience is not accepted/);
    await rejects(strict, await hs256(claims({ ...good, aud: undefined })), /missing the "aud" claim/);
    // Unconfigured, they are not checked.
    await verify(await hs256(claims({ iss: 'https://anyone.example', aud: 'anything' })));
  });
});

describe('JWKS (RS256, ES256, EdDSA) over loopback HTTP', () => {
  let server: Server;
  let base = '';
  let keys: JWK[] = [];
  const hits = new Map<string, number>();
  const pairs: Record<string, { alg: string; privateKey: CryptoKey; publicKey: CryptoKey }> = {};

  before(async () => {
    for (const [kid, alg] of [
      ['rsa-1', 'RS256'],
      ['rsa-2', 'RS256'],
      ['ec-1', 'ES256'],
      ['ed-1', 'EdDSA'],
    ] as const) {
      pairs[kid] = { alg, ...(await generateKeyPair(alg)) };
    }
    keys = await Promise.all(['rsa-1', 'ec-1', 'ed-1'].map((kid) => publicJwk(kid)));
    server = createServer((req, res) => {
      hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
      if (req.url === '/broken') {
        res.writeHead(500).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  async function publicJwk(kid: string): Promise<JWK> {
    const pair = pairs[kid]!;
    return { ...(await exportJWK(pair.publicKey)), kid, alg: pair.alg, use: 'sig' };
  }

  function sign(kid: string, payload: JWTPayload = claims()): Promise<string> {
    const pair = pairs[kid]!;
    return new SignJWT(payload).setProtectedHeader({ alg: pair.alg, kid }).sign(pair.privateKey);
  }

  const jwksVerifier = (path: string, extra: Partial<JwtConfig> = {}) =>
    createJwtVerifier({ ...BASE, jwksUrl: `${base}${path}`, ...extra })!;

  let verify: Verify;

  it('accepts RS256, ES256 and EdDSA tokens from one cached fetch', async () => {
    verify = jwksVerifier('/jwks.json');
    for (const kid of ['rsa-1', 'ec-1', 'ed-1']) {
      const exp = nowSeconds() + 600;
      assert.deepEqual(await verify(await sign(kid, claims({ tenant: kid, exp }))), {
        tenantId: kid,
        role: 'editor',
        subject: 'user-1',
        expiresAt: new Date(exp * 1000),
      });
    }
    assert.equal(hits.get('/jwks.json'), 1);
  });

  it('rejects a token signed by a stranger under a known kid', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
      .sign(privateKey);
    await rejects(verify, token, /signature is invalid/);
  });

  it('still enforces the claims on asymmetric tokens', async () => {
    await rejects(verify, await sign('rsa-1', claims({ role: 'root' })), /"role" claim/);
    await rejects(verify, await sign('ec-1', claims({ exp: nowSeconds() - 60 })), /expired/);
  });

  it('fetches a rotated-in kid once the refetch cooldown has passed', async (t) => {
    keys = [...keys, await publicJwk('rsa-2')];
    // jose refetches for an unknown kid at most once per 30 s, so a flood of made-up kids cannot turn
    // into a flood of requests to the key server.
    await rejects(verify, await sign('rsa-2'), /signing key is not recognised/);
    assert.equal(hits.get('/jwks.json'), 1);

    t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    t.mock.timers.tick(31_000);
    const principal = await verify(await sign('rsa-2', claims({ tenant: 'rotated' })));
    assert.equal(principal.tenantId, 'rotated');
    assert.equal(hits.get('/jwks.json'), 2);

    // The old key keeps working from the refreshed cache, and junk kids do not refetch.
    await verify(await sign('rsa-1'));
    const { privateKey } = await generateKeyPair('RS256');
    const junk = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'RS256', kid: 'nope' })
      .sign(privateKey);
    await rejects(verify, junk, /signing key is not recognised/);
    assert.equal(hits.get('/jwks.json'), 2);
  });

  it('rejects HS256 when only JWKS is configured, even signed with the public key', async () => {
    const pem = new TextEncoder().encode(await exportSPKI(pairs['rsa-1']!.publicKey));
    await rejects(verify, await hs256(claims(), pem), /algorithm is not accepted/);
    await rejects(verify, await hs256(claims()), /algorithm is not accepted/);
    // The published JWK's modulus is the other likely confusion secret.
    await rejects(verify, await hs256(claims(), new TextEncoder().encode(keys[0]!.n!)), /algorithm/);
  });

  it('with both configured, verifies HS256 only against the secret', async () => {
    const both = jwksVerifier('/both.json', { secret: SECRET });
    const pem = new TextEncoder().encode(await exportSPKI(pairs['rsa-1']!.publicKey));
    await rejects(both, await hs256(claims(), pem), /signature is invalid/);
    assert.equal((await both(await hs256(claims({ tenant: 'hmac' })))).tenantId, 'hmac');
    assert.equal((await both(await sign('ec-1', claims({ tenant: 'ec' })))).tenantId, 'ec');
  });

  it('reports an unreachable or broken key server as JwksUnavailableError', async () => {
    await rejects(jwksVerifier('/broken'), await sign('rsa-1'), /unavailable/, JwksUnavailableError);

    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const offline = createJwtVerifier({ ...BASE, jwksUrl: `http://127.0.0.1:${port}/jwks.json` })!;
    await rejects(offline, await sign('rsa-1'), /unavailable/, JwksUnavailableError);
  });
});
