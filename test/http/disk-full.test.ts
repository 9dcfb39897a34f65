import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { insufficientStorage, isOutOfSpace } from '../../src/errors.ts';
import { toConveyorError } from '../../src/problems.ts';
import { FreeSpace } from '../../src/storage/free-space.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { assertProblem } from '../helpers/http.ts';
import { quietLog, waitFor } from '../helpers/jobs.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { mountTmpfs, type Tmpfs } from '../helpers/tmpfs.ts';
import { sceneJpeg } from '../media/image/sample-images.ts';

const MiB = 1024 * 1024;
const TUS = { 'tus-resumable': '1.0.0' };
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

interface Sent {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
}

/**
 * One request with node:http, so that an answer given before the body is sent (or while it is) is read
 * rather than lost to a reset. `partial` bytes are sent as the start of a body that never ends: the
 * request waits for an answer the server gives without the rest, and `cut` ends it otherwise.
 */
function open(
  server: TestServer,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer | { partial: Buffer },
): { answer: Promise<Sent>; cut(): void } {
  const { hostname, port } = new URL(server.url);
  let answered = false;
  const req = http.request({
    host: hostname,
    port,
    method,
    path,
    headers: { authorization: `Bearer ${server.adminKey}`, ...headers },
    agent: false,
  });
  const answer = new Promise<Sent>((resolve, reject) => {
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        req.destroy();
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : null });
      });
      res.on('error', reject);
    });
    // Once answered, the server may close before it took the rest of the body: that is expected.
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
  });
  const bytes = Buffer.isBuffer(body) ? body : body.partial;
  void (async () => {
    for (let offset = 0; offset < bytes.length && !answered && !req.destroyed; offset += 64 * 1024) {
      if (!req.write(bytes.subarray(offset, offset + 64 * 1024))) {
        await new Promise<void>((drained) => {
          const done = () => {
            req.off('drain', done).off('close', done);
            drained();
          };
          req.on('drain', done).on('close', done);
        });
      }
    }
    if (Buffer.isBuffer(body) && !req.destroyed) req.end();
    else req.flushHeaders();
  })();
  return { answer, cut: () => req.destroy() };
}

function send(
  server: TestServer,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer = Buffer.alloc(0),
): Promise<Sent> {
  return open(server, method, path, headers, body).answer;
}

function asAnswer(sent: Sent) {
  return {
    status: sent.status,
    headers: new Headers(sent.headers as Record<string, string>),
    body: sent.body,
  };
}

/** 'answer' once `answer` settles, or 'state' once `state` holds, whichever comes first. */
async function firstOf(answer: Promise<unknown>, state: () => Promise<boolean>): Promise<'answer' | 'state'> {
  let settled = false;
  const answered = answer.then(
    () => 'answer' as const,
    () => 'answer' as const,
  );
  void answered.then(() => {
    settled = true;
  });
  const reached = (async () => {
    while (!settled) {
      if (await state()) return 'state' as const;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return 'answer' as const;
  })();
  return Promise.race([answered, reached]);
}

async function healthz(server: TestServer): Promise<void> {
  const res = await fetch(`${server.url}/healthz`);
  assert.equal(res.status, 200, 'the process answers /healthz');
  await res.arrayBuffer();
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/**
 * Nothing half-written: no staged temporaries, every blob file whole and registered `live`, every `live`
 * row with its bytes, every asset and derived output pointing at such a blob.
 */
async function assertConsistent(server: TestServer, blobRoot: string): Promise<void> {
  assert.deepEqual(await readdir(join(blobRoot, 'tmp')), [], 'no staged temporaries are left');
  const db = server.conveyor.db.kysely;
  const rows = await db.selectFrom('blobs').select(['sha256', 'state']).execute();
  const live = new Set(rows.filter((r) => r.state === 'live').map((r) => r.sha256));
  const files = await filesUnder(join(blobRoot, 'blobs'));
  for (const file of files) {
    const name = file.slice(file.lastIndexOf('/') + 1);
    assert.equal(sha256(await readFile(file)), name, `blob file ${name} is whole`);
    assert.ok(live.has(name), `blob file ${name} has a live row`);
  }
  const named = new Set(files.map((f) => f.slice(f.lastIndexOf('/') + 1)));
  for (const sha of live) assert.ok(named.has(sha), `live blob row ${sha} has its bytes`);
  for (const table of ['assets', 'media_derived'] as const) {
    for (const { sha256: sha } of await db.selectFrom(table).select('sha256').execute()) {
      assert.ok(live.has(sha) && named.has(sha), `${table} row points at stored bytes ${sha}`);
    }
  }
}

test('out-of-space errors are recognised wherever they come from, and answer 507', () => {
  assert.ok(isOutOfSpace(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })));
  assert.ok(isOutOfSpace(Object.assign(new Error('disk quota exceeded'), { code: 'EDQUOT' })));
  assert.ok(isOutOfSpace({ code: 'ERR_SQLITE_ERROR', errcode: 13, message: 'database or disk is full' }));
  assert.ok(isOutOfSpace({ code: '53100', message: 'could not extend file' }), 'PostgreSQL disk_full');
  assert.ok(isOutOfSpace(new Error('wrapped', { cause: { code: 'ENOSPC' } })));
  assert.ok(!isOutOfSpace(Object.assign(new Error('gone'), { code: 'ENOENT' })));
  assert.ok(!isOutOfSpace({ errcode: 5 }), 'SQLITE_BUSY is not');
  const problem = toConveyorError(Object.assign(new Error('x'), { code: 'ENOSPC' }));
  assert.equal(problem.status, 507);
  assert.equal(problem.code, 'insufficient_storage');
  assert.equal(problem.headers['retry-after'], undefined, 'no Retry-After: no delay could be promised');
  assert.equal(insufficientStorage().status, 507);
});

