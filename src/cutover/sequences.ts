/**
 * Sequences are not replicated. At cutover each sequence behind a migrated column is set on
 * the target from the source's live value (read after the app stopped writing), plus an
 * optional margin, so the first insert on the target does not collide. A target sequence
 * that is already further along is left alone.
 */
import type pg from 'pg';
import type { TableName } from '../pg/ident.js';
import { quoteIdent, quoteLiteral } from '../pg/ident.js';
import { SEQUENCES_OF_TABLES } from '../sql/source.js';

export interface SequenceSync {
  sequence: string;
  table: string;
  column: string;
  /** The value the source would hand out next. */
  sourceNext: string;
  targetNextBefore: string | null;
  targetNextAfter: string | null;
  result: 'set' | 'already ahead' | 'missing on target';
}

interface SeqState {
  last: bigint;
  called: boolean;
}

async function readSeq(c: pg.ClientBase, qualified: string): Promise<SeqState | null> {
  const { rows: exists } = await c.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [qualified]);
  if (!exists[0]?.ok) return null;
  const { rows } = await c.query<{ last: string; called: boolean }>(`SELECT last_value::text AS last, is_called AS called FROM ${qualified}`);
  const r = rows[0];
  return r ? { last: BigInt(r.last), called: r.called } : null;
}

const next = (s: SeqState, inc: bigint) => (s.called ? s.last + inc : s.last);

export async function syncSequences(source: pg.ClientBase, target: pg.ClientBase, tables: TableName[], margin: bigint): Promise<SequenceSync[]> {
  const { rows } = await source.query<{ schema: string; name: string; table: string; column: string; increment: string }>(SEQUENCES_OF_TABLES, [
    tables.map((t) => t.schema),
    tables.map((t) => t.name),
  ]);
  const out: SequenceSync[] = [];
  for (const r of rows) {
    const qualified = `${quoteIdent(r.schema)}.${quoteIdent(r.name)}`;
    const inc = BigInt(r.increment);
    const src = await readSeq(source, qualified);
    if (!src) continue;
    const sourceNext = next(src, inc);
    const base = { sequence: `${r.schema}.${r.name}`, table: r.table, column: r.column, sourceNext: sourceNext.toString() };
    const tgt = await readSeq(target, qualified);
    if (!tgt) {
      out.push({ ...base, targetNextBefore: null, targetNextAfter: null, result: 'missing on target' });
      continue;
    }
    const before = next(tgt, inc);
    const wanted = inc > 0n ? sourceNext + margin : sourceNext - margin;
    if ((inc > 0n && before >= wanted) || (inc < 0n && before <= wanted)) {
      out.push({ ...base, targetNextBefore: before.toString(), targetNextAfter: before.toString(), result: 'already ahead' });
      continue;
    }
    // is_called = false: the next nextval() returns exactly `wanted`.
    await target.query(`SELECT setval(${quoteLiteral(qualified)}::regclass, $1::int8, false)`, [wanted.toString()]);
    out.push({ ...base, targetNextBefore: before.toString(), targetNextAfter: wanted.toString(), result: 'set' });
  }
  return out;
}
