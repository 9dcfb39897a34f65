import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type BrowserContext, chromium } from 'playwright-core';
import { CHILD_GUARD_MS } from './child.ts';
import { makeTempDir } from './tmp.ts';

/**
 * Debian's Chromium, driven by playwright-core (which never downloads a browser of its own here), with the
 * flags this machine needs: no sandbox as root, no GPU, and none of the background connections its closed
 * network refuses. In CI (CI=true) it must be there (.ci/run installs the chromium package).
 */
export const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** The `skip` of a browser test: a reason outside CI when Chromium is missing; CI must have it. */
export function skipWithoutChromium(what: string): string | false {
  return existsSync(CHROMIUM) || process.env['CI'] === 'true'
    ? false
    : `${CHROMIUM} is not installed (apt-get install chromium); ${what} needs it`;
}

/** A browser on a fresh profile folder, with `extraArgs` after ours; `close` ends it and removes the folder. */
export async function launchChromium(
  extraArgs: readonly string[] = [],
): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is required in CI: .ci/run installs the chromium package`);
  }
  const profile = await makeTempDir('conveyor-chromium-');
  // launch() refuses --user-data-dir in its args; a persistent context is a browser on the profile
  // folder we give it, fresh from mkdtemp.
  const context = await chromium.launchPersistentContext(profile.path, {
    executablePath: CHROMIUM,
    args: [...ARGS, ...extraArgs],
    headless: true,
    timeout: CHILD_GUARD_MS,
  });
  context.setDefaultTimeout(CHILD_GUARD_MS);
  return {
    context,
    close: async () => {
      await context.close();
      await profile.cleanup();
    },
  };
}

/** A tiny site on its own loopback origin: `page` at `/`, and one script bundle at `/<name>`. */
export async function startSite(
  page: string,
  script: { name: string; file: URL },
): Promise<{ origin: string; close(): Promise<void> }> {
  const bundle = await readFile(script.file);
  const server = http.createServer((req, res) => {
    if (req.url === `/${script.name}`) {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    } else if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
    else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
