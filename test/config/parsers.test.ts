import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  parseCidrs,
  parseFormats,
  parseHosts,
  parseKindLanes,
  parseLanes,
  parseList,
  parseOrigins,
  parsePort,
  parsePorts,
  parsePresets,
  unlessEmpty,
} from '../../src/config/parsers.ts';
import { DEFAULT_TRANSFORM_LIMITS } from '../../src/grammar/transform-options.ts';

describe('setting parsers', () => {
  it('reads a list: comma-separated, trimmed, empty items dropped', () => {
    assert.deepEqual(parseList(' a, b,,c ,'), ['a', 'b', 'c']);
    assert.deepEqual(parseList(''), []);
    assert.deepEqual(parseList(' , '), []);
    assert.equal(unlessEmpty(parseList(' , ')), undefined);
    assert.deepEqual(unlessEmpty(parseList('x')), ['x']);
  });

  it('reads lanes and refuses unknown ones by name', () => {
    assert.deepEqual(parseLanes('critical, low'), ['critical', 'low']);
    assert.throws(
      () => parseLanes('high,urgent'),
      /unknown lanes urgent; expected critical, high, normal, low/,
    );
  });

  it('reads kind maps, which must name the default kind', () => {
    const kinds = parseKindLanes('avatar=critical, default = normal');
    assert.deepEqual({ ...kinds }, { avatar: 'critical', default: 'normal' });
    assert.ok(Object.isFrozen(kinds));
    assert.throws(() => parseKindLanes('avatar=critical'), /"default" must be given a lane/);
    assert.throws(() => parseKindLanes('avatar=urgent,default=low'), /expected kind=lane .*"avatar=urgent"/);
    assert.throws(() => parseKindLanes('Avatar=low,default=low'), /"Avatar=low"/);
  });

  it('reads ports', () => {
    assert.deepEqual(parsePorts('80, 443'), [80, 443]);
    for (const bad of ['0', '65536', 'http', '8o']) assert.throws(() => parsePorts(bad), /not a port/, bad);
    assert.equal(parsePort('0'), 0);
    assert.equal(parsePort('65535'), 65535);
    for (const bad of ['65536', 'x', ' 80', '-1']) assert.throws(() => parsePort(bad), /0 to 65535/, bad);
  });

  it('reads host names and *.suffix patterns', () => {
    assert.deepEqual(parseHosts('cdn.example.com, *.example.org,localhost.'), [
      'cdn.example.com',
      '*.example.org',
      'localhost.',
    ]);
    for (const bad of ['*', 'a..b', 'http://x', '*.', 'a b']) {
      assert.throws(() => parseHosts(bad), /not a host name or \*\.suffix/, bad);
    }
  });

  it('reads CORS origins exactly as browsers send them, and * only where allowed', () => {
    assert.deepEqual(
      parseOrigins('https://app.example.com, http://localhost:3000,capacitor://localhost', {
        wildcard: false,
      }),
      ['https://app.example.com', 'http://localhost:3000', 'capacitor://localhost'],
    );
    assert.deepEqual(parseOrigins('http://[::1]:8080,http://127.0.0.1:1', { wildcard: false }), [
      'http://[::1]:8080',
      'http://127.0.0.1:1',
    ]);
    assert.equal(parseOrigins(' , ', { wildcard: false }), undefined);
    assert.equal(parseOrigins('*', { wildcard: true }), '*');
    assert.throws(() => parseOrigins('*', { wildcard: false }), /"\*" is allowed for delivery only/);
    assert.throws(() => parseOrigins('*,https://a.example', { wildcard: true }), /"\*" stands alone/);
    for (const bad of [
      'https://app.example.com/',
      'https://app.example.com/path',
      'app.example.com',
      'null',
      'https://*.example.com',
      'https://a.example?x',
      'https://a b',
    ]) {
      assert.throws(
        () => parseOrigins(bad, { wildcard: true }),
        /not an origin, scheme:\/\/host\[:port\] with no path/,
        bad,
      );
    }
    assert.throws(() => parseOrigins('https://App.Example.com', { wildcard: false }), /in lower case/);
    for (const bad of ['http://a.example:0', 'http://a.example:65536', 'http://a.example:080']) {
      assert.throws(() => parseOrigins(bad, { wildcard: false }), /not a port/, bad);
    }
    assert.throws(
      () => parseOrigins('https://a.example:443', { wildcard: false }),
      /without its default port, as "https:\/\/a.example"/,
    );
  });

  it('reads CIDRs into numbers', () => {
    assert.deepEqual(parseCidrs('127.0.0.1/32, ::1'), [
      { family: 4, base: 0x7f000001n, prefix: 32 },
      { family: 6, base: 1n, prefix: 128 },
    ]);
    assert.throws(() => parseCidrs('10.0.0.0/33'), /not an address or CIDR: "10.0.0.0\/33"/);
  });

  it('reads output formats in order, at least one', () => {
    assert.deepEqual(parseFormats('webp, avif,jpeg'), ['webp', 'avif', 'jpeg']);
    assert.throws(() => parseFormats('webp,gif'), /unknown format "gif"/);
    assert.throws(() => parseFormats(' , '), /at least one format/);
  });

  it('reads presets in the transform grammar, within the limits given', () => {
    const presets = parsePresets('thumb=w:150,h:150,fit:cover,g:attention; wide = w:2000,f:webp ;', {
      ...DEFAULT_TRANSFORM_LIMITS,
    });
    assert.deepEqual(Object.keys(presets), ['thumb', 'wide']);
    assert.deepEqual(presets['thumb'], {
      width: 150,
      height: 150,
      fit: 'cover',
      gravity: 'attention',
      format: 'source',
      dpr: 1,
    });
    assert.equal(presets['wide']!.format, 'webp');
    assert.ok(Object.isFrozen(presets));
    const limits = { ...DEFAULT_TRANSFORM_LIMITS, maxBlur: 5, formats: ['jpeg'] as const };
    assert.throws(() => parsePresets('soft=blur:6', limits), /preset soft: blur must be between 0.3 and 5/);
    assert.throws(() => parsePresets('x=f:webp', limits), /preset x: f: webp output is not enabled/);
    assert.throws(() => parsePresets('a=w:1;a=w:2', limits), /preset a is defined twice/);
    assert.throws(() => parsePresets('w:100', limits), /expected name=options/);
    assert.throws(() => parsePresets('b@d=w:1', limits), /expected name=options/);
  });
});
