/**
 * Cutover's content checks. The app keeps writing while the whole content is compared (a live
 * verify), and meanwhile the daemon records every row it changes (walbridge.changed_rows, with
 * the commit position of its source transaction). Then only the rows changed since the last
 * check are compared again, while the app still writes, until few are left; inside the pause,
 * after the fence, only those few are: the pause does not grow with the data.
 *
 * Why that is enough: a check that starts when the target has applied up to position A compares
 * every row as of a moment at or after A (verify's sandwich waits for the target to catch up with
 * each source read). A row changed later, in a transaction committing at or after A, is in the
 * record with that position, and the next check takes every row recorded from A on.
 */
import type pg from 'pg';
import type { SourceTable } from '../catalog/tables.js';
import { WalbridgeError } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { displayTable } from '../pg/ident.js';
import type { StateSql } from '../sql/state.js';
import { WHOLE_TABLE } from '../replicator/apply/changes.js';
import { loadPipeline } from '../state/store.js';
import type { Verifier, VerifyReport } from '../verify/verify.js';

export interface CheckContext {
  /** Sessions on both sides, kept from the live checks to the one inside the pause. */
  verifier: Verifier;
  /** A session on the target, where walbridge's state is. */
  target: pg.ClientBase;
  /** walbridge's state on the target (config.stateSchema). */
  stateSql: StateSql;
  tables: SourceTable[];
  say: (line: string) => void;
}

/** The rows recorded as changed from `from` on: per table, the keys; tables to compare whole. */
export interface ChangedRows {
  keys: Map<string, string[][]>;
  whole: Set<string>;
  count: number;
}

/** The target's applied position now: what the next check starts from. */
async function appliedNow(target: pg.ClientBase, state: StateSql): Promise<Lsn> {
  const p = await loadPipeline(target, state);
  if (!p?.appliedLsn) throw new WalbridgeError('state', 'walbridge state on the target has no applied position');
  return p.appliedLsn;
}

export async function changedRowsSince(target: pg.ClientBase, state: StateSql, from: Lsn): Promise<ChangedRows> {
  const { rows } = await target.query<{ schema_name: string; table_name: string; key: string }>(state.CHANGED_ROWS_SINCE, [formatLsn(from)]);
  const keys = new Map<string, string[][]>();
  const whole = new Set<string>();
  for (const r of rows) {
    const table = `${r.schema_name}.${r.table_name}`;
    if (r.key === WHOLE_TABLE) {
      whole.add(table);
      continue;
    }
    let list = keys.get(table);
    if (!list) keys.set(table, (list = []));
    list.push(JSON.parse(r.key) as string[]);
  }
  for (const t of whole) keys.delete(t);
  return { keys, whole, count: rows.length };
}

async function changedCount(target: pg.ClientBase, state: StateSql, from: Lsn): Promise<number> {
  return (await target.query<{ n: number }>(state.COUNT_CHANGED_ROWS_SINCE, [formatLsn(from)])).rows[0]?.n ?? 0;
}

/**
 * The differences a report found, as one error; null when everything is equal. `live`: a check
 * while the app writes, where rows that kept changing while compared (status unstable) are no
 * failure: each changed after the position the next check starts from, so the next check (at the
 * latest the one inside the pause, the source still) compares it again.
 */
export function differencesError(report: VerifyReport, when: string, opts: { live?: boolean } = {}): WalbridgeError | null {
  const bad = report.tables.filter((t) => t.status !== 'equal' && !(opts.live === true && t.status === 'unstable'));
  if (bad.length === 0) return null;
  return new WalbridgeError(
    'apply',
    `${when} found differences: ${bad.map((t) => `${t.table} (${t.status}${t.message ? `: ${t.message}` : ''}${t.differences[0] ? `, e.g. key ${t.differences[0].key.join(',')} ${t.differences[0].kind}` : ''})`).join('; ')}`,
    { hint: 'The app still writes to the source and nothing was switched. Run "walbridge verify" for the full list.' },
  );
}

/** Rows that kept changing while a live check compared them: said, and left to the next check. */
function movingNote(report: VerifyReport): string {
  const n = report.tables.reduce((a, t) => a + t.unstableRows, 0);
  return n === 0 ? '' : `; ${n} row(s) kept changing while compared, checked again next`;
}

/**
 * A row that moves while a live check compares it is compared again this often, not more: it is
 * in the record of changed rows anyway, and the next check takes it again.
 */
const LIVE_RETRIES = 2;

/**
 * Compare the rows recorded as changed (keys, or whole tables). `fenced`: the source takes no
 * writes to them and the target has applied everything before the fence, so one read of each
 * side is the proof.
 */
export async function checkChangedRows(ctx: CheckContext, changed: ChangedRows, fenced = false): Promise<VerifyReport> {
  const tables = ctx.tables.filter((t) => changed.keys.has(displayTable(t)) || changed.whole.has(displayTable(t)));
  return ctx.verifier.verify({ tables, rows: changed.keys, ...(fenced ? { still: true } : { retries: LIVE_RETRIES }) });
}

/**
 * The whole content, then the rows changed meanwhile, again and again while the app writes,
 * until at most `settleRows` are left (or after a few passes). Returns the position the rows
 * left to check start from. Reuses a check recorded less than `maxAgeSeconds` ago.
 */
export async function checkWhileLive(ctx: CheckContext, opts: { maxAgeSeconds: number; settleRows: number }): Promise<Lsn> {
  const state = await loadPipeline(ctx.target, ctx.stateSql);
  let from: Lsn;
  const age = state?.contentCheckedAt ? (Date.now() - state.contentCheckedAt.getTime()) / 1000 : null;
  if (age !== null && age <= opts.maxAgeSeconds && state?.contentCheckedFrom) {
    from = state.contentCheckedFrom;
    ctx.say(`    the content was checked ${Math.round(age)} s ago, while the app wrote; only the rows changed since are checked again`);
  } else {
    from = await appliedNow(ctx.target, ctx.stateSql);
    const report = await ctx.verifier.verify({ tables: ctx.tables, retries: LIVE_RETRIES });
    const err = differencesError(report, 'the live check of every table', { live: true });
    if (err) throw err;
    ctx.say(`    ${report.tables.length} table(s) equal (${report.seconds} s, while the app wrote)${movingNote(report)}`);
    await ctx.target.query(ctx.stateSql.RECORD_CONTENT_CHECKED, [formatLsn(from)]);
  }
  for (let pass = 1; pass <= 4; pass++) {
    const n = await changedCount(ctx.target, ctx.stateSql, from);
    if (n <= opts.settleRows) break;
    const next = await appliedNow(ctx.target, ctx.stateSql);
    const t0 = Date.now();
    const report = await checkChangedRows(ctx, await changedRowsSince(ctx.target, ctx.stateSql, from));
    const err = differencesError(report, 'the check of the rows changed meanwhile', { live: true });
    if (err) throw err;
    ctx.say(`    ${n} row(s) changed meanwhile, equal (${((Date.now() - t0) / 1000).toFixed(1)} s)${movingNote(report)}`);
    from = next;
    await ctx.target.query(ctx.stateSql.RECORD_CONTENT_CHECKED, [formatLsn(from)]);
  }
  return from;
}
