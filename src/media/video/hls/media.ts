import { quotedString, uriLine } from './master.ts';

/**
 * Reading and rewriting the media playlists ffmpeg's hls muxer writes (fMP4: `#EXT-X-MAP:URI="..."`, then
 * `#EXTINF:<duration>,` and a segment URI per segment, `#EXT-X-ENDLIST` at the end; MPEG-TS the same
 * without the map). Conveyor stores them as ffmpeg wrote them, with relative URIs, and rewrites the URIs
 * when it serves them: a private asset's every segment and init segment URI carries the same grant as
 * the playlist (a signed query or a token), so one grant plays the whole rendition and a CDN can cache
 * each URL. Everything else is kept byte for byte. RFC 8216 throughout.
 */

/** Where a URI stands: a segment's URI line, or the URI attribute of a tag such as EXT-X-MAP. */
export type UriSite = { kind: 'segment' } | { kind: 'attribute'; tag: string };

// Tags whose value is an attribute-list with a URI attribute (§4.3.2.5 EXT-X-MAP, §4.3.2.4 EXT-X-KEY,
// §4.3.4.1 EXT-X-MEDIA, §4.3.4.3 EXT-X-I-FRAME-STREAM-INF, §4.3.4.4 EXT-X-SESSION-DATA, §4.3.4.5
// EXT-X-SESSION-KEY, and the low-latency tags of rfc8216bis). Only these are rewritten: another tag's
// value, such as EXTINF's title, may contain `URI="` as plain text.
const URI_TAGS = new Set([
  'EXT-X-MAP',
  'EXT-X-KEY',
  'EXT-X-MEDIA',
  'EXT-X-I-FRAME-STREAM-INF',
  'EXT-X-SESSION-DATA',
  'EXT-X-SESSION-KEY',
  'EXT-X-PART',
  'EXT-X-PRELOAD-HINT',
  'EXT-X-RENDITION-REPORT',
]);

/**
 * The playlist with every URI passed through `map`: segment URI lines and the URI attribute of the tags
 * above. Line terminators, tags, attribute order and every other byte stay as they were. A mapped URI
 * that cannot be written (a quote or line break in an attribute, a line break or leading '#' in a URI
 * line) is refused: there is no escape for either.
 */
export function rewriteMediaPlaylist(text: string, map: (uri: string, site: UriSite) => string): string {
  const parts = text.split(/(\r\n|\n|\r)/);
  // §4.1: "Each line is a URI, is blank, or starts with the character '#'. Blank lines are ignored."
  // "Lines that start with the character '#' are either comments or tags. Tags begin with #EXT."
  for (let i = 0; i < parts.length; i += 2) {
    const line = parts[i]!;
    if (line === '') continue;
    if (!line.startsWith('#')) {
      parts[i] = uriLine(map(line, { kind: 'segment' }));
      continue;
    }
    const colon = line.indexOf(':');
    const tag = colon < 0 ? '' : line.slice(1, colon);
    if (URI_TAGS.has(tag)) parts[i] = rewriteUriAttribute(line, colon + 1, tag, map);
  }
  return parts.join('');
}

/** Rewrites the URI attribute of one attribute-list (§4.2), leaving the other attributes as they are. */
function rewriteUriAttribute(
  line: string,
  start: number,
  tag: string,
  map: (uri: string, site: UriSite) => string,
): string {
  for (const attribute of attributeList(line, start)) {
    if (attribute.name !== 'URI') continue;
    // §4.3.2.5 (EXT-X-MAP): "URI: The value is a quoted-string containing a URI that identifies a
    // resource that contains the Media Initialization Section."
    if (!attribute.quoted) throw new Error(`${tag}'s URI is not a quoted-string: ${JSON.stringify(line)}`);
    const uri = line.slice(attribute.valueStart + 1, attribute.valueEnd - 1);
    const mapped = quotedString(map(uri, { kind: 'attribute', tag }));
    return line.slice(0, attribute.valueStart) + mapped + line.slice(attribute.valueEnd);
  }
  return line;
}

interface AttributeSpan {
  name: string;
  valueStart: number;
  valueEnd: number;
  quoted: boolean;
}

/**
 * §4.2: "An attribute-list is a comma-separated list of attribute/value pairs with no whitespace. An
 * attribute/value pair has the following syntax: AttributeName=AttributeValue. An AttributeName is an
 * unquoted string containing characters from the set [A..Z], [0..9], and '-'." A quoted-string value may
 * contain commas, so the list is scanned, not split.
 */
function attributeList(line: string, start: number): AttributeSpan[] {
  const spans: AttributeSpan[] = [];
  let i = start;
  while (i < line.length) {
    const name = /^[A-Z0-9-]+=/.exec(line.slice(i));
    if (name === null) throw new Error(`malformed attribute-list: ${JSON.stringify(line)}`);
    const valueStart = i + name[0].length;
    let valueEnd: number;
    if (line[valueStart] === '"') {
      const close = line.indexOf('"', valueStart + 1);
      if (close < 0) throw new Error(`unterminated quoted-string: ${JSON.stringify(line)}`);
      valueEnd = close + 1;
    } else {
      const comma = line.indexOf(',', valueStart);
      valueEnd = comma < 0 ? line.length : comma;
    }
    spans.push({ name: name[0].slice(0, -1), valueStart, valueEnd, quoted: line[valueStart] === '"' });
    if (valueEnd < line.length && line[valueEnd] !== ',') {
      throw new Error(`malformed attribute-list: ${JSON.stringify(line)}`);
    }
    i = valueEnd + 1;
  }
  return spans;
}