describe('free space', async () => {
  const disk = await mountTmpfs(8 * MiB);
  const skip = 'skip' in disk ? disk.skip : false;
  after(async () => {
    if (!('skip' in disk)) await disk.unmount();
  });

  test('volumes on one filesystem count once, and their needs add up', { skip }, async () => {
    const { path, free } = disk as Tmpfs;
    let now = 0;
    const space = new FreeSpace(
      [
        { name: 'blobs', path },
        { name: 'uploads', path: join(path, 'uploads', 'not-made-yet') },
      ],
      { minFreeBytes: 1 * MiB, ttlMs: 1000, now: () => now },
    );
    const volumes = await space.volumes();
    assert.equal(volumes.length, 1);
    assert.deepEqual(volumes[0]!.names, ['blobs', 'uploads']);
    assert.equal(volumes[0]!.freeBytes, await free());
    assert.equal(volumes[0]!.low, false);
    const room = (await free()) - 1 * MiB;
    await space.admit({ blobs: room });
    await assert.rejects(space.admit({ blobs: room + 1 }), { code: 'insufficient_storage', status: 507 });
    await assert.rejects(space.admit({ blobs: room / 2 + 1, uploads: room / 2 }), {
      code: 'insufficient_storage',
    });
    await space.admit({ 'blob-cache': 100 * MiB }); // not a volume of this installation: nothing to check

    await (disk as Tmpfs).fill(512 * 1024);
    assert.equal((await space.low()).length, 0, 'measured within the last ttlMs: reused');
    now += 1000;
    const [low] = await space.low();
    assert.ok(low && low.freeBytes <= 512 * 1024, 'measured again after ttlMs');
    await assert.rejects(space.admit({ blobs: 0 }), /low on free space/);
    await (disk as Tmpfs).drain();
  });
});

