import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readdir } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { Role } from '../../src/db/tables.ts';
import { ConveyorError } from '../../src/errors.ts';
import type { Principal } from '../../src/tenancy/principal.ts';
import { createTusUploads, type TusStorageOptions, type TusUploads } from '../../src/uploads/tus.ts';
import { type Answer, assertProblem, readAnswer } from '../helpers/http.ts';
import { MOTO_BIN, skipWithoutMoto, startMoto } from '../helpers/moto.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { mountTmpfs, type Tmpfs } from '../helpers/tmpfs.ts';

// S3 runs on moto_server, not on s3rver: see test/helpers/moto.ts.

const BASE = '/api/v1/uploads';
const MiB = 1024 * 1024;
const MAX_SIZE = 64 * MiB;
const EXPIRATION_MS = 3_600_000;
const TUS = { 'tus-resumable': '1.0.0' };

interface Completion {
  id: string;
  tenantId: string;
  actor: string;
  size: number;
  metadata: Record<string, string | null>;
  sha256: string;
  assetId: string;
}

interface Env {
  url: string;
  uploads: TusUploads;
  completions: Completion[];
  /** Makes the next hand-over fail. */
  failNextHandOver(): void;
  /** Moves the uploads' clock. */
  setSkew(ms: number): void;
  /** Resolves once the server has begun the next request, with the promise of its handling. */
  nextRequest(): Promise<{ handled: Promise<void> }>;
  /** Names in the storage: files of the folder, or keys under the prefix. */
  storedNames(): Promise<string[]>;
  close(): Promise<void>;
}

