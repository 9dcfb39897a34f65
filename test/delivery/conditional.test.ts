import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ConditionalHeaders,
  type EntityTag,
  evaluatePreconditions,
  parseEntityTag,
  parseEntityTagList,
  strongMatch,
  type Validators,
  weakMatch,
} from '../../src/delivery/conditional.ts';

// Last-Modified has a sub-second part on purpose: HTTP dates cannot carry it.
const v: Validators = { etag: '"v1"', lastModified: new Date('2024-01-10T12:00:00.500Z') };
const NOW = new Date('2024-06-01T00:00:00Z');

const LM = 'Wed, 10 Jan 2024 12:00:00 GMT';
const LM_MINUS_1 = 'Wed, 10 Jan 2024 11:59:59 GMT';
const LM_PLUS_1 = 'Wed, 10 Jan 2024 12:00:01 GMT';
const FUTURE = 'Sun, 01 Jun 2025 00:00:00 GMT';
const NOW_DATE = 'Sat, 01 Jun 2024 00:00:00 GMT';

function evaluate(method: string, h: ConditionalHeaders, validators: Validators = v) {
  return evaluatePreconditions(method, h, validators, NOW);
}

const strong = (opaque: string): EntityTag => ({ weak: false, opaque });
const weak = (opaque: string): EntityTag => ({ weak: true, opaque });

describe('parseEntityTagList', () => {
  it('recognises * only as the whole value', () => {
    assert.deepEqual(parseEntityTagList('*'), { any: true, tags: [] });
    assert.deepEqual(parseEntityTagList(' \t* '), { any: true, tags: [] });
    assert.deepEqual(parseEntityTagList('*, "a"'), { any: false, tags: [strong('a')] });
    assert.deepEqual(parseEntityTagList('"a", *'), { any: false, tags: [strong('a')] });
    assert.deepEqual(parseEntityTagList('**'), { any: false, tags: [] });
  });

  it('parses strong and weak tags with optional whitespace', () => {
    assert.deepEqual(parseEntityTagList('"xyzzy"').tags, [strong('xyzzy')]);
    assert.deepEqual(parseEntityTagList('W/"xyzzy"').tags, [weak('xyzzy')]);
    assert.deepEqual(parseEntityTagList('"a",W/"b" , \t"c"\t').tags, [strong('a'), weak('b'), strong('c')]);
    assert.deepEqual(parseEntityTagList('""').tags, [strong('')]);
  });

  it('ignores empty list members', () => {
    assert.deepEqual(parseEntityTagList('').tags, []);
    assert.deepEqual(parseEntityTagList(' , ,, ').tags, []);
    assert.deepEqual(parseEntityTagList(',"a",,"b",').tags, [strong('a'), strong('b')]);
  });

  it('keeps commas and other etagc characters inside an opaque-tag', () => {
    assert.deepEqual(parseEntityTagList('"a,b", "c"').tags, [strong('a,b'), strong('c')]);
    assert.deepEqual(parseEntityTagList('"!#~W/"').tags, [strong('!#~W/')]);
    assert.deepEqual(parseEntityTagList('"\u00e9\u00ff"').tags, [strong('\u00e9\u00ff')]);
  });

  it('drops malformed members and keeps the rest', () => {
    assert.deepEqual(parseEntityTagList('xyzzy').tags, []);
    assert.deepEqual(parseEntityTagList('xyzzy, "a"').tags, [strong('a')]);
    assert.deepEqual(
      parseEntityTagList('w/"a", "b"').tags,
      [strong('b')],
      'the weak prefix is case-sensitive',
    );
    assert.deepEqual(parseEntityTagList('W/ "a", "b"').tags, [strong('b')]);
    assert.deepEqual(parseEntityTagList('W/a, "b"').tags, [strong('b')]);
    assert.deepEqual(parseEntityTagList('"a b", "c"').tags, [strong('c')], 'SP is not etagc');
    assert.deepEqual(parseEntityTagList('"a\x01", "c"').tags, [strong('c')], 'controls are not etagc');
    assert.deepEqual(parseEntityTagList('"a\x7f", "c"').tags, [strong('c')], 'DEL is not etagc');
    assert.deepEqual(parseEntityTagList('"\u0100", "c"').tags, [strong('c')], 'beyond obs-text');
    assert.deepEqual(parseEntityTagList('"a" x, "b"').tags, [strong('b')]);
    assert.deepEqual(parseEntityTagList('"a""b", "c"').tags, [strong('c')]);
    assert.deepEqual(parseEntityTagList('"a" "b"').tags, []);
    assert.deepEqual(parseEntityTagList('"unterminated').tags, []);
    assert.deepEqual(parseEntityTagList('"a", "unterminated').tags, [strong('a')]);
    assert.deepEqual(parseEntityTagList('\'a\', "b"').tags, [strong('b')]);
  });
});