describe('a full disk for blobs and uploads', async () => {
  const disk = await mountTmpfs(16 * MiB);
  const skip = 'skip' in disk ? disk.skip : false;
  let dbDir: TempDir | undefined;
  let server: TestServer;
  let root: string;
  let photo: any;
  let tusUrl: string;
  const tusBytes = randomBytes(3 * MiB);
  let tusStored = 0;
  let imageJobId: string | undefined;

  before(async () => {
    if (skip) return;
    root = (disk as Tmpfs).path;
    // Made here, not in the suite's body: a suite left out by --test-name-pattern runs no `after`.
    dbDir = await makeTempDir('conveyor-diskfull-db-');
    server = await startConveyor(undefined, {
      dataDir: root,
      // The database elsewhere: this suite fills the blobs' disk only (the next one fills the database's).
      databaseUrl: `sqlite:${join(dbDir.path, 'conveyor.db')}`,
      storageMinFreeBytes: 1 * MiB,
      storageSpaceCheckMs: 0,
      imagePresets: 'thumb=w:64,h:64,fit:cover',
      imageVariantFormats: 'webp',
      // A failed attempt waits for its retry long after this suite is done.
      jobRetryBaseMs: 600_000,
    });
    photo = await upload(server, await sceneJpeg(640, 480), { filename: 'p.jpg', contentType: 'image/jpeg' });
    const created = await send(server, 'POST', '/api/v1/uploads', {
      ...TUS,
      'upload-length': String(tusBytes.length),
      'upload-metadata': `filename ${Buffer.from('big.bin').toString('base64')}`,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    tusUrl = created.headers.location!;
    const first = await patch(0, tusBytes.subarray(0, 1 * MiB));
    assert.equal(first.status, 204);
    tusStored = 1 * MiB;
  });
  after(async () => {
    await server?.close();
    if (!('skip' in disk)) await disk.unmount();
    await dbDir?.cleanup();
  });

  const patch = (offset: number, bytes: Buffer) =>
    send(
      server,
      'PATCH',
      tusUrl,
      { ...TUS, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
      bytes,
    );

  /** Runs a worker until the photo's image job has ended an attempt; answers the job. */
  const runImageJob = async (): Promise<any> => {
    const worker = server.conveyor.jobs.createWorker(quietLog as never, {
      pollMs: 20,
      heartbeatMs: 50,
      progressIntervalMs: 0,
    });
    await worker.start();
    try {
      return await waitFor(
        'the image job to end an attempt',
        async () => {
          const { body } = await server.json('GET', '/api/v1/jobs?type=image.process&limit=10');
          const found = body.items.find((j: any) => j.payload.assetId === photo.id);
          return found && found.state !== 'queued' && found.state !== 'active' ? found : null;
        },
        30_000,
      );
    } finally {
      await worker.stop(1000);
    }
  };

  test('an upload that outgrows the disk answers 507 problem+json and leaves nothing behind', {
    skip,
  }, async () => {
    await (disk as Tmpfs).fill(2 * MiB);
    const before = await server.json('GET', '/api/v1/assets');
    // Chunked: no declared length, so it is admitted (the disk is above its reserve) and runs out mid-body.
    const sent = await send(
      server,
      'POST',
      '/api/v1/assets?filename=big.bin',
      { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
      randomBytes(4 * MiB),
    );
    assertProblem(asAnswer(sent), 507, 'insufficient_storage', 'chunked upload');
    assert.equal(sent.headers['retry-after'], undefined);
    const after = await server.json('GET', '/api/v1/assets');
    assert.deepEqual(
      after.body.items.map((a: any) => a.id),
      before.body.items.map((a: any) => a.id),
    );
    await assertConsistent(server, root);
    await healthz(server);
  });

  test('an upload declaring more than the free space is refused before a byte is written', {
    skip,
  }, async () => {
    const free = await (disk as Tmpfs).free();
    const tmpFiles = async () => (await readdir(join(root, 'tmp'))).length;
    const tooBig = String(free);
    const part = (head: string) => Buffer.concat([Buffer.from(head), randomBytes(64 * 1024)]);
    for (const [what, type, prefix] of [
      ['raw', 'application/octet-stream', part('')],
      [
        'multipart',
        'multipart/form-data; boundary=x',
        part('--x\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'),
      ],
    ] as const) {
      // The start of the body goes out, the rest never does: unless the server refuses at once, it
      // begins to stage what it got.
      const { answer, cut } = open(
        server,
        'POST',
        '/api/v1/assets?filename=x.bin',
        { 'content-type': type, 'content-length': tooBig },
        { partial: prefix },
      );
      try {
        const first = await firstOf(answer, async () => (await tmpFiles()) > 0);
        assert.equal(first, 'answer', `${what}: refused before staging`);
        assertProblem(asAnswer(await answer), 507, 'insufficient_storage', what);
        assert.equal(await tmpFiles(), 0);
      } finally {
        cut();
      }
    }
    // A resumable upload needs room twice on one disk: once as the upload, once as the blob it becomes.
    const uploadsBefore = await readdir(join(root, 'uploads'));
    const created = await send(server, 'POST', '/api/v1/uploads', {
      ...TUS,
      'upload-length': String(Math.floor(free / 2)),
    });
    assertProblem(asAnswer(created), 507, 'insufficient_storage', 'tus creation');
    assert.equal(created.headers['tus-resumable'], '1.0.0');
    assert.deepEqual(await readdir(join(root, 'uploads')), uploadsBefore, 'no upload was created');
    assert.equal(await (disk as Tmpfs).free(), free, 'not a byte was written');
    await healthz(server);
  });

  test('under the reserve, health says storage is degraded and the process stays ready', {
    skip,
  }, async () => {
    const healthy = await server.json('GET', '/api/v1/health');
    assert.equal(healthy.body.components.find((c: any) => c.name === 'storage').status, 'healthy');
    await (disk as Tmpfs).fill();
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 200, 'reads and delivery still work: stay in rotation');
    assert.deepEqual(await ready.json(), {
      status: 'degraded',
      checks: { database: 'ok', storage: 'degraded' },
    });
    const health = await server.json('GET', '/api/v1/health');
    const storage = health.body.components.find((c: any) => c.name === 'storage');
    assert.equal(storage.status, 'degraded');
    assert.match(storage.detail, /blobs, uploads: 0\.0 MiB free of 16\.0 MiB, under the 1\.0 MiB reserve/);
    assert.equal(health.body.status, 'degraded');
    // Under the reserve even an upload of unknown length is refused at once.
    const sent = await send(
      server,
      'POST',
      '/api/v1/assets?filename=small.bin',
      { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
      Buffer.from('tiny'),
    );
    assertProblem(asAnswer(sent), 507, 'insufficient_storage', 'upload under the reserve');
    // Delivery is unaffected.
    const delivered = await fetch(photo.url);
    assert.equal(delivered.status, 200);
    assert.equal(sha256(Buffer.from(await delivered.arrayBuffer())), photo.sha256);
    await healthz(server);
  });

  test('a tus PATCH on a full disk answers 507 problem+json and keeps what it stored', { skip }, async () => {
    await (disk as Tmpfs).fill();
    const sent = await patch(tusStored, tusBytes.subarray(tusStored));
    const problem = assertProblem(asAnswer(sent), 507, 'insufficient_storage', 'tus PATCH');
    assert.match(problem.detail, /kept.*resume/, 'the client is told to resume, not to start over');
    assert.equal(sent.headers['tus-resumable'], '1.0.0');
    const head = await send(server, 'HEAD', tusUrl, TUS, Buffer.alloc(0));
    assert.equal(head.status, 200);
    tusStored = Number(head.headers['upload-offset']);
    assert.ok(tusStored >= 1 * MiB && tusStored < tusBytes.length, `offset ${tusStored}`);
    const kept = await readFile(join(root, 'uploads', tusUrl.slice(tusUrl.lastIndexOf('/') + 1)));
    assert.ok(kept.equals(tusBytes.subarray(0, tusStored)), 'the stored bytes are a prefix of the upload');
    await healthz(server);
  });

  test('an image job on a full disk fails retryably and stores nothing half-made', { skip }, async () => {
    await (disk as Tmpfs).fill();
    const job = await runImageJob();
    imageJobId = job.id;
    assert.equal(job.state, 'failed', `awaiting a retry, not dead: ${JSON.stringify(job)}`);
    assert.equal(job.attempts, 1);
    assert.ok(job.maxAttempts > 1);
    assert.match(job.errors[0].message, /ENOSPC|no space/i);
    const derived = await server.conveyor.db.kysely.selectFrom('media_derived').selectAll().execute();
    assert.deepEqual(derived, []);
    await assertConsistent(server, root);
    await healthz(server);
  });

  test('a transform on a full disk is still answered; only keeping its output fails, cleanly', {
    skip,
  }, async () => {
    await (disk as Tmpfs).fill();
    const signed = await server.json('POST', `/api/v1/assets/${photo.id}/transform-url`, {
      width: 48,
      format: 'png',
    });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const res = await fetch(signed.body.url);
    assert.equal(res.status, 200, 'the render needs no disk: the client gets its image');
    assert.equal(res.headers.get('content-type'), 'image/png');
    await res.arrayBuffer();
    await server.conveyor.media.transforms.settled();
    const derived = await server.conveyor.db.kysely.selectFrom('media_derived').selectAll().execute();
    assert.deepEqual(derived, [], 'the output could not be kept, and nothing of it was');
    await assertConsistent(server, root);
    await healthz(server);
  });

  test('once space is freed, health recovers, uploads work again and the image job succeeds', {
    skip,
  }, async () => {
    await (disk as Tmpfs).drain();
    const health = await server.json('GET', '/api/v1/health');
    assert.equal(health.body.components.find((c: any) => c.name === 'storage').status, 'healthy');
    const ready = await fetch(`${server.url}/readyz`);
    assert.deepEqual(await ready.json(), { status: 'ok', checks: { database: 'ok', storage: 'ok' } });
    const bytes = randomBytes(2 * MiB);
    const asset = await upload(server, bytes, { filename: 'after.bin' });
    assert.equal(asset.sha256, sha256(bytes));
    const done = await patch(tusStored, tusBytes.subarray(tusStored));
    assert.equal(done.status, 204, JSON.stringify(done.body));
    const made = await server.json('GET', `/api/v1/assets/${done.headers['asset-id']}`);
    assert.equal(made.body.sha256, sha256(tusBytes), 'the resumed upload is whole');
    if (imageJobId) {
      const retried = await server.json('POST', `/api/v1/jobs/${imageJobId}/retry`);
      assert.equal(retried.status, 200, JSON.stringify(retried.body));
      const job = await runImageJob();
      assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
      const derived = await server.conveyor.db.kysely.selectFrom('media_derived').select('key').execute();
      assert.equal(derived.length, 1, 'the variant is made and kept');
    }
    await assertConsistent(server, root);
    await healthz(server);
  });
});

describe('a full disk for the SQLite database', async () => {
  const disk = await mountTmpfs(16 * MiB);
  const skip = 'skip' in disk ? disk.skip : false;
  let server: TestServer;

  before(async () => {
    if (!skip)
      server = await startConveyor(undefined, { dataDir: (disk as Tmpfs).path, storageMinFreeBytes: 0 });
  });
  after(async () => {
    await server?.close();
    if (!('skip' in disk)) await disk.unmount();
  });

  test('a write that fails with SQLITE_FULL answers 507, changes nothing, and the server serves on', {
    skip,
  }, async () => {
    const asset = await upload(server, randomBytes(64 * 1024), { filename: 'a.bin' });
    await (disk as Tmpfs).fill();
    // Writes fit in the room SQLite's files already hold for a while; one of these runs out of it.
    const pad = 'x'.repeat(48 * 1024);
    let accepted = 0;
    let refused: any;
    for (let i = 0; i < 1000 && !refused; i++) {
      const res = await server.json('POST', '/api/v1/jobs', { type: 'noop', payload: { i, pad } });
      if (res.status === 202) accepted++;
      else refused = res;
    }
    assert.ok(refused, 'the database filled up');
    assertProblem(refused, 507, 'insufficient_storage', 'enqueue on a full database');
    await healthz(server);
    const jobs = await server.json('GET', '/api/v1/jobs?limit=1000');
    assert.equal(jobs.status, 200, 'reads go on');
    assert.equal(jobs.body.items.length, accepted, 'the refused write left no job behind');
    const delivered = await fetch(asset.url);
    assert.equal(delivered.status, 200);
    await delivered.arrayBuffer();

    await (disk as Tmpfs).drain();
    const renamed = await server.json('PATCH', `/api/v1/assets/${asset.id}`, { filename: 'back.bin' });
    assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
    assert.equal(renamed.body.filename, 'back.bin');
    const enqueued = await server.json('POST', '/api/v1/jobs', { type: 'noop', payload: { pad } });
    assert.equal(enqueued.status, 202, 'writes work again once space is freed');
  });
});
