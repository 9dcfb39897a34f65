import type { Config } from '../../../config/config.ts';

/**
 * The thumbnail sprite sheet for scrubbing previews and its WebVTT index: one JPEG of tiles in a grid, one
 * tile every `intervalSeconds`, and a metadata track whose cues say which tile belongs to which stretch of
 * time (the layout players such as Video.js, Plyr, Vidstack and JW Player read for thumbnails).
 */

export interface SpriteSettings {
  maxTiles: number;
  minIntervalSeconds: number;
  /** Longer side of a tile in pixels. */
  tileSize: number;
  columns: number;
}

export function spriteSettings(
  config: Pick<
    Config,
    'videoSpriteMaxTiles' | 'videoSpriteMinIntervalSeconds' | 'videoSpriteTileSize' | 'videoSpriteColumns'
  >,
): SpriteSettings {
  return {
    maxTiles: config.videoSpriteMaxTiles,
    minIntervalSeconds: config.videoSpriteMinIntervalSeconds,
    tileSize: config.videoSpriteTileSize,
    columns: config.videoSpriteColumns,
  };
}

export interface SpriteLayout {
  /** One tile per this many seconds, the first at 0. */
  intervalSeconds: number;
  /** Tiles that carry a picture. */
  count: number;
  columns: number;
  rows: number;
  tileWidth: number;
  tileHeight: number;
  /** The sheet's size: columns x tileWidth by rows x tileHeight. */
  width: number;
  height: number;
}

/**
 * The grid for a video of `durationMs` shown at `display` (its size after rotation). The interval is the
 * shortest whole number of seconds, at least the minimum, that keeps the tiles within `maxTiles`: a short
 * video gets a tile every few seconds, a long one stays one sheet of bounded size. Tiles keep the video's
 * aspect ratio with their longer side at `tileSize`, both sides even (JPEG's 4:2:0 chroma).
 */
export function spriteLayout(
  durationMs: number,
  display: { width: number; height: number },
  settings: SpriteSettings,
): SpriteLayout {
  if (!(durationMs > 0 && Number.isFinite(durationMs)))
    throw new RangeError(`no sprite for ${durationMs} ms`);
  if (!(display.width > 0 && display.height > 0)) throw new RangeError('no sprite for an empty picture');
  const intervalSeconds = Math.max(
    settings.minIntervalSeconds,
    Math.ceil(durationMs / 1000 / settings.maxTiles),
  );
  const count = Math.max(1, Math.ceil(durationMs / (intervalSeconds * 1000)));
  const columns = Math.min(settings.columns, count);
  const rows = Math.ceil(count / columns);
  const long = Math.max(2, 2 * Math.floor(settings.tileSize / 2));
  const landscape = display.width >= display.height;
  const other = Math.max(
    2,
    2 *
      Math.round(
        (long * Math.min(display.width, display.height)) / Math.max(display.width, display.height) / 2,
      ),
  );
  const tileWidth = landscape ? long : other;
  const tileHeight = landscape ? other : long;
  return {
    intervalSeconds,
    count,
    columns,
    rows,
    tileWidth,
    tileHeight,
    width: columns * tileWidth,
    height: rows * tileHeight,
  };
}

/**
 * The ffmpeg filter that draws the sheet from the video (with `-frames:v 1`): a frame every interval,
 * scaled to the tile, laid out by the `tile` filter, which pads an unfilled last row with black.
 */
export function spriteFilter(layout: SpriteLayout): string {
  return [
    `fps=1/${layout.intervalSeconds}`,
    `scale=${layout.tileWidth}:${layout.tileHeight}`,
    'setsar=1',
    `tile=${layout.columns}x${layout.rows}`,
  ].join(',');
}

/**
 * The WebVTT index: cue i runs from i x interval to the next tile's time (the last to the video's end)
 * and its text is the sheet's URI with a Media Fragments spatial selector, `sprite.jpg#xywh=x,y,w,h`.
 * `spriteUri` is written as given (a private asset's carries its grant in the query, before the fragment).
 */
export function spriteVtt(layout: SpriteLayout, durationMs: number, spriteUri: string): string {
  // The cue text is WebVTT metadata text, taken raw by players: it must hold no line break, and
  // WebVTT says "The cue payload [...] must not contain the substring "-->"". A URI with a fragment
  // of its own would make the xywh selector part of that fragment.
  if (/[\r\n]/.test(spriteUri) || spriteUri.includes('-->') || spriteUri.includes('#') || spriteUri === '') {
    throw new Error(`not a sprite URI for a WebVTT cue: ${JSON.stringify(spriteUri)}`);
  }
  // WebVTT: a file starts with "The string "WEBVTT"" and a line terminator; "a WebVTT line terminator"
  // then blank lines separate it from the cues and the cues from each other.
  const out = ['WEBVTT', ''];
  const step = layout.intervalSeconds * 1000;
  for (let i = 0; i < layout.count; i++) {
    const start = i * step;
    const end = Math.min((i + 1) * step, durationMs);
    const x = (i % layout.columns) * layout.tileWidth;
    const y = Math.floor(i / layout.columns) * layout.tileHeight;
    // Media Fragments URI 1.0 §4.2.2, spatial dimension `xywh`, pixels by default: "The integers denote
    // x, y, width and height, respectively, with x=0, y=0 being the top left corner of the image."
    out.push(`${timestamp(start)} --> ${timestamp(end)}`);
    out.push(`${spriteUri}#xywh=${x},${y},${layout.tileWidth},${layout.tileHeight}`, '');
  }
  return out.join('\n');
}

/**
 * WebVTT timestamp: hours ("Two or more ASCII digits"), ":", minutes, ":", seconds ("Two ASCII digits"
 * each, 0 to 59), ".", and "Three ASCII digits, representing the thousandths of a second". Hours are
 * optional unless non-zero; always written, so every cue line has the same shape.
 */
export function timestamp(ms: number): string {
  const whole = Math.round(ms);
  const hours = Math.floor(whole / 3_600_000);
  const minutes = Math.floor(whole / 60_000) % 60;
  const seconds = Math.floor(whole / 1000) % 60;
  const millis = whole % 1000;
  return `${pad(hours, 2)}:${pad(minutes, 2)}:${pad(seconds, 2)}.${pad(millis, 3)}`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
