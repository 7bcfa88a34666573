/**
 * The changes of one table waiting to be applied, grouped into as few statements as their
 * order allows.
 *
 * Every change to a row must run after the earlier changes to that row; changes to different
 * rows may run in any order (target sessions run with session_replication_role = replica: no
 * triggers, no foreign keys; everything else that relates rows is a unique or exclusion
 * constraint, which only ever *fails* when rows are reordered, never silently differs). So a
 * change joins the latest group of the same shape unless a later group already touched its
 * row: an app that interleaves "insert order, update order" a thousand times becomes one
 * INSERT and one UPDATE statement.
 *
 * If reordering trips a unique constraint (a value handed from one row to another inside one
 * batch), the batch is rendered again in strict arrival order (see `renderStrict`), which is
 * exactly the source's sequence.
 */
import type { Value } from './statements.js';

export type Op = 'insert' | 'update' | 'delete';

export interface QueuedRow {
  /** Arrival order across the whole batch. */
  seq: number;
  values: Value[];
  /** The rows (key texts) this change touches: old and new key of an UPDATE. */
  keys: string[];
}

export interface Group {
  op: Op | 'row';
  /** Which columns are written: rows of one group share a statement. */
  signature: string;
  /** insert: written columns; update: SET columns; delete: key columns. */
  cols: number[];
  rows: QueuedRow[];
  /** For op 'row': one statement that changes exactly one row, found by its values. */
  sql?: string;
  /** For op 'update': the keys it changes (a row can be changed once per statement). */
  keys: Set<string>;
}

export class TableQueue {
  readonly groups: Group[] = [];
  /** Per row key, the index of the last group that touched it. */
  private readonly lastGroupOf = new Map<string, number>();
  /** The latest group index of each shape. */
  private readonly latestOfShape = new Map<string, number>();
  /** Index of the last statement that finds rows by value: nothing may move before it. */
  private barrier = -1;
  /** Every change in arrival order, for the strict rendering. */
  readonly arrivals: { group: Group; row: QueuedRow | null }[] = [];

  get size(): number {
    return this.arrivals.length;
  }

  /**
   * Queue a change. `row.keys` are the rows it touches (old and new key of an UPDATE); empty
   * for a table without a key, where only arrival order after the last barrier matters.
   */
  add(op: Op, signature: string, cols: number[], row: QueuedRow): void {
    const keys = row.keys;
    const shape = `${op}|${signature}`;
    const latest = this.latestOfShape.get(shape);
    let index = -1;
    if (latest !== undefined && latest > this.barrier && keys.every((k) => (this.lastGroupOf.get(k) ?? -1) < latest)) {
      index = latest;
    } else {
      this.groups.push({ op, signature, cols, rows: [], keys: new Set() });
      index = this.groups.length - 1;
      this.latestOfShape.set(shape, index);
    }
    const group = this.groups[index] as Group;
    group.rows.push(row);
    for (const k of keys) {
      this.lastGroupOf.set(k, index);
      if (op === 'update') group.keys.add(k);
    }
    this.arrivals.push({ group, row });
  }

  /**
   * A statement of its own that changes one row found by its values. With `keys` (the old
   * and new values), only changes to those values keep their order around it; without, it is
   * a barrier nothing moves before.
   */
  addStatement(sql: string, keys?: string[]): void {
    const group: Group = { op: 'row', signature: '', cols: [], rows: [], sql, keys: new Set() };
    this.groups.push(group);
    const index = this.groups.length - 1;
    if (keys === undefined) this.barrier = index;
    else for (const k of keys) this.lastGroupOf.set(k, index);
    this.arrivals.push({ group, row: null });
  }
}

/**
 * The same changes in arrival order: runs of consecutive changes of one shape still share a
 * statement, except UPDATEs when `updatesOneByOne` (a unique constraint besides the key is
 * checked row by row, and rows of one UPDATE are changed in no set order).
 */
export function renderStrict(q: TableQueue, updatesOneByOne: boolean): Group[] {
  const out: Group[] = [];
  let current: Group | null = null;
  for (const a of q.arrivals) {
    const g = a.group;
    if (g.op === 'row' || a.row === null) {
      out.push(g);
      current = null;
      continue;
    }
    const sameRun =
      current !== null &&
      current.op === g.op &&
      current.signature === g.signature &&
      (g.op !== 'update' || (!updatesOneByOne && !a.row.keys.some((k) => current?.keys.has(k))));
    if (!sameRun || current === null) {
      current = { op: g.op, signature: g.signature, cols: g.cols, rows: [], keys: new Set() };
      out.push(current);
    }
    current.rows.push(a.row);
    if (g.op === 'update') for (const k of a.row.keys) current.keys.add(k);
  }
  return out;
}
