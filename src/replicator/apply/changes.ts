/**
 * The changes of a batch, as they arrive: each one becomes an entry in its table's queue
 * (queue.ts groups them into as few statements as the order of changes to each row allows),
 * an UPDATE that keeps its row's key is folded into the row's queued change where nothing can
 * notice, and a TRUNCATE is a statement between them. Nothing here talks to the target: the
 * applier decides when a batch goes (applier.ts), render.ts turns it into statements.
 */
import { WalbridgeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { formatLsn, type Lsn } from '../../lsn.js';
import type { BatchStatement } from '../../pg/batch.js';
import { displayTable, sameTable, type TableName } from '../../pg/ident.js';
import type { DeleteMessage, RowKey, Tuple, UpdateMessage } from '../pgoutput.js';
import type { Binding, SetShape, TableRuntime } from './binding.js';
import { TableQueue, type QueuedRow } from './queue.js';
import * as sql from './statements.js';
import type { ColumnRef } from './statements.js';

export type ChangeOp = 'insert' | 'update' | 'delete' | 'truncate';

/** A queued change: the row image whose values it writes, and the one its key comes from. */
export interface Change extends QueuedRow {
  tuple: Tuple;
  keyTuple: Tuple;
}

/** Changes queued per table, or a statement that must run between them (TRUNCATE, with the tables it empties). */
export type Segment = { kind: 'tables'; queues: Map<Binding, TableQueue<Change>> } | { kind: 'sql'; statement: BatchStatement; truncated?: TruncatedTables };

/** The tables a TRUNCATE segment empties: a TRUNCATE of a partition right after it may join it. */
interface TruncatedTables {
  tables: TableName[];
  restartIdentity: boolean;
}

/** Changes per table and operation, counted in the metrics once their batch commits. */
export type ChangeCounts = Array<[table: string, op: ChangeOp, n: number]>;

/**
 * The rows changed, as cutover's check names them: per row its table, its key (a JSON array of
 * the key values' text, as verify reads them; '*' for the whole table) and the commit LSN of
 * its source transaction. Columns of one statement's parameters (RECORD_CHANGED_ROWS).
 */
export interface ChangedRows {
  schemas: string[];
  tables: string[];
  keys: string[];
  lsns: string[];
}

/** The key that names a whole table in ChangedRows (a TRUNCATE, or a table verify compares whole). */
export const WHOLE_TABLE = '*';

export class ChangeBatch {
  private segments: Segment[] = [];
  private bytes = 0;
  /** Arrival counter, for the strict (source order) rendering. */
  private seq = 0;
  /** Changes since the last commit (parts of a large transaction sent meanwhile included). */
  private changes = 0;
  private counts = new Map<string, Record<ChangeOp, number>>();
  /** The rows changed since the last take, while cutover asks for them (null: not recording). */
  private changed: ChangedRows | null = null;
  /** The commit LSN of the source transaction the changes come from (BeginMessage.finalLsn). */
  private transactionLsn: Lsn = 0n;
  /** The same as text, made when a changed row is first recorded in the transaction (not for every transaction). */
  private transactionLsnText: string | null = null;

  constructor(private readonly log: Logger) {}

  /** Record the rows changed from now on (or stop), for cutover's check. Between batches only. */
  recordChangedRows(on: boolean): void {
    this.changed = on ? { schemas: [], tables: [], keys: [], lsns: [] } : null;
  }

  get recordsChangedRows(): boolean {
    return this.changed !== null;
  }

  /** The changes that follow come from the source transaction that commits at `finalLsn`. */
  beginTransaction(finalLsn: Lsn): void {
    this.transactionLsn = finalLsn;
    this.transactionLsnText = null;
  }

  /** The rows changed since the last call (empty when there are none, null when not recording). */
  takeChangedRows(): ChangedRows | null {
    const out = this.changed;
    if (out !== null) this.changed = { schemas: [], tables: [], keys: [], lsns: [] };
    return out;
  }

  /** Bytes of values queued (what bounds memory). */
  get bufferedBytes(): number {
    return this.bytes;
  }

  get changeCount(): number {
    return this.changes;
  }

  get isEmpty(): boolean {
    return this.segments.length === 0;
  }

  /** The changes queued since the last take, as segments to render and send; counts stay until takeCounts(). */
  takeSegments(): Segment[] {
    const out = this.segments;
    this.segments = [];
    this.bytes = 0;
    return out;
  }

  /** What the batch that commits now changed, per table and operation; starts the count again. */
  takeCounts(): ChangeCounts {
    const out: ChangeCounts = [];
    for (const [table, byOp] of this.counts) {
      for (const op of ['insert', 'update', 'delete', 'truncate'] as const) if (byOp[op] > 0) out.push([table, op, byOp[op]]);
    }
    this.counts = new Map();
    this.changes = 0;
    return out;
  }

  /** Forget everything (the target rolled back; the source sends it again). */
  clear(): void {
    this.takeSegments();
    this.takeCounts();
    this.takeChangedRows();
  }

  insert(b: Binding, tuple: Tuple): void {
    this.count(b, 'insert');
    this.noteChanged(b, tuple);
    const complete = presentColumns(tuple, b);
    const cols = complete ? b.allIdx : b.allIdx.filter((i) => !tuple.isUnchanged(i));
    const key = rowKey(b, tuple);
    this.enqueue(b, 'insert', complete ? b.allSignature : cols.join(','), cols, tuple, tuple, key === null ? [] : [key]);
  }

  update(b: Binding, msg: UpdateMessage): void {
    this.count(b, 'update');
    const old = msg.oldTuple;
    const next = msg.newTuple;
    if (old !== null) this.noteChanged(b, old);
    this.noteChanged(b, next);
    if (b.keyIdx.length === 0) {
      if (msg.oldKind !== 'O' || old === null) {
        throw new WalbridgeError('apply', `UPDATE on ${b.display} carries no old row to find it by`);
      }
      const oldKey = rowKey(b, old);
      const newKey = rowKey(b, next);
      this.addOneRow(b, this.updateOneByValues(b, old, next), oldKey === null || newKey === null ? undefined : [oldKey, newKey]);
      return;
    }
    const keyTuple = old ?? next;
    if (b.keyIdx.some((i) => keyTuple.isUnchanged(i) || keyTuple.isNull(i))) {
      throw new WalbridgeError('apply', `UPDATE on ${b.display} arrived without its key values`);
    }
    // Columns to SET: everything sent except unchanged TOAST values (the target keeps its
    // copy) and GENERATED ALWAYS identity columns, which an UPDATE cannot set.
    let setCols: number[];
    let signature: string;
    if (presentColumns(next, b) && !b.hasIdentityAlways) {
      setCols = b.allIdx;
      signature = b.allSignature;
    } else {
      const shape = this.setShape(b, old, next);
      if (shape.cols.length === 0) return;
      setCols = shape.cols;
      signature = shape.signature;
    }
    const key = keyTuple.keyOf(b.keyIdx) as RowKey;
    const sameKey = old === null || b.keyIdx.every((i) => old.sameValue(i, next, i));
    if (sameKey && b.foldUpdates && this.fold(b, key, signature, next)) return;
    const keys = sameKey ? [key] : [key, next.keyOf(b.keyIdx) as RowKey];
    this.enqueue(b, 'update', signature, setCols, next, keyTuple, keys);
  }

  delete(b: Binding, msg: DeleteMessage): void {
    this.count(b, 'delete');
    const old = msg.oldTuple;
    this.noteChanged(b, old);
    if (b.keyIdx.length === 0) {
      const key = rowKey(b, old);
      if (key === null) {
        this.addOneRow(b, this.deleteOneByValues(b, old));
      } else {
        // Whole old rows, deleted together in one statement per batch (deleteRowsByValues).
        this.enqueue(b, 'delete', `values|${b.allIdx.length}`, b.allIdx, old, old, [key]);
      }
      return;
    }
    if (b.keyIdx.some((i) => old.isUnchanged(i) || old.isNull(i))) {
      throw new WalbridgeError('apply', `DELETE on ${b.display} arrived without its key values`);
    }
    this.enqueue(b, 'delete', b.keySignature, b.keyIdx, old, old, [old.keyOf(b.keyIdx) as RowKey]);
  }

  /** Everything queued before runs before it, everything after runs after it. */
  truncate(targets: Binding[], restartIdentity: boolean): void {
    for (const b of targets) {
      this.count(b, 'truncate');
      this.noteChanged(b, null);
    }
    const tables = targets.map((b): TableName => b.table.plan);
    this.segments.push({ kind: 'sql', statement: { text: sql.truncateTables(tables, restartIdentity), params: [] }, truncated: { tables, restartIdentity } });
  }

  /**
   * A TRUNCATE of one partition of `root` (reported by walbridge's trigger on the source:
   * pgoutput sends none through the root), `ancestors` the partitioned tables above it: the
   * target's partition of the same name is emptied, in order with the other changes. Right
   * after a TRUNCATE of the root or of a partition above it (one statement fires the trigger of
   * every partition it empties), with nothing queued between, it is empty there already:
   * nothing more. Right after a TRUNCATE of other tables, it joins that statement.
   */
  truncatePartition(root: TableRuntime, partition: TableName, ancestors: TableName[]): void {
    const last = this.segments[this.segments.length - 1];
    const before = last?.kind === 'sql' ? last.truncated : undefined;
    if (before && [partition, ...ancestors].some((t) => before.tables.some((x) => sameTable(x, t)))) return;
    this.countAs(displayTable(root.plan), 'truncate');
    this.noteTable(root.plan, WHOLE_TABLE);
    if (last?.kind === 'sql' && before && !before.restartIdentity) {
      before.tables.push(partition);
      last.statement = { text: sql.truncateTables(before.tables, false), params: [] };
      return;
    }
    this.segments.push({ kind: 'sql', statement: { text: sql.truncateTables([partition], false), params: [] }, truncated: { tables: [partition], restartIdentity: false } });
  }

  /** The row of `tuple` (null: the whole table) is recorded as changed, while recording. */
  private noteChanged(b: Binding, tuple: Tuple | null): void {
    if (this.changed === null) return;
    const idx = b.verifyKeyIdx;
    const values = tuple === null || idx === null ? null : idx.map((i) => tuple.text(i));
    // A key value not sent (an unchanged TOAST marker) cannot name the row: the table is checked whole.
    const key = values === null || values.some((v) => typeof v !== 'string' && v !== null) ? WHOLE_TABLE : JSON.stringify(values);
    this.noteTable(b.table.plan, key);
  }

  private noteTable(table: TableName, key: string): void {
    const c = this.changed;
    if (c === null) return;
    c.schemas.push(table.schema);
    c.tables.push(table.name);
    c.keys.push(key);
    this.transactionLsnText ??= formatLsn(this.transactionLsn);
    c.lsns.push(this.transactionLsnText);
  }

  private count(b: Binding, op: ChangeOp): void {
    this.countAs(b.display, op);
  }

  private countAs(table: string, op: ChangeOp): void {
    this.changes++;
    let byOp = this.counts.get(table);
    if (!byOp) {
      byOp = { insert: 0, update: 0, delete: 0, truncate: 0 };
      this.counts.set(table, byOp);
    }
    byOp[op]++;
  }

  /**
   * The queue of changes for this table in the current segment. Changes queued under an
   * earlier binding of the same relation (before a new Relation message) stay in that
   * binding's own queue: folding never mixes two column layouts.
   */
  private queue(b: Binding): TableQueue<Change> {
    let seg = this.segments[this.segments.length - 1];
    if (seg === undefined || seg.kind !== 'tables') {
      seg = { kind: 'tables', queues: new Map() };
      this.segments.push(seg);
    }
    let q = seg.queues.get(b);
    if (!q) {
      q = new TableQueue<Change>();
      seg.queues.set(b, q);
    }
    return q;
  }

  private enqueue(b: Binding, op: 'insert' | 'update' | 'delete', signature: string, cols: number[], tuple: Tuple, keyTuple: Tuple, keys: RowKey[]): void {
    this.queue(b).add(op, signature, cols, { seq: this.seq++, tuple, keyTuple, keys, group: -1 });
    this.bytes += tuple.size + (keyTuple === tuple ? 0 : keyTuple.size) + 64;
  }

  /**
   * An UPDATE that keeps its row's key replaces the values of the row's queued INSERT (when it
   * sends every column) or of its queued UPDATE of the same columns: one row written once.
   */
  private fold(b: Binding, key: RowKey, signature: string, next: Tuple): boolean {
    const target = this.queue(b).foldTarget(key, signature);
    if (target === null) return false;
    if (target.op === 'insert' && (signature !== b.allSignature || b.hasIdentityAlways)) return false;
    target.row.tuple = next;
    this.bytes += next.size;
    return true;
  }

  private addOneRow(b: Binding, statement: BatchStatement, keys?: RowKey[]): void {
    this.queue(b).addStatement(statement, keys);
    for (const p of statement.params) this.bytes += 4 + (p === null ? 0 : typeof p === 'string' ? p.length : p.byteLength);
  }

  /**
   * On the source an identity ALWAYS column only changes through UPDATE ... SET col = DEFAULT;
   * the target cannot be given that value by an UPDATE. Say so, rather than stop the stream.
   */
  private noteIdentityChange(b: Binding, i: number, old: Tuple | null, next: Tuple): void {
    if (old !== null && !old.isUnchanged(i) && !old.sameValue(i, next, i)) {
      this.log.warn(
        { table: b.display, column: b.columns[i]?.name },
        'an UPDATE changed a GENERATED ALWAYS identity value on the source; the target keeps the old value (verify will show the row)',
      );
    }
  }

  /**
   * setColumns() and its signature, from the binding's cache where the row's gaps (unchanged
   * TOAST values) say it all: not where a GENERATED ALWAYS identity is set, which is warned
   * about per row, nor past 30 columns, which a bit mask cannot name.
   */
  private setShape(b: Binding, old: Tuple | null, next: Tuple): SetShape {
    const all = b.allIdx;
    const cacheable = !b.hasIdentityAlways && all.length <= 30;
    let gaps = 0;
    if (cacheable) {
      for (let k = 0; k < all.length; k++) {
        const i = all[k] as number;
        if (i >= next.length || next.isUnchanged(i)) gaps |= 1 << k;
      }
      const cached = b.setShapes.get(gaps);
      if (cached !== undefined) return cached;
    }
    const cols = this.setColumns(b, old, next);
    const shape = { cols, signature: cols.join(',') };
    if (cacheable) b.setShapes.set(gaps, shape);
    return shape;
  }

  /**
   * The columns an UPDATE sets: every value sent but unchanged TOAST ones, GENERATED ALWAYS
   * identities and columns declared `drop` (b.allIdx leaves those out: the target lacks them).
   */
  private setColumns(b: Binding, old: Tuple | null, next: Tuple): number[] {
    const out: number[] = [];
    for (const i of b.allIdx) {
      if (i >= next.length || next.isUnchanged(i)) continue;
      if (b.identityAlwaysIdx.has(i)) {
        this.noteIdentityChange(b, i, old, next);
        continue;
      }
      out.push(i);
    }
    return out;
  }

  private updateOneByValues(b: Binding, old: Tuple, next: Tuple): BatchStatement {
    const setIdx = this.setColumns(b, old, next);
    const matchIdx = b.allIdx.filter((i) => !old.isUnchanged(i));
    return {
      text: sql.updateOneRowByValues(
        b.table.plan,
        setIdx.map((i) => b.columns[i] as ColumnRef),
        matchIdx.map((i) => b.columns[i] as ColumnRef),
        probeOf(b, matchIdx, old),
      ),
      params: [...setIdx.map((i) => next.bytes(i)), ...matchIdx.map((i) => old.bytes(i))],
    };
  }

  private deleteOneByValues(b: Binding, old: Tuple): BatchStatement {
    const matchIdx = b.allIdx.filter((i) => !old.isUnchanged(i));
    return {
      text: sql.deleteOneRowByValues(
        b.table.plan,
        matchIdx.map((i) => b.columns[i] as ColumnRef),
        probeOf(b, matchIdx, old),
      ),
      params: matchIdx.map((i) => old.bytes(i)),
    };
  }
}

/**
 * The identity of a row for ordering changes: its key, or for a table without one its
 * whole value (identical rows are interchangeable). Null when a value is an unchanged
 * TOAST marker and the row cannot be named.
 */
function rowKey(b: Binding, tuple: Tuple): RowKey | null {
  return tuple.keyOf(b.keyIdx.length > 0 ? b.keyIdx : b.allIdx);
}

/** True when every column's value was sent (no unchanged TOAST marker), the usual case. */
function presentColumns(tuple: Tuple, b: Binding): boolean {
  if (tuple.length !== b.relation.columns.length) return false;
  for (const i of b.allIdx) if (tuple.isUnchanged(i)) return false;
  return true;
}

/** The position in `matchIdx` of an indexed column whose old value is not NULL, if any. */
function probeOf(b: Binding, matchIdx: number[], old: Tuple): number | null {
  const k = matchIdx.findIndex((i) => b.indexedIdx.includes(i) && !old.isNull(i));
  return k < 0 ? null : k;
}
