import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { waitFor } from '../helpers/jobs.ts';
import { chunk, head, LAST_CHUNK, RawConnection, type RawResponse } from '../helpers/raw.ts';

const BODY = Buffer.concat([chunk('hello, '), chunk('world'), Buffer.from(LAST_CHUNK)]);

describe('request framing (RFC 9112 §6)', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor();
  });
  after(() => server?.close());

  /** Sends `requestHead` and `body`, and answers the response once the server has closed the connection. */
  async function refused(requestHead: string, body: Buffer | string = BODY): Promise<RawResponse> {
    const client = new RawConnection(server.url);
    await client.write(requestHead);
    await client.write(body);
    const response = await client.closedResponse();
    assert.equal(client.error, undefined, 'closed cleanly, not reset');
    assert.match(response.headers['content-type'] ?? '', /^application\/problem\+json/);
    return response;
  }

  const uploadHead = (requestLine: string, headers: Record<string, string | number>) =>
    head(server.url, requestLine, { Authorization: `Bearer ${server.adminKey}`, ...headers });

  it('refuses Transfer-Encoding on HTTP/1.0 with 400 and closes, Content-Length or not', async () => {
    const chunked = await refused(
      uploadHead('POST /api/v1/assets?filename=a.txt HTTP/1.0', {
        'Transfer-Encoding': 'chunked',
        Connection: 'keep-alive',
      }),
    );
    assert.equal(chunked.status, 400, chunked.body);
    assert.equal(chunked.headers['connection'], 'close');
    const withLength = await refused(
      uploadHead('POST /api/v1/assets?filename=a.txt HTTP/1.0', {
        'Transfer-Encoding': 'chunked',
        'Content-Length': BODY.length,
      }),
    );
    assert.equal(withLength.status, 400, withLength.body);
    assert.deepEqual((await server.json('GET', '/api/v1/assets')).body.items, []);
  });

  it('checks delivery requests too, before the delivery shortcut', async () => {
    const asset = await upload(server, 'delivered', { filename: 'd.txt', contentType: 'text/plain' });
    const response = await refused(
      head(server.url, `GET /a/${asset.id} HTTP/1.0`, { 'Transfer-Encoding': 'chunked' }),
      LAST_CHUNK,
    );
    assert.equal(response.status, 400, response.body);
    assert.equal((await fetch(asset.url)).status, 200);
    await server.json('DELETE', `/api/v1/assets/${asset.id}`);
  });

  it('refuses a transfer coding that is not chunked, or chunked that is not the final one, with 400', async () => {
    for (const coding of ['gzip', 'chunked, gzip', 'chunked, chunked']) {
      const response = await refused(
        uploadHead('POST /api/v1/assets?filename=a.txt HTTP/1.1', { 'Transfer-Encoding': coding }),
      );
      assert.equal(response.status, 400, `${coding}: ${response.body}`);
      assert.equal(response.headers['connection'], 'close', coding);
    }
  });

  it('answers 501 to a transfer coding it does not decode before a final chunked, and closes', async () => {
    const response = await refused(
      uploadHead('POST /api/v1/assets?filename=a.txt HTTP/1.1', { 'Transfer-Encoding': 'gzip, chunked' }),
    );
    assert.equal(response.status, 501, response.body);
    assert.equal(JSON.parse(response.body).code, 'not_implemented');
    assert.equal(response.headers['connection'], 'close');
    assert.deepEqual((await server.json('GET', '/api/v1/assets')).body.items, []);
  });

  it('takes ordinary chunked uploads on HTTP/1.1 and keeps the connection', async () => {
    const client = new RawConnection(server.url);
    try {
      for (const [i, coding] of ['chunked', 'Chunked'].entries()) {
        const before = client.received.length;
        await client.write(
          uploadHead(`POST /api/v1/assets?filename=c${i}.txt HTTP/1.1`, {
            'Transfer-Encoding': coding,
            'Content-Type': 'text/plain',
          }),
        );
        await client.write(BODY);
        const response = await waitFor('the answer', async () => client.response(before));
        assert.equal(response.status, 201, response.body);
        assert.equal(JSON.parse(response.body).size, 12);
      }
      assert.equal(client.isClosed, false);
    } finally {
      client.destroy();
    }
  });
});
