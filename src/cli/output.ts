/**
 * What the CLI prints. Results go to stdout: with `--json` one JSON document (an array for a list), else
 * text for people (a table for a list, `name  value` lines for one thing). Diagnostics and progress go
 * to stderr, so that stdout can be piped.
 */

/** A failure the CLI explains in one line: printed as `conveyor: <message>`, without a stack, exit 2. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/** Prints `value` as one JSON document with `json`, else what `human` makes of it (nothing if empty). */
export function emit<T>(json: boolean | undefined, value: T, human: (value: T) => string): void {
  const text = json ? JSON.stringify(value, null, 2) : human(value);
  if (text !== '') process.stdout.write(`${text}\n`);
}

/** A column of `table`: its heading and how a row shows in it. */
export type Column<T> = [heading: string, cell: (row: T) => unknown];

/** Rows as a table with a heading line, columns padded to their widest cell; `empty` when there are none. */
export function table<T>(rows: readonly T[], columns: Column<T>[], empty: string): string {
  if (rows.length === 0) return empty;
  const cells = [
    columns.map(([heading]) => heading),
    ...rows.map((row) => columns.map(([, c]) => text(c(row)))),
  ];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells
    .map((line) =>
      line
        .map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** One thing as `name  value` lines, names padded; entries whose value is undefined are left out. */
export function fields(entries: [name: string, value: unknown][]): string {
  const shown = entries.filter(([, value]) => value !== undefined);
  const width = Math.max(0, ...shown.map(([name]) => name.length));
  return shown.map(([name, value]) => `${name.padEnd(width)}  ${text(value)}`.trimEnd()).join('\n');
}

/** A cell: `-` for nothing, yes/no for booleans, JSON for structured values. */
function text(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}
