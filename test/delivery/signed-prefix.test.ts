import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type SigningKey,
  signPath,
  signPrefix,
  verifyPathSignature,
  verifyPrefixSignature,
} from '../../src/delivery/signed-url.ts';

const SECRET = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const KEY: SigningKey = { id: 'k2025', secret: SECRET };
const OTHER: SigningKey = { id: 'k2025', secret: Buffer.alloc(32, 0x42) };
const SCOPE = '/v/ver_1/hls/';
const EXP = 1_767_225_600;
const BEFORE = EXP - 1;

describe('prefix-signed URLs (signed-url.ts, "Prefix-signed URLs")', () => {
  it('matches the documented scheme (known-answer vector, checked with openssl)', () => {
    // printf 'k2025\n/v/ver_1/hls/\n1767225600\n*' |
    //   openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f -binary | base64 | tr '+/' '-_' | tr -d =
    assert.deepEqual(signPrefix(SCOPE, EXP, KEY), {
      exp: '1767225600',
      kid: 'k2025',
      scope: SCOPE,
      sig: 'X7niHQsoO0dArX9LAuNV2M3YYHcgn8iEDWFeeZJiNuw',
    });
  });

  it('verifies for every file under the prefix, until exp', () => {
    const q = signPrefix(SCOPE, EXP, KEY);
    for (const path of [
      `${SCOPE}master.m3u8`,
      `${SCOPE}h264-240p/index.m3u8`,
      `${SCOPE}h264-240p/seg_00001.m4s`,
      `${SCOPE}a/b/c.d`,
    ]) {
      assert.equal(verifyPrefixSignature(path, q, [KEY], BEFORE), 'valid', path);
      assert.equal(verifyPrefixSignature(path, q, [KEY], EXP), 'expired', path);
    }
  });

  it('refuses paths outside the prefix, or that a proxy could normalise out of it', () => {
    const q = signPrefix(SCOPE, EXP, KEY);
    for (const path of [
      '/v/ver_1',
      '/v/ver_1/hls',
      SCOPE,
      '/v/ver_2/hls/master.m3u8',
      '/a/ver_1/hls/master.m3u8',
      `${SCOPE}../../ver_2/hls/master.m3u8`,
      `${SCOPE}./master.m3u8`,
      `${SCOPE}h264-240p/../master.m3u8`,
      `${SCOPE}h264-240p//index.m3u8`,
      `${SCOPE}%2e%2e/x`,
      `${SCOPE}master.m3u8/`,
      `${SCOPE}.hidden`,
    ]) {
      assert.equal(verifyPrefixSignature(path, q, [KEY], BEFORE), 'invalid', path);
    }
  });

  it('refuses a tampered scope, exp, kid or sig, and another key', () => {
    const q = signPrefix(SCOPE, EXP, KEY);
    const path = `${SCOPE}master.m3u8`;
    const flip = (s: string) =>
      s[5] === 'A' ? `${s.slice(0, 5)}B${s.slice(6)}` : `${s.slice(0, 5)}A${s.slice(6)}`;
    for (const bad of [
      { ...q, scope: '/v/' },
      { ...q, scope: '/v/ver_1/' },
      { ...q, exp: String(EXP + 1) },
      { ...q, kid: 'k2024' },
      { ...q, sig: flip(q.sig) },
      { ...q, scope: undefined },
      { ...q, scope: [SCOPE, SCOPE] },
    ]) {
      assert.equal(verifyPrefixSignature(path, bad, [KEY], BEFORE), 'invalid', JSON.stringify(bad));
    }
    assert.equal(verifyPrefixSignature(path, q, [OTHER], BEFORE), 'invalid');
  });

  it('never verifies as a single-path signature, nor the reverse, even for a path equal to the scope', () => {
    const prefix = signPrefix(SCOPE, EXP, KEY);
    const single = signPath(SCOPE, EXP, KEY);
    assert.notEqual(prefix.sig, single.sig);
    assert.equal(verifyPathSignature(SCOPE, prefix, [KEY], BEFORE), 'invalid');
    assert.equal(verifyPrefixSignature(`${SCOPE}x`, { ...single, scope: SCOPE }, [KEY], BEFORE), 'invalid');
    const file = `${SCOPE}master.m3u8`;
    assert.equal(verifyPathSignature(file, prefix, [KEY], BEFORE), 'invalid');
  });

  it('signs only prefixes of the documented shape', () => {
    for (const scope of [
      '',
      '/',
      '/v/ver_1',
      'v/ver_1/',
      '/v//',
      '/v/../',
      '/v/./',
      '/v/a b/',
      `/${'x'.repeat(256)}/`,
    ]) {
      assert.throws(() => signPrefix(scope, EXP, KEY), TypeError, JSON.stringify(scope));
    }
    assert.throws(() => signPrefix(SCOPE, -1, KEY), RangeError);
  });
});
