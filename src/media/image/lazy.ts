/**
 * The image library, loaded on first use. sharp brings libvips into the process (about 22 MB of RSS, and
 * the library's own modules more); a process that never touches an image (an API-only server, a worker
 * for other lanes, a CDN origin for video) should not carry it.
 */
import type { ImageRuntime } from './runtime.ts';

let loading: Promise<typeof import('./index.ts')> | undefined;

/** The library, with libvips' process-wide settings (threads, operation cache) applied when given. */
export async function imageLibrary(runtime?: ImageRuntime): Promise<typeof import('./index.ts')> {
  loading ??= import('./index.ts');
  const library = await loading;
  if (runtime) library.configureRuntime(runtime);
  return library;
}