/**
 * §4.3.3.4: "The EXT-X-ENDLIST tag indicates that no more Media Segments will be added to the Media
 * Playlist file." §4.1: tags "are case sensitive". Not proof of success: ffmpeg stopped by a signal
 * still finishes the playlist with it, so only its exit status says an encode is whole.
 */
export function isComplete(text: string): boolean {
  return lines(text).some((line) => line === '#EXT-X-ENDLIST');
}

/** A segment of a media playlist: its URI as written and its EXTINF duration in seconds. */
export interface MediaSegment {
  uri: string;
  duration: number;
}

/**
 * The segments in order. §4.3.2.1: "#EXTINF:<duration>,[<title>]" where "duration is a decimal-floating-
 * point or decimal-integer number [...] that specifies the duration of the Media Segment in seconds";
 * "This tag is REQUIRED for each Media Segment", and it applies to the next URI line.
 */
export function mediaSegments(text: string): MediaSegment[] {
  const segments: MediaSegment[] = [];
  let duration: number | null = null;
  for (const line of lines(text)) {
    if (line.startsWith('#EXTINF:')) {
      const match = /^#EXTINF:(\d+(?:\.\d*)?)(?:,|$)/.exec(line);
      if (match === null) throw new Error(`malformed EXTINF: ${JSON.stringify(line)}`);
      duration = Number(match[1]);
    } else if (line !== '' && !line.startsWith('#')) {
      if (duration === null) throw new Error(`segment ${JSON.stringify(line)} has no EXTINF`);
      segments.push({ uri: line, duration });
      duration = null;
    }
  }
  return segments;
}

/** The EXTINF durations, in order. */
export function segmentDurations(text: string): number[] {
  return mediaSegments(text).map((s) => s.duration);
}

/** §4.3.3.1: "#EXT-X-TARGETDURATION:<s> where s is a decimal-integer indicating the target duration in seconds." */
export function targetDuration(text: string): number | null {
  for (const line of lines(text)) {
    const match = /^#EXT-X-TARGETDURATION:(\d+)$/.exec(line);
    if (match !== null) return Number(match[1]);
  }
  return null;
}

/**
 * §4.3.3.1: "The EXTINF duration of each Media Segment in the Playlist file, when rounded to the nearest
 * integer, MUST be less than or equal to the target duration; longer segments can trigger playback
 * stalls or other errors." The segments that break it (none in a good playlist), or all of them when
 * the tag is missing, since "This tag is REQUIRED".
 */
export function overlongSegments(text: string): MediaSegment[] {
  const target = targetDuration(text);
  const segments = mediaSegments(text);
  if (target === null) return segments;
  return segments.filter((s) => Math.round(s.duration) > target);
}

/** A finished segment's duration (its EXTINF) and size. */
export interface SegmentSize {
  duration: number;
  bytes: number;
}

/**
 * The BANDWIDTH and AVERAGE-BANDWIDTH of a media playlist, in bits/s, rounded up so that neither
 * understates. §4.1: "The peak segment bit rate of a Media Playlist is the largest bit rate of any
 * contiguous set of segments whose total duration is between 0.5 and 1.5 times the target duration. The
 * bit rate of a set is calculated by dividing the sum of the segment sizes by the sum of the segment
 * durations. The average segment bit rate of a Media Playlist is the sum of the sizes (in bits) of every
 * Media Segment in the Media Playlist, divided by the Media Playlist duration." Segment sizes include
 * the container (moof/mdat) but not the init segment, which is not a Media Segment. When no set fits
 * the window (a video shorter than half a target duration, or segments far longer than it), the peak is
 * the largest single segment's rate.
 */
export function measureBandwidth(
  segments: readonly SegmentSize[],
  target: number,
): { peak: number; average: number } {
  if (segments.length === 0) throw new Error('no segments to measure');
  for (const s of segments) {
    if (!(s.duration > 0) || !(s.bytes >= 0)) throw new Error(`not a segment: ${JSON.stringify(s)}`);
  }
  let peak = 0;
  for (let i = 0; i < segments.length; i++) {
    let bytes = 0;
    let duration = 0;
    for (let j = i; j < segments.length; j++) {
      bytes += segments[j]!.bytes;
      duration += segments[j]!.duration;
      if (duration > 1.5 * target) break;
      if (duration >= 0.5 * target) peak = Math.max(peak, (bytes * 8) / duration);
    }
  }
  if (peak === 0) peak = Math.max(...segments.map((s) => (s.bytes * 8) / s.duration));
  const totalBytes = segments.reduce((sum, s) => sum + s.bytes, 0);
  const totalDuration = segments.reduce((sum, s) => sum + s.duration, 0);
  return { peak: Math.ceil(peak), average: Math.ceil((totalBytes * 8) / totalDuration) };
}

function lines(text: string): string[] {
  return text.split(/\r\n|\n|\r/);
}
