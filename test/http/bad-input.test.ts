import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { newId } from '../../src/db/ids.ts';
import { havePostgres, startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { type Answer, assertProblem, readAnswer } from '../helpers/http.ts';
import { waitFor } from '../helpers/jobs.ts';

/** A request whose body is sent verbatim with the given Content-Type (default application/json). */
async function send(
  server: TestServer,
  method: string,
  path: string,
  body?: string | Buffer | FormData,
  contentType: string | null = 'application/json',
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (contentType !== null && body !== undefined && !(body instanceof FormData))
    headers['content-type'] = contentType;
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = body;
  return readAnswer(await server.fetch(path, init));
}

/**
 * The server's side of the next request it reads. Waiting for it means the server has the request's head
 * and is reading its body; its `done` resolves once the server is through with the request (answered, or
 * saw the client go).
 */
async function nextRequest(server: TestServer): Promise<{ done: Promise<void> }> {
  const [, response] = (await once(server.conveyor.app.server, 'request')) as [unknown, ServerResponse];
  return { done: response.closed ? Promise.resolve() : once(response, 'close').then(() => undefined) };
}

/** Names of the staged temporaries: files in <dataDir>/tmp, or objects under tmp/ in the bucket. */
async function temporaries(server: TestServer): Promise<string[]> {
  const config = server.config;
  if (config.storage === 'fs') return readdir(join(server.dataDir, 'tmp'));
  const client = new S3Client({
    endpoint: config.s3Endpoint,
    region: config.s3Region,
    forcePathStyle: true,
    credentials: { accessKeyId: config.s3AccessKeyId!, secretAccessKey: config.s3SecretAccessKey! },
  });
  try {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: config.s3Bucket, Prefix: `${config.s3Prefix}tmp/` }),
    );
    return (page.Contents ?? []).map((o) => o.Key!);
  } finally {
    client.destroy();
  }
}

async function assetCount(server: TestServer): Promise<number> {
  const row = await server.conveyor.db.kysely
    .selectFrom('assets')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * The state a failed request must leave: no staged temporaries (checked before garbage collection, which
 * would sweep them), the same number of asset rows, and after a collection with no grace period no blob in
 * storage or in the ledger that no asset or version references.
 */
async function assertClean(server: TestServer, assetsBefore: number): Promise<void> {
  await waitFor('staged temporaries to be removed', async () => (await temporaries(server)).length === 0);
  assert.equal(await assetCount(server), assetsBefore, 'asset rows changed');
  await server.conveyor.ledger.collect(0);
  const db = server.conveyor.db.kysely;
  const referenced = new Set([
    ...(await db.selectFrom('assets').select('sha256').execute()).map((r) => r.sha256),
    ...(await db.selectFrom('asset_versions').select('sha256').execute()).map((r) => r.sha256),
  ]);
  const stored: string[] = [];
  for await (const blob of server.conveyor.store.list()) stored.push(blob.sha256);
  for (const sha256 of stored) assert.ok(referenced.has(sha256), `orphan blob ${sha256}`);
  for (const sha256 of referenced) assert.ok(stored.includes(sha256), `missing blob ${sha256}`);
  const rows = (await db.selectFrom('blobs').select('sha256').execute()).map((r) => r.sha256);
  assert.deepEqual(rows.toSorted(), [...referenced].toSorted(), 'blob ledger rows');
}

/** Raw connections still open; destroyed before a server closes, which would otherwise wait for them. */
const openClients = new Set<RawClient>();

function destroyClients(): void {
  for (const client of openClients) client.socket.destroy();
}

/** A bare TCP client for requests fetch refuses to make (lying Content-Length, half-sent bodies). */
class RawClient {
  readonly socket: Socket;
  received = '';
  readonly closed: Promise<void>;

  constructor(url: string) {
    const { hostname, port } = new URL(url);
    this.socket = connect(Number(port), hostname);
    this.socket.setEncoding('latin1');
    this.socket.on('data', (text: string) => {
      this.received += text;
    });
    openClients.add(this);
    this.closed = new Promise((resolve) => {
      this.socket.on('close', () => {
        openClients.delete(this);
        resolve();
      });
      this.socket.on('error', () => {});
    });
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(data, (error) => (error ? reject(error) : resolve())),
    );
  }

  /** Waits for a whole response (head plus Content-Length bytes) and parses it. */
  async response(): Promise<{ status: number; headers: Headers; body: any }> {
    let parsed: { status: number; headers: Headers; body: any } | null = null;
    await waitFor('a response', async () => {
      const end = this.received.indexOf('\r\n\r\n');
      if (end < 0) return false;
      const [statusLine, ...lines] = this.received.slice(0, end).split('\r\n');
      const headers = new Headers();
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
      const length = Number(headers.get('content-length') ?? 0);
      const body = this.received.slice(end + 4);
      if (body.length < length) return false;
      const text = Buffer.from(body.slice(0, length), 'latin1').toString('utf8');
      parsed = {
        status: Number(statusLine!.split(' ')[1]),
        headers,
        body: text ? JSON.parse(text) : null,
      };
      return true;
    });
    return parsed!;
  }
}

