/**
 * The results table (plain text for the terminal, markdown for bench/results/latest.md).
 */

export type Cell = string;

export interface Row {
  scenario: string;
  walbridge: Cell;
  native?: Cell;
  pgdump?: Cell;
  pgcopydb?: Cell;
  /** How many times faster walbridge is than native logical replication (> 1: walbridge ahead). */
  ratio?: Cell;
}

export const HEADERS = ['scenario', 'walbridge', 'native', 'pg_dump|psql', 'pgcopydb', 'walbridge vs native'];

function cells(r: Row): string[] {
  return [r.scenario, r.walbridge, r.native ?? '', r.pgdump ?? '', r.pgcopydb ?? '', r.ratio ?? ''];
}

export function textTable(rows: Row[]): string {
  const all = [HEADERS, ...rows.map(cells)];
  const widths = HEADERS.map((_, i) => Math.max(...all.map((r) => [...(r[i] ?? '')].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c + ' '.repeat((widths[i] ?? 0) - [...c].length))
      .join('  ')
      .trimEnd();
  return [line(HEADERS), line(widths.map((w) => '-'.repeat(w))), ...all.slice(1).map(line)].join('\n');
}

export function markdownTable(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${HEADERS.map(esc).join(' | ')} |`,
    `|${HEADERS.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${cells(r).map(esc).join(' | ')} |`),
  ].join('\n');
}

export const fmt = {
  s: (x: number | undefined | null, digits = 1) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : `${x.toFixed(digits)} s`),
  n: (x: number | undefined | null) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en-US')),
  mb: (bytes: number | undefined | null) => (bytes === undefined || bytes === null || !Number.isFinite(bytes) ? '–' : `${(bytes / 1048576).toFixed(0)} MB`),
  x: (x: number | undefined | null) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}x`),
};
