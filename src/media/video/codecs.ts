/**
 * Codec strings for the master playlist's CODECS attribute, from what ffprobe reports about an encoded
 * rendition, and the H.264 and VP9 level tables the encoder arguments and the strings both need.
 *
 * RFC 8216 §4.3.4.2: CODECS is "a comma-separated list of formats, where each format specifies a media
 * sample type that is present in one or more Renditions specified by the Variant Stream. Valid format
 * identifiers are those in the ISO Base Media File Format Name Space defined by "The 'Codecs' and
 * 'Profiles' Parameters for "Bucket" Media Types" [RFC6381]." A player uses the strings to skip variants
 * it cannot decode before fetching them, so a wrong profile or level hides a playable rendition or offers
 * an unplayable one.
 */

/** The fields of one ffprobe `streams[]` entry that a codec string is made of. */
export interface ProbedStream {
  /** `codec_name`: h264, aac, av1, vp9. */
  codec: string;
  /** `profile`, as ffprobe names it: "High", "Main", "LC", "Profile 0"... */
  profile?: string;
  /** `level`: H.264 level_idc (31 for 3.1), AV1 seq_level_idx, VP9 level x 10; ffprobe says -99 when unknown. */
  level?: number;
  /** `pix_fmt`, for the bit depth: yuv420p is 8 bits, yuv420p10le 10. */
  pixFmt?: string;
  /** `width`, `height` and the frame rate, for a VP9 level ffprobe does not know (libvpx writes none). */
  width?: number;
  height?: number;
  frameRate?: number;
  /** `bit_rate` in bits/s, for the VP9 level's bit rate bound when known. */
  bitRate?: number;
  /**
   * H.264 only: the constraint-flags byte of the SPS (the avcC box's second byte) when the caller has it;
   * otherwise it follows from the profile name as x264 and ffmpeg's own encoders write it.
   */
  constraintFlags?: number;
  /** AV1 only: the first operating point's tier, which ffprobe does not show; Main unless told. */
  tier?: 'M' | 'H';
}

/** The RFC 6381 string of one stream, e.g. `avc1.64001f`, `mp4a.40.2`, `av01.0.08M.08`, `vp09.00.31.08`. */
export function codecString(stream: ProbedStream): string {
  switch (stream.codec) {
    case 'h264':
      return avcString(stream);
    case 'aac':
      return aacString(stream);
    case 'av1':
      return av1String(stream);
    case 'vp9':
      return vp9String(stream);
    default:
      throw new Error(
        `no codec string for ${JSON.stringify(stream.codec)}: the ladder writes h264, av1, vp9 and aac`,
      );
  }
}

/** The CODECS attribute's list for a rendition's streams (video first, then audio, as they are muxed). */
export function codecList(streams: readonly ProbedStream[]): string[] {
  return streams.map(codecString);
}

// profile_idc and the constraint_set flags of each profile name libavcodec reports (H.264 Annex A).
// Constrained Baseline is Baseline with constraint_set1_flag (A.2.1.1); x264 also sets constraint_set0,
// as the avcC of its output shows (42c0..), and the Intra profiles are their base profile with
// constraint_set3_flag (A.2.8-A.2.10). Main gets constraint_set1_flag ("the bitstream obeys all
// constraints specified in clause A.2.2", true of every Main stream), as x264 writes it.
const AVC_PROFILES: Readonly<Record<string, readonly [profileIdc: number, flags: number]>> = {
  'Constrained Baseline': [66, 0xc0],
  Baseline: [66, 0x00],
  Main: [77, 0x40],
  Extended: [88, 0x00],
  High: [100, 0x00],
  'High 10': [110, 0x00],
  'High 10 Intra': [110, 0x10],
  'High 4:2:2': [122, 0x00],
  'High 4:2:2 Intra': [122, 0x10],
  'High 4:4:4 Predictive': [244, 0x00],
  'High 4:4:4 Intra': [244, 0x10],
  'CAVLC 4:4:4 Intra': [44, 0x00],
};

/**
 * RFC 6381 §3.3: "When the first element of a value is 'avc1', [...] the second element is the
 * hexadecimal representation of the following three bytes in the (subset) sequence parameter set
 * Network Abstraction Layer (NAL) unit specified in [AVC]: (1) profile_idc, (2) the byte containing the
 * constraint_set flags (currently constraint_set0_flag through constraint_set5_flag, and the
 * reserved_zero_2bits), and (3) level_idc."
 */