describe('parseEntityTag', () => {
  it('parses exactly one entity tag', () => {
    assert.deepEqual(parseEntityTag('"a"'), strong('a'));
    assert.deepEqual(parseEntityTag(' W/"a" '), weak('a'));
    assert.equal(parseEntityTag('"a", "b"'), null);
    assert.equal(parseEntityTag('*'), null);
    assert.equal(parseEntityTag(''), null);
    assert.equal(parseEntityTag('a'), null);
    assert.equal(parseEntityTag('"a'), null);
  });
});

describe('strongMatch and weakMatch', () => {
  it('reproduce the comparison table of RFC 9110 §8.8.3.2', () => {
    const rows: [EntityTag, EntityTag, boolean, boolean][] = [
      [weak('1'), weak('1'), false, true],
      [weak('1'), weak('2'), false, false],
      [weak('1'), strong('1'), false, true],
      [strong('1'), strong('1'), true, true],
    ];
    for (const [a, b, s, w] of rows) {
      assert.equal(strongMatch(a, b), s);
      assert.equal(strongMatch(b, a), s);
      assert.equal(weakMatch(a, b), w);
      assert.equal(weakMatch(b, a), w);
    }
  });

  it('compare opaque-tags character by character', () => {
    assert.equal(strongMatch(strong('abc'), strong('ABC')), false);
    assert.equal(weakMatch(strong('abc'), strong('abc ')), false);
  });
});

