/**
 * Content verification between a live source and its replica.
 *
 * Each table is split into key ranges (computed on the source) and each range is compared
 * as an ordered hash of its rows, several ranges at once. The source keeps changing, so a
 * comparison is a sandwich: read the source (S1, at LSN L1), wait until the target has applied
 * everything up to L1, read the target (T), and only if they differ read the source again
 * (S2). A row that changed between S1 and S2 "moved" and is compared again, a few times; one
 * that never holds still is reported as such. A row that reads the same in S1 and S2 did not
 * change meanwhile, or changed and changed back (inserted then deleted, or truncated; a value
 * and back) while T showed the state in between: so where T differs from it, the row is compared
 * again too, and reported different only when the next comparison finds the same.
 */
import PQueue from 'p-queue';
import pg from 'pg';
import { listColumns, type SourceTable } from '../catalog/tables.js';
import { WalbridgeError } from '../errors.js';
import { formatLsn, parseLsn, type Lsn } from '../lsn.js';
import { clientConfig } from '../pg/connect.js';
import { displayTable } from '../pg/ident.js';
import type { StateSql } from '../sql/state.js';
import type { ColumnConversion } from '../convert/conversions.js';
import { valueOf } from '../convert/value.js';
import { rangeBoundaries, rangeHash, rangeRows, rowsByKeys, type KeyRange, type VerifyShape, type VerifySide } from '../sql/verify.js';

export type DifferenceKind = 'missing on target' | 'extra on target' | 'changed';

export interface Difference {
  /** Key values as text (for a table without a key: the row's md5). */
  key: string[];
  kind: DifferenceKind;
}

export interface TableVerdict {
  table: string;
  status: 'equal' | 'different' | 'unstable' | 'error';
  ranges: number;
  rowsSource: number;
  rowsTarget: number;
  differences: Difference[];
  /** Differences beyond the ones listed. */
  moreDifferences: number;
  /** Rows that kept changing while compared (neither proven equal nor different). */
  unstableRows: number;
  message?: string;
}

export interface VerifyReport {
  equal: boolean;
  /** Something could not be compared (exit status 2 when nothing differs). */
  incomplete: boolean;
  tables: TableVerdict[];
  startedAt: string;
  seconds: number;
}

/** What one verification compares, and how. */
export interface VerifyScope {
  tables: SourceTable[];
  /** Rows per range. */
  rangeRows?: number;
  /** Differences listed per table. */
  maxDifferences?: number;
  /** How often a moving row is compared again. */
  retries?: number;
  /** Longest wait for the target to apply up to a source position. */
  catchUpTimeoutMs?: number;
  /**
   * Compare only these rows of a table (its keys' values as text, as verify reads them), not the
   * whole table: cutover's check of the rows that changed since the last one. A table of
   * `tables` missing here is compared whole.
   */
  rows?: Map<string, string[][]>;
  /**
   * The source cannot change these tables (fenced), and the target has applied everything the
   * source committed: one read each side proves it, no sandwich, no wait for the target.
   */
  still?: boolean;
  onProgress?: (table: string, rangesDone: number, ranges: number) => void;
}

export interface VerifyOptions extends VerifyScope {
  sourceUrl: string;
  targetUrl: string;
  /** walbridge's state on the target, read for its applied position (config.stateSchema). */
  stateSql: StateSql;
  /** Ranges compared at once. */
  jobs?: number;
  /** Declared conversions (WALBRIDGE_CONVERT), by `schema.table.column`: the source is read through them. */
  conversions?: Map<string, ColumnConversion>;
}

type RowMap = Map<string, string>; // key text (JSON of the key tuple) -> row md5 (or count)

