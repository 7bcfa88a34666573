/**
 * What a difference between source and target consists of, counted the way a user asks about a
 * migration: rows lost (on the source, not on the target), rows doubled (on the target more often
 * than on the source: a duplicate, or a row the source no longer has), and rows changed (same key,
 * other content).
 *
 * compare.ts says quickly, in streaming fashion, whether two tables are equal; this module is for
 * the tables it found unequal. It reads (key, row hash) of every row of both sides into memory,
 * so it is meant for test-sized tables. The key is the primary key; without one, the whole row,
 * which turns duplicates into multiplicities.
 */
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { compareTables, PORTABLE_TEXT, type TableDiff } from './compare.js';

export interface RowCounts {
  table: string;
  sourceRows: number;
  targetRows: number;
  lost: number;
  doubled: number;
  changed: number;
  /** A few keys of each kind, for the failure message. */
  examples: string[];
}

function qualified(table: string): string {
  const dot = table.indexOf('.');
  const schema = dot < 0 ? 'public' : table.slice(0, dot);
  const name = dot < 0 ? table : table.slice(dot + 1);
  return `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`;
}

async function keyExpression(c: pg.Client, table: string): Promise<string | null> {
  const r = await c.query<{ attname: string }>(
    `SELECT a.attname
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY k.ord`,
    [table],
  );
  if (r.rows.length === 0) return null;
  return `ROW(${r.rows.map((x) => `t.${pg.escapeIdentifier(x.attname)}`).join(', ')})::text`;
}

/** key → hashes of the rows with that key (one per row; several only without a primary key). */
async function readRows(url: string, table: string, keyExpr: string | null): Promise<Map<string, string[]>> {
  const c = new pg.Client({ connectionString: url, application_name: 'walbridge-test-diff' });
  c.on('error', () => undefined);
  await c.connect();
  try {
    for (const s of PORTABLE_TEXT) await c.query(s);
    const key = keyExpr ?? 'md5(ROW(t.*)::text)';
    const stream = c.query(copyTo(`COPY (SELECT ${key}, md5(ROW(t.*)::text) FROM ${qualified(table)} t) TO STDOUT`));
    const out = new Map<string, string[]>();
    let rest = '';
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      rest += chunk.toString('utf8');
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        const tab = line.lastIndexOf('\t');
        const k = line.slice(0, tab);
        const h = line.slice(tab + 1);
        const list = out.get(k);
        if (list) list.push(h);
        else out.set(k, [h]);
      }
    }
    return out;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Count lost, doubled and changed rows of one table. */
export async function countDifferences(sourceUrl: string, targetUrl: string, table: string): Promise<RowCounts> {
  const probe = new pg.Client({ connectionString: sourceUrl });
  probe.on('error', () => undefined);
  await probe.connect();
  let keyExpr: string | null;
  try {
    keyExpr = await keyExpression(probe, qualified(table));
  } finally {
    await probe.end().catch(() => undefined);
  }
  const [src, tgt] = await Promise.all([readRows(sourceUrl, table, keyExpr), readRows(targetUrl, table, keyExpr)]);
  const counts: RowCounts = { table, sourceRows: 0, targetRows: 0, lost: 0, doubled: 0, changed: 0, examples: [] };
  const example = (what: string, key: string) => {
    if (counts.examples.length < 6) counts.examples.push(`${what} ${key.length > 120 ? `${key.slice(0, 120)}…` : key}`);
  };
  for (const list of src.values()) counts.sourceRows += list.length;
  for (const list of tgt.values()) counts.targetRows += list.length;
  for (const [key, s] of src) {
    const t = tgt.get(key) ?? [];
    if (keyExpr !== null) {
      // Primary key: at most one row per key on each side.
      if (t.length === 0) {
        counts.lost++;
        example('lost', key);
      } else if (t[0] !== s[0]) {
        counts.changed++;
        example('changed', key);
      }
      continue;
    }
    if (t.length < s.length) {
      counts.lost += s.length - t.length;
      example(`lost ×${s.length - t.length}`, key);
    } else if (t.length > s.length) {
      counts.doubled += t.length - s.length;
      example(`doubled ×${t.length - s.length}`, key);
    }
  }
  for (const [key, t] of tgt) {
    if (src.has(key)) continue;
    counts.doubled += t.length;
    example('extra', key);
  }
  return counts;
}

export interface ContentCheck {
  /** Rows compared: every row of every table on the source. */
  rowsCompared: number;
  lost: number;
  doubled: number;
  changed: number;
  diffs: TableDiff[];
  /** Only for the tables that differ. */
  details: RowCounts[];
}

/** Compare every table in full; for those that differ, count what differs. */
export async function checkContent(sourceUrl: string, targetUrl: string, tables: string[]): Promise<ContentCheck> {
  const diffs = await compareTables(sourceUrl, targetUrl, tables);
  const details: RowCounts[] = [];
  for (const d of diffs.filter((x) => !x.equal)) details.push(await countDifferences(sourceUrl, targetUrl, d.table));
  return {
    rowsCompared: diffs.reduce((a, d) => a + d.sourceRows, 0),
    lost: details.reduce((a, d) => a + d.lost, 0),
    doubled: details.reduce((a, d) => a + d.doubled, 0),
    changed: details.reduce((a, d) => a + d.changed, 0),
    diffs,
    details,
  };
}

/** One line per differing table, for an assertion message. */
export function describeContent(c: ContentCheck): string {
  const bad = c.diffs.filter((d) => !d.equal);
  return bad
    .map((d) => {
      const x = c.details.find((r) => r.table === d.table);
      const counts = x ? ` lost ${x.lost}, doubled ${x.doubled}, changed ${x.changed} (${x.examples.join('; ')})` : '';
      return `  ${d.table}: source ${d.sourceRows} rows, target ${d.targetRows} rows;${counts}\n    first difference: ${d.firstDifference ?? ''}`;
    })
    .join('\n');
}
