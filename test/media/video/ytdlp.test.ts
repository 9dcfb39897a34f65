import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DEFAULT_DENY_HOSTS } from '../../../src/config/ingest-settings.ts';
import { type Progress, Ytdlp, YtdlpError, type YtdlpOptions } from '../../../src/media/video/ytdlp.ts';
import { classify, type RunOutcome } from '../../../src/media/video/ytdlp-errors.ts';
import { toPlaylist } from '../../../src/media/video/ytdlp-output.ts';
import { type Recorder, startRecorder } from '../../helpers/recorder.ts';
import { makeTempDir, type TempDir } from '../../helpers/tmp.ts';

const run = promisify(execFile);
const YTDLP = process.env.CONVEYOR_YTDLP_PATH ?? 'yt-dlp';

/** Why these tests cannot run here (no yt-dlp or ffmpeg), or undefined. In CI they must. */
async function missingTools(): Promise<string | undefined> {
  for (const [tool, args] of [
    [YTDLP, ['--version']],
    ['ffmpeg', ['-version']],
  ] as const) {
    try {
      await run(tool, [...args]);
    } catch {
      if (process.env.CI === 'true') throw new Error(`${tool} is required in CI (.ci/run installs it)`);
      return `${tool} is not installed`;
    }
  }
  return undefined;
}

// Only the origin's address is allowed, as CONVEYOR_INGEST_ALLOW_ADDRESSES=127.0.0.1/32 would.
const POLICY = { allowAddresses: ['127.0.0.1/32'], denyHosts: DEFAULT_DENY_HOSTS };

function options(over: Partial<YtdlpOptions> = {}): YtdlpOptions {
  return {
    path: YTDLP,
    policy: POLICY,
    maxBytes: 50 * 1024 * 1024,
    proxyExtraBytes: 1024 * 1024,
    connectTimeoutMs: 5000,
    idleTimeoutMs: 30_000,
    maxConnections: 8,
    probeTimeoutMs: 60_000,
    maxJsonBytes: 8 * 1024 * 1024,
    playlistMaxEntries: 10,
    killGraceMs: 2000,
    ...over,
  };
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<YtdlpError> {
  const err = await promise.then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof YtdlpError, String(err));
  assert.equal(err.code, code, err.message);
  return err;
}

const skip = await missingTools();