class Sides {
  readonly source: pg.Pool;
  readonly target: pg.Pool;
  hasState = true;
  constructor(
    sourceUrl: string,
    targetUrl: string,
    size: number,
    private readonly state: StateSql,
  ) {
    const pool = (url: string, side: 'source' | 'target') => {
      // Idle sessions stay open (the pools end with the verifier): cutover's check inside its
      // pause finds them connected, however long the checks before it took.
      const p = new pg.Pool({ ...clientConfig(url, { side, applicationName: 'walbridge verify' }), max: size, idleTimeoutMillis: 0 });
      p.on('error', () => {});
      return p;
    };
    this.source = pool(sourceUrl, 'source');
    this.target = pool(targetUrl, 'target');
  }

  /** Read on the source in one snapshot, with the WAL position that snapshot is complete at. */
  async sourceRead<T extends pg.QueryResultRow>(sql: string): Promise<{ lsn: Lsn; rows: T[] }> {
    const c = await this.source.connect();
    try {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const { rows: l } = await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      const { rows } = await c.query<T>(sql);
      await c.query('COMMIT');
      return { lsn: parseLsn(l[0]?.lsn ?? '0/0'), rows };
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      c.release();
    }
  }

  /** Read on the source that cannot change meanwhile (fenced): one statement, one round trip. */
  async stillRead<T extends pg.QueryResultRow>(sql: string): Promise<{ lsn: null; rows: T[] }> {
    return { lsn: null, rows: (await this.source.query<T>(sql)).rows };
  }