for (const kind of ['fs', 's3'] as const) {
  describe(`tus uploads on ${kind}`, {
    skip: kind === 's3' && skipWithoutMoto(),
  }, () => {
    let env: Env;
    before(async () => {
      env = await startEnv(kind);
    });
    after(() => env?.close());

    test('OPTIONS advertises tus 1.0.0, its extensions and the maximum size, without credentials', async () => {
      const answer = await call(env, 'OPTIONS', BASE, { 'x-test-tenant': '' });
      assert.equal(answer.status, 204);
      assert.equal(answer.headers.get('tus-version'), '1.0.0');
      const extensions = answer.headers.get('tus-extension')?.split(',') ?? [];
      for (const name of ['creation', 'creation-with-upload', 'termination', 'expiration']) {
        assert.ok(extensions.includes(name), `${name} in ${extensions}`);
      }
      assert.ok(!extensions.includes('creation-defer-length'));
      assert.equal(answer.headers.get('tus-max-size'), String(MAX_SIZE));
    });

    test('an upload cut off half-way resumes from HEAD and hands over identical bytes, once', async () => {
      // Over two 5 MiB parts on S3, with the cut inside the second.
      const payload = randomBytes(12 * MiB + 12_345);
      const half = Math.floor(payload.length / 2);
      const metadata = `filename ${b64('clip.mp4')},conveyor-tenant ${b64('globex')}`;
      const created = await call(env, 'POST', BASE, {
        'upload-length': String(payload.length),
        'upload-metadata': metadata,
      });
      assert.equal(created.status, 201);
      const location = created.headers.get('location')!;
      assert.match(location, /^\/api\/v1\/uploads\/[0-9a-f]{32}$/);
      assert.ok(Date.parse(created.headers.get('upload-expires')!) > Date.now());
      const id = location.slice(BASE.length + 1);

      await cutPatch(env, location, payload, half);

      const head = await call(env, 'HEAD', location);
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('cache-control'), 'no-store');
      assert.equal(head.headers.get('upload-length'), String(payload.length));
      // The client's metadata, without the tenant key it tried to forge.
      assert.equal(head.headers.get('upload-metadata'), `filename ${b64('clip.mp4')}`);
      assert.ok(head.headers.get('upload-expires'));
      const offset = Number(head.headers.get('upload-offset'));
      assert.ok(offset > 0 && offset <= half, `offset ${offset} of ${half} sent`);
      if (kind === 's3') {
        // Whole 5 MiB parts went to S3; a tail short of a part waits in the incomplete-part object.
        assert.equal((await namesOf(env, id)).includes(`${id}.part`), offset % (5 * MiB) !== 0);
      }

      // tus 1.0 core: "The Server MUST acknowledge successful PATCH requests with the 204 No Content
      // status"; the last one too, its asset named in a header.
      const rest = await patch(env, location, offset, payload.subarray(offset));
      assert.equal(rest.status, 204, JSON.stringify(rest.body));
      assert.equal(rest.headers.get('upload-offset'), String(payload.length));
      assert.equal(rest.headers.get('tus-resumable'), '1.0.0');
      const assetId = rest.headers.get('asset-id');
      assert.match(assetId ?? '', /^asset-\d+$/);
      assert.equal(rest.body, null);
      assert.equal(rest.headers.get('content-type'), null);

      const mine = env.completions.filter((done) => done.id === id);
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.sha256, sha256(payload));
      assert.equal(mine[0]!.size, payload.length);
      assert.equal(mine[0]!.tenantId, 'acme');
      assert.equal(mine[0]!.actor, 'key-acme');
      assert.deepEqual(mine[0]!.metadata, { filename: 'clip.mp4' });

      // The final PATCH again (its answer was lost): the same answer, no second asset.
      const retried = await patch(env, location, payload.length, Buffer.alloc(0));
      assert.equal(retried.status, 204);
      assert.equal(retried.headers.get('asset-id'), assetId);
      assert.equal(retried.body, null);
      assert.equal(env.completions.filter((done) => done.id === id).length, 1);
      assertProblem(await patch(env, location, offset, payload.subarray(offset)), 409, 'conflict');
      const done = await call(env, 'HEAD', location);
      assert.equal(done.status, 200);
      assert.equal(done.headers.get('upload-offset'), String(payload.length));
      assert.equal(done.headers.get('upload-length'), String(payload.length));
      assert.equal(done.headers.get('asset-id'), assetId);
      // Only the receipt is left of the upload.
      assert.deepEqual(await namesOf(env, id), [`${id}.done`]);
    });

    test('a POST carrying the whole file (creation-with-upload) hands over at once and keeps its 201', async () => {
      const payload = randomBytes(4096);
      const headers = { 'upload-length': '4096', 'content-type': 'application/offset+octet-stream' };
      const created = await call(env, 'POST', BASE, headers, payload);
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const location = created.headers.get('location')!;
      assert.match(location, /^\/api\/v1\/uploads\/[0-9a-f]{32}$/);
      assert.deepEqual(created.body, { assetId: created.headers.get('asset-id') });
      const id = location.slice(BASE.length + 1);
      assert.equal(env.completions.find((done) => done.id === id)?.sha256, sha256(payload));
    });

    test('protocol errors answer problems with the tus status codes', async () => {
      const location = await create(env, 100);
      assertProblem(await patch(env, location, 5, Buffer.alloc(10)), 409, 'conflict');
      const wrongType = await call(
        env,
        'PATCH',
        location,
        { 'upload-offset': '0', 'content-type': 'text/plain' },
        'x',
      );
      assertProblem(wrongType, 415, 'unsupported_media_type');
      const noVersion = await call(env, 'HEAD', location, { 'tus-resumable': '0.2.2' });
      assert.equal(noVersion.status, 412);
      assert.equal(noVersion.headers.get('tus-version'), '1.0.0');
      assertProblem(await patch(env, location, 0, Buffer.alloc(101)), 413, 'payload_too_large');
      assertProblem(await patch(env, location, 0, chunked([Buffer.alloc(80), Buffer.alloc(80)])), 413);
      const offset = Number((await call(env, 'HEAD', location)).headers.get('upload-offset'));
      assert.ok(offset <= 100);

      assertProblem(
        await call(env, 'POST', BASE, { 'upload-length': String(MAX_SIZE + 1) }),
        413,
        'payload_too_large',
      );
      assertProblem(await call(env, 'POST', BASE, { 'upload-defer-length': '1' }), 400, 'bad_request');
      assertProblem(await call(env, 'POST', BASE, { 'upload-length': 'ten' }), 400, 'bad_request');
      const viewer = await call(env, 'POST', BASE, { 'upload-length': '10', 'x-test-role': 'viewer' });
      assertProblem(viewer, 403, 'forbidden');
      assertProblem(await call(env, 'POST', BASE, { 'upload-length': '10', 'x-test-tenant': '' }), 401);
      const get = await call(env, 'GET', location);
      assertProblem(get, 405, 'method_not_allowed');
      assert.equal(get.headers.get('allow'), 'OPTIONS, HEAD, PATCH, DELETE');
    });

    test('a malformed upload id is an unknown upload', async () => {
      for (const id of [
        'zzz',
        'A'.repeat(32),
        'a'.repeat(33),
        '..%2F..%2Fetc%2Fpasswd',
        `${'a'.repeat(32)}/x`,
      ]) {
        assertProblem(await patch(env, `${BASE}/${id}`, 0, Buffer.alloc(1)), 404, 'not_found', id);
        const head = await call(env, 'HEAD', `${BASE}/${id}`);
        assert.equal(head.status, 404, id);
        assert.match(head.headers.get('content-type')!, /^application\/problem\+json/);
        assertProblem(await call(env, 'DELETE', `${BASE}/${id}`), 404, 'not_found', id);
      }
    });

    test("another tenant's upload answers exactly like an unknown one", async () => {
      const location = await create(env, 20);
      assert.equal((await patch(env, location, 0, Buffer.alloc(10, 1))).status, 204);
      const unknown = `${BASE}/${'0'.repeat(32)}`;
      const globex = { 'x-test-tenant': 'globex' };
      for (const [method, headers, body] of [
        ['HEAD', {}, undefined],
        ['PATCH', { 'upload-offset': '10', 'content-type': 'application/offset+octet-stream' }, 'abcde'],
        ['DELETE', {}, undefined],
      ] as const) {
        const theirs = await call(env, method, location, { ...globex, ...headers }, body);
        const none = await call(env, method, unknown, { ...globex, ...headers }, body);
        assert.equal(theirs.status, 404, method);
        assert.equal(theirs.headers.get('content-type'), none.headers.get('content-type'), method);
        // A HEAD answer has no body to compare.
        if (method !== 'HEAD')
          assert.deepEqual(withoutInstance(theirs.body), withoutInstance(none.body), method);
      }
      const mine = await call(env, 'HEAD', location);
      assert.equal(mine.headers.get('upload-offset'), '10');

      // Handed over, it stays invisible to them.
      assert.equal((await patch(env, location, 10, Buffer.alloc(10, 2))).status, 204);
      assert.equal((await call(env, 'HEAD', location, globex)).status, 404);
      assert.equal((await call(env, 'HEAD', location)).status, 200);
    });

    test('DELETE terminates an upload: 204, then 404, and nothing left in storage', async () => {
      const location = await create(env, 1000);
      assert.equal((await patch(env, location, 0, Buffer.alloc(300))).status, 204);
      const deleted = await call(env, 'DELETE', location);
      assert.equal(deleted.status, 204);
      assert.equal(deleted.headers.get('tus-resumable'), '1.0.0');
      assert.equal((await call(env, 'HEAD', location)).status, 404);
      assertProblem(await call(env, 'DELETE', location), 404, 'not_found');
      assert.deepEqual(await namesOf(env, location.slice(BASE.length + 1)), []);
    });

    test('a failed hand-over keeps the upload, and an empty PATCH at its end retries it', async () => {
      const payload = randomBytes(1000);
      const location = await create(env, payload.length);
      env.failNextHandOver();
      assertProblem(await patch(env, location, 0, payload), 503, 'unavailable');
      const head = await call(env, 'HEAD', location);
      assert.equal(head.headers.get('upload-offset'), '1000');
      assert.equal(head.headers.get('asset-id'), null);

      // Two retries at once share one hand-over.
      const [retried, twin] = await Promise.all(
        [0, 1].map(() => patch(env, location, 1000, Buffer.alloc(0))),
      );
      assert.equal(retried!.status, 204, JSON.stringify(retried!.body));
      assert.match(retried!.headers.get('asset-id') ?? '', /^asset-\d+$/);
      assert.equal(twin!.headers.get('asset-id'), retried!.headers.get('asset-id'));
      const id = location.slice(BASE.length + 1);
      const mine = env.completions.filter((done) => done.id === id);
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.sha256, sha256(payload));
      assert.deepEqual(await namesOf(env, id), [`${id}.done`]);
    });

    // Last: the sweep removes what the other tests left.
    test('an expired upload answers 404 and cleanupExpired removes it and old receipts', async () => {
      const location = await create(env, 1000);
      const patched = await patch(env, location, 0, Buffer.alloc(10));
      const expires = Date.parse(patched.headers.get('upload-expires')!);
      assert.ok(
        Math.abs(expires - (Date.now() + EXPIRATION_MS)) < 60_000,
        patched.headers.get('upload-expires')!,
      );
      const finished = await create(env, 5);
      assert.equal((await patch(env, finished, 0, Buffer.alloc(5))).status, 204);

      env.setSkew(EXPIRATION_MS + 60_000);
      const late = await patch(env, location, 10, Buffer.alloc(10));
      assert.match(assertProblem(late, 404, 'not_found').detail, /expired/);
      assert.ok((await env.uploads.cleanupExpired()) >= 1);
      env.setSkew(0);
      assert.equal((await call(env, 'HEAD', location)).status, 404);
      assert.equal((await call(env, 'HEAD', finished)).status, 404);
      assert.deepEqual(await env.storedNames(), []);
    });
  });
}

