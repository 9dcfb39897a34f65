import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { type SigningKey, signPath, verifyPathSignature } from '../../src/delivery/signed-url.ts';

const SECRET = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const KEY: SigningKey = { id: 'k2025', secret: SECRET };
const OLD: SigningKey = { id: 'k2024', secret: Buffer.alloc(32, 0x42) };
const PATH = '/t/acme/assets/logo.png';
const EXP = 1_767_225_600;

function flip(s: string, at: number): string {
  const c = s[at] === 'A' ? 'B' : 'A';
  return s.slice(0, at) + c + s.slice(at + 1);
}

describe('signPath', () => {
  it('matches the documented scheme (known-answer vector, checked with openssl)', () => {
    // printf 'k2025\n/t/acme/assets/logo.png\n1767225600' |
    //   openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f -binary | base64 | tr '+/' '-_' | tr -d =
    assert.deepEqual(signPath(PATH, EXP, KEY), {
      exp: '1767225600',
      kid: 'k2025',
      sig: 'upjfSbMs9rVtwux0xt-el9xnZQXx9OjHhvMAqIh2xpA',
    });
  });

  it('produces a 43-character base64url signature without padding', () => {
    for (const path of ['/', '/a', '/ü/%20/x?y', '/\n']) {
      assert.match(signPath(path, 0, KEY).sig, /^[A-Za-z0-9_-]{43}$/);
    }
  });

  it('writes exp as canonical decimal', () => {
    assert.equal(signPath(PATH, 0, KEY).exp, '0');
    assert.equal(signPath(PATH, Number.MAX_SAFE_INTEGER, KEY).exp, '9007199254740991');
  });

  it('is usable to build a query string', () => {
    const query = new URLSearchParams(signPath(PATH, EXP, KEY)).toString();
    assert.equal(query, 'exp=1767225600&kid=k2025&sig=upjfSbMs9rVtwux0xt-el9xnZQXx9OjHhvMAqIh2xpA');
  });

  it('refuses expiries that are not whole non-negative seconds', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      assert.throws(() => signPath(PATH, bad, KEY), RangeError, String(bad));
    }
  });

  it('refuses key ids that could not round-trip through the scheme', () => {
    for (const id of ['', 'a\nb', 'a b', 'k/1', 'ü', 'x'.repeat(65)]) {
      assert.throws(() => signPath(PATH, EXP, { id, secret: SECRET }), TypeError, JSON.stringify(id));
    }
    assert.doesNotThrow(() => signPath(PATH, EXP, { id: 'A-z_0.9~', secret: SECRET }));
  });

  it('refuses an empty secret', () => {
    assert.throws(() => signPath(PATH, EXP, { id: 'k', secret: Buffer.alloc(0) }), TypeError);
  });
});