function uploadHead(
  server: TestServer,
  headers: Record<string, string | number>,
  path = '/api/v1/assets?filename=raw.bin',
) {
  const lines = [
    `POST ${path} HTTP/1.1`,
    `Host: ${new URL(server.url).host}`,
    `Authorization: Bearer ${server.adminKey}`,
  ];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

function chunk(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
}

/** A stored filename is clean: one segment, no controls or bidi overrides, within the byte limit. */
function assertSafeFilename(name: string, maxBytes: number): void {
  assert.ok(name.length > 0);
  assert.ok(!/[/\\]/.test(name), `path separator in ${JSON.stringify(name)}`);
  assert.ok(!/\p{Cc}|\p{Bidi_Control}/u.test(name), `control character in ${JSON.stringify(name)}`);
  assert.ok(!name.startsWith('.'), `leading dot in ${JSON.stringify(name)}`);
  assert.ok(Buffer.byteLength(name) <= maxBytes, `${Buffer.byteLength(name)} bytes`);
  assert.equal(name, name.toWellFormed());
}

/** Content-Disposition stays one well-formed header: quoted ASCII filename, RFC 8187 filename* at most. */
function assertSafeDisposition(header: string | null): void {
  assert.ok(header);
  assert.match(
    header,
    /^inline; filename="[\x20\x21\x23-\x5b\x5d-\x7e]*"(?:; filename\*=UTF-8''[A-Za-z0-9!#$&+\-.^_`|~%]+)?$/,
    header,
  );
  const ascii = /filename="([^"]*)"/.exec(header)![1]!;
  assert.ok(!ascii.includes('/') && !ascii.startsWith('.'), header);
  const extended = /filename\*=UTF-8''(.+)$/.exec(header)?.[1];
  if (extended) {
    const decoded = decodeURIComponent(extended);
    assert.ok(!/[/\\]|\p{Cc}|\p{Bidi_Control}/u.test(decoded), header);
  }
}

describe('bad input on sqlite + fs', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor();
  });
  after(async () => {
    destroyClients();
    await server?.close();
  });

  it('a Content-Length larger than the bytes sent, then the socket closes: nothing is kept', async () => {
    const before = await assetCount(server);
    const client = new RawClient(server.url);
    await client.write(
      uploadHead(server, { 'Content-Type': 'application/octet-stream', 'Content-Length': 256 * 1024 }),
    );
    await client.write(randomBytes(64 * 1024));
    // Staging has begun (a temporary exists) before the client gives up, so the clean-up path is exercised.
    await waitFor('staging to begin', async () => (await temporaries(server)).length > 0);
    client.socket.end();
    await client.closed;
    assert.ok(!client.received.startsWith('HTTP/1.1 201'), client.received);
    await assertClean(server, before);
  });

  it('a client that aborts mid-upload leaves nothing behind (raw and chunked)', async () => {
    const before = await assetCount(server);
    for (const framing of ['length', 'chunked'] as const) {
      const client = new RawClient(server.url);
      const headers: Record<string, string | number> =
        framing === 'length'
          ? { 'Content-Type': 'application/octet-stream', 'Content-Length': 1024 * 1024 }
          : { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' };
      await client.write(uploadHead(server, headers));
      const half = randomBytes(512 * 1024);
      await client.write(framing === 'length' ? half : chunk(half));
      await waitFor('staging to begin', async () => (await temporaries(server)).length > 0);
      client.socket.destroy();
      await assertClean(server, before);
    }
  });

  it('a client that aborts before the content type is sniffed leaves nothing behind', async () => {
    const before = await assetCount(server);
    const client = new RawClient(server.url);
    const received = nextRequest(server);
    await client.write(uploadHead(server, { 'Content-Type': 'image/png', 'Content-Length': 100_000 }));
    await client.write(Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'));
    const request = await received;
    client.socket.destroy();
    await request.done;
    await assertClean(server, before);
    // The server is still fine afterwards.
    const asset = await upload(server, 'after the abort');
    assert.equal((await server.json('DELETE', `/api/v1/assets/${asset.id}`)).status, 204);
  });

  it('a multipart upload aborted inside the file part leaves nothing behind', async () => {
    const before = await assetCount(server);
    const client = new RawClient(server.url);
    const boundary = 'conveyorBoundary1234';
    await client.write(
      uploadHead(
        server,
        { 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Content-Length': 2 * 1024 * 1024 },
        '/api/v1/assets',
      ),
    );
    await client.write(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    );
    await client.write(randomBytes(512 * 1024));
    await waitFor('staging to begin', async () => (await temporaries(server)).length > 0);
    client.socket.destroy();
    await assertClean(server, before);
  });

  it('stores hostile filenames sanitised and serves a safe Content-Disposition', async () => {
    const before = await assetCount(server);
    const max = server.config.maxFilenameBytes;
    const cases: [string, string | null][] = [
      ['../../etc/passwd', 'passwd'],
      ['..\\..\\win.ini', 'win.ini'],
      ['/absolute/path/x.txt', 'x.txt'],
      ['a\u0000b\u0007c\r\nd\u001b[31m.txt', 'abcd[31m.txt'],
      ['\u0085\u009bnext.txt', 'next.txt'],
      ['invoice\u202Efdp.exe', 'invoicefdp.exe'],
      ['\u2066x\u2069\u200Fy\u061C.txt', 'xy.txt'],
      ['..', 'file'],
      ['.htaccess', 'htaccess'],
      ['CON.txt', '_CON.txt'],
      ['quote"back\\slash.txt', 'slash.txt'],
      ['%41%2F..%2Fx.txt', null],
      [`${'é'.repeat(2500)}.txt`, null],
      ['\ud800lone-surrogate.txt', null],
    ];
    const created: string[] = [];
    for (const [hostile, expected] of cases) {
      for (const via of ['query', 'multipart', 'patch'] as const) {
        let asset: any;
        if (via === 'query') {
          asset = await upload(server, 'hostile name', { filename: hostile });
        } else if (via === 'multipart') {
          const form = new FormData();
          form.append('file', new Blob(['hostile name']), hostile);
          const res = await send(server, 'POST', '/api/v1/assets', form);
          assert.equal(res.status, 201, `${JSON.stringify(hostile)}: ${JSON.stringify(res.body)}`);
          asset = res.body;
        } else {
          asset = await upload(server, 'hostile name', { filename: 'plain.txt' });
          const res = await server.json('PATCH', `/api/v1/assets/${asset.id}`, { filename: hostile });
          assert.equal(res.status, 200, `${JSON.stringify(hostile)}: ${JSON.stringify(res.body)}`);
          asset = res.body;
        }
        created.push(asset.id);
        const label = `${via} ${JSON.stringify(hostile)} -> ${JSON.stringify(asset.filename)}`;
        assertSafeFilename(asset.filename, max);
        // FormData percent-encodes CR, LF and '"' in a part's filename (WHATWG multipart/form-data encoding),
        // so those names reach the server as different, harmless text.
        // A part whose filename has no last segment ('..') arrives without one and gets the default name.
        const changedOnTheWay = via === 'multipart' && (/[\r\n"]/.test(hostile) || hostile === '..');
        if (expected !== null && !changedOnTheWay) assert.equal(asset.filename, expected, label);
        const stored = await server.json('GET', `/api/v1/assets/${asset.id}`);
        assert.equal(stored.body.filename, asset.filename, label);
        const delivered = await fetch(asset.url);
        assert.equal(delivered.status, 200, label);
        assertSafeDisposition(delivered.headers.get('content-disposition'));
        await delivered.arrayBuffer();
      }
    }
    // The 5,000-byte name is cut to the limit on a character boundary and keeps its extension.
    const long = await upload(server, 'x', { filename: `${'é'.repeat(2500)}.txt` });
    created.push(long.id);
    assert.ok(Buffer.byteLength(long.filename) <= max);
    assert.ok(Buffer.byteLength(long.filename) > max - 2);
    assert.ok(long.filename.endsWith('.txt'));
    for (const id of created) assert.equal((await server.json('DELETE', `/api/v1/assets/${id}`)).status, 204);
    await assertClean(server, before);
  });

  it('a 5,000-byte filename is refused in the query string and cut down in multipart and PATCH', async () => {
    const before = await assetCount(server);
    const max = server.config.maxFilenameBytes;
    const name = `${'n'.repeat(4996)}.jpg`;
    assertProblem(
      await send(
        server,
        'POST',
        `/api/v1/assets?filename=${name}`,
        Buffer.from('x'),
        'application/octet-stream',
      ),
      400,
      'validation_failed',
    );
    await assertClean(server, before);
    const form = new FormData();
    form.append('file', new Blob(['long name']), name);
    const res = await send(server, 'POST', '/api/v1/assets', form);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(Buffer.byteLength(res.body.filename), max);
    assert.ok(res.body.filename.endsWith('.jpg'));
    assertSafeDisposition((await fetch(res.body.url)).headers.get('content-disposition'));
    assert.equal((await server.json('DELETE', `/api/v1/assets/${res.body.id}`)).status, 204);
    await assertClean(server, before);
  });

  it('malformed ids answer 404 on every route, never 500', async () => {
    const before = await assetCount(server);
    const asset = await upload(server, 'id target');
    const ids = [
      'nope',
      '0',
      'ast_',
      `ast_${'A'.repeat(26)}`,
      `ast_${'i'.repeat(26)}`,
      `ast_${'0'.repeat(27)}`,
      `ast_${asset.id.slice(4).toUpperCase()}`,
      asset.id.replace('ast_', 'ver_'),
      asset.id.replace('ast_', 'tok_'),
      asset.id.replace('ast_', 'key_'),
      `${asset.id} `,
      `${asset.id}\u0000`,
      "1' OR '1'='1",
      "'; drop table assets; --",
      '%',
      '$' + '{jndi:ldap://x}',
      '💥',
      'ast_💥💥💥💥💥💥💥💥💥💥💥💥💥',
      'a'.repeat(64),
    ];
    const routes = (id: string): [string, string, string?][] => {
      const e = encodeURIComponent(id);
      return [
        ['GET', `/api/v1/assets/${e}`],
        ['PATCH', `/api/v1/assets/${e}`, '{"filename":"x.txt"}'],
        ['DELETE', `/api/v1/assets/${e}`],
        ['PUT', `/api/v1/assets/${e}/content`, 'new content'],
        ['POST', `/api/v1/assets/${e}/publish`],
        ['GET', `/api/v1/assets/${e}/versions`],
        ['POST', `/api/v1/assets/${e}/tokens`, '{"ttlSeconds":60}'],
        ['POST', `/api/v1/assets/${e}/signed-url`, '{"ttlSeconds":60}'],
        ['POST', `/api/v1/assets/${asset.id}/signed-url`, JSON.stringify({ ttlSeconds: 60, versionId: id })],
        ['DELETE', `/api/v1/tokens/${e}`],
        ['DELETE', `/api/v1/keys/${e}`],
        ['GET', `/a/${e}`],
        ['HEAD', `/a/${e}`],
        ['GET', `/v/${e}`],
      ];
    };
    for (const id of ids) {
      for (const [method, path, body] of routes(id)) {
        const type = path.endsWith('/content') ? 'application/octet-stream' : 'application/json';
        const res = await send(server, method, path, body, type);
        const label = `${method} ${path}`;
        assert.equal(res.status, 404, `${label} -> ${res.status} ${JSON.stringify(res.body)}`);
        if (method !== 'HEAD') assertProblem(res, 404, 'not_found', label);
      }
    }
    // Too long for any id: refused by the schema, still a client error and never a 500.
    for (const [method, path, body] of routes('a'.repeat(65))) {
      const res = await send(server, method, path, body);
      assert.ok(res.status === 400 || res.status === 404, `${method} ${path} -> ${res.status}`);
    }
    const unchanged = await server.json('GET', `/api/v1/assets/${asset.id}`);
    assert.equal(unchanged.body.filename, 'file.bin');
    assert.equal((await server.json('DELETE', `/api/v1/assets/${asset.id}`)).status, 204);
    await assertClean(server, before);
  });

  it('malformed JSON answers 400 malformed_json', async () => {
    const before = await assetCount(server);
    const asset = await upload(server, 'json target');
    const routes: [string, string][] = [
      ['PATCH', `/api/v1/assets/${asset.id}`],
      ['POST', '/api/v1/tenants'],
      ['POST', '/api/v1/keys'],
      ['POST', `/api/v1/assets/${asset.id}/tokens`],
      ['POST', `/api/v1/assets/${asset.id}/signed-url`],
    ];
    for (const [method, path] of routes) {
      for (const body of [
        '{',
        '{"role": "viewer",}',
        "{'role': 'viewer'}",
        'nul',
        '{"a":1}}',
        '\u0000',
        ' ',
      ]) {
        const res = await send(server, method, path, body);
        assertProblem(res, 400, 'malformed_json', `${method} ${path} ${JSON.stringify(body)}`);
      }
    }
    const unchanged = await server.json('GET', `/api/v1/assets/${asset.id}`);
    assert.equal(unchanged.body.filename, 'file.bin');
    assert.equal((await server.json('DELETE', `/api/v1/assets/${asset.id}`)).status, 204);
    await assertClean(server, before);
  });

  it('JSON nested deeper than the limit is 400 before anything walks it, on every JSON route', async () => {
    const nest = (depth: number, leaf = '1') => '{"a":'.repeat(depth) + leaf + '}'.repeat(depth);
    const limit = server.config.maxJsonDepth;
    // The body that overflowed the stack in an enqueue: 30 KB, 5,000 deep, inside a job payload.
    const payload = `{"type":"noop","payload":${nest(5000)}}`;
    for (const path of ['/api/v1/jobs', '/api/v1/jobs/batch', '/api/v1/ingest', '/api/v1/tenants']) {
      const problem = assertProblem(await send(server, 'POST', path, payload), 400, 'bad_request', path);
      assert.equal(problem.limit, limit);
      assert.match(problem.detail, new RegExp(`more than ${limit} deep`));
    }
    const arrays = `{"type":"noop","payload":{"a":${'['.repeat(5000)}${']'.repeat(5000)}}}`;
    assertProblem(await send(server, 'POST', '/api/v1/jobs', arrays), 400, 'bad_request', 'arrays');
    // At the limit it is an ordinary job (the body's own object is the first level).
    const atLimit = await send(
      server,
      'POST',
      '/api/v1/jobs',
      `{"type":"noop","payload":${nest(limit - 1)}}`,
    );
    assert.equal(atLimit.status, 202, JSON.stringify(atLimit.body));
    const over = await send(server, 'POST', '/api/v1/jobs', `{"type":"noop","payload":${nest(limit)}}`);
    assertProblem(over, 400, 'bad_request', 'one past the limit');
    // Brackets inside strings are text, not nesting.
    const text = await send(
      server,
      'POST',
      '/api/v1/jobs',
      `{"type":"noop","payload":{"s":"${'{['.repeat(5000)}\\"]"}}`,
    );
    assert.equal(text.status, 202, JSON.stringify(text.body));
  });

  it('schema violations answer 400 validation_failed', async () => {
    const before = await assetCount(server);
    const asset = await upload(server, 'schema target');
    const cases: [string, string, unknown][] = [
      ['PATCH', `/api/v1/assets/${asset.id}`, { visibility: 'secret' }],
      ['PATCH', `/api/v1/assets/${asset.id}`, { filename: '' }],
      ['PATCH', `/api/v1/assets/${asset.id}`, { sha256: 'x' }],
      ['PATCH', `/api/v1/assets/${asset.id}`, [1, 2]],
      ['PATCH', `/api/v1/assets/${asset.id}`, 'a string'],
      ['POST', '/api/v1/tenants', { name: '' }],
      ['POST', '/api/v1/tenants', { name: 'x', tier: 'gold' }],
      ['POST', '/api/v1/tenants', { name: 'x'.repeat(201) }],
      ['POST', '/api/v1/tenants', {}],
      ['POST', '/api/v1/keys', { role: 'root' }],
      ['POST', '/api/v1/keys', {}],
      ['POST', '/api/v1/keys', { role: 'viewer', extra: true }],
      ['POST', '/api/v1/keys', { role: 'viewer', operator: 'yes please' }],
      ['POST', `/api/v1/assets/${asset.id}/tokens`, { ttlSeconds: 0 }],
      ['POST', `/api/v1/assets/${asset.id}/tokens`, { ttlSeconds: 1.5 }],
      ['POST', `/api/v1/assets/${asset.id}/tokens`, { ttlSeconds: 10 ** 12 }],
      ['POST', `/api/v1/assets/${asset.id}/tokens`, {}],
      ['POST', `/api/v1/assets/${asset.id}/signed-url`, { ttlSeconds: -1 }],
      ['POST', `/api/v1/assets/${asset.id}/signed-url`, { ttlSeconds: 10 ** 12 }],
    ];
    for (const [method, path, body] of cases) {
      assertProblem(
        await send(server, method, path, JSON.stringify(body)),
        400,
        'validation_failed',
        `${method} ${path} ${JSON.stringify(body)}`,
      );
    }
    for (const query of [
      'limit=0',
      'limit=1001',
      'limit=abc',
      'limit=-1',
      `cursor=${'x'.repeat(65)}`,
      'visibility=hidden',
    ]) {
      assertProblem(await send(server, 'GET', `/api/v1/assets?${query}`), 400, 'validation_failed', query);
    }
    for (const query of ['visibility=hidden', 'filename=']) {
      assertProblem(
        await send(
          server,
          'POST',
          `/api/v1/assets?${query}`,
          Buffer.from('body'),
          'application/octet-stream',
        ),
        400,
        'validation_failed',
        query,
      );
    }
    // A JSON route given other media: text is a string, not an object; unknown types are refused as such.
    assertProblem(
      await send(server, 'PATCH', `/api/v1/assets/${asset.id}`, 'filename=x', 'text/plain'),
      400,
      'validation_failed',
    );
    assertProblem(
      await send(server, 'PATCH', `/api/v1/assets/${asset.id}`, '<filename>x</filename>', 'application/xml'),
      415,
      'unsupported_media_type',
    );
    const unchanged = await server.json('GET', `/api/v1/assets/${asset.id}`);
    assert.equal(unchanged.body.filename, 'file.bin');
    assert.equal(unchanged.body.visibility, 'public');
    assert.equal((await server.json('DELETE', `/api/v1/assets/${asset.id}`)).status, 204);
    await assertClean(server, before);
  });

  it('JSON bodies are not type-coerced: a number is not a filename, a string is not a TTL', async () => {
    const before = await assetCount(server);
    const asset = await upload(server, 'coercion target');
    const cases: [string, string, unknown][] = [
      ['PATCH', `/api/v1/assets/${asset.id}`, { filename: 42 }],
      ['PATCH', `/api/v1/assets/${asset.id}`, { filename: true }],
      ['POST', '/api/v1/tenants', { name: 12345 }],
      ['POST', `/api/v1/assets/${asset.id}/tokens`, { ttlSeconds: '60' }],
      ['POST', '/api/v1/keys', { role: 'viewer', operator: 'false' }],
    ];
    const accepted: string[] = [];
    for (const [method, path, body] of cases) {
      const res = await send(server, method, path, JSON.stringify(body));
      if (res.status !== 400) accepted.push(`${method} ${path} ${JSON.stringify(body)} -> ${res.status}`);
      else assertProblem(res, 400, 'validation_failed');
    }
    assert.equal((await server.json('DELETE', `/api/v1/assets/${asset.id}`)).status, 204);
    await assertClean(server, before);
    assert.deepEqual(accepted, []);
  });

  it('accepts multipart uploads and refuses a multipart body without a file part', async () => {
    const before = await assetCount(server);
    const form = new FormData();
    form.append('note', 'a field before the file');
    form.append('file', new Blob(['multipart bytes'], { type: 'text/plain' }), 'm.txt');
    const ok = await send(server, 'POST', '/api/v1/assets?visibility=private', form);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(ok.body.filename, 'm.txt');
    assert.equal(ok.body.size, 15);
    assert.equal(ok.body.visibility, 'private');
    assert.equal(ok.body.contentType, 'text/plain; charset=utf-8');
    const content = await server.fetch(new URL(ok.body.url).pathname);
    assert.equal(await content.text(), 'multipart bytes');

    const replace = new FormData();
    replace.append('file', new Blob(['replaced by multipart']), 'r.txt');
    const replaced = await send(server, 'PUT', `/api/v1/assets/${ok.body.id}/content`, replace);
    assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
    assert.equal(replaced.body.size, 21);
    assert.equal((await server.json('DELETE', `/api/v1/assets/${ok.body.id}`)).status, 204);
    await assertClean(server, before);

    const noFile = new FormData();
    noFile.append('note', 'just a field');
    assertProblem(await send(server, 'POST', '/api/v1/assets', noFile), 400, 'bad_request');
    assertProblem(await send(server, 'POST', '/api/v1/assets', new FormData()), 400, 'bad_request');
    await assertClean(server, before);
  });

  it('a malformed multipart body is a 400, not a 500', async () => {
    const before = await assetCount(server);
    const head =
      '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="t.bin"\r\n' +
      'Content-Type: application/octet-stream\r\n\r\n';
    const cases: [string, string, string][] = [
      ['no boundary parameter', 'multipart/form-data', `${head}data\r\n--XyZ--\r\n`],
      ['ends before any part', 'multipart/form-data; boundary=XyZ', '--XyZ\r\ngarbage'],
      ['file part never closed', 'multipart/form-data; boundary=XyZ', head + 'a'.repeat(10_000)],
      ['boundary never appears', 'multipart/form-data; boundary=XyZ', 'a'.repeat(10_000)],
    ];
    const failures: string[] = [];
    for (const [name, type, body] of cases) {
      const res = await send(server, 'POST', '/api/v1/assets', body, type);
      if (res.status !== 400) failures.push(`${name}: ${res.status} ${res.body?.code}`);
      else assertProblem(res, 400, undefined, name);
    }
    await assertClean(server, before);
    assert.deepEqual(failures, []);
  });

  it('an unknown route is a 404 problem', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/nope'],
      ['POST', '/api/v1/assets/x/y/z'],
      ['PUT', '/api/v1/assets'],
      ['GET', '/api/v2/assets'],
      ['GET', '/nope'],
      ['GET', '/a'],
      ['GET', '/a/x/y'],
    ] as const) {
      assertProblem(await send(server, method, path), 404, 'not_found', `${method} ${path}`);
    }
    // A delivery URL exists for GET and HEAD only, and says so.
    const other = await send(server, 'DELETE', '/a/x');
    assertProblem(other, 405, 'method_not_allowed');
    assert.equal(other.headers.get('allow'), 'GET, HEAD');
  });
});

