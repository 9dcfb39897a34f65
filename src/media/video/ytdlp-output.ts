/**
 * What yt-dlp prints, read into typed values: progress lines, `-J` metadata, flat playlists, and the
 * record of the file it wrote. yt-dlp's JSON is the info dict documented in its README ("OUTPUT
 * TEMPLATE"); every field is optional there and is treated so here: a missing or mistyped field is
 * undefined, never a crash.
 */

/** One progress report of the file being downloaded. */
export interface Progress {
  downloadedBytes: number;
  /** The exact size when the server announced it, else yt-dlp's estimate (fragments), else undefined. */
  totalBytes: number | undefined;
  /** Bytes per second, as yt-dlp measures it. */
  speed: number | undefined;
  /** Seconds left, as yt-dlp estimates it. */
  eta: number | undefined;
  /** 0 for the first file, 1 for the next: yt-dlp fetches video and audio one after the other. */
  part: number;
}

/** What probeUrl answers. */
export interface UrlInfo {
  id: string;
  title: string | undefined;
  /** Seconds. */
  duration: number | undefined;
  /** yt-dlp's extractor, e.g. `Youtube`, `Generic`, `HTML5MediaEmbed`. */
  extractor: string;
  /** Formats offered (0 for a playlist). */
  formats: number;
  /** Live now or not started yet: nothing Conveyor can download to an end. */
  isLive: boolean;
  playlist: boolean;
  /** A playlist's size when yt-dlp knows it. */
  entries: number | undefined;
  webpageUrl: string | undefined;
}

export interface PlaylistEntry {
  /** What a child job fetches: the entry's page, or the media URL the extractor resolved. */
  url: string;
  title: string | undefined;
  id: string | undefined;
}

export interface PlaylistListing {
  /** False when the URL is a single video, which is then the one entry. */
  playlist: boolean;
  id: string | undefined;
  title: string | undefined;
  entries: PlaylistEntry[];
  /** The playlist has more entries than were taken (CONVEYOR_YTDLP_PLAYLIST_MAX_ENTRIES). */
  truncated: boolean;
  /** Its size, when yt-dlp knows it. */
  total: number | undefined;
  /** Entries yt-dlp listed without any URL, left out. */
  skipped: number;
}

export interface DownloadedFile {
  /** The file, inside `dir`. */
  path: string;
  /** The run's own directory inside the caller's: remove it once the file is stored. */
  dir: string;
  bytes: number;
  id: string | undefined;
  title: string | undefined;
  extractor: string | undefined;
  duration: number | undefined;
  webpageUrl: string | undefined;
  ext: string | undefined;
}

const PROGRESS_MARK = 'conveyor-progress ';

/** A progress line (the driver's --progress-template), or undefined for any other line. */
export function parseProgress(
  line: string,
): (Omit<Progress, 'part'> & { status: string | undefined }) | undefined {
  if (!line.startsWith(PROGRESS_MARK)) return undefined;
  const p = parseObject(line.slice(PROGRESS_MARK.length));
  if (p === undefined) return undefined;
  return {
    status: str(p.status),
    downloadedBytes: num(p.downloaded_bytes) ?? 0,
    totalBytes: num(p.total_bytes) ?? num(p.total_bytes_estimate),
    speed: num(p.speed),
    eta: num(p.eta),
  };
}

/** `-J` output as UrlInfo. */
export function toUrlInfo(json: unknown): UrlInfo {
  const info = asObject(json);
  const playlist = isPlaylist(info);
  const entries = Array.isArray(info.entries) ? info.entries.length : undefined;
  return {
    id: str(info.id) ?? '',
    title: str(info.title),
    duration: num(info.duration),
    extractor: str(info.extractor_key) ?? str(info.extractor) ?? 'unknown',
    formats: Array.isArray(info.formats) ? info.formats.length : 0,
    // live_status (is_live, is_upcoming, was_live, not_live, post_live) is the newer field; is_live the
    // older one, kept by every extractor.
    isLive: info.is_live === true || info.live_status === 'is_live' || info.live_status === 'is_upcoming',
    playlist,
    entries: playlist ? (num(info.playlist_count) ?? entries) : undefined,
    webpageUrl: str(info.webpage_url),
  };
}

/** `--flat-playlist -J` output as at most `max` entries. */
export function toPlaylist(json: unknown, url: string, max: number): PlaylistListing {
  const info = asObject(json);
  if (!isPlaylist(info)) {
    return {
      playlist: false,
      id: str(info.id),
      title: str(info.title),
      entries: [
        {
          url: str(info.webpage_url) ?? str(info.original_url) ?? url,
          title: str(info.title),
          id: str(info.id),
        },
      ],
      truncated: false,
      total: 1,
      skipped: 0,
    };
  }
  const page = str(info.webpage_url);
  const raw = Array.isArray(info.entries) ? info.entries : [];
  const entries: PlaylistEntry[] = [];
  let skipped = 0;
  for (const item of raw.slice(0, max)) {
    const entry = asObject(item);
    const target = entryUrl(entry, page);
    if (target === undefined) skipped++;
    else entries.push({ url: target, title: str(entry.title), id: str(entry.id) });
  }
  const total = num(info.playlist_count);
  return {
    playlist: true,
    id: str(info.id),
    title: str(info.title),
    entries,
    truncated: raw.length > max || (total !== undefined && total > max),
    total,
    skipped,
  };
}

/**
 * The URL a child job should fetch for one entry. A flat entry yt-dlp has not resolved (`_type` url or
 * url_transparent) names its page in `url`. A resolved entry has its own `webpage_url`, unless it was
 * found on the playlist's page itself (the generic extractor's `<video>` elements), where that would name
 * the whole playlist again: then its `url`, the media URL yt-dlp chose, is the entry.
 */
function entryUrl(entry: Record<string, unknown>, page: string | undefined): string | undefined {
  const type = str(entry._type);
  if (type === 'url' || type === 'url_transparent') return str(entry.url);
  const own = str(entry.webpage_url);
  if (own !== undefined && own !== page) return own;
  return str(entry.url);
}

/** The record --print-to-file wrote after moving the file (the last line, should there be several). */
export function toDownloaded(written: string): Omit<DownloadedFile, 'dir' | 'bytes'> | undefined {
  const last = written
    .split('\n')
    .filter((l) => l.trim() !== '')
    .at(-1);
  const r = last === undefined ? undefined : parseObject(last);
  const path = r === undefined ? undefined : str(r.filepath);
  if (r === undefined || path === undefined) return undefined;
  return {
    path,
    id: str(r.id),
    title: str(r.title),
    extractor: str(r.extractor_key),
    duration: num(r.duration),
    webpageUrl: str(r.webpage_url),
    ext: str(r.ext),
  };
}

function isPlaylist(info: Record<string, unknown>): boolean {
  return info._type === 'playlist' || info._type === 'multi_video';
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function asObject(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
