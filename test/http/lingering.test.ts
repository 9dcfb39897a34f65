import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startConveyor, type TestServer } from '../helpers/conveyor.ts';
import { chunk, head, LAST_CHUNK, RawConnection, type RawResponse } from '../helpers/raw.ts';

const MiB = 1024 * 1024;
/** Several times the upload limit, and more than loopback's socket buffers hold before a reset shows. */
const BODY = Buffer.alloc(8 * MiB, 1);

/**
 * Sends a request head and its whole body before reading a byte of the answer, as Python's http.client
 * and requests do, then reads what the server sent until it closes the connection.
 */
async function sendAllThenRead(
  server: TestServer,
  requestHead: string,
  body: Buffer,
): Promise<{ writeError: NodeJS.ErrnoException | null; client: RawConnection }> {
  const client = new RawConnection(server.url, { paused: true });
  const writeError = (await client.write(requestHead)) ?? (await client.write(body));
  client.resume();
  await client.closed;
  return { writeError, client };
}

/** The client wrote everything and read a whole problem answer with `status`, then a clean close. */
function assertAnswered(
  result: { writeError: NodeJS.ErrnoException | null; client: RawConnection },
  status: number,
): RawResponse {
  const { writeError, client } = result;
  assert.equal(writeError, null, `the body could not be sent: ${writeError?.code}`);
  const response = client.response();
  assert.ok(response, `no whole answer (${client.error ?? 'no error'}): ${client.received.slice(0, 200)}`);
  assert.equal(response.status, status, response.body);
  assert.match(response.headers['content-type'] ?? '', /^application\/problem\+json/);
  assert.equal(client.error, undefined, 'closed cleanly, not reset');
  assert.ok(client.ended);
  return response;
}

describe('answers sent before the body was read reach clients that send the whole body first', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor(undefined, {
      maxUploadBytes: 1 * MiB,
      maxJsonBodyBytes: 64 * 1024,
      // Generous: the test waits for the close, and a loaded machine must not turn it into a reset.
      httpLingeringCloseMs: 60_000,
    });
  });
  after(() => server?.close());

  it('413 for an upload whose Content-Length is over the limit', async () => {
    const result = await sendAllThenRead(
      server,
      head(server.url, 'POST /api/v1/assets?filename=big.bin HTTP/1.1', {
        Authorization: `Bearer ${server.adminKey}`,
        'Content-Length': BODY.length,
      }),
      BODY,
    );
    const response = assertAnswered(result, 413);
    assert.equal(response.headers['connection'], 'close');
    assert.equal(JSON.parse(response.body).code, 'payload_too_large');
  });

  it('401 for an upload without a key', async () => {
    const result = await sendAllThenRead(
      server,
      head(server.url, 'POST /api/v1/assets?filename=big.bin HTTP/1.1', { 'Content-Length': BODY.length }),
      BODY,
    );
    assert.equal(JSON.parse(assertAnswered(result, 401).body).code, 'unauthenticated');
  });

  it('413 for a resumable upload PATCH past its Upload-Length', async () => {
    const created = await server.fetch('/api/v1/uploads', {
      method: 'POST',
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': '1000',
        'upload-metadata': `filename ${Buffer.from('a.bin').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201);
    const result = await sendAllThenRead(
      server,
      head(server.url, `PATCH ${created.headers.get('location')} HTTP/1.1`, {
        Authorization: `Bearer ${server.adminKey}`,
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': 0,
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': BODY.length,
      }),
      BODY,
    );
    assertAnswered(result, 413);
  });

  it("413 for a JSON body over Fastify's body limit, declared or chunked", async () => {
    const declared = await sendAllThenRead(
      server,
      head(server.url, 'POST /api/v1/tenants HTTP/1.1', {
        Authorization: `Bearer ${server.adminKey}`,
        'Content-Type': 'application/json',
        'Content-Length': BODY.length,
      }),
      BODY,
    );
    assertAnswered(declared, 413);
    const chunked = await sendAllThenRead(
      server,
      head(server.url, 'POST /api/v1/tenants HTTP/1.1', {
        Authorization: `Bearer ${server.adminKey}`,
        'Content-Type': 'application/json',
        'Transfer-Encoding': 'chunked',
        Connection: 'close',
      }),
      Buffer.concat([chunk(BODY), Buffer.from(LAST_CHUNK)]),
    );
    assertAnswered(chunked, 413);
  });
});

describe('lingering close bounds', () => {
  it('stops reading the rest of a refused body past httpLingeringCloseBytes', async () => {
    const server = await startConveyor(undefined, { maxUploadBytes: MiB, httpLingeringCloseBytes: MiB });
    try {
      const client = new RawConnection(server.url, { paused: true });
      const length = 256 * MiB;
      await client.write(
        head(server.url, 'POST /api/v1/assets?filename=big.bin HTTP/1.1', {
          Authorization: `Bearer ${server.adminKey}`,
          'Content-Length': length,
        }),
      );
      // Far more than the bound and than any socket buffers: the server must refuse the rest.
      const piece = Buffer.alloc(MiB, 1);
      let sent = 0;
      let error: NodeJS.ErrnoException | null = null;
      while (sent < length && !error) {
        error = await client.write(piece);
        sent += piece.length;
      }
      assert.ok(error, 'the server stopped taking the body');
      await client.closed;
    } finally {
      await server.close();
    }
  });
});
