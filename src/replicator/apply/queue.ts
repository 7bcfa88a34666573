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
import type { BatchStatement } from '../../pg/batch.js';
import type { RowKey } from '../pgoutput.js';

export type Op = 'insert' | 'update' | 'delete';

export interface QueuedRow {
  /** Arrival order across the whole batch. */
  seq: number;
  /** The rows (their keys, Tuple.keyOf) this change touches: old and new key of an UPDATE. */
  keys: RowKey[];
  /** Set by the queue: the group this change joined. */
  group?: number;
}

export interface Group<R extends QueuedRow = QueuedRow> {
  op: Op | 'row';
  /** Which columns are written: rows of one group share a statement. */
  signature: string;
  /** insert: written columns; update: SET columns; delete: key columns. */
  cols: number[];
  rows: R[];
  /** For op 'row': one statement that changes exactly one row, found by its values. */
  statement?: BatchStatement;
  /** For op 'update': the keys it changes (a row can be changed once per statement). */
  keys: Set<RowKey>;
}

export class TableQueue<R extends QueuedRow = QueuedRow> {
  readonly groups: Group<R>[] = [];
  /**
   * Per row key, the last change that touched it: the queued row, or the group index of a
   * one-row statement. (No wrapper object per change: a batch holds thousands of them.)
   */
  private readonly latestOf = new Map<RowKey, R | number>();
  /** The latest group index of each shape: per operation, by the columns it writes. */
  private readonly latestOfShape: Record<Op, Map<string, number>> = { insert: new Map(), update: new Map(), delete: new Map() };
  /** Index of the last statement that finds rows by value: nothing may move before it. */
  private barrier = -1;
  /** Every change in arrival order, for the strict rendering: a row, or a one-row statement's group. */
  readonly arrivals: (R | Group<R>)[] = [];

  get size(): number {
    return this.arrivals.length;
  }

  /**
   * Queue a change. `row.keys` are the rows it touches (old and new key of an UPDATE); empty
   * for a table without a key, where only arrival order after the last barrier matters.
   */
  add(op: Op, signature: string, cols: number[], row: R): void {
    const keys = row.keys;
    const shapes = this.latestOfShape[op];
    const latest = shapes.get(signature);
    let index = -1;
    if (latest !== undefined && latest > this.barrier && this.untouchedSince(keys, latest)) {
      index = latest;
    } else {
      this.groups.push({ op, signature, cols, rows: [], keys: new Set() });
      index = this.groups.length - 1;
      shapes.set(signature, index);
    }
    const group = this.groups[index] as Group<R>;
    group.rows.push(row);
    row.group = index;
    for (const k of keys) {
      this.latestOf.set(k, row);
      if (op === 'update') group.keys.add(k);
    }
    this.arrivals.push(row);
  }

  /** The group of the last change to row `key`, or -1. */
  private latestGroup(key: RowKey): number {
    const latest = this.latestOf.get(key);
    return latest === undefined ? -1 : typeof latest === 'number' ? latest : (latest.group as number);
  }

  /** No change to these rows was queued in group `index` or later. */
  private untouchedSince(keys: RowKey[], index: number): boolean {
    for (const k of keys) if (this.latestGroup(k) >= index) return false;
    return true;
  }

  /** The group an arrival belongs to. */
  groupOf(a: R | Group<R>): Group<R> {
    return isGroup(a) ? a : (this.groups[a.group as number] as Group<R>);
  }

  /**
   * The queued change an UPDATE of row `key` that keeps its key and writes `signature` can be
   * folded into: the row's last change, if it is its INSERT or an UPDATE of the same columns.
   * The caller then gives that change the new values instead of queuing another one. Only for
   * tables whose key is their only unique or exclusion constraint: moving a row's final values
   * to its earlier change can then collide with no other row.
   */
  foldTarget(key: RowKey, signature: string): { op: 'insert' | 'update'; row: R } | null {
    const latest = this.latestOf.get(key);
    if (latest === undefined || typeof latest === 'number') return null;
    const group = this.groups[latest.group as number] as Group<R>;
    if (group.op === 'insert') return { op: 'insert', row: latest };
    if (group.op === 'update' && group.signature === signature && latest.keys.length === 1) return { op: 'update', row: latest };
    return null;
  }

  /**
   * A statement of its own that changes one row found by its values. With `keys` (the old
   * and new values), only changes to those values keep their order around it; without, it is
   * a barrier nothing moves before.
   */
  addStatement(statement: BatchStatement, keys?: RowKey[]): void {
    const group: Group<R> = { op: 'row', signature: '', cols: [], rows: [], statement, keys: new Set() };
    this.groups.push(group);
    const index = this.groups.length - 1;
    if (keys === undefined) this.barrier = index;
    else for (const k of keys) this.latestOf.set(k, index);
    this.arrivals.push(group);
  }
}

function isGroup<R extends QueuedRow>(a: R | Group<R>): a is Group<R> {
  return 'rows' in a;
}

/**
 * The same changes in arrival order: runs of consecutive changes of one shape still share a
 * statement, except UPDATEs when `updatesOneByOne` (a unique constraint besides the key is
 * checked row by row, and rows of one UPDATE are changed in no set order).
 */
export function renderStrict<R extends QueuedRow>(q: TableQueue<R>, updatesOneByOne: boolean): Group<R>[] {
  const out: Group<R>[] = [];
  let current: Group<R> | null = null;
  for (const a of q.arrivals) {
    if (isGroup(a)) {
      out.push(a);
      current = null;
      continue;
    }
    const g = q.groupOf(a);
    const sameRun =
      current !== null &&
      current.op === g.op &&
      current.signature === g.signature &&
      (g.op !== 'update' || (!updatesOneByOne && !a.keys.some((k) => current?.keys.has(k))));
    if (!sameRun || current === null) {
      current = { op: g.op, signature: g.signature, cols: g.cols, rows: [], keys: new Set() };
      out.push(current);
    }
    current.rows.push(a);
    if (g.op === 'update') for (const k of a.keys) current.keys.add(k);
  }
  return out;
}