function avcString(stream: ProbedStream): string {
  const profile = AVC_PROFILES[stream.profile ?? ''];
  if (profile === undefined) throw new Error(`unknown H.264 profile ${JSON.stringify(stream.profile)}`);
  const level = stream.level;
  if (level === undefined || !Number.isInteger(level) || level < 9 || level > 62) {
    throw new Error(`H.264 level_idc ${String(level)} is not one of Table A-1's`);
  }
  const flags = stream.constraintFlags ?? profile[1];
  return `avc1.${hex(profile[0])}${hex(flags)}${hex(level)}`;
}

// ISO/IEC 14496-3 audio object types of the profile names libavcodec reports.
const AAC_OBJECT_TYPES: Readonly<Record<string, number>> = {
  Main: 1,
  LC: 2,
  SSR: 3,
  LTP: 4,
  'HE-AAC': 5,
  'HE-AACv2': 29,
  LD: 23,
  ELD: 39,
};

/**
 * RFC 6381 §3.3: "When the first element of a value is 'mp4a' [...] the second element is the hexadecimal
 * representation of the MP4 Registration Authority ObjectTypeIndication (OTI). [...] If the OTI is 40
 * (MPEG-4 Audio), the third element is the decimal representation of the audio object type". HE-AAC is
 * signalled as its own object type (5, 29) rather than as LC, so that a player that cannot do SBR skips it.
 */
function aacString(stream: ProbedStream): string {
  const type = AAC_OBJECT_TYPES[stream.profile ?? ''];
  if (type === undefined) throw new Error(`unknown AAC profile ${JSON.stringify(stream.profile)}`);
  return `mp4a.40.${type}`;
}

const AV1_PROFILES: Readonly<Record<string, number>> = { Main: 0, High: 1, Professional: 2 };

/**
 * AV1 Codec ISO Media File Format Binding, "Codecs Parameter String":
 * `<sample entry 4CC>.<profile>.<level><tier>.<bitDepth>`, where "the profile parameter value,
 * represented by a single digit decimal, SHALL equal the value of seq_profile", "the level parameter
 * value SHALL equal the first level value indicated by seq_level_idx" (two digits), "the tier parameter
 * value SHALL be equal to M when the first seq_tier value in the Sequence Header OBU is equal to 0, and H
 * when it is equal to 1", and "the bitDepth parameter value SHALL equal the value of BitDepth variable"
 * (two digits). "The parameters monochrome, chromaSubsampling, colorPrimaries, transferCharacteristics,
 * matrixCoefficients, and videoFullRangeFlag are OPTIONAL, mutually inclusive (all or none) fields":
 * omitted, as they are 4:2:0 BT.709 limited range, the defaults, for every rendition.
 */
function av1String(stream: ProbedStream): string {
  const profile = AV1_PROFILES[stream.profile ?? ''];
  if (profile === undefined) throw new Error(`unknown AV1 profile ${JSON.stringify(stream.profile)}`);
  const level = stream.level;
  // seq_level_idx 0-23 are levels 2.0 to 7.3; 31 is "no level constraints" (Annex A.3).
  if (level === undefined || !Number.isInteger(level) || level < 0 || (level > 23 && level !== 31)) {
    throw new Error(`AV1 seq_level_idx ${String(level)} is not a level`);
  }
  return `av01.${profile}.${two(level)}${stream.tier ?? 'M'}.${two(bitDepth(stream.pixFmt))}`;
}

/**
 * VP Codec ISO Media File Format Binding, "Codecs Parameter String": `vp09.PP.LL.DD`, profile, level and
 * bit depth as two-digit decimals, all three mandatory; the optional fields are left out as for AV1.
 * libvpx writes no level into the stream, so ffprobe answers -99 and the level is derived from the
 * picture as the VP9 level table asks.
 */
function vp9String(stream: ProbedStream): string {
  const match = /^Profile ([0-3])$/.exec(stream.profile ?? '');
  if (match === null) throw new Error(`unknown VP9 profile ${JSON.stringify(stream.profile)}`);
  const known = stream.level !== undefined && VP9_LEVELS.some((l) => l.level === stream.level);
  let level = known ? stream.level! : undefined;
  if (level === undefined) {
    if (stream.width === undefined || stream.height === undefined || stream.frameRate === undefined) {
      throw new Error('a VP9 stream without a level needs its width, height and frame rate');
    }
    level = vp9Level({
      width: stream.width,
      height: stream.height,
      frameRate: stream.frameRate,
      bitrate: stream.bitRate,
    });
  }
  return `vp09.${two(Number(match[1]))}.${two(level)}.${two(bitDepth(stream.pixFmt))}`;
}

