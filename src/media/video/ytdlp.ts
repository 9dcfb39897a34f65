/**
 * yt-dlp driver
 * =============
 *
 *   const ytdlp = new Ytdlp(ytdlpOptions(config));
 *   const info = await ytdlp.probeUrl(url);                    // -J: id, title, duration, live, playlist
 *   const list = await ytdlp.listPlaylist(url);                // --flat-playlist -J: entries (url, title)
 *   const got = await ytdlp.download(url, { dir, signal, onProgress });   // got.path, inside got.dir
 *
 * The system's yt-dlp (CONVEYOR_YTDLP_PATH) runs with an argument array, never a shell, `--` before the
 * URL, `--ignore-config` and no cache, so nothing but these arguments steers it. Every run gets its own
 * guarded proxy (src/media/ingest/proxy.ts) and is given it as http_proxy, https_proxy, ftp_proxy and
 * all_proxy rather than `--proxy`: with `--proxy`, yt-dlp's urllib still opens ftp:// (a redirect target,
 * an HLS segment) directly, while the environment routes ftp through the proxy too, which refuses it. The
 * environment is otherwise minimal (PATH, a private HOME and TMPDIR, a UTF-8 locale): no NO_PROXY to
 * bypass the proxy, and none of Conveyor's own secrets reach a program that parses hostile pages.
 *
 * What yt-dlp may do beyond urllib is narrowed too: formats are chosen among http(s), HLS and DASH
 * (rtmp, rtsp, mms and websocket formats would be fetched by rtmpdump, mpv or a websocket client that
 * ignores the proxy); `--downloader native` keeps HLS and DASH in yt-dlp itself; and the ffmpeg that
 * yt-dlp falls back on for HLS it cannot handle gets `-protocol_whitelist` without `file`, so a playlist
 * cannot make it read local files (it inherits http_proxy, which it honours for http and https).
 *
 * `download` writes into a fresh directory inside `dir` and answers the file (the caller removes the
 * directory once it has stored the file); on any failure or cancel the directory is removed. `.part`
 * files are kept (no --no-part): a file has its final name only once it is complete, and yt-dlp can resume
 * a dropped connection into it. yt-dlp runs through runTool (tool.ts) like ffmpeg: cancel (the
 * AbortSignal) sends SIGTERM to its whole process group, which includes an ffmpeg it started, then
 * SIGKILL after CONVEYOR_YTDLP_KILL_GRACE_MS. A worker killed outright leaves yt-dlp behind, but its
 * proxy dies with the worker, so it can fetch nothing more.
 *
 * Failures reject with a YtdlpError (ytdlp-errors.ts); a URL that checkUrl refuses before anything runs
 * rejects with its BadUrlError or ForbiddenAddressError (bad_url, ssrf_forbidden). Both carry `code` and
 * `retryable`.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { Config } from '../../config/config.ts';
import { GuardedProxy, ingestPolicy } from '../ingest/proxy.ts';
import { checkUrl, type Resolver, type SsrfPolicy } from '../ingest/ssrf.ts';
import { runTool, type StopCause, type ToolEnd } from './tool.ts';
import { classify, missing, type RunOutcome, YtdlpError } from './ytdlp-errors.ts';
import {
  type DownloadedFile,
  type PlaylistListing,
  type Progress,
  parseProgress,
  toDownloaded,
  toPlaylist,
  toUrlInfo,
  type UrlInfo,
} from './ytdlp-output.ts';

export { YtdlpError } from './ytdlp-errors.ts';
export type { DownloadedFile, PlaylistEntry, PlaylistListing, Progress, UrlInfo } from './ytdlp-output.ts';

export interface YtdlpOptions {
  /** The program: a name looked up in PATH or a path. */
  path: string;
  policy: SsrfPolicy;
  /** Name resolution for the proxy; the system resolver by default. */
  resolver?: Resolver;
  /** The largest file (yt-dlp's --max-filesize); the proxy allows this plus proxyExtraBytes. */
  maxBytes: number;
  proxyExtraBytes: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  /** Bounds a -J run (probe, playlist). */
  probeTimeoutMs: number;
  maxJsonBytes: number;
  playlistMaxEntries: number;
  killGraceMs: number;
}