  /** Wait until the target has applied everything the source had written at `lsn`. */
  async targetAt(lsn: Lsn, timeoutMs: number): Promise<void> {
    if (!this.hasState) return;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await this.target.query<{ exists: boolean }>(this.state.STATE_EXISTS);
      if (!rows[0]?.exists) {
        // No walbridge state (for example after teardown): the target is taken as it is.
        this.hasState = false;
        return;
      }
      const { rows: p } = await this.target.query<{ done: boolean }>(this.state.APPLIED_AT_LEAST, [formatLsn(lsn)]);
      if (p[0]?.done !== false) return;
      if (Date.now() > deadline) {
        throw new WalbridgeError('apply', `the target did not apply up to the source's position ${formatLsn(lsn)} within ${Math.round(timeoutMs / 1000)} s`, {
          hint: 'Is walbridge running and streaming? Check its status page or "walbridge status".',
          transient: true,
        });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async end(): Promise<void> {
    await Promise.all([this.source.end(), this.target.end()]);
  }
}

function toMap(rows: Record<string, string>[], keyWidth: number): RowMap {
  const m: RowMap = new Map();
  for (const r of rows) {
    const key = JSON.stringify(Array.from({ length: keyWidth }, (_, i) => r[`k${i}`] ?? null));
    m.set(key, r.h as string);
  }
  return m;
}

/** Rows in a row map: one per key, or the multiplicities for a table without a key. */
function rowCount(m: RowMap, shape: VerifyShape): number {
  if (shape.key.length > 0) return m.size;
  let n = 0;
  for (const c of m.values()) n += Number(c);
  return n;
}

async function shapeOf(source: pg.Pool, target: pg.Pool, t: SourceTable, conversions: Map<string, ColumnConversion>): Promise<VerifyShape> {
  const [s, d] = await Promise.all([listColumns(source, [t]), listColumns(target, [t])]);
  const name = displayTable(t);
  const conversionOf = (column: string) => conversions.get(`${name}.${column}`);
  // A column declared `drop` exists on the source only; a converted one is read through its conversion.
  const sc = (s.get(name) ?? []).filter((c) => conversionOf(c.name)?.kind !== 'drop');
  const tc = d.get(name);
  if (!tc) throw new WalbridgeError('schema', `table ${name} does not exist on the target`);
  const converted = new Map<string, (text: string) => string>();
  for (const c of sc) {
    const conversion = conversionOf(c.name);
    if (!conversion) continue;
    // An sql: conversion's value is cast to the target's type, so that it prints as the target
    // prints it (text '1.50' is numeric 1.5 there). A built-in one already gives that type, which
    // the source may not even have (vector on the way back).
    const type = conversion.kind === 'sql' ? tc.find((x) => x.name === c.name)?.type : undefined;
    converted.set(c.name, (text) => valueOf({ ...(type ? { type } : {}), convert: conversion.toTarget }, text));
  }
  const missing = sc.filter((c) => !tc.some((x) => x.name === c.name));
  if (missing.length > 0) throw new WalbridgeError('schema', `column(s) ${missing.map((c) => c.name).join(', ')} of ${name} are missing on the target`);
  const [sColl, tColl] = await Promise.all(
    [source, target].map(async (p) => (await p.query<{ c: string }>('SELECT datcollate AS c FROM pg_database WHERE datname = current_database()')).rows[0]?.c),
  );
  const collatable = async (type: string) =>
    (await source.query<{ c: boolean }>('SELECT typcollation <> 0 AS c FROM pg_type WHERE oid = $1::regtype', [type])).rows[0]?.c ?? false;
  const key = await Promise.all(
    t.primaryKey.map(async (k) => {
      const c = sc.find((x) => x.name === k);
      const type = c?.type ?? 'text';
      return { name: k, type, collatable: await collatable(type) };
    }),
  );
  return { table: t, columns: sc.map((c) => c.name), key, byteOrder: sColl !== tColl, converted };
}

/** One table's comparison under way: where its verdict goes, and how it reads. */
interface TableRun {
  sides: Sides;
  shape: VerifyShape;
  v: TableVerdict;
  record: (d: Difference) => void;
  retries: number;
  catchUpMs: number;
  still: boolean;
}

/**
 * Sessions on both sides and the tables' shapes, kept across verifications: cutover checks the
 * content while the app writes, then again inside its pause, where neither connecting (TLS and
 * authentication, across regions) nor reading catalogs should count.
 */
export class Verifier {
  private readonly sides: Sides;
  private readonly shapes = new Map<string, Promise<VerifyShape>>();
  private readonly jobs: number;

  constructor(
    sourceUrl: string,
    targetUrl: string,
    /** walbridge's state on the target (the position the target has applied). */
    stateSql: StateSql,
    jobs = 4,
    private readonly conversions: Map<string, ColumnConversion> = new Map(),
  ) {
    this.jobs = jobs;
    this.sides = new Sides(sourceUrl, targetUrl, jobs + 1, stateSql);
  }

  private shape(t: SourceTable): Promise<VerifyShape> {
    const name = displayTable(t);
    let s = this.shapes.get(name);
    if (!s) {
      s = shapeOf(this.sides.source, this.sides.target, t, this.conversions);
      // A failure is not kept: the next verification reads the catalogs again.
      s.catch(() => this.shapes.delete(name));
      this.shapes.set(name, s);
    }
    return s;
  }

  /** Open every session and read every table's shape now. */
  async prepare(tables: SourceTable[]): Promise<void> {
    await Promise.all(tables.map((t) => this.shape(t).catch(() => undefined)));
    for (const pool of [this.sides.source, this.sides.target]) {
      const clients = await Promise.all(Array.from({ length: this.jobs + 1 }, () => pool.connect()));
      for (const c of clients) c.release();
    }
  }

  async verify(scope: VerifyScope): Promise<VerifyReport> {
    const started = Date.now();
    const maxDiff = scope.maxDifferences ?? 20;
    const queue = new PQueue({ concurrency: this.jobs });
    const verdicts: TableVerdict[] = [];
    for (const t of scope.tables) {
      const table = displayTable(t);
      const v: TableVerdict = { table, status: 'equal', ranges: 0, rowsSource: 0, rowsTarget: 0, differences: [], moreDifferences: 0, unstableRows: 0 };
      verdicts.push(v);
      const record = (d: Difference) => {
        if (v.differences.length < maxDiff) v.differences.push(d);
        else v.moreDifferences++;
      };
      // The table's parts: ranges of keys, or (given rows) lists of them.
      let parts: (() => Promise<void>)[];
      try {
        const shape = await this.shape(t);
        const run: TableRun = { sides: this.sides, shape, v, record, retries: scope.retries ?? 8, catchUpMs: scope.catchUpTimeoutMs ?? 60_000, still: scope.still === true };
        const keys = shape.key.length > 0 ? scope.rows?.get(table) : undefined;
        if (keys !== undefined) {
          parts = chunks(keys, KEYS_PER_QUERY).map((some) => () => compareRows(run, (side) => rowsByKeys(shape, some, side)));
        } else {
          const ranges = await keyRanges(this.sides, shape, scope.rangeRows ?? 50_000);
          parts = ranges.map((range) => () => compareRange(run, range));
        }
      } catch (err) {
        v.status = 'error';
        v.message = err instanceof Error ? err.message : String(err);
        continue;
      }
      v.ranges = parts.length;
      let done = 0;
      for (const part of parts) {
        void queue.add(async () => {
          try {
            await part();
          } catch (err) {
            v.status = 'error';
            v.message = err instanceof Error ? err.message : String(err);
          }
          scope.onProgress?.(table, ++done, parts.length);
        });
      }
    }
    await queue.onIdle();
    for (const v of verdicts) {
      if (v.status === 'error') continue;
      if (v.differences.length > 0) v.status = 'different';
      else if (v.unstableRows > 0) v.status = 'unstable';
    }
    return {
      equal: verdicts.every((v) => v.status === 'equal'),
      incomplete: verdicts.some((v) => v.status === 'error' || v.status === 'unstable'),
      tables: verdicts,
      startedAt: new Date(started).toISOString(),
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
  }

  end(): Promise<void> {
    return this.sides.end();
  }
}

/** One verification, with sessions of its own. */
export async function verifyTables(opts: VerifyOptions): Promise<VerifyReport> {
  const verifier = new Verifier(opts.sourceUrl, opts.targetUrl, opts.stateSql, opts.jobs, opts.conversions);
  try {
    return await verifier.verify(opts);
  } finally {
    await verifier.end();
  }
}

/** The source's rows, with the position the target must reach before its read (none when the source is still). */
function readSource<T extends pg.QueryResultRow>(run: TableRun, sql: string): Promise<{ lsn: Lsn | null; rows: T[] }> {
  return run.still ? run.sides.stillRead<T>(sql) : run.sides.sourceRead<T>(sql);
}

async function compareRange(run: TableRun, range: KeyRange): Promise<void> {
  const { sides, shape, v } = run;
  // 1. Whole range: one hash each side. Equal (the usual case) ends here.
  const s1 = await readSource<{ n: string; h: string | null }>(run, rangeHash(shape, range, 'source'));
  if (s1.lsn !== null) await sides.targetAt(s1.lsn, run.catchUpMs);
  const { rows: t1 } = await sides.target.query<{ n: string; h: string | null }>(rangeHash(shape, range, 'target'));
  if (s1.rows[0]?.h === t1[0]?.h) {
    v.rowsSource += Number(s1.rows[0]?.n ?? 0);
    v.rowsTarget += Number(t1[0]?.n ?? 0);
    return;
  }
  // 2. Row by row.
  await compareRows(run, (side) => rangeRows(shape, range, side));
}

/** Ranges of about `rangeRows` rows in key order (a table without a key is one range). */
async function keyRanges(sides: Sides, shape: VerifyShape, rangeRows: number): Promise<KeyRange[]> {
  if (shape.key.length === 0) return [{ lo: null, hi: null }];
  const { rows } = await sides.source.query<Record<string, string>>(rangeBoundaries(shape, rangeRows));
  const bounds = rows.map((r) => shape.key.map((_, i) => r[`k${i}`] as string));
  return [...bounds.map((hi, i) => ({ lo: i === 0 ? null : (bounds[i - 1] as string[]), hi })), { lo: bounds[bounds.length - 1] ?? null, hi: null }];
}

/** Keys compared in one query when a list of rows is checked. */
const KEYS_PER_QUERY = 2000;

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * One row from three reads: the source's (`a`), the target's once it had applied everything up
 * to that read (`t`), the source's again (`b`); its md5, or for a table without a key how many
 * identical rows there are (the key is then the md5). Equal; or 'again', to be compared again
 * alone: it changed between the source's reads; or it differs while the source read the same
 * both times, for the first time (remembered in `suspects`): the source may have changed and
 * changed back meanwhile (a row inserted then deleted, or truncated; a value and back) while the
 * target showed the state in between; or, seen so a second time, a difference.
 */
export function judgeRow(
  key: string,
  a: string | undefined,
  t: string | undefined,
  b: string | undefined,
  keyless: boolean,
  suspects: Set<string>,
  /** The source cannot change (fenced) and `b` is `a`: a difference is one the first time. */
  still = false,
): 'equal' | 'again' | DifferenceKind {
  if (a === t) return 'equal';
  if (a !== b) return 'again';
  if (!still && !suspects.has(key)) {
    suspects.add(key);
    return 'again';
  }
  if (keyless) return Number(a ?? 0) > Number(t ?? 0) ? 'missing on target' : 'extra on target';
  return a === undefined ? 'extra on target' : t === undefined ? 'missing on target' : 'changed';
}

/**
 * The rows `sql` reads (rangeRows, rowsByKeys), one md5 each, sandwiched between two reads of
 * the source (one is enough when the source is still); rows that change meanwhile, or differ
 * once, are compared again, alone.
 */
async function compareRows(run: TableRun, sql: (side: VerifySide) => string): Promise<void> {
  const { sides, shape, v, record, retries, catchUpMs } = run;
  const width = Math.max(1, shape.key.length);
  const src1 = await readSource<Record<string, string>>(run, sql('source'));
  if (src1.lsn !== null) await sides.targetAt(src1.lsn, catchUpMs);
  const tgt = toMap((await sides.target.query<Record<string, string>>(sql('target'))).rows, width);
  const first = toMap(src1.rows, width);
  const src2 = run.still ? first : toMap((await sides.sourceRead<Record<string, string>>(sql('source'))).rows, width);
  let again = new Set<string>();
  const suspects = new Set<string>();
  const judge = (key: string, a: string | undefined, t: string | undefined, b: string | undefined) => {
    const j = judgeRow(key, a, t, b, shape.key.length === 0, suspects, run.still);
    if (j === 'again') again.add(key);
    else if (j !== 'equal') record({ key: JSON.parse(key) as string[], kind: j });
  };
  for (const key of new Set([...first.keys(), ...tgt.keys(), ...src2.keys()])) judge(key, first.get(key), tgt.get(key), src2.get(key));
  v.rowsSource += rowCount(src2, shape);
  v.rowsTarget += rowCount(tgt, shape);

  // 3. Rows that moved or differed: compare them again, alone, until they hold still.
  for (let attempt = 0; attempt < retries && again.size > 0; attempt++) {
    await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
    const keys = [...again];
    again = new Set();
    // Without a key the multiset is compared again as a whole (`sql` reads every row).
    const sqlAgain = (side: VerifySide) => (shape.key.length > 0 ? rowsByKeys(shape, keys.map((k) => JSON.parse(k) as string[]), side) : sql(side));
    const a = await sides.sourceRead<Record<string, string>>(sqlAgain('source'));
    await sides.targetAt(a.lsn, catchUpMs);
    const t = toMap((await sides.target.query<Record<string, string>>(sqlAgain('target'))).rows, width);
    const b = toMap((await sides.sourceRead<Record<string, string>>(sqlAgain('source'))).rows, width);
    const am = toMap(a.rows, width);
    for (const key of keys) judge(key, am.get(key), t.get(key), b.get(key));
  }
  v.unstableRows += again.size;
}
