/**
 * ffmpeg's command line as data: a command (inputs, a filter graph, outputs) turned into the argument
 * array handed to spawn. There is no shell anywhere, so nothing is quoted; the builder only puts each
 * piece where ffmpeg's grammar wants it and adds the flags every run here needs. It checks nothing it
 * cannot know (codec names, option values are ffmpeg's to refuse), with one exception: a file name must
 * never be read as something else.
 *
 * ffmpeg's grammar (ffmpeg(1), "Synopsis" and "Description"):
 *   "ffmpeg [global_options] {[input_file_options] -i input_url} ... {[output_file_options] output_url} ..."
 *   "As a general rule, options are applied to the next specified file. Therefore, order is important"
 */

export interface FfmpegInput {
  /** A file path; with `format: 'lavfi'`, a filter graph such as `testsrc2=size=320x180:duration=2`. */
  path: string;
  /** `-f`: force the demuxer (`lavfi`, `concat`, ...); normally probed from the data. */
  format?: string;
  /** `-ss` before `-i`: seek the input to this position, in seconds. */
  seekSeconds?: number;
  /** `-t` before `-i`: read this many seconds of the input. */
  durationSeconds?: number;
  /** Any other input options, as they are: `['-hwaccel', 'vaapi', '-hwaccel_output_format', 'vaapi']`. */
  options?: readonly string[];
}

export interface FfmpegOutput {
  /** A file path, or `-` for a muxer that writes no file (`format: 'null'`). */
  path: string;
  /** `-f`: the muxer (`hls`, `mp4`, `null`, ...). */
  format?: string;
  /** `-map`, in order: `0:v:0`, `[v720]`, `0:a:0?`. */
  maps?: readonly string[];
  /** `-vf`: this output's video filter chain. */
  videoFilter?: string;
  /** `-af`: this output's audio filter chain. */
  audioFilter?: string;
  /** Codec and muxer options, as they are: `['-c:v', 'libx264', '-crf', '23']`. */
  options?: readonly string[];
}

export interface FfmpegCommand {
  inputs: readonly FfmpegInput[];
  outputs: readonly FfmpegOutput[];
  /** `-filter_complex`: a graph over several inputs or with several outputs (labelled pads for `-map`). */
  filterComplex?: string;
  /** Global options placed before the first input, e.g. `['-init_hw_device', 'vaapi=va:/dev/dri/renderD128']`. */
  globalOptions?: readonly string[];
  /**
   * ffmpeg's log level; `error` keeps stderr to the messages that explain a failure. `info` is for
   * runs whose answer ffmpeg prints there (the ebur128 summary).
   */
  logLevel?: 'quiet' | 'panic' | 'fatal' | 'error' | 'warning' | 'info' | 'verbose';
}

/**
 * The argument array (without the binary) for `command`, starting with the flags every run has:
 *   -hide_banner -nostats   stderr holds only log messages, none of the build banner or the stats line
 *   -loglevel <level>       `error` unless the command asks for more
 *   -progress pipe:1        "Send program-friendly progress information to url" (ffmpeg(1)): key=value
 *                           lines on stdout, which run.ts parses; stdout is never an output here
 *   -y                      when a file is written: "Overwrite output files without asking", since
 *                           stdin is not a terminal to ask on (it carries the `q` that stops a run)
 */
export function ffmpegArgs(command: FfmpegCommand): string[] {
  const args = ['-hide_banner', '-nostats', '-loglevel', command.logLevel ?? 'error', '-progress', 'pipe:1'];
  if (command.outputs.some((o) => o.path !== '-')) args.push('-y');
  args.push(...(command.globalOptions ?? []));
  for (const input of command.inputs) {
    args.push(...(input.options ?? []));
    if (input.seekSeconds !== undefined) args.push('-ss', seconds(input.seekSeconds));
    if (input.durationSeconds !== undefined) args.push('-t', seconds(input.durationSeconds));
    if (input.format !== undefined) args.push('-f', input.format);
    args.push('-i', input.format === 'lavfi' ? input.path : safePath(input.path));
  }
  if (command.filterComplex !== undefined) args.push('-filter_complex', command.filterComplex);
  for (const output of command.outputs) {
    for (const map of output.maps ?? []) args.push('-map', map);
    if (output.videoFilter !== undefined) args.push('-vf', output.videoFilter);
    if (output.audioFilter !== undefined) args.push('-af', output.audioFilter);
    args.push(...(output.options ?? []));
    if (output.format !== undefined) args.push('-f', output.format);
    args.push(output.path === '-' ? '-' : safePath(output.path));
  }
  return args;
}

/**
 * A file path as ffmpeg must see it. ffmpeg reads an argument that starts with `-` as an option, and a
 * name with a scheme-like prefix as a protocol (ffmpeg-protocols(1): "a protocol is selected by the
 * url prefix"): `concat:a|b`, `subfile:`, `pipe:` would read something else than the named file. The
 * `file` protocol takes the rest verbatim, so such names get `file:` in front; other paths are left as
 * they are (an absolute path starts with `/`, which no scheme does).
 */
export function safePath(path: string): string {
  if (path.startsWith('file:')) return path;
  if (path.startsWith('-') || /^[A-Za-z][A-Za-z0-9+.-]*:/.test(path)) return `file:${path}`;
  return path;
}

/**
 * Seconds as ffmpeg's duration syntax accepts them (ffmpeg-utils(1), "Time duration": `[-]S+[.m...]`),
 * to the microsecond: never the exponent notation JavaScript prints for small or large numbers.
 */
export function seconds(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`not a duration: ${value}`);
  // toFixed always writes a point here; drop the zeros after it, then a bare point.
  const text = value.toFixed(6).replace(/0+$/, '').replace(/\.$/, '');
  return text === '-0' ? '0' : text;
}
