/**
 * Content comparison the way a user would check a migration: every row, every column, in
 * primary-key order, as Postgres itself prints it.
 *
 * Each side is read with `COPY (SELECT ROW(t.*)::text FROM tbl t ORDER BY pk) TO STDOUT` in a session
 * whose output settings are pinned (ISO dates in UTC, exact floats, hex bytea, postgres
 * intervals), so two servers of different major versions print identical data identically and
 * anything that differs is a real difference. Both streams are consumed in lockstep, so a large
 * table never sits in memory. Both sessions are REPEATABLE READ READ ONLY transactions: every
 * table of one side is read from one snapshot.
 */
import { to as copyTo } from 'pg-copy-streams';
import pg from 'pg';
import type { Readable } from 'node:stream';

export interface TableDiff {
  table: string;
  sourceRows: number;
  targetRows: number;
  equal: boolean;
  firstDifference?: string;
}

/** Settings that make Postgres print every value the same way on both sides. */
export const PORTABLE_TEXT = [
  "SET datestyle = 'ISO, YMD'",
  "SET timezone = 'UTC'",
  'SET extra_float_digits = 3',
  "SET bytea_output = 'hex'",
  "SET intervalstyle = 'postgres'",
  "SET client_encoding = 'UTF8'",
];
const SESSION_SETUP = [...PORTABLE_TEXT, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'];

/** 'schema.table' (unquoted; the table part may contain anything but the first dot) → quoted. */
function splitName(table: string): { schema: string; name: string; qualified: string } {
  const dot = table.indexOf('.');
  const schema = dot < 0 ? 'public' : table.slice(0, dot);
  const name = dot < 0 ? table : table.slice(dot + 1);
  return { schema, name, qualified: `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}` };
}

async function openSession(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'walbridge-test-compare' });
  client.on('error', () => undefined);
  await client.connect();
  try {
    for (const sql of SESSION_SETUP) await client.query(sql);
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

async function tableExists(c: pg.Client, qualified: string): Promise<boolean> {
  const r = await c.query<{ oid: string | null }>('SELECT to_regclass($1)::oid AS oid', [qualified]);
  return r.rows[0]?.oid != null;
}

/**
 * ORDER BY clause: the primary key columns in key order; text-like key columns compared with
 * COLLATE "C" so both sides sort identically whatever their database collation. Without a primary
 * key, the whole row text (duplicates then sit next to each other on both sides).
 */
async function orderByClause(c: pg.Client, qualified: string): Promise<string> {
  const r = await c.query<{ attname: string; collatable: boolean }>(
    `SELECT a.attname, a.attcollation <> 0 AS collatable
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY k.ord`,
    [qualified],
  );
  if (r.rows.length === 0) return '(ROW(t.*)::text) COLLATE "C"';
  return r.rows.map((row) => `t.${pg.escapeIdentifier(row.attname)}${row.collatable ? ' COLLATE "C"' : ''}`).join(', ');
}

/** Lines (without the newline) of a COPY text stream, as raw bytes, with backpressure. */
class LineReader {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(stream: Readable) {
    this.it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  async next(): Promise<Buffer | null> {
    for (;;) {
      const nl = this.buf.indexOf(0x0a);
      if (nl >= 0) {
        const line = this.buf.subarray(0, nl);
        this.buf = this.buf.subarray(nl + 1);
        return line;
      }
      if (this.ended) {
        if (this.buf.length === 0) return null;
        const rest = this.buf;
        this.buf = Buffer.alloc(0);
        return rest;
      }
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
    }
  }

  /** Count the remaining lines without keeping them. */
  async countRest(): Promise<number> {
    let n = 0;
    while ((await this.next()) !== null) n++;
    return n;
  }
}

const EMPTY_READER = { next: async (): Promise<Buffer | null> => null, countRest: async (): Promise<number> => 0 };
type Reader = Pick<LineReader, 'next' | 'countRest'>;

function show(line: Buffer): string {
  const s = line.toString('utf8');
  return s.length > 400 ? `${s.slice(0, 400)}… (${s.length} chars)` : s;
}

async function compareOne(src: pg.Client, tgt: pg.Client, table: string): Promise<TableDiff> {
  const { qualified } = splitName(table);
  const [srcHas, tgtHas] = await Promise.all([tableExists(src, qualified), tableExists(tgt, qualified)]);
  if (!srcHas && !tgtHas) {
    return { table, sourceRows: 0, targetRows: 0, equal: false, firstDifference: `table ${qualified} exists on neither side` };
  }
  // The key is taken from the source (or the target if only it has the table) and used on both
  // sides, so both streams come out in the same order.
  const orderBy = await orderByClause(srcHas ? src : tgt, qualified);
  // ROW(t.*), not t::text: in a table with a column named "t", t::text is that column.
  const sql = `COPY (SELECT ROW(t.*)::text FROM ${qualified} t ORDER BY ${orderBy}) TO STDOUT`;
  const srcStream = srcHas ? src.query(copyTo(sql)) : undefined;
  const tgtStream = tgtHas ? tgt.query(copyTo(sql)) : undefined;
  const a: Reader = srcStream ? new LineReader(srcStream) : EMPTY_READER;
  const b: Reader = tgtStream ? new LineReader(tgtStream) : EMPTY_READER;

  let row = 0;
  let firstDifference: string | undefined = !srcHas
    ? `table ${qualified} missing on source`
    : !tgtHas
      ? `table ${qualified} missing on target`
      : undefined;
  let sourceRows = 0;
  let targetRows = 0;
  for (;;) {
    const [x, y] = await Promise.all([a.next(), b.next()]);
    if (x === null && y === null) break;
    row++;
    if (x !== null) sourceRows++;
    if (y !== null) targetRows++;
    if (x !== null && y !== null && x.equals(y)) continue;
    if (firstDifference === undefined) {
      if (y === null) firstDifference = `target has fewer rows; first source row without a counterpart (#${row}): ${show(x as Buffer)}`;
      else if (x === null) firstDifference = `target has more rows; first extra target row (#${row}): ${show(y)}`;
      else firstDifference = `row #${row} in order (${orderBy}) differs:\n    source: ${show(x)}\n    target: ${show(y)}`;
    }
    // Past the first difference only the counts matter: drain both sides.
    const [ra, rb] = await Promise.all([a.countRest(), b.countRest()]);
    sourceRows += ra;
    targetRows += rb;
    break;
  }
  const equal = firstDifference === undefined;
  return { table, sourceRows, targetRows, equal, ...(equal ? {} : { firstDifference }) };
}

/** Compare every listed table ('schema.table', unquoted) between two databases, row by row. */
export async function compareTables(sourceUrl: string, targetUrl: string, tables: string[]): Promise<TableDiff[]> {
  const [src, tgt] = await Promise.all([openSession(sourceUrl), openSession(targetUrl)]);
  try {
    const out: TableDiff[] = [];
    for (const table of tables) out.push(await compareOne(src, tgt, table));
    return out;
  } finally {
    await Promise.all([src.end().catch(() => undefined), tgt.end().catch(() => undefined)]);
  }
}

/** Like compareTables, but throw one Error describing every table that differs. */
export async function assertSameContent(sourceUrl: string, targetUrl: string, tables: string[]): Promise<void> {
  const diffs = await compareTables(sourceUrl, targetUrl, tables);
  const bad = diffs.filter((d) => !d.equal);
  if (bad.length === 0) return;
  const lines = bad.map((d) => `  ${d.table}: source ${d.sourceRows} rows, target ${d.targetRows} rows; ${d.firstDifference ?? ''}`);
  throw new Error(`${bad.length} of ${diffs.length} tables differ between source and target:\n${lines.join('\n')}`);
}
