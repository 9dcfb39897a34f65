import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { loadConfig } from '../../src/config/config.ts';
import { openDatabase } from '../../src/db/database.ts';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import {
  CHILD_GUARD_MS,
  ROOT,
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

/** Preloaded into a child, it freezes the process at a chosen step (see the file). */
const FREEZE = pathToFileURL(join(ROOT, 'test/fixtures/freeze-at-step.ts')).href;
/** Every step of replacing an asset's content and publishing it, in order (src/ops/steps.ts). */
const PUBLISH_STEPS = [
  'blob.staged',
  'blob.registered',
  'blob.committed',
  'publish.begun',
  'publish.counted',
  'publish.recorded',
  'publish.audited',
  'publish.committed',
] as const;

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

    it('SIGKILL at every step of replacing content and publishing it leaves gapless versions with their bytes', {
      skip,
      timeout: 300_000,
    }, async (t) => {
      const dir = await makeTempDir('conveyor-crash-publish-');
      cleanups.push(() => dir.cleanup());
      const adminKey = generateApiKey();
      const settings: Record<string, string> = { CONVEYOR_DATA_DIR: dir.path, CONVEYOR_ADMIN_KEY: adminKey };
      if (database === 'postgres') {
        const schema = await postgresSchema();
        cleanups.push(() => schema.drop());
        settings['CONVEYOR_DATABASE_URL'] = schema.url;
      }
      const config = loadConfig({}, { dataDir: dir.path, databaseUrl: settings['CONVEYOR_DATABASE_URL'] });
      const authorization = `Bearer ${adminKey}`;
      /** Versions whose publish was answered 201, by number. */
      const acknowledged = new Map<number, { id: string; sha256: string }>();
      let assetId: string | undefined;

      for (const target of PUBLISH_STEPS) {
        // Frozen the second time it reaches the step, so each process also completes a round first.
        const server = await startServer({
          ...settings,
          NODE_OPTIONS: `--import=${FREEZE}`,
          FREEZE_AT_STEP: target,
          FREEZE_AT_COUNT: '2',
        });
        children.push(server);
        const frozen = new Promise<void>((resolve) => {
          const check = () => server.output().includes(`frozen at ${target}`) && resolve();
          server.process.stdout!.on('data', check);
          check();
        });
        const call = async (method: string, path: string, body?: Buffer) => {
          const res = await fetch(`${server.url}${path}`, {
            method,
            ...(body
              ? { body, headers: { authorization, 'content-type': 'application/octet-stream' } }
              : { headers: { authorization } }),
          });
          return { status: res.status, body: (await res.json()) as any };
        };
        /** The hash of the content being stored or published when the process froze. */
        let inFlight = '';
        const rounds = (async () => {
          for (let round = 0; round < 4; round++) {
            const bytes = randomBytes(64 * 1024);
            inFlight = sha256(bytes);
            if (!assetId) {
              const created = await call('POST', '/api/v1/assets?filename=published.bin', bytes);
              assert.equal(created.status, 201, JSON.stringify(created.body));
              assetId = created.body.id as string;
              continue;
            }
            const replaced = await call('PUT', `/api/v1/assets/${assetId}/content`, bytes);
            assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
            const published = await call('POST', `/api/v1/assets/${assetId}/publish`);
            assert.equal(published.status, 201, JSON.stringify(published.body));
            assert.ok(
              !acknowledged.has(published.body.number),
              `number ${published.body.number} given twice`,
            );
            acknowledged.set(published.body.number, published.body);
          }
          throw new Error(`the server never reached ${target}`);
        })();
        // The request frozen mid-step never answers; the kill fails it.
        rounds.catch(() => {});
        await Promise.race([frozen, rounds]);
        await server.stop('SIGKILL');

        // What the kill left, before anything recovers: proof that it struck inside `target`.
        const db = openDatabase(config);
        try {
          const row = await db.kysely
            .selectFrom('blobs')
            .select('state')
            .where('sha256', '=', inFlight)
            .executeTakeFirst();
          const file = join(dir.path, 'blobs', inFlight.slice(0, 2), inFlight.slice(2, 4), inFlight);
          const bytes = await readFile(file).catch(() => null);
          const asset = await db.kysely.selectFrom('assets').selectAll().executeTakeFirstOrThrow();
          const versions = await db.kysely.selectFrom('asset_versions').selectAll().execute();
          const temporaries = await Promise.all(
            (await readdir(join(dir.path, 'tmp'))).map(async (name) =>
              sha256(await readFile(join(dir.path, 'tmp', name))),
            ),
          );
          t.diagnostic(
            `${target}: row ${row?.state ?? 'none'}, bytes ${bytes ? 'stored' : 'none'}, ${temporaries.length} temporaries, ${versions.length} versions`,
          );
          if (target.startsWith('blob.')) {
            const stage = target.slice('blob.'.length);
            assert.equal(
              temporaries.includes(inFlight),
              stage === 'staged' || stage === 'registered',
              'temporary',
            );
            assert.equal(row?.state, stage === 'staged' ? undefined : 'live', 'ledger row');
            assert.equal(bytes !== null, stage === 'committed', 'blob file');
            assert.notEqual(asset.sha256, inFlight, 'the asset does not reference the content yet');
          } else {
            assert.equal(asset.sha256, inFlight, "the content being published is the asset's");
          }
          // A publish is one transaction: killed before its commit it left nothing, after it its version.
          const expected = acknowledged.size + (target === 'publish.committed' ? 1 : 0);
          assert.equal(versions.length, expected, `${target}: versions in the database`);
          assert.equal(asset.version_count, expected, `${target}: the asset's version count`);
          if (target === 'publish.committed') {
            const unanswered = versions.find((v) => v.number === expected);
            assert.equal(unanswered?.sha256, inFlight, 'the committed, unanswered version holds the content');
          }
        } finally {
          await db.close();
        }
      }

      const last = await startServer(settings);
      children.push(last);
      const auth = { headers: { authorization: `Bearer ${adminKey}` } };
      const asset = (await (await fetch(`${last.url}/api/v1/assets/${assetId}`, auth)).json()) as any;
      const listed = await fetch(`${last.url}/api/v1/assets/${assetId}/versions?limit=100`, auth);
      const versions = ((await listed.json()) as { items: any[] }).items;
      const numbers = versions.map((v) => v.number as number).toSorted((a, b) => a - b);
      assert.deepEqual(
        numbers,
        Array.from({ length: numbers.length }, (_, i) => i + 1),
        'numbers 1..n, no gap, no duplicate',
      );
      assert.equal(asset.versionCount, numbers.length);
      for (const [number, version] of acknowledged) {
        const found = versions.find((v) => v.number === number);
        assert.equal(found?.id, version.id, `acknowledged version ${number} kept its id`);
        assert.equal(found?.sha256, version.sha256, `acknowledged version ${number} kept its content`);
      }
      for (const version of versions) {
        const res = await fetch(`${last.url}/v/${version.id}`);
        assert.equal(res.status, 200, `version ${version.number} is delivered`);
        assert.equal(
          sha256(Buffer.from(await res.arrayBuffer())),
          version.sha256,
          `version ${version.number}`,
        );
      }
      await last.stop('SIGTERM');
      assert.equal(last.process.exitCode, 0, last.output());

      // Everything the kills left behind is collected; everything referenced stays.
      const gc = await cli(['gc'], { ...settings, CONVEYOR_GC_GRACE_SECONDS: '0' });
      assert.equal(gc.code, 0, gc.stderr);
      t.diagnostic(`conveyor gc: ${gc.stdout.trim()}`);
      const referenced = new Set<string>([asset.sha256, ...versions.map((v) => v.sha256 as string)]);
      const files = await filesUnder(join(dir.path, 'blobs'));
      assert.deepEqual(files.map((f) => f.slice(-64)).toSorted(), [...referenced].toSorted());
      for (const file of files) assert.equal(sha256(await readFile(file)), file.slice(-64));
      assert.deepEqual(await readdir(join(dir.path, 'tmp')), []);
      const db = openDatabase(config);
      try {
        const blobs = await db.kysely.selectFrom('blobs').select(['sha256', 'state']).execute();
        assert.deepEqual(blobs.map((b) => b.sha256).toSorted(), [...referenced].toSorted());
        assert.ok(blobs.every((b) => b.state === 'live'));
      } finally {
        await db.close();
      }
    });
  });
}
