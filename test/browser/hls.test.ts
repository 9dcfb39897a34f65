import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext } from 'playwright-core';
import { launchChromium, skipWithoutChromium, startSite } from '../helpers/browser.ts';
import { startConveyor, type TestServer, upload } from '../helpers/conveyor.ts';
import { LADDER_SETTINGS, makeClip, videoJob } from '../helpers/hls.ts';
import { makeTempDir, type TempDir } from '../helpers/tmp.ts';
import { skipWithoutFfmpeg } from '../helpers/video-fixtures.ts';

/**
 * HLS playback as a real player does it: Debian's Chromium, driven by playwright-core exactly as in
 * cors.test.ts, opens a page on another loopback origin that loads hls.js and plays Conveyor's master
 * playlist of a 6 s, 426x240 clip (two rungs, 1 s segments), muted so that autoplay is allowed: for a
 * public asset, and for a private one through a token and through a prefix-signed URL, whose grant every
 * playlist URI carries. Playback passes 3 s with no hls.js ERROR event, and after switching to the other
 * rendition time still advances. Waits are for states (currentTime, the level switched), never times.
 *
 * In CI (CI=true) the browser and ffmpeg must be there; elsewhere the test is skipped when either is not.
 */

/** Headless Chromium plays muted media without a gesture anyway; this says so for every build. */
const AUTOPLAY = ['--autoplay-policy=no-user-gesture-required'];
const HLS_BUNDLE = new URL('../../node_modules/hls.js/dist/hls.min.js', import.meta.url);
const PAGE =
  '<!doctype html><meta charset="utf-8"><title>hls</title><script src="/hls.min.js"></script>' +
  '<video id="v" muted playsinline></video>';

type Site = Awaited<ReturnType<typeof startSite>>;

const skip = skipWithoutFfmpeg() || skipWithoutChromium('the browser HLS test');

/** What the page saw of one playback. */
interface Played {
  levels: string[];
  errors: string[];
  firstLevel: number;
  switchedTo: number;
  timeAfterSwitch: number;
  requested: string[];
}

describe('HLS playback in a real browser (hls.js)', { skip }, () => {
  let site: Site;
  let server: TestServer;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let clips: TempDir;
  let context: BrowserContext;
  let pub: any;
  let priv: any;

  before(async () => {
    site = await startSite(PAGE, { name: 'hls.min.js', file: HLS_BUNDLE });
    clips = await makeTempDir('conveyor-hls-browser-');
    const clip = await makeClip(clips.path, 6);
    server = await startConveyor(undefined, { ...LADDER_SETTINGS, corsDeliveryOrigins: site.origin });
    assert.notEqual(new URL(server.url).origin, site.origin);
    pub = await upload(server, clip, { filename: 'clip.mp4', contentType: 'video/mp4' });
    priv = await upload(server, clip, {
      filename: 'secret.mp4',
      contentType: 'video/mp4',
      visibility: 'private',
    });
    for (const asset of [pub, priv]) {
      const job = await videoJob(server, asset.id);
      assert.equal(job.state, 'succeeded', JSON.stringify(job.errors));
    }
    browser = await launchChromium(AUTOPLAY);
    context = browser.context;
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await clips?.cleanup();
    await site?.close();
  });

  /** Plays `src` in a page of the other origin: past 3 s, then on the other rendition. */
  async function play(src: string): Promise<Played> {
    const page = await context.newPage();
    try {
      await page.goto(`${site.origin}/`);
      await page.waitForFunction(() => (globalThis as any).Hls !== undefined);
      await page.evaluate((url: string) => {
        const g = globalThis as any;
        const video = g.document.getElementById('v');
        video.muted = true;
        g.errors = [];
        g.requested = [];
        // Every request hls.js makes, as it makes it: the URIs it followed from the playlists.
        const hls = new g.Hls({
          xhrSetup: (_xhr: unknown, requestUrl: string) => g.requested.push(requestUrl),
          // The whole clip is short; no bandwidth guess should hold the first level back.
          capLevelToPlayerSize: false,
        });
        g.hls = hls;
        hls.on(g.Hls.Events.ERROR, (_event: string, data: any) => {
          g.errors.push(`${data.type}/${data.details}${data.fatal ? ' (fatal)' : ''}`);
        });
        hls.on(g.Hls.Events.MANIFEST_PARSED, () => void video.play());
        hls.loadSource(url);
        hls.attachMedia(video);
      }, src);
      await page.waitForFunction(() => (globalThis as any).document.getElementById('v').currentTime > 3);
      const { firstLevel, levels } = await page.evaluate(() => {
        const { hls } = globalThis as any;
        return {
          firstLevel: hls.currentLevel as number,
          levels: hls.levels.map((l: any) => `${l.width}x${l.height}`) as string[],
        };
      });
      const switchedTo = firstLevel === 0 ? 1 : 0;
      // Switch rendition from the current point: the new level's segments must load and play on.
      const from = await page.evaluate((level: number) => {
        const g = globalThis as any;
        const video = g.document.getElementById('v');
        video.currentTime = 0.5;
        g.hls.currentLevel = level;
        return video.currentTime as number;
      }, switchedTo);
      await page.waitForFunction(
        ({ level, from }: { level: number; from: number }) => {
          const g = globalThis as any;
          const video = g.document.getElementById('v');
          return g.hls.currentLevel === level && video.currentTime > from + 1 && !video.paused;
        },
        { level: switchedTo, from },
      );
      return await page.evaluate(
        ({ firstLevel, levels, switchedTo }) => {
          const g = globalThis as any;
          return {
            firstLevel,
            levels,
            switchedTo,
            timeAfterSwitch: g.document.getElementById('v').currentTime as number,
            errors: g.errors as string[],
            requested: g.requested as string[],
          };
        },
        { firstLevel, levels, switchedTo },
      );
    } finally {
      await page.close();
    }
  }

  function check(played: Played, grant: string): void {
    assert.deepEqual(played.errors, []);
    assert.deepEqual(played.levels.map((l) => l.split('x')[1]).sort(), ['120', '240'], played.levels.join());
    assert.ok(played.timeAfterSwitch > 1.5, `played on after the switch: ${played.timeAfterSwitch}`);
    // Both renditions' playlists and segments were fetched, each with the grant.
    for (const rung of ['h264-120p', 'h264-240p']) {
      assert.ok(
        played.requested.some((url) => url.includes(`/hls/${rung}/seg_`)),
        `${rung} segments in ${played.requested.join(' ')}`,
      );
    }
    for (const url of played.requested) assert.ok(url.includes(grant), `${url} carries ${grant}`);
  }

  it('plays a public asset from another origin and switches rendition', async () => {
    check(await play(`${server.url}/a/${pub.id}/hls/master.m3u8`), '/hls/');
  });

  it('plays a private asset through a token', async () => {
    const res = await server.json('POST', `/api/v1/assets/${priv.id}/tokens`, { ttlSeconds: 600 });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const token = res.body.token as string;
    check(await play(`${server.url}/a/${priv.id}/hls/master.m3u8?token=${token}`), `token=${token}`);
  });

  it('plays a private asset through a prefix-signed URL', async () => {
    const res = await server.json('POST', `/api/v1/assets/${priv.id}/signed-url`, {
      ttlSeconds: 600,
      prefix: 'hls',
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const url = res.body.url as string;
    check(await play(url), new URL(url).search.slice(1));
  });
});
