import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Run, runCli } from '../helpers/child.ts';
import { startConveyor, type TestServer } from '../helpers/conveyor.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';

const KiB = 1024;

function ok(run: Run): Run {
  assert.equal(run.code, 0, `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return run;
}

/** The percentages of the progress lines on stderr, in order. */
function percents(stderr: string): number[] {
  return [...stderr.matchAll(/^uploading [\d.]+ \/ [\d.]+ MiB \((\d+)%, [\d.]+ MiB\/s\)$/gm)].map((m) =>
    Number(m[1]),
  );
}

/**
 * `conveyor upload` of files over its resumable threshold: the real CLI as a child process against a
 * server in this process, with the threshold and chunk size set low so that small files take many chunks.
 */
describe('conveyor upload, resumable', () => {
  let dir: TempDir;
  let server: TestServer;
  let stateFile: string;
  let env: Record<string, string>;

  before(async () => {
    dir = await makeTempDir('conveyor-cli-tus-');
    server = await startConveyor();
    stateFile = join(dir.path, 'state', 'uploads.json');
    env = {
      CONVEYOR_URL: server.url,
      CONVEYOR_API_KEY: server.adminKey,
      CONVEYOR_UPLOAD_RESUMABLE_THRESHOLD: '64KiB',
      CONVEYOR_UPLOAD_CHUNK_SIZE: '128KiB',
      CONVEYOR_UPLOAD_STATE_FILE: stateFile,
    };
  });
  after(async () => {
    await server?.close();
    await dir?.cleanup();
  });

  const uploadsDir = () => join(server.dataDir, 'uploads');
  const remembered = async (): Promise<{ url: string; path: string }[]> =>
    existsSync(stateFile) ? JSON.parse(await readFile(stateFile, 'utf8')).uploads : [];
  const head = (url: string) =>
    fetch(url, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${server.adminKey}`, 'tus-resumable': '1.0.0' },
    });
  const download = async (url: string) =>
    Buffer.from(
      await (await fetch(url, { headers: { authorization: `Bearer ${server.adminKey}` } })).arrayBuffer(),
    );

  it('sends a file over the threshold with tus, in chunks, and it arrives intact', async () => {
    const file = join(dir.path, 'whole.bin');
    const bytes = randomBytes(1024 * KiB + 7);
    await writeFile(file, bytes);
    const run = ok(await runCli(['upload', file, '--private', '--json'], env));
    const result = JSON.parse(run.stdout);
    assert.match(result.id, /^ast_/);
    assert.equal(result.size, bytes.length);
    assert.ok((await download(result.url)).equals(bytes));
    const asset = (await server.json('GET', `/api/v1/assets/${result.id}`)).body;
    assert.equal(asset.filename, 'whole.bin', 'Upload-Metadata filename');
    assert.equal(asset.visibility, 'private', 'Upload-Metadata visibility');
    // It went through the tus endpoint (the hand-over leaves a receipt there), and is forgotten once done.
    assert.ok(
      (await readdir(uploadsDir())).some((name) => name.endsWith('.done')),
      'no tus receipt',
    );
    assert.deepEqual(await remembered(), []);

    // Progress without a terminal: plain lines, rising, the last at 100 %; no carriage returns.
    assert.ok(!run.stderr.includes('\r'), JSON.stringify(run.stderr));
    const seen = percents(run.stderr);
    assert.ok(seen.length >= 2, run.stderr);
    assert.equal(seen.at(-1), 100, run.stderr);
    assert.deepEqual(
      seen,
      [...seen].sort((a, b) => a - b),
      run.stderr,
    );
    assert.equal(seen.filter((p) => p === 100).length, 1, run.stderr);
  });

  it('resumes an interrupted upload from the offset the server has', async () => {
    const file = join(dir.path, 'resumed.bin');
    const bytes = randomBytes(1024 * KiB + 5);
    await writeFile(file, bytes);

    const cut = await runCli(['upload', file, '--stop-after-chunks', '3'], env);
    assert.equal(cut.code, 2, cut.stderr);
    assert.match(cut.stderr, /upload interrupted at 393216 of 1048581 bytes/);
    assert.match(cut.stderr, /run the same command again to resume/);
    assert.doesNotMatch(cut.stderr, /\n\s+at /, 'a stack trace');
    assert.equal(cut.stdout, '');
    const [entry, ...others] = await remembered();
    assert.ok(entry, 'the upload URL is remembered');
    assert.equal(others.length, 0);
    assert.equal(entry.path, file);
    const before = await head(entry.url);
    assert.equal(before.status, 200);
    assert.equal(before.headers.get('upload-offset'), '393216', 'the server has the first three chunks');

    const resumed = ok(await runCli(['upload', file, '--json'], env));
    assert.match(resumed.stderr, new RegExp(`resuming ${entry.url} at 393216 of 1048581 bytes`));
    // Progress starts where the first run stopped (37 %), not at 0.
    const seen = percents(resumed.stderr);
    assert.ok(seen[0]! >= 30, resumed.stderr);
    assert.equal(seen.at(-1), 100);
    const result = JSON.parse(resumed.stdout);
    assert.equal(result.size, bytes.length);
    assert.ok((await download(result.url)).equals(bytes), 'the bytes arrived intact');
    // The same upload was finished (its receipt names the asset), and the state forgets it.
    const done = await head(entry.url);
    assert.equal(done.headers.get('asset-id'), result.id);
    assert.deepEqual(await remembered(), []);
  });

  it('starts over when the server no longer has the remembered upload', async () => {
    const file = join(dir.path, 'forgotten.bin');
    const bytes = randomBytes(512 * KiB);
    await writeFile(file, bytes);
    const cut = await runCli(['upload', file, '--stop-after-chunks', '1'], env);
    assert.equal(cut.code, 2, cut.stderr);
    const [entry] = await remembered();
    assert.ok(entry);
    // The server drops it (as it does when an upload expires).
    const terminated = await fetch(entry.url, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${server.adminKey}`, 'tus-resumable': '1.0.0' },
    });
    assert.equal(terminated.status, 204);

    const again = ok(await runCli(['upload', file, '--json'], env));
    assert.match(again.stderr, /no longer has the unfinished upload/);
    const result = JSON.parse(again.stdout);
    assert.ok((await download(result.url)).equals(bytes));
    assert.deepEqual(await remembered(), []);
  });

  it('keeps the plain upload for files under the threshold, and prints text without --json', async () => {
    const file = join(dir.path, 'small.txt');
    await writeFile(file, 'small\n');
    const run = ok(await runCli(['upload', file, '--publish'], env));
    assert.equal(run.stderr, '', 'no progress for a small file');
    assert.match(run.stdout, /^id\s+ast_\w+$/m);
    assert.match(run.stdout, /^url\s+http:\/\/\S+\/a\/ast_\w+$/m);
    assert.match(run.stdout, /^size\s+6$/m);
    assert.match(run.stdout, /^version url\s+http:\/\/\S+\/v\/ver_\w+$/m);
    assert.deepEqual(await remembered(), []);
  });
});
