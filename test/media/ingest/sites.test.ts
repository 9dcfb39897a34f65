import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { VIDEO_JOB } from '../../../src/media/video-job.ts';
import { BACKENDS, skipIfNoPostgres, startConveyor, type TestServer } from '../../helpers/conveyor.ts';
import { waitFor } from '../../helpers/jobs.ts';
import { type Recorder, startRecorder } from '../../helpers/recorder.ts';
import { h264AacMp4, skipWithoutFfmpeg } from '../../helpers/video-fixtures.ts';

const run = promisify(execFile);

/** Why yt-dlp tests cannot run here, or false. In CI they must. */
async function skipWithoutYtdlp(): Promise<string | false> {
  try {
    await run(process.env.CONVEYOR_YTDLP_PATH ?? 'yt-dlp', ['--version']);
    return false;
  } catch {
    if (process.env.CI === 'true') throw new Error('yt-dlp is required in CI (.ci/run installs it)');
    return 'yt-dlp is not installed';
  }
}

async function ended(server: TestServer, jobId: string): Promise<any> {
  return waitFor(
    `job ${jobId}`,
    async () => {
      const { body } = await server.json('GET', `/api/v1/jobs/${jobId}`);
      return ['succeeded', 'dead', 'cancelled'].includes(body.state) ? body : null;
    },
    60_000,
  );
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const html = (title: string, body: string) =>
  `<!DOCTYPE html><html><head><title>${title}</title></head><body>${body}</body></html>`;

const skipTools = skipWithoutFfmpeg() || (await skipWithoutYtdlp());

for (const backend of BACKENDS) {
  describe(`ingest of video: direct and through yt-dlp (${backend.database} + ${backend.storage})`, async () => {
    const skip = (await skipIfNoPostgres(backend.database)) || skipTools;
    let server: TestServer;
    let clip: Buffer;
    let origin: Recorder;
    let forbidden: Recorder; // 127.0.0.2: loopback, outside the allowed /32
    const stalled: (() => void)[] = [];

    before(async () => {
      if (skip) return;
      clip = await readFile(await h264AacMp4());
      forbidden = await startRecorder('127.0.0.2');
      origin = await startRecorder('127.0.0.1', (req, res) => {
        const pages: Record<string, string> = {
          '/page.html': html('A test page', '<video src="/clip.mp4" controls></video>'),
          '/evil.html': html('Evil', `<video src="http://127.0.0.2:${forbidden.port}/x.mp4"></video>`),
          '/list.html': html('Two clips', '<video src="/clip2.mp4"></video><video src="/gone.mp4"></video>'),
          '/slow.html': html('Slow', '<video src="/slow.mp4"></video>'),
        };
        const path = req.url!.split('?')[0]!;
        if (pages[path] !== undefined) {
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(pages[path]);
        } else if (path === '/clip.mp4' || path === '/clip2.mp4') {
          res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': clip.length });
          res.end(req.method === 'HEAD' ? undefined : clip);
        } else if (path === '/slow.mp4') {
          // Half the file, then nothing until the test (or its end) lets go.
          res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': clip.length });
          res.write(clip.subarray(0, clip.length / 2));
          stalled.push(() => res.destroy());
        } else {
          res.writeHead(404).end();
        }
      });
      server = await startConveyor(backend, {
        serveWorkers: true,
        jobPollMs: 20,
        jobHeartbeatMs: 50,
        ingestAllowAddresses: '127.0.0.1/32',
        ingestConnectTimeoutMs: 5000,
        videoHeights: '90',
        videoSegmentSeconds: 1,
        videoPreset: 'fast',
        videoHwaccel: 'off',
      });
    });
    after(async () => {
      for (const release of stalled) release();
      await server?.close();
      await origin?.close();
      await forbidden?.close();
    });

    test('a direct download of kind video becomes a video/mp4 asset whose ladder job follows', {
      skip,
    }, async () => {
      const res = await server.json('POST', '/api/v1/ingest', {
        url: `${origin.url}/clip.mp4`,
        kind: 'video',
      });
      assert.equal(res.status, 202);
      assert.equal(res.body.type, 'ingest.fetch');
      assert.equal(res.body.priority, 'low');
      const job = await ended(server, res.body.id);
      assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
      assert.equal(job.result.contentType, 'video/mp4');
      assert.equal(job.result.sha256, sha256(clip));
      const ladder = await waitFor(
        'the video job',
        async () => {
          const { body } = await server.json('GET', `/api/v1/jobs?type=${VIDEO_JOB}&limit=100`);
          const found = body.items.find((j: any) => j.payload.assetId === job.result.assetId);
          return found && ['succeeded', 'dead'].includes(found.state) ? found : null;
        },
        60_000,
      );
      assert.equal(ladder.priority, 'low');
      assert.equal(ladder.state, 'succeeded', JSON.stringify(ladder.errors));
    });

    // yt-dlp's part is the same on every backend (its file is stored as ingest.fetch stores one, which
    // the test above and ingest.test.ts cover on each): it runs on the first, to keep the file short.
    if (backend === BACKENDS[0]) {
      test("a page's <video> through yt-dlp: the same bytes, progress to 100, the source recorded", {
        skip,
      }, async () => {
        const url = `${origin.url}/page.html`;
        const res = await server.json('POST', '/api/v1/ingest', { url, via: 'ytdlp', kind: 'video' });
        assert.equal(res.status, 202, JSON.stringify(res.body));
        assert.equal(res.body.type, 'ingest.site');
        assert.equal(res.body.priority, 'low');
        const job = await ended(server, res.body.id);
        assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
        assert.equal(job.progress.percent, 100);
        assert.equal(job.result.sha256, sha256(clip));
        assert.equal(job.result.contentType, 'video/mp4');
        const asset = await server.json('GET', `/api/v1/assets/${job.result.assetId}`);
        assert.match(asset.body.filename, /^A test page.*\.mp4$/);
        const delivered = Buffer.from(await (await fetch(asset.body.url)).arrayBuffer());
        assert.ok(delivered.equals(clip));
        const source = await server.conveyor.db.kysely
          .selectFrom('asset_sources')
          .selectAll()
          .where('asset_id', '=', job.result.assetId)
          .executeTakeFirst();
        assert.equal(source?.url, url);
      });

      test('a page whose media points at a forbidden address: dead with ytdlp_forbidden, zero hits there', {
        skip,
      }, async () => {
        const res = await server.json('POST', '/api/v1/ingest', {
          url: `${origin.url}/evil.html`,
          via: 'ytdlp',
        });
        assert.equal(res.status, 202);
        const job = await ended(server, res.body.id);
        assert.equal(job.state, 'dead');
        assert.equal(job.attempts, 1);
        assert.equal(job.errors.at(-1).code, 'ytdlp_forbidden');
        assert.equal(forbidden.connections, 0);
      });

      test('a playlist with a broken entry: the parent succeeds, the report names one success and one failure', {
        skip,
      }, async () => {
        const res = await server.json('POST', '/api/v1/ingest', {
          url: `${origin.url}/list.html`,
          via: 'ytdlp',
          playlist: true,
          kind: 'video',
        });
        assert.equal(res.status, 202, JSON.stringify(res.body));
        assert.equal(res.body.type, 'ingest.playlist');
        const parent = await ended(server, res.body.id);
        assert.equal(parent.state, 'succeeded', JSON.stringify(parent.errors));
        assert.deepEqual(
          parent.result.entries.map((e: any) => e.url),
          [`${origin.url}/clip2.mp4`, `${origin.url}/gone.mp4`],
        );
        const report = await waitFor(
          'the playlist report',
          async () => {
            const { status, body } = await server.json('GET', `/api/v1/ingest/playlists/${parent.id}`);
            assert.equal(status, 200, JSON.stringify(body));
            return body.done ? body : null;
          },
          60_000,
        );
        assert.equal(report.succeeded, 1);
        assert.equal(report.failed, 1);
        assert.equal(report.pending, 0);
        const [good, bad] = report.entries;
        assert.equal(good.state, 'succeeded');
        assert.equal(good.url, `${origin.url}/clip2.mp4`);
        const asset = await server.json('GET', `/api/v1/assets/${good.assetId}`);
        assert.equal(asset.body.sha256, sha256(clip));
        assert.equal(bad.state, 'dead');
        assert.equal(bad.error.code, 'ytdlp_failed');
        assert.match(bad.error.message, /404/);
        const child = await server.json('GET', `/api/v1/jobs/${good.jobId}`);
        assert.equal(child.body.parentId, parent.id);
        assert.equal(child.body.priority, 'low');

        // Only playlist jobs have a report.
        const other = await server.json('GET', `/api/v1/ingest/playlists/${good.jobId}`);
        assert.equal(other.status, 404);
      });

      test('cancelling the job stops yt-dlp mid-download', { skip }, async () => {
        const res = await server.json('POST', '/api/v1/ingest', {
          url: `${origin.url}/slow.html`,
          via: 'ytdlp',
        });
        await waitFor(
          'bytes downloading',
          async () => {
            const { body } = await server.json('GET', `/api/v1/jobs/${res.body.id}`);
            return body.progress?.stage === 'downloading' ? body : null;
          },
          60_000,
        );
        assert.equal(origin.open > 0, true);
        const cancel = await server.json('POST', `/api/v1/jobs/${res.body.id}/cancel`);
        assert.equal(cancel.status, 200);
        const job = await ended(server, res.body.id);
        assert.equal(job.state, 'cancelled');
        // yt-dlp and its proxy are gone: nothing holds a connection to the origin any more.
        await waitFor('the origin connections closed', async () => origin.open === 0 || null, 30_000);
      });

      test('refusals before queueing: a literal private address, and options that do not fit', {
        skip,
      }, async () => {
        const refused = await server.json('POST', '/api/v1/ingest', {
          url: `http://127.0.0.2:${forbidden.port}/page.html`,
          via: 'ytdlp',
        });
        assert.equal(refused.status, 400);
        assert.equal(refused.body.code, 'ssrf_forbidden');
        const list = await server.json('POST', '/api/v1/ingest', {
          url: 'http://10.0.0.1/list',
          via: 'ytdlp',
          playlist: true,
        });
        assert.equal(list.status, 400);
        assert.equal(list.body.code, 'ssrf_forbidden');
        const bad = await server.json('POST', '/api/v1/ingest', { url: 'ftp://example.com/x', via: 'ytdlp' });
        assert.equal(bad.status, 400);
        assert.equal(bad.body.code, 'bad_url');
        for (const body of [
          { url: 'http://example.com/list', playlist: true },
          { url: 'http://example.com/v', via: 'ytdlp', assetId: 'ast_x' },
          { url: 'http://example.com/v', via: 'ytdlp', playlist: true, filename: 'x.mp4' },
          { url: 'http://example.com/v', via: 'curl' },
        ]) {
          const res = await server.json('POST', '/api/v1/ingest', body);
          assert.equal(res.status, 400, JSON.stringify(body));
        }
        assert.equal(forbidden.connections, 0);
      });
    }
  });
}