/**
 * The luma bit depth of a YUV pixel format as ffmpeg names it: the deeper ones end in their depth and
 * byte order (`yuv420p10le`, `p010le`, `gray12be`), the 8-bit ones have neither (`yuv420p`, `nv12`).
 */
export function bitDepth(pixFmt: string | undefined): number {
  const match = /(\d{2})(?:le|be)$/.exec(pixFmt ?? '');
  return match === null ? 8 : Number(match[1]);
}

/** What a level has to hold: the picture, its rate and the bit rate (and buffer) the encoder may use. */
export interface LevelNeeds {
  width: number;
  height: number;
  frameRate: number;
  /** The highest bit rate (the VBV max rate), bits/s; unknown bounds nothing. */
  bitrate?: number | undefined;
  /** The VBV buffer in bits. */
  buffer?: number | undefined;
}

interface AvcLevel {
  idc: number;
  maxMbps: number;
  maxFs: number;
  maxBr: number;
  maxCpb: number;
}

// H.264 Table A-1, "Level limits": MaxMBPS (MB/s), MaxFS (MBs), MaxBR and MaxCPB (in units of
// cpbBrVclFactor bits/s and bits). Level 1b is left out: the ladder never needs a level that small and
// its level_idc differs between profiles.
const AVC_LEVELS: readonly AvcLevel[] = [
  { idc: 10, maxMbps: 1485, maxFs: 99, maxBr: 64, maxCpb: 175 },
  { idc: 11, maxMbps: 3000, maxFs: 396, maxBr: 192, maxCpb: 500 },
  { idc: 12, maxMbps: 6000, maxFs: 396, maxBr: 384, maxCpb: 1000 },
  { idc: 13, maxMbps: 11880, maxFs: 396, maxBr: 768, maxCpb: 2000 },
  { idc: 20, maxMbps: 11880, maxFs: 396, maxBr: 2000, maxCpb: 2000 },
  { idc: 21, maxMbps: 19800, maxFs: 792, maxBr: 4000, maxCpb: 4000 },
  { idc: 22, maxMbps: 20250, maxFs: 1620, maxBr: 4000, maxCpb: 4000 },
  { idc: 30, maxMbps: 40500, maxFs: 1620, maxBr: 10000, maxCpb: 10000 },
  { idc: 31, maxMbps: 108000, maxFs: 3600, maxBr: 14000, maxCpb: 14000 },
  { idc: 32, maxMbps: 216000, maxFs: 5120, maxBr: 20000, maxCpb: 20000 },
  { idc: 40, maxMbps: 245760, maxFs: 8192, maxBr: 20000, maxCpb: 25000 },
  { idc: 41, maxMbps: 245760, maxFs: 8192, maxBr: 50000, maxCpb: 62500 },
  { idc: 42, maxMbps: 522240, maxFs: 8704, maxBr: 50000, maxCpb: 62500 },
  { idc: 50, maxMbps: 589824, maxFs: 22080, maxBr: 135000, maxCpb: 135000 },
  { idc: 51, maxMbps: 983040, maxFs: 36864, maxBr: 240000, maxCpb: 240000 },
  { idc: 52, maxMbps: 2073600, maxFs: 36864, maxBr: 240000, maxCpb: 240000 },
  { idc: 60, maxMbps: 4177920, maxFs: 139264, maxBr: 240000, maxCpb: 240000 },
  { idc: 61, maxMbps: 8355840, maxFs: 139264, maxBr: 480000, maxCpb: 480000 },
  { idc: 62, maxMbps: 16711680, maxFs: 139264, maxBr: 800000, maxCpb: 800000 },
];

/**
 * The lowest H.264 level (level_idc) of the High profile that holds the picture, its macroblock rate and
 * the VBV bounds. A.3.1: "PicWidthInMbs * FrameHeightInMbs <= MaxFS", "PicWidthInMbs <= Sqrt( MaxFS * 8 )",
 * "FrameHeightInMbs <= Sqrt( MaxFS * 8 )", and the macroblock processing rate bounded by MaxMBPS; A.3.3:
 * for the High profile "cpbBrVclFactor" is 1250, so MaxBR and MaxCPB count in units of 1250 bits.
 */
