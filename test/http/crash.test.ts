import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import {
  CHILD_GUARD_MS,
  type Run,
  runCli,
  type ServerProcess,
  startServerProcess,
} from '../helpers/child.ts';
import { postgresSchema, skipIfNoPostgres } from '../helpers/conveyor.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const UPLOADS = 40;
const UPLOAD_BYTES = 256 * 1024;
const KILL_AFTER_RESPONSES = 10;

/** Starts `conveyor serve` as a child process and waits until /readyz answers 200. */
function startServer(settings: Record<string, string>): Promise<ServerProcess> {
  return startServerProcess({
    ...settings,
    CONVEYOR_LOG_LEVEL: 'warn',
    CONVEYOR_GC_INTERVAL_SECONDS: '0',
    CONVEYOR_RATE_LIMIT_PER_KEY: '0',
    CONVEYOR_RATE_LIMIT_PER_ADDRESS: '0',
  });
}

/** Runs the CLI to completion and answers its exit code and output. */
function cli(args: string[], settings: Record<string, string>): Promise<Run> {
  return runCli(args, { ...settings, CONVEYOR_LOG_LEVEL: 'warn' });
}

/** A body that arrives in pieces, `delayMs` apart, so that some uploads are still streaming at the kill. */
function trickle(bytes: Buffer, pieces: number, delayMs: number): ReadableStream<Uint8Array> {
  const size = Math.ceil(bytes.length / pieces);
  let offset = 0;
  return new ReadableStream({
    async pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        return;
      }
      if (offset > 0) await sleep(delayMs);
      controller.enqueue(bytes.subarray(offset, offset + size));
      offset += size;
    },
  });
}

const sha256 = (bytes: Buffer | Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function listAll(url: string, key: string): Promise<any[]> {
  const items: any[] = [];
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ limit: '100' });
    if (cursor) query.set('cursor', cursor);
    const res = await fetch(`${url}/api/v1/assets?${query}`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200);
    const page = (await res.json()) as { items: any[]; nextCursor: string | null };
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