/** The driver's options from the settings; the SSRF policy is remote ingest's. */
export function ytdlpOptions(config: Config): YtdlpOptions {
  return {
    path: config.ytdlpPath,
    policy: ingestPolicy(config),
    maxBytes: config.ingestMaxBytes,
    proxyExtraBytes: config.ytdlpProxyExtraBytes,
    connectTimeoutMs: config.ingestConnectTimeoutMs,
    idleTimeoutMs: config.ytdlpProxyIdleTimeoutMs,
    maxConnections: config.ytdlpProxyMaxConnections,
    probeTimeoutMs: config.ytdlpProbeTimeoutMs,
    maxJsonBytes: config.ytdlpMaxJsonBytes,
    playlistMaxEntries: config.ytdlpPlaylistMaxEntries,
    killGraceMs: config.ytdlpKillGraceMs,
  };
}

export interface DownloadRequest {
  /** A directory of the caller's; the run works in a fresh directory inside it. */
  dir: string;
  signal?: AbortSignal;
  /** Called for every progress line yt-dlp prints; throttle on your side. */
  onProgress?: (progress: Progress) => void;
  /** Called with yt-dlp's pid once it runs. */
  onSpawn?: (pid: number) => void;
}

// Formats Conveyor lets yt-dlp fetch: those its own HTTP code fetches, which goes through the proxy.
// yt-dlp --help, "Format Selection": "~=" matches a regex on a string field such as `protocol`.
const FETCHABLE = "[protocol~='^(https?|m3u8(_native)?|http_dash_segments)$']";
const FORMAT = `bv*${FETCHABLE}+ba${FETCHABLE}/b${FETCHABLE}`;
// ffmpeg's protocols documentation: "protocol_whitelist list (input) Set a ","-separated list of allowed
// protocols." http(s), and what they are built on, but not file.
const FFMPEG_INPUT = 'ffmpeg_i:-protocol_whitelist http,https,tls,tcp,crypto,httpproxy';
const PROGRESS = `download:conveyor-progress %(progress.{status,downloaded_bytes,total_bytes,total_bytes_estimate,speed,eta,fragment_index,fragment_count})j`;
const RESULT = 'after_move:%(.{filepath,id,title,extractor_key,duration,webpage_url,ext})j';
const RESULT_FILE = '.conveyor-result';

export class Ytdlp {
  readonly #o: YtdlpOptions;

  constructor(options: YtdlpOptions) {
    this.#o = options;
  }

  /** Metadata of the URL without downloading: a video's, or a playlist's (entries not resolved). */
  async probeUrl(url: string, options: { signal?: AbortSignal } = {}): Promise<UrlInfo> {
    const info = await this.#json(url, ['--no-playlist'], options.signal);
    return toUrlInfo(info);
  }

