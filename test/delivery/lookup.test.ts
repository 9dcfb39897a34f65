import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DeliveryLookup } from '../../src/delivery/lookup.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';

describe('DeliveryLookup metadata reuse', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor();
  });
  after(async () => server?.close());

  it('reuses found metadata for its TTL, and forgets it on invalidate()', async () => {
    const asset = await upload(server, 'content', { filename: 'a.txt' });
    const db = server.conveyor.db.kysely;
    const lookup = new DeliveryLookup(db, { ttlMs: 60_000 });
    assert.equal((await lookup.latest(asset.id))?.visibility, 'public');
    // A change made behind this lookup's back (as another process would) is not seen until invalidated.
    await db.updateTable('assets').set({ visibility: 'private' }).where('id', '=', asset.id).execute();
    assert.equal((await lookup.latest(asset.id))?.visibility, 'public');
    lookup.invalidate();
    assert.equal((await lookup.latest(asset.id))?.visibility, 'private');
  });

  it('remembers a representation it found, and nothing else', async () => {
    const asset = await upload(server, 'known', { filename: 'k.txt' });
    const lookup = new DeliveryLookup(server.conveyor.db.kysely, { ttlMs: 60_000 });
    assert.equal(lookup.remembered.getNow(asset.id), undefined, 'not looked up yet');
    const rep = await lookup.latest(asset.id);
    assert.equal(lookup.remembered.getNow(asset.id), rep);
    assert.equal(await lookup.version(asset.id), null, 'an asset id is not a version');
    assert.equal(await lookup.latest('ast_0000000000000000000000000'), null);
    assert.equal(lookup.remembered.getNow('ast_0000000000000000000000000'), undefined, 'misses unknown');
    lookup.invalidate();
    assert.equal(lookup.remembered.getNow(asset.id), undefined);
    const uncached = new DeliveryLookup(server.conveyor.db.kysely, { ttlMs: 0 });
    await uncached.latest(asset.id);
    assert.equal(uncached.remembered.getNow(asset.id), undefined, 'ttl 0 remembers nothing');
  });

  it('never remembers a miss, and with ttl 0 always queries', async () => {
    const lookup = new DeliveryLookup(server.conveyor.db.kysely, { ttlMs: 0 });
    const asset = await upload(server, 'other', { filename: 'b.txt' });
    assert.ok(await lookup.latest(asset.id));
    await server.conveyor.db.kysely.deleteFrom('assets').where('id', '=', asset.id).execute();
    assert.equal(await lookup.latest(asset.id), null);
  });

  it('is invalidated by changes made through the API in this process', async () => {
    const asset = await upload(server, 'api', { filename: 'c.txt' });
    assert.equal((await fetch(asset.url)).status, 200);
    assert.equal(
      (await server.json('PATCH', `/api/v1/assets/${asset.id}`, { visibility: 'private' })).status,
      200,
    );
    // Private at once, not after the TTL: hidden without a grant, private to its owner.
    const owner = { headers: { authorization: `Bearer ${server.adminKey}` } };
    assert.equal((await fetch(asset.url)).status, 404, 'private at once, not after the TTL');
    const owned = await fetch(asset.url, owner);
    assert.equal(owned.status, 200);
    assert.equal(owned.headers.get('cache-control'), 'private, no-store');
    assert.equal((await server.json('DELETE', `/api/v1/assets/${asset.id}`)).status, 204);
    assert.equal((await fetch(asset.url, owner)).status, 404, 'gone at once, not after the TTL');
  });
});