export function h264Level(needs: LevelNeeds): number {
  const widthMbs = Math.ceil(needs.width / 16);
  const heightMbs = Math.ceil(needs.height / 16);
  const frameMbs = widthMbs * heightMbs;
  for (const level of AVC_LEVELS) {
    const side = Math.sqrt(level.maxFs * 8);
    if (frameMbs > level.maxFs || widthMbs > side || heightMbs > side) continue;
    if (frameMbs * needs.frameRate > level.maxMbps) continue;
    if (needs.bitrate !== undefined && needs.bitrate > level.maxBr * 1250) continue;
    if (needs.buffer !== undefined && needs.buffer > level.maxCpb * 1250) continue;
    return level.idc;
  }
  throw new RangeError(`no H.264 level holds ${needs.width}x${needs.height} at ${needs.frameRate} fps`);
}

/** `31` -> `3.1`, as x264 and NVENC take it. */
export function h264LevelName(idc: number): string {
  return `${Math.floor(idc / 10)}.${idc % 10}`;
}

interface Vp9Level {
  level: number;
  sampleRate: number;
  pictureSize: number;
  breadth: number;
  /** Average bit rate, kbit/s. */
  bitrate: number;
}

// The VP9 level table (webmproject.org/vp9/levels): max luma sample rate, picture size, picture breadth
// (the longer side) and average bit rate. Levels are written times ten, as in the codec string.
const VP9_LEVELS: readonly Vp9Level[] = [
  { level: 10, sampleRate: 829440, pictureSize: 36864, breadth: 512, bitrate: 200 },
  { level: 11, sampleRate: 2764800, pictureSize: 73728, breadth: 768, bitrate: 800 },
  { level: 20, sampleRate: 4608000, pictureSize: 122880, breadth: 960, bitrate: 1800 },
  { level: 21, sampleRate: 9216000, pictureSize: 245760, breadth: 1344, bitrate: 3600 },
  { level: 30, sampleRate: 20736000, pictureSize: 552960, breadth: 2048, bitrate: 7200 },
  { level: 31, sampleRate: 36864000, pictureSize: 983040, breadth: 2752, bitrate: 12000 },
  { level: 40, sampleRate: 83558400, pictureSize: 2228224, breadth: 4160, bitrate: 18000 },
  { level: 41, sampleRate: 160432128, pictureSize: 2228224, breadth: 4160, bitrate: 30000 },
  { level: 50, sampleRate: 311951360, pictureSize: 8912896, breadth: 8384, bitrate: 60000 },
  { level: 51, sampleRate: 588251136, pictureSize: 8912896, breadth: 8384, bitrate: 120000 },
  { level: 52, sampleRate: 1176502272, pictureSize: 8912896, breadth: 8384, bitrate: 180000 },
  { level: 60, sampleRate: 1176502272, pictureSize: 35651584, breadth: 16832, bitrate: 180000 },
  { level: 61, sampleRate: 2353004544, pictureSize: 35651584, breadth: 16832, bitrate: 240000 },
  { level: 62, sampleRate: 4706009088, pictureSize: 35651584, breadth: 16832, bitrate: 480000 },
];

/**
 * The lowest VP9 level (times ten) whose picture size, breadth and luma sample rate hold the picture,
 * and whose average bit rate holds `bitrate` when given. ffmpeg 5.1's mp4 muxer writes the vpcC box's
 * level from the picture size alone (it passes no frame rate), so for a small picture at a high rate the
 * box says less (160x90 at 59.94 fps: 1.0 in the box, 1.1 by the table); the string follows the table.
 */
export function vp9Level(needs: LevelNeeds): number {
  const size = needs.width * needs.height;
  const breadth = Math.max(needs.width, needs.height);
  for (const level of VP9_LEVELS) {
    if (size > level.pictureSize || breadth > level.breadth) continue;
    if (size * needs.frameRate > level.sampleRate) continue;
    if (needs.bitrate !== undefined && needs.bitrate > level.bitrate * 1000) continue;
    return level.level;
  }
  throw new RangeError(`no VP9 level holds ${needs.width}x${needs.height} at ${needs.frameRate} fps`);
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

function two(n: number): string {
  return String(n).padStart(2, '0');
}
