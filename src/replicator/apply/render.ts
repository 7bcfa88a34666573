/**
 * Rendering a batch's queued changes into statements: one statement per group of changes of
 * the same shape (queue.ts), each taking its rows as one text[] parameter per column
 * (statements.ts, params.ts). Grouped freely, or in the source's exact order when `strict`.
 */
import type { BatchStatement, Param } from '../../pg/batch.js';
import type { Binding } from './binding.js';
import type { Change, Segment } from './changes.js';
import { textArray, textArrayOf } from './params.js';
import { renderStrict, type Group } from './queue.js';
import * as sql from './statements.js';
import type { ColumnRef } from './statements.js';
import type { RowKey, Tuple } from '../pgoutput.js';

export interface RenderedStatement {
  statement: BatchStatement;
  /** Rows it must change (UPDATE/DELETE), for the divergence warning. */
  expect: number | null;
  table: string;
  op: string;
}

export function renderSegments(segments: Segment[], strict: boolean): RenderedStatement[] {
  const out: RenderedStatement[] = [];
  for (const seg of segments) {
    if (seg.kind === 'sql') {
      out.push({ statement: seg.statement, expect: null, table: '', op: 'truncate' });
      continue;
    }
    for (const [b, q] of seg.queues) {
      const groups = strict ? renderStrict(q, b.table.plan.hasSecondaryUnique) : q.groups;
      for (const g of groups) out.push(...renderGroup(b, g));
    }
  }
  return out;
}

const tupleOf = (c: Change): Tuple => c.tuple;
const keyTupleOf = (c: Change): Tuple => c.keyTuple;

function renderGroup(b: Binding, g: Group<Change>): RenderedStatement[] {
  const table = b.table.plan;
  const col = (i: number) => b.columns[i] as ColumnRef;
  const one = (text: string, params: Param[], expect: number | null, op: string): RenderedStatement => ({
    statement: { text, params },
    expect,
    table: b.display,
    op,
  });
  switch (g.op) {
    case 'insert':
      if (g.cols.length === 0) return g.rows.map(() => one(sql.insertDefaultValues(table), [], null, 'insert'));
      return [
        one(
          sql.insertRows(table, g.cols.map(col), b.hasIdentityAlways),
          g.cols.map((i) => textArray(g.rows, tupleOf, i)),
          null,
          'insert',
        ),
      ];
    case 'update':
      return [
        one(
          sql.updateRowsByKey(table, b.keyIdx.map(col), g.cols.map(col)),
          [...b.keyIdx.map((i) => textArray(g.rows, keyTupleOf, i)), ...g.cols.map((i) => textArray(g.rows, tupleOf, i))],
          g.rows.length,
          'update',
        ),
      ];
    case 'delete': {
      if (b.keyIdx.length > 0) {
        return [one(sql.deleteRowsByKey(table, g.cols.map(col)), g.cols.map((i) => textArray(g.rows, tupleOf, i)), g.rows.length, 'delete')];
      }
      // Keyless: rows whose indexed column holds a value are found through that index, the rest by a hash join.
      const probeCol = g.cols.find((i) => b.indexedIdx.includes(i));
      const probed = probeCol === undefined ? [] : g.rows.filter((r) => !r.tuple.isNull(probeCol));
      const scanned = probeCol === undefined ? g.rows : g.rows.filter((r) => r.tuple.isNull(probeCol));
      const byValues = (rows: Change[], probe: number | null): RenderedStatement => {
        // Identical rows are one entry, deleted as many times as the source deleted them.
        const distinct = new Map<RowKey, { row: Change; n: number }>();
        for (const r of rows) {
          const k = r.keys[0] as RowKey;
          const d = distinct.get(k);
          if (d) d.n++;
          else distinct.set(k, { row: r, n: 1 });
        }
        const list = [...distinct.values()];
        return one(
          sql.deleteRowsByValues(table, g.cols.map(col), probe),
          [textArrayOf(list.map((_, i) => String(i))), textArrayOf(list.map((d) => String(d.n))), ...g.cols.map((i) => textArray(list, (d) => d.row.tuple, i))],
          rows.length,
          'delete',
        );
      };
      const probeAt = probeCol === undefined ? null : g.cols.indexOf(probeCol);
      return [...(probed.length > 0 ? [byValues(probed, probeAt)] : []), ...(scanned.length > 0 ? [byValues(scanned, null)] : [])];
    }
    case 'row':
      return [{ statement: g.statement as BatchStatement, expect: 1, table: b.display, op: 'change' }];
  }
}
