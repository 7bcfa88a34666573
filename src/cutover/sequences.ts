/**
 * Sequences are not replicated. At cutover each sequence behind a migrated column (and each one
 * of a migrated schema that no column owns: see SEQUENCES_OF_TABLES) is set on
 * the target from the source's live value (read after the app stopped writing), plus an
 * optional margin, so the first insert on the target does not collide. A target sequence
 * that is already further along is left alone.
 */
import type pg from 'pg';
import type { TableName } from '../pg/ident.js';
import { quoteTable } from '../pg/ident.js';
import { SEQUENCE_EXISTS, SEQUENCE_RANGE, SET_SEQUENCE, sequenceState } from '../sql/sequences.js';
import { SEQUENCES_OF_TABLES } from '../sql/source.js';

export interface SequenceSync {
  sequence: string;
  /** The migrated column it is behind; null for a sequence of a migrated schema that no column owns. */
  table: string | null;
  column: string | null;
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

/** The target's own increment and bounds: its definition may differ from the source's, and setval() refuses a value outside them. */
interface SeqRange {
  increment: bigint;
  min: bigint;
  max: bigint;
}

async function readSeq(c: pg.ClientBase, seq: TableName): Promise<SeqState | null> {
  const { rows: exists } = await c.query<{ ok: boolean }>(SEQUENCE_EXISTS, [quoteTable(seq)]);
  if (!exists[0]?.ok) return null;
  const { rows } = await c.query<{ last: string; called: boolean }>(sequenceState(seq));
  const r = rows[0];
  return r ? { last: BigInt(r.last), called: r.called } : null;
}

async function readRange(c: pg.ClientBase, seq: TableName): Promise<SeqRange | null> {
  const { rows } = await c.query<{ increment: string; min: string; max: string }>(SEQUENCE_RANGE, [seq.schema, seq.name]);
  const r = rows[0];
  return r ? { increment: BigInt(r.increment), min: BigInt(r.min), max: BigInt(r.max) } : null;
}

const next = (s: SeqState, inc: bigint) => (s.called ? s.last + inc : s.last);

export async function syncSequences(source: pg.ClientBase, target: pg.ClientBase, tables: TableName[], margin: bigint): Promise<SequenceSync[]> {
  const { rows } = await source.query<{ schema: string; name: string; table: string | null; column: string | null; increment: string }>(SEQUENCES_OF_TABLES, [
    tables.map((t) => t.schema),
    tables.map((t) => t.name),
  ]);
  const out: SequenceSync[] = [];
  for (const r of rows) {
    const seq: TableName = { schema: r.schema, name: r.name };
    const inc = BigInt(r.increment);
    const src = await readSeq(source, seq);
    if (!src) continue;
    const sourceNext = next(src, inc);
    const base = { sequence: `${r.schema}.${r.name}`, table: r.table, column: r.column, sourceNext: sourceNext.toString() };
    const tgt = await readSeq(target, seq);
    const range = tgt && (await readRange(target, seq));
    if (!tgt || !range) {
      out.push({ ...base, targetNextBefore: null, targetNextAfter: null, result: 'missing on target' });
      continue;
    }
    const before = next(tgt, range.increment);
    const wanted = inc > 0n ? sourceNext + margin : sourceNext - margin;
    if ((inc > 0n && before >= wanted) || (inc < 0n && before <= wanted)) {
      out.push({ ...base, targetNextBefore: before.toString(), targetNextAfter: before.toString(), result: 'already ahead' });
      continue;
    }
    // Either way the next nextval() returns exactly `wanted`. Set as the value handed out just
    // before it, so pg_sequences.last_value shows it (with is_called = false it shows NULL, which
    // reads as "the sequences were not moved"); when that value lies outside the sequence's
    // bounds (`wanted` is its first value), is_called = false is the only way.
    const previous = wanted - range.increment;
    const called = previous >= range.min && previous <= range.max;
    await target.query(SET_SEQUENCE, [quoteTable(seq), (called ? previous : wanted).toString(), called]);
    out.push({ ...base, targetNextBefore: before.toString(), targetNextAfter: wanted.toString(), result: 'set' });
  }
  return out;
}
