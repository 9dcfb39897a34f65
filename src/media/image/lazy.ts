/**
 * The image library, loaded on first use. sharp brings libvips into the process (about 22 MB of RSS, and
 * the library's own modules more); a process that never touches an image (an API-only server, a worker
 * for other lanes, a CDN origin for video) should not carry it.
 */
let loading: Promise<typeof import('./index.ts')> | undefined;

export function imageLibrary(): Promise<typeof import('./index.ts')> {
  loading ??= import('./index.ts');
  return loading;
}