describe('yt-dlp through the guarded proxy', { skip }, () => {
  let tmp: TempDir;
  let clip: Buffer;
  let origin: Recorder;
  let forbidden: Recorder; // 127.0.0.2: loopback, outside the allowed /32
  const stalled: (() => void)[] = [];

  before(async () => {
    tmp = await makeTempDir('conveyor-ytdlp-test-');
    const file = join(tmp.path, 'clip.mp4');
    // A tiny H.264 clip made here, never downloaded.
    await run('ffmpeg', [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=160x90:rate=10',
      '-t',
      '1',
      '-pix_fmt',
      'yuv420p',
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      file,
    ]);
    clip = await readFile(file);
    forbidden = await startRecorder('127.0.0.2');
    const html = (title: string, body: string) =>
      `<!DOCTYPE html><html><head><title>${title}</title></head><body>${body}</body></html>`;
    origin = await startRecorder('127.0.0.1', (req, res) => {
      const evil = `http://127.0.0.2:${forbidden.port}/x.mp4`;
      const pages: Record<string, string> = {
        '/page.html': html('A test page', '<video src="/clip.mp4" controls></video>'),
        '/list.html': html('Two clips', '<video src="/clip.mp4"></video><video src="/clip2.mp4"></video>'),
        '/evil.html': html('Evil', `<video src="${evil}"></video>`),
        '/none.html': html('Nothing', '<p>no media here</p>'),
        '/slow.html': html('Slow', '<video src="/slow.mp4"></video>'),
        '/chunked.html': html('Chunked', '<video src="/chunked.mp4"></video>'),
      };
      const path = req.url!.split('?')[0]!;
      if (pages[path] !== undefined) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(pages[path]);
      } else if (path === '/clip.mp4' || path === '/clip2.mp4') {
        res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': clip.length });
        res.end(req.method === 'HEAD' ? undefined : clip);
      } else if (path === '/chunked.mp4') {
        res.writeHead(200, { 'content-type': 'video/mp4' }); // no length: chunked
        res.end(clip);
      } else if (path === '/slow.mp4') {
        // Half the file, then nothing until the test lets go (it cancels first).
        res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': clip.length });
        res.write(clip.subarray(0, clip.length / 2));
        stalled.push(() => res.destroy());
      } else if (path === '/to-evil') {
        res.writeHead(302, { location: evil }).end();
      } else if (path === '/to-ftp') {
        res.writeHead(302, { location: `ftp://127.0.0.2:${forbidden.port}/x.mp4` }).end();
      } else {
        res.writeHead(404).end();
      }
    });
  });
  after(async () => {
    for (const release of stalled) release();
    await origin?.close();
    await forbidden?.close();
    await tmp?.cleanup();
  });

  it("downloads a page's <video> through the proxy, with progress, byte for byte", async () => {
    const dir = await makeTempDir('conveyor-ytdlp-dl-');
    try {
      const events: Progress[] = [];
      const got = await new Ytdlp(options()).download(`${origin.url}/page.html`, {
        dir: dir.path,
        onProgress: (p) => events.push(p),
      });
      assert.ok((await readFile(got.path)).equals(clip));
      assert.equal(got.bytes, clip.length);
      assert.ok(got.path.startsWith(`${got.dir}/`) && got.dir.startsWith(`${dir.path}/`));
      assert.equal(got.ext, 'mp4');
      assert.ok(events.length > 0);
      const last = events.at(-1)!;
      assert.equal(last.downloadedBytes, clip.length);
      assert.equal(last.totalBytes, clip.length);
      assert.equal(last.part, 0);
      assert.ok(origin.requests.includes('GET /page.html'));
      assert.ok(origin.requests.includes('GET /clip.mp4'));
    } finally {
      await dir.cleanup();
    }
  });

  it('downloads a direct link to the media file', async () => {
    const dir = await makeTempDir('conveyor-ytdlp-dl-');
    try {
      const got = await new Ytdlp(options()).download(`${origin.url}/clip2.mp4`, { dir: dir.path });
      assert.ok((await readFile(got.path)).equals(clip));
    } finally {
      await dir.cleanup();
    }
  });

  for (const [name, path] of [
    ['a page whose media link points at a forbidden address', '/evil.html'],
    ['a redirect to a forbidden address', '/to-evil'],
    ['a redirect to ftp:// on a forbidden address', '/to-ftp'],
  ] as const) {
    it(`refuses ${name} (ytdlp_forbidden), with zero hits there`, async () => {
      const dir = await makeTempDir('conveyor-ytdlp-dl-');
      try {
        const err = await rejectsWith(
          new Ytdlp(options()).download(`${origin.url}${path}`, { dir: dir.path }),
          'ytdlp_forbidden',
        );
        assert.match(err.message, /127\.0\.0\.2/);
        assert.equal(err.retryable, false);
        assert.equal(forbidden.connections, 0);
        assert.deepEqual(await readdir(dir.path), []);
      } finally {
        await dir.cleanup();
      }
    });
  }

  it('answers ytdlp_unsupported_url for a page without media', async () => {
    const dir = await makeTempDir('conveyor-ytdlp-dl-');
    try {
      await rejectsWith(
        new Ytdlp(options()).download(`${origin.url}/none.html`, { dir: dir.path }),
        'ytdlp_unsupported_url',
      );
      assert.deepEqual(await readdir(dir.path), []);
    } finally {
      await dir.cleanup();
    }
  });

  it('refuses a file over the size limit, announced or not', async () => {
    const dir = await makeTempDir('conveyor-ytdlp-dl-');
    try {
      const small = new Ytdlp(options({ maxBytes: 10_000, proxyExtraBytes: 4000 }));
      // Announced: yt-dlp's --max-filesize stops before the body.
      await rejectsWith(small.download(`${origin.url}/page.html`, { dir: dir.path }), 'ytdlp_too_large');
      // Not announced: the proxy's byte cap cuts the run.
      await rejectsWith(small.download(`${origin.url}/chunked.html`, { dir: dir.path }), 'ytdlp_too_large');
      assert.deepEqual(await readdir(dir.path), []);
    } finally {
      await dir.cleanup();
    }
  });

  it('stops yt-dlp on cancel and leaves no file', async () => {
    const dir = await makeTempDir('conveyor-ytdlp-dl-');
    try {
      const controller = new AbortController();
      let pid = 0;
      const download = new Ytdlp(options()).download(`${origin.url}/slow.html`, {
        dir: dir.path,
        signal: controller.signal,
        onSpawn: (p) => {
          pid = p;
        },
        // Bytes have arrived: yt-dlp is mid-download, with a .part file open.
        onProgress: (p) => {
          if (p.downloadedBytes > 0) controller.abort();
        },
      });
      await rejectsWith(download, 'download_aborted');
      assert.ok(pid > 0);
      assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
      assert.deepEqual(await readdir(dir.path), []);
    } finally {
      await dir.cleanup();
    }
  });

  it("probes a page's metadata with -J", async () => {
    const ytdlp = new Ytdlp(options());
    const info = await ytdlp.probeUrl(`${origin.url}/page.html`);
    assert.equal(info.playlist, false);
    assert.equal(info.isLive, false);
    assert.equal(info.formats, 1);
    assert.equal(info.extractor, 'HTML5MediaEmbed');
    assert.match(info.title ?? '', /^A test page/);
    assert.equal(info.webpageUrl, `${origin.url}/page.html`);
    const list = await ytdlp.probeUrl(`${origin.url}/list.html`);
    assert.equal(list.playlist, true);
    assert.equal(list.entries, 2);
  });

  it("lists a page's videos as a flat playlist, bounded by the setting", async () => {
    const list = await new Ytdlp(options()).listPlaylist(`${origin.url}/list.html`);
    assert.equal(list.playlist, true);
    assert.equal(list.title, 'Two clips');
    assert.deepEqual(
      list.entries.map((e) => e.url),
      [`${origin.url}/clip.mp4`, `${origin.url}/clip2.mp4`],
    );
    assert.equal(list.truncated, false);
    assert.equal(list.total, 2);

    const one = await new Ytdlp(options({ playlistMaxEntries: 1 })).listPlaylist(`${origin.url}/list.html`);
    assert.deepEqual(
      one.entries.map((e) => e.url),
      [`${origin.url}/clip.mp4`],
    );
    assert.equal(one.truncated, true);

    const single = await new Ytdlp(options()).listPlaylist(`${origin.url}/page.html`);
    assert.equal(single.playlist, false);
    assert.deepEqual(
      single.entries.map((e) => e.url),
      [`${origin.url}/page.html`],
    );
  });

  it('refuses a URL with a forbidden address before starting yt-dlp', async () => {
    await assert.rejects(new Ytdlp(options()).probeUrl(`http://127.0.0.2:${forbidden.port}/`), {
      code: 'ssrf_forbidden',
    });
    assert.equal(forbidden.connections, 0);
  });

  it('answers ytdlp_missing when the program is not there', async () => {
    const missing = new Ytdlp(options({ path: join(tmp.path, 'no-such-yt-dlp') }));
    const err = await rejectsWith(missing.probeUrl(`${origin.url}/page.html`), 'ytdlp_missing');
    assert.equal(err.retryable, false);
  });
});

