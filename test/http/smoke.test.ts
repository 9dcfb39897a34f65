import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type IncomingMessage, request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { BACKENDS, skipIfNoPostgres, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';

for (const backend of BACKENDS) {
  describe(`end to end on ${backend.database} + ${backend.storage}`, async () => {
    const skip = await skipIfNoPostgres(backend.database);
    let server: TestServer;
    before(async () => {
      if (!skip) server = await startConveyor(backend);
    });
    after(async () => server?.close());

    it('uploads, lists, delivers, publishes and deletes', { skip }, async () => {
      const asset = await upload(server, 'hello world', { filename: 'hello.txt', contentType: 'text/plain' });
      assert.equal(asset.size, 11);
      assert.equal(asset.contentType, 'text/plain; charset=utf-8');
      const res = await fetch(asset.url);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'hello world');
      assert.equal(res.headers.get('etag'), asset.etag);
      const published = await server.json('POST', `/api/v1/assets/${asset.id}/publish`);
      assert.equal(published.status, 201);
      assert.equal(published.body.number, 1);
      // No API route gives one version: Location names what a client can GET, its immutable content.
      assert.equal(published.headers.get('location'), `/v/${published.body.id}`);
      assert.equal(await (await fetch(server.url + published.headers.get('location'))).text(), 'hello world');
      const version = await fetch(published.body.url);
      assert.equal(version.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(await version.text(), 'hello world');
      const list = await server.json('GET', '/api/v1/assets');
      assert.deepEqual(
        list.body.items.map((a: { id: string }) => a.id),
        [asset.id],
      );
      assert.equal((await server.json('DELETE', `/api/v1/assets/${asset.id}`)).status, 204);
      assert.equal((await fetch(asset.url)).status, 404);
      const gc = await server.conveyor.ledger.collect(0);
      assert.equal(gc.deleted, 1);
      assert.equal(await server.conveyor.store.stat(asset.sha256), null);
    });

    it('answers other methods on delivery URLs with 405 and Allow', { skip }, async () => {
      const res = await fetch(`${server.url}/a/ast_00000000000000000000000000`, { method: 'POST' });
      assert.equal(res.status, 405);
      assert.equal(res.headers.get('allow'), 'GET, HEAD');
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
    });
  });
}

describe('shutdown', () => {
  it('is not held by a connection that never sent a request, and lets an in-flight request finish', {
    timeout: 20_000,
  }, async () => {
    const server = await startConveyor({ database: 'sqlite', storage: 'fs' });
    const { port } = new URL(server.url);
    // A client's spare connection: Node counts it active until its headers timeout (60 s and more).
    const spare = connect(Number(port), '127.0.0.1');
    await once(spare, 'connect');
    const spareClosed = once(spare, 'close');
    // A request whose body is still arriving when the close starts must still get its answer.
    const inFlight = request(`${server.url}/api/v1/jobs`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${server.adminKey}`,
        'content-type': 'application/json',
        'content-length': '15',
      },
    });
    const answered = once(inFlight, 'response');
    // In flight once the server has its head: a connection whose request it has not read yet is idle.
    const received = once(server.conveyor.app.server, 'request');
    inFlight.write('{"type":');
    await received;
    const closed = server.close();
    inFlight.end('"noop"}');
    const [response] = (await answered) as [IncomingMessage];
    response.resume();
    assert.equal(response.statusCode, 202);
    await closed;
    await spareClosed;
  });
});