describe('upload limits on sqlite + fs', () => {
  let server: TestServer;
  before(async () => {
    server = await startConveyor(undefined, { maxUploadBytes: 1024 });
  });
  after(async () => {
    destroyClients();
    await server?.close();
  });

  it('refuses a declared Content-Length over the limit before reading the body', async () => {
    const before = await assetCount(server);
    const client = new RawClient(server.url);
    await client.write(
      uploadHead(server, { 'Content-Type': 'application/octet-stream', 'Content-Length': 10 * 1024 * 1024 }),
    );
    // Not one byte of the body is sent: the answer must come anyway.
    const res = await client.response();
    assertProblem(res, 413, 'payload_too_large');
    assert.equal(res.body.limit, 1024);
    client.socket.destroy();
    assert.deepEqual(await temporaries(server), []);
    await assertClean(server, before);
  });

  it('refuses a chunked body without Content-Length once it exceeds the limit', async () => {
    const before = await assetCount(server);
    const client = new RawClient(server.url);
    await client.write(
      uploadHead(server, { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' }),
    );
    // More than the 4,100 bytes read for sniffing, and no last chunk: the answer cannot wait for the end.
    for (let i = 0; i < 16; i++) await client.write(chunk(randomBytes(512)));
    const res = await client.response();
    assertProblem(res, 413, 'payload_too_large');
    client.socket.destroy();
    await assertClean(server, before);
  });

  it('refuses a body larger than its small declared length allows, and keeps an exact fit', async () => {
    const before = await assetCount(server);
    for (const size of [1025, 4096, 60 * 1024]) {
      const res = await send(
        server,
        'POST',
        '/api/v1/assets?filename=x.bin',
        randomBytes(size),
        'application/octet-stream',
      );
      assertProblem(res, 413, 'payload_too_large', `${size} bytes`);
    }
    await assertClean(server, before);
    const fits = await upload(server, randomBytes(1024));
    assert.equal(fits.size, 1024);
    // Replacing content over the limit keeps the old content.
    const replaced = await send(
      server,
      'PUT',
      `/api/v1/assets/${fits.id}/content`,
      randomBytes(2048),
      'application/octet-stream',
    );
    assertProblem(replaced, 413, 'payload_too_large');
    assert.equal((await server.json('GET', `/api/v1/assets/${fits.id}`)).body.sha256, fits.sha256);
    assert.equal((await server.json('DELETE', `/api/v1/assets/${fits.id}`)).status, 204);
    await assertClean(server, before);
  });

  it('an upload refused part-way closes the connection instead of leaving the rest unread', async () => {
    // The body is refused after the first few KiB; what the client is still sending is never read. Keeping
    // the connection then leaves a half-read request on it until the keep-alive timeout (72 s), which also
    // holds up a graceful shutdown. The early refusal of a declared length already answers Connection: close.
    const before = await assetCount(server);
    for (const framing of ['chunked', 'length'] as const) {
      const client = new RawClient(server.url);
      const headers: Record<string, string | number> =
        framing === 'chunked'
          ? { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' }
          : { 'Content-Type': 'application/octet-stream', 'Content-Length': 60 * 1024 };
      await client.write(uploadHead(server, headers));
      for (let i = 0; i < 16; i++) {
        const bytes = randomBytes(512);
        await client.write(framing === 'chunked' ? chunk(bytes) : bytes);
      }
      const res = await client.response();
      assertProblem(res, 413, 'payload_too_large', framing);
      // Closed at once after the answer, or only at the keep-alive timeout (72 s): a guard half-way tells
      // the two apart however busy the machine.
      const closedByServer = await Promise.race([
        client.closed.then(() => true),
        sleep(36_000).then(() => false),
      ]);
      assert.deepEqual(
        { connection: res.headers.get('connection'), closedByServer },
        { connection: 'close', closedByServer: true },
        framing,
      );
      client.socket.destroy();
    }
    await assertClean(server, before);
  });

  it('refuses an over-limit multipart file part', async () => {
    const before = await assetCount(server);
    const form = new FormData();
    form.append('file', new Blob([randomBytes(4096)]), 'big.bin');
    assertProblem(await send(server, 'POST', '/api/v1/assets', form), 413, 'payload_too_large');
    const exact = new FormData();
    exact.append('file', new Blob([randomBytes(1025)]), 'big.bin');
    assertProblem(await send(server, 'POST', '/api/v1/assets', exact), 413, 'payload_too_large');
    await assertClean(server, before);
  });
});

describe('bad input on postgres + s3', async () => {
  const skip = !(await havePostgres()) ? 'PostgreSQL is not running' : false;
  let server: TestServer;
  before(async () => {
    if (!skip)
      server = await startConveyor({ database: 'postgres', storage: 's3' }, { maxUploadBytes: 256 * 1024 });
  });
  after(async () => {
    destroyClients();
    await server?.close();
  });

  it('aborted, truncated and over-limit uploads leave nothing behind', { skip }, async () => {
    const before = await assetCount(server);
    // Truncated: a Content-Length larger than what is sent, then the socket closes.
    const truncated = new RawClient(server.url);
    const truncatedRequest = nextRequest(server);
    await truncated.write(
      uploadHead(server, { 'Content-Type': 'application/octet-stream', 'Content-Length': 200_000 }),
    );
    await truncated.write(randomBytes(100_000));
    const truncatedReceived = await truncatedRequest;
    truncated.socket.end();
    await truncated.closed;
    await truncatedReceived.done;
    // Aborted: half a chunked body, then the connection is destroyed.
    const aborted = new RawClient(server.url);
    const abortedRequest = nextRequest(server);
    await aborted.write(
      uploadHead(server, { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' }),
    );
    await aborted.write(chunk(randomBytes(100_000)));
    const abortedReceived = await abortedRequest;
    aborted.socket.destroy();
    await abortedReceived.done;
    // Over the limit: declared, and sent whole (an over-limit body cut off part-way is tested on sqlite + fs
    // only; it leaves its connection open until the keep-alive timeout, see there).
    const declared = new RawClient(server.url);
    await declared.write(
      uploadHead(server, { 'Content-Type': 'application/octet-stream', 'Content-Length': 10 * 1024 * 1024 }),
    );
    assertProblem(await declared.response(), 413, 'payload_too_large');
    declared.socket.destroy();
    const whole = await send(
      server,
      'POST',
      '/api/v1/assets',
      randomBytes(300 * 1024),
      'application/octet-stream',
    );
    assertProblem(whole, 413, 'payload_too_large');
    await assertClean(server, before);
  });

  it('malformed ids and JSON are client errors', { skip }, async () => {
    for (const id of ['nope', `ast_${'i'.repeat(26)}`, newId('ast'), "'; drop table assets; --"]) {
      const e = encodeURIComponent(id);
      assertProblem(await send(server, 'GET', `/api/v1/assets/${e}`), 404, 'not_found');
      assertProblem(await send(server, 'DELETE', `/api/v1/assets/${e}`), 404, 'not_found');
      assertProblem(await send(server, 'GET', `/a/${e}`), 404, 'not_found');
    }
    assertProblem(await send(server, 'POST', '/api/v1/keys', '{'), 400, 'malformed_json');
    assertProblem(await send(server, 'POST', '/api/v1/keys', '{"role":"root"}'), 400, 'validation_failed');
  });
});