describe('evaluatePreconditions', () => {
  it('proceeds without conditional fields', () => {
    for (const method of ['GET', 'HEAD', 'PUT', 'POST', 'DELETE'])
      assert.equal(evaluate(method, {}), 'proceed');
  });

  describe('step 1: If-Match (strong comparison)', () => {
    it('proceeds when a listed tag matches strongly', () => {
      assert.equal(evaluate('GET', { ifMatch: '"v1"' }), 'proceed');
      assert.equal(evaluate('PUT', { ifMatch: '"x", "v1"' }), 'proceed');
      assert.equal(evaluate('PUT', { ifMatch: ' "v1" ' }), 'proceed');
    });

    it('proceeds for * because the representation exists', () => {
      assert.equal(evaluate('PUT', { ifMatch: '*' }), 'proceed');
    });

    it('fails on a mismatch, also for GET and HEAD (412, never 304)', () => {
      for (const method of ['GET', 'HEAD', 'PUT', 'DELETE']) {
        assert.equal(evaluate(method, { ifMatch: '"v2"' }), 'precondition-failed', method);
      }
    });

    it('fails on a weak tag even with the same opaque-tag', () => {
      assert.equal(evaluate('GET', { ifMatch: 'W/"v1"' }), 'precondition-failed');
      assert.equal(evaluate('GET', { ifMatch: '"v1"' }, { ...v, etag: 'W/"v1"' }), 'precondition-failed');
    });

    it('fails when the value holds no usable tag', () => {
      assert.equal(evaluate('GET', { ifMatch: '' }), 'precondition-failed');
      assert.equal(evaluate('GET', { ifMatch: 'v1' }), 'precondition-failed');
      assert.equal(evaluate('GET', { ifMatch: '*, "x"' }), 'precondition-failed');
    });

    it('decides before If-Unmodified-Since, which it replaces', () => {
      assert.equal(evaluate('PUT', { ifMatch: '"v1"', ifUnmodifiedSince: LM_MINUS_1 }), 'proceed');
      assert.equal(evaluate('PUT', { ifMatch: '"v2"', ifUnmodifiedSince: LM_PLUS_1 }), 'precondition-failed');
    });

    it('decides before If-None-Match', () => {
      assert.equal(evaluate('GET', { ifMatch: '"v2"', ifNoneMatch: '"v1"' }), 'precondition-failed');
      assert.equal(evaluate('GET', { ifMatch: '"v1"', ifNoneMatch: '"v1"' }), 'not-modified');
      assert.equal(evaluate('GET', { ifMatch: '"v1"', ifNoneMatch: '"v2"' }), 'proceed');
    });
  });

  describe('step 2: If-Unmodified-Since', () => {
    it('proceeds when Last-Modified is earlier than or equal to the date, compared in whole seconds', () => {
      assert.equal(evaluate('PUT', { ifUnmodifiedSince: LM }), 'proceed');
      assert.equal(evaluate('PUT', { ifUnmodifiedSince: LM_PLUS_1 }), 'proceed');
      assert.equal(evaluate('PUT', { ifUnmodifiedSince: FUTURE }), 'proceed');
    });

    it('fails when the representation changed after the date', () => {
      assert.equal(evaluate('PUT', { ifUnmodifiedSince: LM_MINUS_1 }), 'precondition-failed');
      assert.equal(evaluate('GET', { ifUnmodifiedSince: LM_MINUS_1 }), 'precondition-failed');
    });

    it('accepts the obsolete date formats', () => {
      assert.equal(evaluate('PUT', { ifUnmodifiedSince: 'Wed Jan 10 11:59:59 2024' }), 'precondition-failed');
      assert.equal(
        evaluate('PUT', { ifUnmodifiedSince: 'Wednesday, 10-Jan-24 11:59:59 GMT' }),
        'precondition-failed',
      );
    });

    it('is ignored when the value is not one valid HTTP-date', () => {
      for (const ifUnmodifiedSince of ['', 'yesterday', '2024-01-01', `${LM_MINUS_1}, ${LM_MINUS_1}`]) {
        assert.equal(evaluate('PUT', { ifUnmodifiedSince }), 'proceed', ifUnmodifiedSince);
      }
    });

    it('decides before If-None-Match', () => {
      assert.equal(
        evaluate('GET', { ifUnmodifiedSince: LM_MINUS_1, ifNoneMatch: '"v1"' }),
        'precondition-failed',
      );
      assert.equal(evaluate('GET', { ifUnmodifiedSince: LM, ifNoneMatch: '"v1"' }), 'not-modified');
    });
  });

  describe('step 3: If-None-Match (weak comparison)', () => {
    it('answers 304 to GET and HEAD when a tag matches', () => {
      for (const method of ['GET', 'HEAD']) {
        assert.equal(evaluate(method, { ifNoneMatch: '"v1"' }), 'not-modified');
        assert.equal(evaluate(method, { ifNoneMatch: 'W/"v1"' }), 'not-modified');
        assert.equal(evaluate(method, { ifNoneMatch: '"a", W/"b", "v1"' }), 'not-modified');
        assert.equal(evaluate(method, { ifNoneMatch: '*' }), 'not-modified');
      }
    });

    it('answers 412 to other methods when a tag matches', () => {
      for (const method of ['PUT', 'POST', 'DELETE', 'PATCH']) {
        assert.equal(evaluate(method, { ifNoneMatch: '"v1"' }), 'precondition-failed', method);
        assert.equal(evaluate(method, { ifNoneMatch: '*' }), 'precondition-failed', method);
      }
    });

    it('compares a weak server tag weakly too', () => {
      assert.equal(evaluate('GET', { ifNoneMatch: '"v1"' }, { ...v, etag: 'W/"v1"' }), 'not-modified');
    });

    it('proceeds when nothing matches, including malformed values', () => {
      for (const ifNoneMatch of ['"v2"', 'W/"v2"', '', 'v1', '"V1"', '*, "x"']) {
        assert.equal(evaluate('GET', { ifNoneMatch }), 'proceed', ifNoneMatch);
      }
    });

    it('makes If-Modified-Since irrelevant whether it matches or not', () => {
      assert.equal(evaluate('GET', { ifNoneMatch: '"v2"', ifModifiedSince: LM }), 'proceed');
      assert.equal(evaluate('GET', { ifNoneMatch: '"v1"', ifModifiedSince: LM_MINUS_1 }), 'not-modified');
    });
  });

  describe('step 4: If-Modified-Since', () => {
    it('answers 304 when Last-Modified is not after the date, compared in whole seconds', () => {
      assert.equal(evaluate('GET', { ifModifiedSince: LM }), 'not-modified');
      assert.equal(evaluate('HEAD', { ifModifiedSince: LM }), 'not-modified');
      assert.equal(evaluate('GET', { ifModifiedSince: LM_PLUS_1 }), 'not-modified');
    });

    it('proceeds when the representation changed after the date', () => {
      assert.equal(evaluate('GET', { ifModifiedSince: LM_MINUS_1 }), 'proceed');
      assert.equal(evaluate('GET', { ifModifiedSince: 'Thu, 01 Jan 1970 00:00:00 GMT' }), 'proceed');
    });

    it('accepts the obsolete date formats', () => {
      assert.equal(evaluate('GET', { ifModifiedSince: 'Wed Jan 10 12:00:00 2024' }), 'not-modified');
      assert.equal(evaluate('GET', { ifModifiedSince: 'Wednesday, 10-Jan-24 12:00:00 GMT' }), 'not-modified');
    });

    it('is ignored for methods other than GET and HEAD', () => {
      for (const method of ['PUT', 'POST', 'DELETE', 'get', 'head']) {
        assert.equal(evaluate(method, { ifModifiedSince: LM }), 'proceed', method);
      }
    });

    it('is ignored when the value is not one valid HTTP-date', () => {
      for (const ifModifiedSince of ['', 'now', '1704888000', `${LM}, ${LM}`, LM.toLowerCase()]) {
        assert.equal(evaluate('GET', { ifModifiedSince }), 'proceed', ifModifiedSince);
      }
    });

    it('is ignored when the date lies ahead of the server clock, but not when it equals it', () => {
      assert.equal(evaluate('GET', { ifModifiedSince: FUTURE }), 'proceed');
      assert.equal(evaluate('GET', { ifModifiedSince: 'Sat, 01 Jun 2024 00:00:01 GMT' }), 'proceed');
      assert.equal(evaluate('GET', { ifModifiedSince: NOW_DATE }), 'not-modified');
    });

    it('uses the real clock by default', () => {
      assert.equal(evaluatePreconditions('GET', { ifModifiedSince: LM }, v), 'not-modified');
      assert.equal(
        evaluatePreconditions('GET', { ifModifiedSince: 'Fri, 31 Dec 9999 23:59:59 GMT' }, v),
        'proceed',
      );
    });
  });

  it('applies If-Unmodified-Since and If-Modified-Since together', () => {
    assert.equal(evaluate('GET', { ifUnmodifiedSince: LM, ifModifiedSince: LM }), 'not-modified');
    assert.equal(evaluate('GET', { ifUnmodifiedSince: LM, ifModifiedSince: LM_MINUS_1 }), 'proceed');
  });

  it('ignores every condition for methods that select no representation', () => {
    const failing = { ifMatch: '"v2"', ifUnmodifiedSince: LM_MINUS_1, ifNoneMatch: '*', ifModifiedSince: LM };
    for (const method of ['CONNECT', 'OPTIONS', 'TRACE'])
      assert.equal(evaluate(method, failing), 'proceed', method);
    assert.equal(evaluate('GET', failing), 'precondition-failed');
  });

  it('treats a method token case-sensitively', () => {
    assert.equal(evaluate('get', { ifNoneMatch: '"v1"' }), 'precondition-failed');
  });

  it('throws on a malformed server entity tag, which is a bug rather than a client error', () => {
    // Checked when a tag is compared; a request with no condition never looks at it.
    assert.throws(() => evaluate('GET', { ifNoneMatch: '"x"' }, { ...v, etag: 'v1' }), TypeError);
    assert.throws(() => evaluate('GET', { ifMatch: '*' }, { ...v, etag: '"v1", "v2"' }), TypeError);
  });

  it('answers an If-None-Match of exactly our tag the same on its quick path as in general', () => {
    // '"v1"' takes the quick path; '"v1", ' (an empty list member, ignored) the general one.
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'get']) {
      for (const extra of [{}, { ifModifiedSince: LM_MINUS_1 }, { ifModifiedSince: LM }]) {
        const quick = evaluate(method, { ifNoneMatch: '"v1"', ...extra });
        assert.equal(
          quick,
          evaluate(method, { ifNoneMatch: '"v1", ', ...extra }),
          `${method} ${JSON.stringify(extra)}`,
        );
      }
    }
    assert.equal(evaluate('GET', { ifNoneMatch: '"v1"' }), 'not-modified');
    assert.equal(evaluate('GET', { ifNoneMatch: '"v1"', ifMatch: '"v2"' }), 'precondition-failed');
  });
});