describe('tus uploads on a full disk', async () => {
  const disk = await mountTmpfs(4 * MiB);
  const skip = 'skip' in disk ? disk.skip : false;
  let env: Env;
  before(async () => {
    if (!skip) env = await startEnv('fs', join((disk as Tmpfs).path, 'uploads'));
  });
  after(async () => {
    await env?.close();
    if (!('skip' in disk)) await disk.unmount();
  });

  test('writes that run out of space answer 507: a failed creation leaves nothing, an upload keeps its prefix', {
    skip,
  }, async () => {
    const payload = randomBytes(2 * MiB);
    const location = await create(env, payload.length);
    assert.equal((await patch(env, location, 0, payload.subarray(0, 100_000))).status, 204);
    const stored = await env.storedNames();
    const body = randomBytes(256 * 1024);
    const withUpload = {
      'upload-length': String(body.length),
      'content-type': 'application/offset+octet-stream',
    };

    // Room for the upload's record, not for its bytes: the write fails after the upload was created.
    await (disk as Tmpfs).fill(8 * 1024);
    const created = await call(env, 'POST', BASE, withUpload, body);
    assertProblem(created, 507, 'insufficient_storage', 'creation-with-upload');
    assert.equal(created.headers.get('location'), null);
    assert.deepEqual(await env.storedNames(), stored, 'the upload nobody can resume is gone');

    // No room at all: the creation itself fails.
    await (disk as Tmpfs).fill();
    const refused = await call(env, 'POST', BASE, { 'upload-length': '1000' });
    assertProblem(refused, 507, 'insufficient_storage', 'creation');
    assert.deepEqual(await env.storedNames(), stored, 'the failed creation left nothing');

    const patched = await patch(env, location, 100_000, payload.subarray(100_000));
    assert.match(assertProblem(patched, 507, 'insufficient_storage', 'PATCH').detail, /kept.*resume/);
    assert.equal(patched.headers.get('tus-resumable'), '1.0.0');
    const offset = Number((await call(env, 'HEAD', location)).headers.get('upload-offset'));
    assert.ok(offset >= 100_000 && offset < payload.length, `offset ${offset}`);

    await (disk as Tmpfs).drain();
    const done = await patch(env, location, offset, payload.subarray(offset));
    assert.equal(done.status, 204, JSON.stringify(done.body));
    const id = location.slice(BASE.length + 1);
    assert.equal(env.completions.find((c) => c.id === id)?.sha256, sha256(payload), 'resumed whole');
  });
});