  /**
   * A playlist's entries without resolving them, at most CONVEYOR_YTDLP_PLAYLIST_MAX_ENTRIES
   * (`truncated` says there were more). A URL that is not a playlist answers itself as the one entry.
   */
  async listPlaylist(url: string, options: { signal?: AbortSignal } = {}): Promise<PlaylistListing> {
    const info = await this.#json(url, ['--yes-playlist'], options.signal);
    return toPlaylist(info, url, this.#o.playlistMaxEntries);
  }

  /** Downloads the video (the first entry, should the URL be a playlist) into a directory of its own. */
  async download(url: string, request: DownloadRequest): Promise<DownloadedFile> {
    checkUrl(url, this.#o.policy); // a URL refused outright fails before anything starts
    if (request.signal?.aborted) throw classifyAborted();
    const work = await mkdtemp(join(request.dir, 'ytdlp-'));
    try {
      let part = 0;
      const outcome = await this.#run(downloadArgs(work, this.#o.maxBytes), url, {
        home: work,
        ...(request.signal ? { signal: request.signal } : {}),
        ...(request.onSpawn ? { onSpawn: request.onSpawn } : {}),
        onLine: (line) => {
          const progress = parseProgress(line);
          if (progress === undefined) return false;
          // yt-dlp fetches video and audio one after the other: each file restarts the count.
          const { status, ...counts } = progress;
          if (status === 'finished') part++;
          else request.onProgress?.({ ...counts, part });
          return true;
        },
      });
      const written = await readFile(join(work, RESULT_FILE), 'utf8').catch(() => '');
      const file =
        outcome.exitCode === 0 && outcome.stopped === undefined ? toDownloaded(written) : undefined;
      if (file === undefined || !inside(work, file.path)) throw classify(outcome);
      const { size } = await stat(file.path);
      // Video and audio are each held to --max-filesize; what they merge into is held here.
      if (size > this.#o.maxBytes) {
        throw new YtdlpError('ytdlp_too_large', `the video is ${size} bytes, more than ${this.#o.maxBytes}`);
      }
      return { ...file, path: resolve(file.path), dir: work, bytes: size };
    } catch (err) {
      await rm(work, { recursive: true, force: true, maxRetries: 3 });
      throw err;
    }
  }

  async #json(url: string, extra: string[], signal: AbortSignal | undefined): Promise<unknown> {
    checkUrl(url, this.#o.policy);
    if (signal?.aborted) throw classifyAborted();
    const home = await mkdtemp(join(tmpdir(), 'conveyor-ytdlp-'));
    try {
      const max = this.#o.playlistMaxEntries;
      const outcome = await this.#run(
        [...extra, '--flat-playlist', '--playlist-items', `1:${max + 1}`, '--dump-single-json'],
        url,
        { home, collect: true, timeoutMs: this.#o.probeTimeoutMs, ...(signal ? { signal } : {}) },
      );
      if (outcome.exitCode !== 0 || outcome.stopped !== undefined) throw classify(outcome);
      try {
        return JSON.parse(outcome.stdout);
      } catch {
        throw new YtdlpError('ytdlp_failed', 'yt-dlp printed metadata that is not JSON', false);
      }
    } finally {
      await rm(home, { recursive: true, force: true, maxRetries: 3 });
    }
  }