describe('verifyPathSignature', () => {
  const q = signPath(PATH, EXP, KEY);
  const keys = [KEY, OLD];

  it('accepts a genuine URL until it expires', () => {
    assert.equal(verifyPathSignature(PATH, q, keys, 0), 'valid');
    assert.equal(verifyPathSignature(PATH, q, keys, EXP - 1), 'valid');
  });

  it('reports expiry from exp onwards', () => {
    assert.equal(verifyPathSignature(PATH, q, keys, EXP), 'expired');
    assert.equal(verifyPathSignature(PATH, q, keys, EXP + 86_400), 'expired');
    assert.equal(verifyPathSignature(PATH, signPath(PATH, 0, KEY), keys, 0), 'expired');
  });

  it('rejects a different path, byte for byte', () => {
    for (const path of [
      '/t/acme/assets/logo.PNG',
      '/t/acme/assets/logo.png/',
      '/t/acme/assets//logo.png',
      '',
    ]) {
      assert.equal(verifyPathSignature(path, q, keys, 0), 'invalid', path);
    }
    const encoded = signPath('/a%2Fb', EXP, KEY);
    assert.equal(verifyPathSignature('/a%2Fb', encoded, keys, 0), 'valid');
    assert.equal(verifyPathSignature('/a/b', encoded, keys, 0), 'invalid');
    assert.equal(verifyPathSignature('/a%2fb', encoded, keys, 0), 'invalid');
  });

  it('rejects a tampered exp', () => {
    assert.equal(verifyPathSignature(PATH, { ...q, exp: String(EXP + 1) }, keys, 0), 'invalid');
    assert.equal(verifyPathSignature(PATH, { ...q, exp: '9999999999' }, keys, 0), 'invalid');
  });

  it('rejects a tampered signature, in any position', () => {
    for (let i = 0; i < q.sig.length; i++) {
      assert.equal(verifyPathSignature(PATH, { ...q, sig: flip(q.sig, i) }, keys, 0), 'invalid', `at ${i}`);
    }
  });

  it('rejects a signature presented under another key id', () => {
    assert.equal(verifyPathSignature(PATH, { ...q, kid: 'k2024' }, keys, 0), 'invalid');
  });

  it('reports a tampered URL as invalid even once its exp has passed', () => {
    assert.equal(verifyPathSignature('/other', q, keys, EXP + 1), 'invalid');
    assert.equal(verifyPathSignature(PATH, { ...q, sig: flip(q.sig, 0) }, keys, EXP + 1), 'invalid');
    assert.equal(verifyPathSignature(PATH, { ...q, exp: '1' }, keys, EXP + 1), 'invalid');
  });

  it('finds the key by id, so rotated keys keep verifying until removed', () => {
    const old = signPath(PATH, EXP, OLD);
    assert.equal(verifyPathSignature(PATH, old, [KEY, OLD], 0), 'valid');
    assert.equal(verifyPathSignature(PATH, old, [OLD], 0), 'valid');
    assert.equal(verifyPathSignature(PATH, old, [KEY], 0), 'invalid');
    assert.equal(verifyPathSignature(PATH, q, [], 0), 'invalid');
  });

  it('rejects a known id whose secret differs', () => {
    assert.equal(verifyPathSignature(PATH, q, [{ id: 'k2025', secret: Buffer.alloc(32, 1) }], 0), 'invalid');
  });

  it('never verifies against an empty secret', () => {
    const empty: SigningKey = { id: 'k', secret: Buffer.alloc(0) };
    // What anyone could compute if an empty secret were accepted.
    const sig = createHmac('sha256', Buffer.alloc(0)).update(`k\n${PATH}\n${EXP}`).digest('base64url');
    assert.equal(verifyPathSignature(PATH, { exp: String(EXP), kid: 'k', sig }, [empty], 0), 'invalid');
  });

  it('rejects missing and non-string parameters, as repeated query parameters produce', () => {
    const variants: Record<string, unknown>[] = [
      {},
      { exp: q.exp, kid: q.kid },
      { exp: q.exp, sig: q.sig },
      { kid: q.kid, sig: q.sig },
      { ...q, exp: EXP },
      { ...q, exp: [q.exp] },
      { ...q, kid: [q.kid, q.kid] },
      { ...q, sig: [q.sig] },
      { ...q, sig: null },
      { ...q, sig: Buffer.from(q.sig) },
      { ...q, exp: { toString: () => q.exp } },
    ];
    for (const variant of variants) assert.equal(verifyPathSignature(PATH, variant, keys, 0), 'invalid');
  });

  it('rejects malformed exp values even when they denote the same number', () => {
    for (const exp of [
      '',
      ' 1767225600',
      '1767225600 ',
      '+1767225600',
      '01767225600',
      '1767225600.0',
      '1.7e9',
      '-1',
    ]) {
      assert.equal(verifyPathSignature(PATH, { ...q, exp }, keys, 0), 'invalid', exp);
    }
    assert.equal(verifyPathSignature(PATH, { ...q, exp: '99999999999999999' }, keys, 0), 'invalid');
    assert.equal(verifyPathSignature(PATH, { ...q, exp: '9'.repeat(400) }, keys, 0), 'invalid');
  });

  it('rejects malformed signatures without throwing', () => {
    for (const sig of [
      '',
      q.sig.slice(0, 42),
      `${q.sig}A`,
      `${q.sig}=`,
      q.sig.replace(/-/g, '+').replace(/_/g, '/'),
      Buffer.from(q.sig, 'base64url').toString('hex'),
      `${q.sig.slice(0, 42)}é`,
    ]) {
      assert.equal(verifyPathSignature(PATH, { ...q, sig }, keys, 0), 'invalid', sig);
    }
  });

  it('rejects a non-canonical base64url spelling of the right bytes', () => {
    // The last of 43 characters carries 4 data bits and 2 padding bits; other padding bits decode to the same
    // bytes but are not the signature the scheme defines.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(q.sig.at(-1)!);
    const variant = q.sig.slice(0, 42) + alphabet[last ^ 1];
    assert.deepEqual(Buffer.from(variant, 'base64url'), Buffer.from(q.sig, 'base64url'));
    assert.equal(verifyPathSignature(PATH, { ...q, sig: variant }, keys, 0), 'invalid');
  });

  it('rejects malformed key ids', () => {
    for (const kid of ['', 'k2025\n', 'k 2025', 'x'.repeat(65)]) {
      assert.equal(verifyPathSignature(PATH, { ...q, kid }, keys, 0), 'invalid', JSON.stringify(kid));
    }
  });
});