for (const database of ['sqlite', 'postgres'] as const) {
  describe(`crash safety on ${database} + fs`, async () => {
    const skip = await skipIfNoPostgres(database);
    const cleanups: (() => Promise<void>)[] = [];
    const children: ServerProcess[] = [];
    after(async () => {
      for (const child of children) await child.stop('SIGKILL');
      for (const cleanup of cleanups.reverse()) await cleanup();
    });

    it('SIGKILL during a burst of uploads loses no acknowledged upload and leaves nothing GC cannot collect', {
      skip,
      timeout: CHILD_GUARD_MS,
    }, async (t) => {
      const dir = await makeTempDir('conveyor-crash-');
      cleanups.push(() => dir.cleanup());
      const adminKey = generateApiKey();
      const settings: Record<string, string> = { CONVEYOR_DATA_DIR: dir.path, CONVEYOR_ADMIN_KEY: adminKey };
      if (database === 'postgres') {
        const schema = await postgresSchema();
        cleanups.push(() => schema.drop());
        settings['CONVEYOR_DATABASE_URL'] = schema.url;
      }

      const first = await startServer(settings);
      children.push(first);

      // Distinct random content per upload, so no two share a blob and every result can be checked.
      const bodies = Array.from({ length: UPLOADS }, () => randomBytes(UPLOAD_BYTES));
      const byHash = new Map(bodies.map((b) => [sha256(b), b]));
      const acknowledged = new Map<string, { id: string; sha256: string }>();
      let responses = 0;
      let killed: Promise<void> | undefined;
      const attempts = bodies.map(async (body, i) => {
        // The first uploads go in one piece; later ones trickle, so the kill finds some mid-body.
        const init: RequestInit & { duplex?: 'half' } =
          i < KILL_AFTER_RESPONSES
            ? { method: 'POST', body }
            : { method: 'POST', body: trickle(body, 16, 5 + i), duplex: 'half' };
        init.headers = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/octet-stream' };
        let answer: { status: number; text: string } | null = null;
        try {
          const res = await fetch(`${first.url}/api/v1/assets?filename=burst-${i}.bin`, init);
          answer = { status: res.status, text: await res.text() };
        } catch {
          // The server died under this request: no answer, nothing promised.
        } finally {
          if (++responses === KILL_AFTER_RESPONSES) killed = first.stop('SIGKILL');
        }
        if (answer === null) return;
        // While it lives the server accepts every upload of the burst; it never answers with an error.
        assert.equal(answer.status, 201, `upload ${i}: ${answer.status} ${answer.text}`);
        const asset = JSON.parse(answer.text);
        assert.equal(asset.sha256, sha256(body), 'the acknowledged hash is the hash of what was sent');
        acknowledged.set(asset.id, asset);
      });
      await Promise.all(attempts);
      await (killed ?? first.stop('SIGKILL'));
      t.diagnostic(`${acknowledged.size} of ${UPLOADS} uploads were acknowledged before the kill`);
      // What the kill interrupted: temporaries and maybe unreferenced blobs, both for GC to find.
      const leftovers = (await readdir(join(dir.path, 'tmp'))).length;
      t.diagnostic(`${leftovers} staged temporaries were left by the kill`);

      const second = await startServer(settings);
      children.push(second);
      const listed = await listAll(second.url, adminKey);
      const ids = new Set(listed.map((a) => a.id));
      for (const id of acknowledged.keys()) assert.ok(ids.has(id), `acknowledged upload ${id} is gone`);
      for (const asset of listed) {
        const res = await fetch(`${second.url}/a/${asset.id}`);
        assert.equal(res.status, 200, `${asset.id}: ${res.status}`);
        const bytes = Buffer.from(await res.arrayBuffer());
        const etag = res.headers.get('etag');
        assert.equal(etag, `"${sha256(bytes)}"`, `${asset.id} delivers bytes matching its ETag`);
        assert.equal(etag, asset.etag);
        assert.equal(bytes.length, asset.size);
        assert.equal(bytes.length, UPLOAD_BYTES);
        assert.ok(byHash.get(asset.sha256)?.equals(bytes), `${asset.id} is one of the uploads, whole`);
      }

      // No asset row references a blob that is missing from the ledger or from storage.
      const config = loadConfig({}, { dataDir: dir.path, databaseUrl: settings['CONVEYOR_DATABASE_URL'] });
      const db = openDatabase(config);
      try {
        const rows = await db.kysely
          .selectFrom('assets')
          .leftJoin('blobs', 'blobs.sha256', 'assets.sha256')
          .select(['assets.id', 'assets.sha256', 'blobs.state'])
          .execute();
        assert.equal(rows.length, listed.length);
        for (const row of rows) {
          assert.equal(row.state, 'live', `asset ${row.id} has no live ledger row`);
          const path = join(dir.path, 'blobs', row.sha256.slice(0, 2), row.sha256.slice(2, 4), row.sha256);
          assert.equal(sha256(await readFile(path)), row.sha256, `blob file of ${row.id}`);
        }
      } finally {
        await db.close();
      }

      await second.stop('SIGTERM');
      assert.equal(second.process.exitCode, 0, second.output());
      const gc = await cli(['gc'], { ...settings, CONVEYOR_GC_GRACE_SECONDS: '0' });
      assert.equal(gc.code, 0, gc.stderr);
      t.diagnostic(`conveyor gc: ${gc.stdout.trim()}`);

      const referenced = new Set(listed.map((a) => a.sha256));
      const files = await filesUnder(join(dir.path, 'blobs'));
      for (const file of files) {
        const name = file.slice(file.lastIndexOf('/') + 1);
        assert.ok(referenced.has(name), `orphan blob file ${file}`);
        assert.equal(sha256(await readFile(file)), name, `blob file ${file} holds other bytes`);
      }
      assert.equal(files.length, referenced.size);
      assert.deepEqual(await readdir(join(dir.path, 'tmp')), []);
      const after = openDatabase(config);
      try {
        const blobs = await after.kysely.selectFrom('blobs').select(['sha256', 'state']).execute();
        assert.deepEqual(blobs.map((b) => b.sha256).toSorted(), [...referenced].toSorted());
        assert.ok(blobs.every((b) => b.state === 'live'));
      } finally {
        await after.close();
      }
    });
  });
}