  /** Runs yt-dlp behind a fresh guarded proxy; resolves once it has exited and the proxy is closed. */
  async #run(args: string[], url: string, spec: RunSpec): Promise<RunOutcome & { stdout: string }> {
    const o = this.#o;
    const proxy = await GuardedProxy.start({
      policy: o.policy,
      ...(o.resolver ? { resolver: o.resolver } : {}),
      connectTimeoutMs: o.connectTimeoutMs,
      idleTimeoutMs: o.idleTimeoutMs,
      maxConnections: o.maxConnections,
      maxBytes: o.maxBytes + o.proxyExtraBytes,
    });
    const lines: string[] = [];
    let end: ToolEnd;
    try {
      const socketTimeout = String(Math.max(1, Math.ceil(o.idleTimeoutMs / 1000)));
      const common = ['--ignore-config', '--no-cache-dir', '--no-colors', '--newline'];
      end = await runTool(o.path, [...common, '--socket-timeout', socketTimeout, ...args, '--', url], {
        cwd: spec.home,
        env: childEnv(proxy.url, spec.home),
        stopping: { how: 'group', graceMs: o.killGraceMs },
        ...(spec.signal ? { signal: spec.signal } : {}),
        ...(spec.timeoutMs !== undefined ? { timeLimitMs: spec.timeoutMs } : {}),
        ...(spec.onSpawn ? { onSpawn: spec.onSpawn } : {}),
        ...(spec.collect
          ? { collectStdout: o.maxJsonBytes }
          : {
              onLine: (line: string) => {
                if (spec.onLine?.(line)) return;
                lines.push(line.slice(0, LINE_KEPT_CHARS));
                if (lines.length > LINES_KEPT) lines.shift();
              },
            }),
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES') throw missing(o.path, err as NodeJS.ErrnoException);
      throw err;
    } finally {
      await proxy.close();
    }
    // A progress handler that threw: the caller's own error, not yt-dlp's failure.
    if (end.stopped?.by === 'handler') throw end.stopped.error;
    return {
      exitCode: end.exitCode,
      signal: end.signal,
      stopped: stopReason(end.stopped),
      lines,
      stderr: end.stderrTail,
      stdout: end.stdout,
      proxy: proxy.stats,
      maxBytes: o.maxBytes,
      timeoutMs: o.probeTimeoutMs,
      maxJsonBytes: o.maxJsonBytes,
    };
  }
}

interface RunSpec {
  home: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Keep stdout (JSON), up to maxJsonBytes; otherwise it is read line by line. */
  collect?: boolean;
  /** Gets each stdout line; answers true for a line it consumed (kept out of the outcome's lines). */
  onLine?: (line: string) => boolean;
  onSpawn?: (pid: number) => void;
}

/** The last stdout lines that were not progress, each cut to LINE_KEPT_CHARS, for classify(). */
const LINES_KEPT = 40;
const LINE_KEPT_CHARS = 1000;

function stopReason(cause: Exclude<StopCause, { by: 'handler' }> | undefined): RunOutcome['stopped'] {
  switch (cause?.by) {
    case undefined:
      return undefined;
    case 'signal':
      return 'aborted';
    case 'time-limit':
      return 'timeout';
    case 'output':
      return 'output';
  }
}

/** A download's arguments: what is fetched and how, where it goes, and how it reports. */
// Quotes are yt-dlp 2023.03.04's --help.
function downloadArgs(work: string, maxBytes: number): string[] {
  return [
    // The generic extractor lists every <video> of a page as a playlist despite --no-playlist.
    ['--no-playlist', '--playlist-items', '1'],
    // --downloader: "Name or path of the external downloader to use ... Currently supports native, ..."
    ['--downloader', 'native', '--downloader-args', FFMPEG_INPUT],
    // --match-filter skips what fails it (exit 0, "does not pass filter"), which classify() reads;
    // --max-filesize: "Abort download if filesize is larger than SIZE" (only a size the site announces).
    ['--format', FORMAT, '--match-filter', '!is_live', '--max-filesize', String(maxBytes)],
    ['--restrict-filenames', '--trim-filenames', '100', '--no-mtime'],
    ['--output', join(work, '%(id)s.%(ext)s')],
    ['--progress', '--progress-template', PROGRESS],
    ['--print-to-file', RESULT, join(work, RESULT_FILE)],
  ].flat();
}

/** The child's whole environment: nothing of Conveyor's, and every proxy variable pointing at ours. */
function childEnv(proxyUrl: string, home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    TMPDIR: home,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    PYTHONUTF8: '1',
    // Lower case: Python's urllib prefers it and ffmpeg reads only http_proxy.
    http_proxy: proxyUrl,
    https_proxy: proxyUrl,
    ftp_proxy: proxyUrl,
    all_proxy: proxyUrl,
  };
}

function classifyAborted(): YtdlpError {
  return new YtdlpError('download_aborted', 'the yt-dlp run was aborted');
}

/** Whether `path` lies inside `dir` (yt-dlp reports the file; it is only trusted inside the run's directory). */
function inside(dir: string, path: string): boolean {
  const rel = relative(dir, resolve(dir, path));
  return rel !== '' && !rel.startsWith('..') && !rel.startsWith('/');
}
