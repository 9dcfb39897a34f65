import type { Config } from '../../../config/config.ts';

/**
 * The master (multivariant) playlist, written by Conveyor rather than by ffmpeg's hls muxer, whose
 * master in 5.1 lacks AVERAGE-BANDWIDTH and FRAME-RATE and computes BANDWIDTH from the encoder's
 * nominal rates instead of the segments. Everything here is RFC 8216 (HTTP Live Streaming) unless it
 * says otherwise; the URIs come from the caller, so a private asset's can carry its signed query.
 */

/** One variant stream: one rendition's media playlist with what a player needs to choose it. */
export interface MasterVariant {
  /** Peak segment bit rate in bits/s, measured on the finished segments (media.ts `measureBandwidth`). */
  bandwidth: number;
  /** Average segment bit rate in bits/s, measured likewise. */
  averageBandwidth: number;
  /** RFC 6381 strings of every stream in the rendition (codecs.ts), video first. */
  codecs: readonly string[];
  width: number;
  height: number;
  /** Frames per second, e.g. 30000 / 1001. */
  frameRate: number;
  /** The media playlist's URI, as the caller wants it written (relative, absolute, signed). */
  uri: string;
}

export interface MasterOptions {
  /** The segments' container: fMP4 media playlists carry EXT-X-MAP, which needs a higher version. */
  segments: 'fmp4' | 'mpegts';
  /**
   * Bits/s: the variant listed first is the H.264 one (any codec when there is no H.264) with the
   * highest BANDWIDTH at most this, or the lowest when none is that small; 0 lists all by rising
   * BANDWIDTH (CONVEYOR_VIDEO_START_BITRATE).
   */
  startBandwidth: number;
}

/** The master options as the config holds them. */
export function masterOptions(
  config: Pick<Config, 'videoSegmentFormat' | 'videoStartBitrate'>,
): MasterOptions {
  return { segments: config.videoSegmentFormat, startBandwidth: config.videoStartBitrate };
}

/**
 * The master playlist's text.
 *
 * Order: variants by rising BANDWIDTH, with one start variant moved to the top. RFC 8216 leaves the order
 * to the author; players differ in what they make of it. hls.js starts on the first variant listed when
 * it has no bandwidth estimate yet, ExoPlayer loads the first variant's playlist before anything else,
 * and AVPlayer did so before iOS 13 and still does with `startsOnFirstEligibleVariant`. Apple's TN2224
 * (since superseded by the HLS Authoring Specification) said the first entry is the one played at the
 * start and should be chosen for that: one that most connections sustain, so the first segments arrive
 * fast; not the lowest (a blurry start on every good connection) nor the highest (a stall on every bad
 * one). It is chosen among H.264 variants
 * because a player that cannot decode the first variant's codecs skips to the next anyway, and H.264 is
 * the one every player decodes. The rest rise in BANDWIDTH, so people and tools reading the playlist see
 * the ladder in order.
 */
export function writeMaster(variants: readonly MasterVariant[], options: MasterOptions): string {
  if (variants.length === 0) throw new Error('a master playlist lists at least one variant');
  const sorted = [...variants].sort((a, b) => a.bandwidth - b.bandwidth);
  const start = startVariant(sorted, options.startBandwidth);
  const ordered = start === undefined ? sorted : [start, ...sorted.filter((v) => v !== start)];

  // §4.3.1.1: "The EXTM3U tag indicates that the file is an Extended M3U [M3U] Playlist file. It MUST be
  // the first line of every Media Playlist and every Master Playlist."
  const lines = ['#EXTM3U'];
  // §4.3.1.2: "The EXT-X-VERSION tag indicates the compatibility version of the Playlist file, its
  // associated media, and its server." The master's associated media are the media playlists, and
  // §7: "A Media Playlist MUST indicate an EXT-X-VERSION of 6 or higher if it contains: The EXT-X-MAP tag
  // in a Media Playlist that does not contain EXT-X-I-FRAMES-ONLY." ffmpeg's hls muxer writes 7 into
  // its fMP4 media playlists (3 into MPEG-TS ones), so the master says the same: a client that cannot
  // play version 7 then stops at the master instead of failing on the first media playlist.
  lines.push(`#EXT-X-VERSION:${options.segments === 'fmp4' ? 7 : 3}`);
  // §4.3.5.1: "The EXT-X-INDEPENDENT-SEGMENTS tag indicates that all media samples in a Media Segment can
  // be decoded without information from other segments. [...] If the EXT-X-INDEPENDENT-SEGMENTS tag
  // appears in a Master Playlist, it applies to every Media Segment in every Media Playlist in the Master
  // Playlist." True of the ladder: every segment starts with a forced IDR frame of a closed GOP.
  lines.push('#EXT-X-INDEPENDENT-SEGMENTS');
  for (const v of ordered) {
    // §4.3.4.2: "#EXT-X-STREAM-INF:<attribute-list>" followed by "<URI>": "The URI line that follows
    // the EXT-X-STREAM-INF tag specifies a Media Playlist that carries a Rendition of the Variant
    // Stream. The URI line is REQUIRED."
    lines.push(`#EXT-X-STREAM-INF:${streamInfAttributes(v)}`, uriLine(v.uri));
  }
  return `${lines.join('\n')}\n`;
}