describe('yt-dlp output and failures', () => {
  const outcome = (over: Partial<RunOutcome>): RunOutcome => ({
    exitCode: 1,
    signal: null,
    stopped: undefined,
    lines: [],
    stderr: '',
    proxy: { refused: 0, lastRefusal: undefined, bytes: 0, overLimit: false, connections: 1 },
    maxBytes: 1000,
    timeoutMs: 1000,
    maxJsonBytes: 1000,
    ...over,
  });

  it('classifies what a failed run printed', () => {
    const live = classify(
      outcome({ exitCode: 0, lines: ['[download] Live now does not pass filter (!is_live), skipping ..'] }),
    );
    assert.equal(live.code, 'ytdlp_live_not_supported');
    const gone = classify(
      outcome({ stderr: 'ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found' }),
    );
    assert.equal(gone.code, 'ytdlp_failed');
    assert.equal(gone.retryable, false);
    const busy = classify(
      outcome({ stderr: 'ERROR: unable to download video data: HTTP Error 503: Unavailable' }),
    );
    assert.equal(busy.retryable, true);
    assert.match(busy.message, /HTTP Error 503/);
    const noFile = classify(outcome({ exitCode: 0 }));
    assert.equal(noFile.message, 'yt-dlp finished without a file');
    assert.equal(classify(outcome({ stopped: 'timeout' })).code, 'download_timeout');
  });

  it("takes an unresolved flat entry's url, and a resolved entry's own page", () => {
    // The shapes of yt-dlp's flat playlists: entries an extractor left unresolved (_type url, as
    // YouTube's are) and resolved entries found on other pages.
    const listing = toPlaylist(
      {
        _type: 'playlist',
        id: 'PL1',
        title: 'A list',
        webpage_url: 'https://videos.example/list/PL1',
        playlist_count: 3,
        entries: [
          { _type: 'url', ie_key: 'Example', id: 'a', url: 'https://videos.example/watch?v=a', title: 'A' },
          { id: 'b', webpage_url: 'https://videos.example/watch?v=b', url: 'https://cdn.example/b.mp4' },
          { _type: 'url', id: 'c' },
        ],
      },
      'https://videos.example/list/PL1',
      10,
    );
    assert.deepEqual(
      listing.entries.map((e) => e.url),
      ['https://videos.example/watch?v=a', 'https://videos.example/watch?v=b'],
    );
    assert.equal(listing.skipped, 1);
    assert.equal(listing.truncated, false);
  });
});