/** An endpoint on `kind` storage; on fs in `directory` when given, else in a temporary folder. */
async function startEnv(kind: 'fs' | 's3', directory?: string): Promise<Env> {
  const closers: (() => Promise<void>)[] = [];
  let storage: TusStorageOptions;
  let storedNames: () => Promise<string[]>;
  if (kind === 'fs') {
    let path = directory;
    if (path === undefined) {
      const dir = await makeTempDir('conveyor-tus-');
      closers.push(dir.cleanup);
      path = dir.path;
    }
    storage = { kind: 'fs', directory: path };
    storedNames = async () => (await readdir(path)).sort();
  } else {
    const moto = await startMoto(MOTO_BIN!);
    closers.push(moto.close);
    const client = new S3Client({
      endpoint: moto.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    closers.push(async () => client.destroy());
    await client.send(new CreateBucketCommand({ Bucket: 'tus-test' }));
    storage = {
      kind: 's3',
      endpoint: moto.endpoint,
      region: 'us-east-1',
      bucket: 'tus-test',
      prefix: 'tus/',
      forcePathStyle: true,
      accessKeyId: 'test',
      secretAccessKey: 'test',
      partSize: 5 * MiB,
    };
    storedNames = async () => {
      const page = await client.send(new ListObjectsV2Command({ Bucket: 'tus-test', Prefix: 'tus/' }));
      return (page.Contents ?? []).map((object) => object.Key!.slice('tus/'.length)).sort();
    };
  }

  const completions: Completion[] = [];
  let failNext = false;
  let skew = 0;
  const uploads = createTusUploads({
    path: BASE,
    storage,
    maxSize: MAX_SIZE,
    expirationMs: EXPIRATION_MS,
    now: () => Date.now() + skew,
    async onComplete(done) {
      if (failNext) {
        failNext = false;
        throw new ConveyorError('unavailable', 'The asset store is down');
      }
      const hash = createHash('sha256');
      for await (const chunk of await done.open()) hash.update(chunk as Buffer);
      const assetId = `asset-${completions.length + 1}`;
      const { id, tenantId, size, metadata, principal } = done;
      completions.push({
        id,
        tenantId,
        size,
        metadata,
        actor: principal.actor,
        sha256: hash.digest('hex'),
        assetId,
      });
      return { headers: { 'Asset-Id': assetId }, body: { assetId } };
    },
  });
  closers.unshift(() => uploads.close());

  // Test scaffolding only: the caller's authentication, reduced to a header naming the tenant.
  const requests = new EventEmitter();
  const server = http.createServer((req, res) => {
    const tenant = req.headers['x-test-tenant'];
    const role = (req.headers['x-test-role'] as Role | undefined) ?? 'editor';
    const principal: Principal | null =
      typeof tenant === 'string' && tenant !== ''
        ? { tenantId: tenant, role, operator: false, keyId: `key-${tenant}`, actor: `key-${tenant}` }
        : null;
    requests.emit('request', uploads.handle(req, res, principal));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.unshift(async () => {
    server.closeAllConnections();
    server.close();
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    uploads,
    completions,
    failNextHandOver: () => {
      failNext = true;
    },
    setSkew: (ms) => {
      skew = ms;
    },
    // Wrapped: an async function returning the promise itself would wait for it.
    nextRequest: async () => ({ handled: ((await once(requests, 'request')) as [Promise<void>])[0] }),
    storedNames,
    async close() {
      for (const close of closers) await close();
    },
  };
}

/** Sends a PATCH of all of `payload` on a raw socket, and cuts the connection after `sent` bytes. */
async function cutPatch(env: Env, location: string, payload: Buffer, sent: number): Promise<void> {
  const { hostname, port } = new URL(env.url);
  const started = env.nextRequest();
  const socket = net.connect(Number(port), hostname);
  await once(socket, 'connect');
  const head = [
    `PATCH ${location} HTTP/1.1`,
    `Host: ${hostname}:${port}`,
    'Tus-Resumable: 1.0.0',
    'X-Test-Tenant: acme',
    'Upload-Offset: 0',
    'Content-Type: application/offset+octet-stream',
    `Content-Length: ${payload.length}`,
  ];
  socket.write(`${head.join('\r\n')}\r\n\r\n`);
  await new Promise<void>((resolve, reject) =>
    socket.write(payload.subarray(0, sent), (error) => (error ? reject(error) : resolve())),
  );
  const { handled } = await started;
  socket.destroy();
  // The server has stored what arrived and let go of the upload: no HEAD can overtake it.
  await handled;
}

async function call(
  env: Env,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string | Buffer | ReadableStream,
): Promise<Answer> {
  const res = await fetch(env.url + path, {
    method,
    headers: { ...TUS, 'x-test-tenant': 'acme', ...headers },
    body,
    ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
  });
  return readAnswer(res);
}

function patch(env: Env, location: string, offset: number, body: Buffer | ReadableStream): Promise<Answer> {
  const headers = { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' };
  return call(env, 'PATCH', location, headers, body);
}

async function create(env: Env, size: number): Promise<string> {
  const answer = await call(env, 'POST', BASE, { 'upload-length': String(size) });
  assert.equal(answer.status, 201, JSON.stringify(answer.body));
  return answer.headers.get('location')!;
}

/** A body sent with Transfer-Encoding: chunked, so only the upload's length limits it. */
function chunked(chunks: Buffer[]): ReadableStream {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(new Uint8Array(chunk));
      controller.close();
    },
  });
}

async function namesOf(env: Env, id: string): Promise<string[]> {
  return (await env.storedNames()).filter((name) => name.startsWith(id));
}

function withoutInstance(body: Record<string, unknown>): Record<string, unknown> {
  const { instance: _instance, requestId: _requestId, ...rest } = body;
  return rest;
}

const b64 = (text: string) => Buffer.from(text).toString('base64');
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