function streamInfAttributes(v: MasterVariant): string {
  // BANDWIDTH: "the peak segment bit rate of the Variant Stream. If all the Media Segments in a Variant
  // Stream have already been created, the BANDWIDTH value MUST be the largest sum of peak segment bit
  // rates that is produced by any playable combination of Renditions. (For a Variant Stream with a single
  // Media Playlist, this is just the peak segment bit rate of that Media Playlist.)" Audio is muxed into
  // each rendition, so the measured peak of its one playlist is the value. "Every EXT-X-STREAM-INF tag
  // MUST include the BANDWIDTH attribute."
  const attributes = [`BANDWIDTH=${decimalInteger(v.bandwidth, 'BANDWIDTH')}`];
  // AVERAGE-BANDWIDTH: "the average segment bit rate of the Variant Stream", measured the same way.
  attributes.push(`AVERAGE-BANDWIDTH=${decimalInteger(v.averageBandwidth, 'AVERAGE-BANDWIDTH')}`);
  // CODECS: "a quoted-string containing a comma-separated list of formats [...] Every EXT-X-STREAM-INF
  // tag SHOULD include a CODECS attribute."
  if (v.codecs.length === 0) throw new Error('a variant names at least one codec');
  for (const codec of v.codecs) {
    if (!/^[A-Za-z0-9][A-Za-z0-9.+-]*$/.test(codec))
      throw new Error(`not a codec string: ${JSON.stringify(codec)}`);
  }
  attributes.push(`CODECS=${quotedString(v.codecs.join(','))}`);
  // RESOLUTION: "a decimal-resolution describing the optimal pixel resolution at which to display all the
  // video in the Variant Stream"; §4.2: "two decimal-integers separated by the "x" character. The first
  // integer is a horizontal pixel dimension (width); the second is a vertical pixel dimension (height)."
  attributes.push(`RESOLUTION=${decimalInteger(v.width, 'width')}x${decimalInteger(v.height, 'height')}`);
  // FRAME-RATE: "a decimal-floating-point describing the maximum frame rate for all the video in the
  // Variant Stream, rounded to three decimal places. [...] The FRAME-RATE attribute SHOULD be included if
  // any video in a Variant Stream exceeds 30 frames per second." Written on every variant: players use it
  // to prefer rates their display matches.
  if (!(v.frameRate > 0 && Number.isFinite(v.frameRate))) throw new Error(`not a frame rate: ${v.frameRate}`);
  attributes.push(`FRAME-RATE=${v.frameRate.toFixed(3)}`);
  return attributes.join(',');
}

/** The start variant of the order described on writeMaster, or undefined for a plain rising order. */
function startVariant(sorted: readonly MasterVariant[], startBandwidth: number): MasterVariant | undefined {
  if (startBandwidth <= 0) return undefined;
  const h264 = sorted.filter((v) => v.codecs.some((c) => c.startsWith('avc1.')));
  const pool = h264.length > 0 ? h264 : sorted;
  const fitting = pool.filter((v) => v.bandwidth <= startBandwidth);
  return fitting.at(-1) ?? pool[0];
}

/**
 * §4.2: "decimal-integer: an unquoted string of characters from the set [0..9] expressing an integer in
 * base-10 arithmetic in the range from 0 to 2^64-1". Bit rates and sizes are whole and far below 2^53.
 */
function decimalInteger(n: number, what: string): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} must be a whole number, got ${n}`);
  return String(n);
}

/**
 * §4.2: "quoted-string: a string of characters within a pair of double quotes (0x22). The following
 * characters MUST NOT appear in a quoted-string: line feed (0xA), carriage return (0xD), or double quote
 * (0x22)." There is no escape, so such a value is refused rather than written.
 */
export function quotedString(value: string): string {
  if (/["\r\n]/.test(value))
    throw new Error(`a quoted-string cannot hold ", CR or LF: ${JSON.stringify(value)}`);
  return `"${value}"`;
}

/**
 * A URI line. §4.1: "Each line is a URI, is blank, or starts with the character '#'. Blank lines are
 * ignored. Whitespace MUST NOT be present, except for elements in which it is explicitly specified."
 * So a URI is neither empty nor '#'-led (it would read as a tag or comment), holds no line break, and
 * has no whitespace at its ends.
 */
export function uriLine(uri: string): string {
  if (uri === '' || uri.startsWith('#') || /[\r\n]/.test(uri) || uri.trim() !== uri) {
    throw new Error(`not a playlist URI line: ${JSON.stringify(uri)}`);
  }
  return uri;
}
