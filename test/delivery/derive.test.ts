import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Derivations, type Derive, type Derived, derivedRepresentation } from '../../src/delivery/derive.ts';
import type { Representation } from '../../src/delivery/lookup.ts';

const source = (filename = 'photo.jpg', sha256 = 'a'.repeat(64)): Representation => ({
  kind: 'latest',
  assetId: 'ast_01',
  tenantId: 'ten_01',
  sha256,
  size: 1000,
  contentType: 'image/jpeg',
  filename,
  lastModified: new Date('2026-01-01T00:00:00Z'),
  visibility: 'public',
});

const blob = (sha256: string) => ({
  sha256,
  size: 10,
  contentType: 'image/webp',
  nameSuffix: '-thumb.webp',
  createdAt: Date.parse('2026-02-01T00:00:00.500Z'),
});

/** A step that derives from a queue of answers and counts its calls. */
function step(...answers: (Derived | Error)[]): Derive & { calls: number } {
  const counted = {
    calls: 0,
    key: (rep: Representation, request: { headers: { accept?: string } }) =>
      `test\n${rep.sha256}\n${request.headers.accept ?? ''}`,
    derive: async () => {
      counted.calls++;
      const next = answers.shift()!;
      if (next instanceof Error) throw next;
      return next;
    },
  };
  return counted;
}

const request = { headers: {} };

/**
 * What the origin remembers of derive steps (src/delivery/derive.ts): the answer of a key for the
 * metadata TTL, never a fresh render's bytes, never a failure; and a representation per source.
 */
describe('Derivations', () => {
  it('answers at once what it derived, for its TTL, and asks the step again after it', async () => {
    const clock = { now: 1_000_000 };
    const derivations = new Derivations({ ttlMs: 5_000, maxEntries: 100, now: () => clock.now });
    const derive = step({ blob: blob('b'.repeat(64)) }, { blob: blob('c'.repeat(64)) });
    const rep = source();
    assert.equal(derivations.getNow(derive, rep, request), undefined);
    const first = await derivations.get(derive, rep, request);
    assert.equal(first.rep.sha256, 'b'.repeat(64));
    assert.equal(derivations.getNow(derive, rep, request), first, 'the same answer, at once');
    clock.now += 4_999;
    assert.equal(derivations.getNow(derive, rep, request)?.rep.sha256, 'b'.repeat(64));
    clock.now += 1;
    assert.equal(derivations.getNow(derive, rep, request), undefined, 'expired');
    assert.equal((await derivations.get(derive, rep, request)).rep.sha256, 'c'.repeat(64));
    assert.equal(derive.calls, 2);
  });

  it('with a TTL of 0 remembers nothing', async () => {
    const derivations = new Derivations({ ttlMs: 0, maxEntries: 100 });
    const derive = step({ blob: blob('b'.repeat(64)) }, { blob: blob('b'.repeat(64)) });
    await derivations.get(derive, source(), request);
    assert.equal(derivations.getNow(derive, source(), request), undefined);
    await derivations.get(derive, source(), request);
    assert.equal(derive.calls, 2);
  });

  it('never remembers fresh bytes or a failure', async () => {
    const derivations = new Derivations({ ttlMs: 60_000, maxEntries: 100 });
    const rendered = Buffer.from('fresh');
    const derive = step(new Error('no such variant'), { blob: blob('b'.repeat(64)), bytes: rendered });
    await assert.rejects(derivations.get(derive, source(), request), /no such variant/);
    assert.equal(derivations.getNow(derive, source(), request), undefined);
    const fresh = await derivations.get(derive, source(), request);
    assert.equal(fresh.bytes, rendered);
    assert.equal(derivations.getNow(derive, source(), request), undefined, 'a render not stored yet');
  });

  it('keys answers by what the step says they depend on, and represents them per source', async () => {
    const derivations = new Derivations({ ttlMs: 60_000, maxEntries: 100 });
    const derive = step(
      { blob: blob('b'.repeat(64)), headers: { vary: 'Accept' } },
      { blob: blob('c'.repeat(64)), headers: { vary: 'Accept' } },
    );
    const photo = source();
    const webp = await derivations.get(derive, photo, { headers: { accept: 'image/webp' } });
    assert.equal(derivations.getNow(derive, photo, { headers: { accept: 'image/avif' } }), undefined);
    const avif = await derivations.get(derive, photo, { headers: { accept: 'image/avif' } });
    assert.notEqual(avif.rep.sha256, webp.rep.sha256);
    assert.deepEqual(webp.headers, { vary: 'Accept' });

    // The same content under another name (after a rename, or another asset): the remembered blob, in a
    // representation of that source's own, kept as long as the source's is.
    const renamed = source('holiday.png');
    const again = derivations.getNow(derive, renamed, { headers: { accept: 'image/webp' } });
    assert.equal(again?.rep.sha256, webp.rep.sha256);
    assert.equal(again?.rep.filename, 'holiday-thumb.webp');
    assert.equal(derivations.getNow(derive, renamed, { headers: { accept: 'image/webp' } })?.rep, again?.rep);
    assert.equal(derive.calls, 2);
  });
});

describe('derivedRepresentation', () => {
  it("serves the derived bytes under the source's name, access and caching kind", () => {
    const rep = derivedRepresentation(source('photo.final.jpg'), blob('b'.repeat(64)));
    assert.equal(rep.filename, 'photo.final-thumb.webp');
    assert.equal(rep.sha256, 'b'.repeat(64));
    assert.equal(rep.contentType, 'image/webp');
    assert.equal(rep.kind, 'latest');
    assert.equal(rep.visibility, 'public');
    assert.equal(rep.lastModified.toISOString(), '2026-02-01T00:00:00.000Z', 'made, to the second');
    const older = derivedRepresentation(
      { ...source(), lastModified: new Date('2026-03-01T00:00:00Z') },
      blob('b'),
    );
    assert.equal(older.lastModified.toISOString(), '2026-03-01T00:00:00.000Z', 'never before the source');
  });
});
