/**
 * Applies decoded pgoutput transactions to the target, exactly once and in commit order.
 *
 * - Several source transactions share one target transaction (fewer commits than native
 *   replication); the batch commits together with `walbridge.pipeline.applied_lsn`, so after
 *   any crash the target itself says where to resume, and nothing is applied twice.
 * - Consecutive changes of the same kind to the same table become one statement over
 *   unnested arrays. Order between different tables and kinds is kept as the source had it.
 * - A change to table T is applied only if its transaction committed at or after T's copy
 *   LSN: earlier ones are already in T's copy.
 * - Large transactions are applied as they arrive (statements of bounded size inside an
 *   open target transaction), never held whole in memory.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { TablePlan } from '../catalog/tables.js';
import { WalbridgeError } from '../errors.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { displayTable, quoteIdent, quoteTable } from '../pg/ident.js';
import { RECORD_APPLIED } from '../sql/state.js';
import {
  UNCHANGED_TOAST,
  type BeginMessage,
  type CommitMessage,
  type DeleteMessage,
  type InsertMessage,
  type PgoutputMessage,
  type RelationMessage,
  type TruncateMessage,
  type Tuple,
  type TupleValue,
  type UpdateMessage,
} from './pgoutput.js';
import * as sql from './statements.js';
import type { ColumnRef } from './statements.js';

export interface TableRuntime {
  plan: TablePlan;
  /** Null while the table is not copied yet: its changes cannot be applied. */
  copyLsn: Lsn | null;
}

interface Binding {
  relation: RelationMessage;
  table: TableRuntime;
  display: string;
  /** Per relation column, the target column it writes. */
  columns: ColumnRef[];
  /** Indexes (into relation columns) that identify a row; empty: match on all old values. */
  keyIdx: number[];
  hasIdentityAlways: boolean;
  /** Relation columns that are GENERATED ALWAYS AS IDENTITY on the target. */
  identityAlwaysIdx: Set<number>;
}

type Op = 'insert' | 'update' | 'delete';

interface PendingGroup {
  op: Op;
  binding: Binding;
  /** Shape of the statement: which columns are written. */
  signature: string;
  cols: number[];
  /** One text[] per statement parameter, column-major. */
  params: (string | null)[][];
  rows: number;
  /** Keys touched by this UPDATE group: a second change to the same row must wait for the first. */
  keys: Set<string> | null;
}

export interface ApplierOptions {
  batchChanges: number;
  batchMs: number;
  /** Rows per statement; bounds memory for huge transactions. */
  maxRowsPerStatement?: number;
  /** Resolves a source type for the DDL suggested when the target lacks a column. */
  describeSourceType?: (typeOid: number, typeMod: number) => Promise<string>;
}

export interface AppliedPosition {
  lsn: Lsn;
  commitTime: bigint | null;
}

export class Applier {
  private readonly bindings = new Map<number, Binding | null>();
  private readonly unselected = new Map<number, string>();
  private readonly maxRows: number;

  /** Source transaction being received, if any. */
  private current: BeginMessage | null = null;
  private skipCurrent = false;
  private targetTxnOpen = false;
  private targetTxnStartedAt = 0;
  private changesInTargetTxn = 0;
  private txnsInTargetTxn = 0;
  private pending: PendingGroup | null = null;
  private readonly changeCounts = new Map<string, number>();

  /** Last position handled (applied, or known to hold nothing for us); maybe not committed yet. */
  private position: AppliedPosition;
  /** Last position committed on the target. */
  private durable: AppliedPosition;

  constructor(
    private readonly client: pg.Client,
    private readonly tables: Map<string, TableRuntime>,
    startAt: AppliedPosition,
    private readonly opts: ApplierOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.position = { ...startAt };
    this.durable = { ...startAt };
    this.maxRows = opts.maxRowsPerStatement ?? 2000;
  }

  get durablePosition(): AppliedPosition {
    return this.durable;
  }

  get inTransaction(): boolean {
    return this.current !== null;
  }

  /** True when the open target transaction should be committed at the next boundary. */
  get batchDue(): boolean {
    if (this.current !== null) return false;
    if (this.position.lsn <= this.durable.lsn) return false;
    return this.changesInTargetTxn >= this.opts.batchChanges || Date.now() - this.targetTxnStartedAt >= this.opts.batchMs;
  }

  /** Nothing is received but not yet committed. */
  get idle(): boolean {
    return this.current === null && this.position.lsn <= this.durable.lsn;
  }

  async handle(msg: PgoutputMessage): Promise<void> {
    switch (msg.tag) {
      case 'relation':
        await this.onRelation(msg);
        return;
      case 'begin':
        this.onBegin(msg);
        return;
      case 'commit':
        await this.onCommit(msg);
        return;
      case 'insert':
      case 'update':
      case 'delete':
      case 'truncate':
        if (this.current === null) throw new Error(`pgoutput: ${msg.tag} outside a transaction`);
        if (this.skipCurrent) return;
        await this.onChange(msg);
        return;
      default:
        return;
    }
  }

  /**
   * A keepalive says the source has sent everything before `lsn`. With no transaction open
   * that position holds nothing left to apply; recording it keeps lag and the slot moving
   * while the app writes only to tables we do not replicate.
   */
  noteIdlePosition(lsn: Lsn): void {
    if (this.current === null && this.pending === null && lsn > this.position.lsn) {
      this.position = { lsn, commitTime: null };
    }
  }

  /** Commit what has been applied so far (only between source transactions). Returns the durable position. */
  async flush(): Promise<AppliedPosition> {
    if (this.current !== null) return this.durable;
    if (this.position.lsn <= this.durable.lsn && !this.targetTxnOpen) return this.durable;
    if (!this.targetTxnOpen) await this.beginTarget();
    await this.flushPending();
    await this.client.query(RECORD_APPLIED, [formatLsn(this.position.lsn), commitTimeText(this.position.commitTime)]);
    await this.client.query('COMMIT');
    this.targetTxnOpen = false;
    this.durable = { ...this.position };
    this.metrics.applyTransactions.inc(this.txnsInTargetTxn);
    for (const [k, n] of this.changeCounts) {
      const [table, op] = k.split('\0') as [string, string];
      this.metrics.applyChanges.inc({ table, op }, n);
    }
    this.changeCounts.clear();
    this.txnsInTargetTxn = 0;
    this.changesInTargetTxn = 0;
    return this.durable;
  }

  /** Abandon whatever is not committed (on shutdown or error); the source will send it again. */
  async rollback(): Promise<void> {
    this.pending = null;
    this.current = null;
    this.changeCounts.clear();
    if (this.targetTxnOpen) {
      this.targetTxnOpen = false;
      await this.client.query('ROLLBACK').catch(() => {});
    }
    this.position = { ...this.durable };
  }

  private async beginTarget(): Promise<void> {
    await this.client.query('BEGIN');
    this.targetTxnOpen = true;
    this.targetTxnStartedAt = Date.now();
  }

  private onBegin(msg: BeginMessage): void {
    if (this.current !== null) throw new Error('pgoutput: BEGIN inside a transaction');
    this.current = msg;
    // Already applied before a restart: the target's applied_lsn is past its commit.
    this.skipCurrent = msg.finalLsn < this.position.lsn;
  }

  private async onCommit(msg: CommitMessage): Promise<void> {
    if (this.current === null) throw new Error('pgoutput: COMMIT outside a transaction');
    const skipped = this.skipCurrent;
    this.current = null;
    this.skipCurrent = false;
    if (skipped) return;
    await this.flushPending();
    if (msg.endLsn > this.position.lsn) this.position = { lsn: msg.endLsn, commitTime: msg.commitTime };
    this.txnsInTargetTxn++;
  }

  private async onRelation(msg: RelationMessage): Promise<void> {
    // A relation message may change the shape of pending rows: write them first.
    await this.flushPending();
    const key = displayTable(msg);
    const table = this.tables.get(key);
    if (!table) {
      // pgoutput also describes a partition itself before changes it publishes through the
      // partition's root; those changes arrive under the root's id. Anything else unselected
      // is ignored (and said so if a change for it ever comes).
      this.bindings.set(msg.relationId, null);
      this.unselected.set(msg.relationId, key);
      return;
    }
    const target = table.plan.targetColumns;
    const missing = msg.columns.filter((c) => !target.some((t) => t.name === c.name));
    if (missing.length > 0) {
      const ddl = await Promise.all(
        missing.map(async (c) => {
          const type = this.opts.describeSourceType ? await this.opts.describeSourceType(c.typeOid, c.typeMod) : `<type oid ${c.typeOid}>`;
          return `ALTER TABLE ${quoteTable(msg)} ADD COLUMN ${quoteIdent(c.name)} ${type};`;
        }),
      );
      throw new WalbridgeError(
        'schema',
        `the source's table ${key} has new column(s) ${missing.map((c) => c.name).join(', ')} that the target lacks; ` +
          'changes to it are held back (nothing is lost: they are applied once the column exists)',
        { hint: `Run on the target: ${ddl.join(' ')} walbridge continues by itself after the next retry.`, transient: false },
      );
    }
    const columns: ColumnRef[] = msg.columns.map((c) => {
      const t = target.find((x) => x.name === c.name);
      return { name: c.name, type: (t as NonNullable<typeof t>).type };
    });
    const identityAlwaysIdx = new Set<number>();
    msg.columns.forEach((c, i) => {
      if (target.find((t) => t.name === c.name)?.identity === 'a') identityAlwaysIdx.add(i);
    });
    let keyIdx: number[];
    const pk = table.plan.targetKey;
    const pkIdx = pk.map((k) => msg.columns.findIndex((c) => c.name === k));
    if (msg.replicaIdentity === 'f') {
      // Whole old rows arrive; use the primary key when there is one, else all columns.
      keyIdx = pk.length > 0 && pkIdx.every((i) => i >= 0) ? pkIdx : [];
    } else {
      keyIdx = msg.columns.flatMap((c, i) => (c.isKey ? [i] : []));
    }
    this.bindings.set(msg.relationId, {
      relation: msg,
      table,
      display: key,
      columns,
      keyIdx,
      hasIdentityAlways: identityAlwaysIdx.size > 0,
      identityAlwaysIdx,
    });
  }

  private binding(relationId: number): Binding | null {
    const b = this.bindings.get(relationId);
    if (b === undefined) throw new Error(`pgoutput: change for relation ${relationId} before its RELATION message`);
    if (b === null) {
      const name = this.unselected.get(relationId);
      if (name !== undefined) {
        this.log.warn({ table: name }, 'the change stream carries a table that is not selected; its changes are ignored');
        this.unselected.delete(relationId);
      }
    }
    return b;
  }

  /** Whether this transaction's changes to the table are already in its copy. */
  private inCopy(b: Binding): boolean {
    const copyLsn = b.table.copyLsn;
    if (copyLsn === null) {
      throw new WalbridgeError('internal', `a change to ${b.display} arrived before the table was copied`);
    }
    return (this.current as BeginMessage).finalLsn < copyLsn;
  }

  private async onChange(msg: InsertMessage | UpdateMessage | DeleteMessage | TruncateMessage): Promise<void> {
    if (msg.tag === 'truncate') {
      await this.onTruncate(msg);
      return;
    }
    const b = this.binding(msg.relationId);
    if (b === null || this.inCopy(b)) return;
    if (!this.targetTxnOpen) await this.beginTarget();
    this.changesInTargetTxn++;
    const countKey = `${b.display}\0${msg.tag}`;
    this.changeCounts.set(countKey, (this.changeCounts.get(countKey) ?? 0) + 1);
    switch (msg.tag) {
      case 'insert':
        await this.addInsert(b, msg.newTuple);
        break;
      case 'update':
        await this.addUpdate(b, msg);
        break;
      case 'delete':
        await this.addDelete(b, msg);
        break;
    }
  }

  private async onTruncate(msg: TruncateMessage): Promise<void> {
    await this.flushPending();
    const targets = msg.relationIds
      .map((id) => this.binding(id))
      .filter((b): b is Binding => b !== null && !this.inCopy(b));
    if (targets.length === 0) return;
    if (!this.targetTxnOpen) await this.beginTarget();
    this.changesInTargetTxn++;
    await this.client.query(sql.truncateTables(targets.map((b) => b.table.plan), msg.restartIdentity));
    for (const b of targets) {
      const countKey = `${b.display}\0truncate`;
      this.changeCounts.set(countKey, (this.changeCounts.get(countKey) ?? 0) + 1);
    }
  }

  private async addInsert(b: Binding, tuple: Tuple): Promise<void> {
    const cols = presentColumns(tuple);
    const signature = cols.join(',');
    const g = await this.group('insert', b, signature, cols, null);
    cols.forEach((ci, p) => (g.params[p] as (string | null)[]).push(tuple[ci] as string | null));
    g.rows++;
    if (g.rows >= this.maxRows) await this.flushPending();
  }

  private async addUpdate(b: Binding, msg: UpdateMessage): Promise<void> {
    const old = msg.oldTuple;
    if (b.keyIdx.length === 0) {
      if (msg.oldKind !== 'O' || old === null) {
        throw new WalbridgeError('apply', `UPDATE on ${b.display} carries no old row to find it by`);
      }
      await this.flushPending();
      await this.updateOneByValues(b, old, msg.newTuple);
      return;
    }
    const keySource = old ?? msg.newTuple;
    const keyValues = b.keyIdx.map((i) => keySource[i] as TupleValue);
    if (keyValues.some((v) => v === UNCHANGED_TOAST || v === null)) {
      throw new WalbridgeError('apply', `UPDATE on ${b.display} arrived without its key values`);
    }
    // Columns to SET: everything sent except unchanged TOAST values (the target keeps its
    // copy) and identity-always key columns that did not change (they cannot be SET).
    const setCols: number[] = [];
    msg.newTuple.forEach((v, i) => {
      if (v === UNCHANGED_TOAST) return;
      if (b.identityAlwaysIdx.has(i)) {
        const k = b.keyIdx.indexOf(i);
        if (old === null || (k >= 0 && keyValues[k] === v)) return;
      }
      setCols.push(i);
    });
    if (setCols.length === 0) return;
    const newKey = b.keyIdx.map((i) => msg.newTuple[i]);
    const keyText = JSON.stringify(keyValues);
    const newKeyText = JSON.stringify(newKey);
    const signature = `${b.keyIdx.join(',')}|${setCols.join(',')}`;
    let g = await this.group('update', b, signature, setCols, keyText);
    if (g.keys?.has(keyText) || (newKeyText !== keyText && g.keys?.has(newKeyText))) {
      await this.flushPending();
      g = await this.group('update', b, signature, setCols, keyText);
    }
    g.keys?.add(keyText);
    g.keys?.add(newKeyText);
    keyValues.forEach((v, p) => (g.params[p] as (string | null)[]).push(v as string));
    setCols.forEach((ci, p) => (g.params[b.keyIdx.length + p] as (string | null)[]).push(msg.newTuple[ci] as string | null));
    g.rows++;
    if (g.rows >= this.maxRows) await this.flushPending();
  }

  private async addDelete(b: Binding, msg: DeleteMessage): Promise<void> {
    if (b.keyIdx.length === 0) {
      await this.flushPending();
      await this.deleteOneByValues(b, msg.oldTuple);
      return;
    }
    const keyValues = b.keyIdx.map((i) => msg.oldTuple[i] as TupleValue);
    if (keyValues.some((v) => v === UNCHANGED_TOAST || v === null)) {
      throw new WalbridgeError('apply', `DELETE on ${b.display} arrived without its key values`);
    }
    const g = await this.group('delete', b, b.keyIdx.join(','), b.keyIdx, null);
    keyValues.forEach((v, p) => (g.params[p] as (string | null)[]).push(v as string));
    g.rows++;
    if (g.rows >= this.maxRows) await this.flushPending();
  }

  /** The pending group for this statement shape, flushing a different one first. */
  private async group(op: Op, b: Binding, signature: string, cols: number[], updateKey: string | null): Promise<PendingGroup> {
    const p = this.pending;
    if (p && p.op === op && p.binding === b && p.signature === signature) return p;
    await this.flushPending();
    const nParams = op === 'update' ? b.keyIdx.length + cols.length : cols.length;
    const g: PendingGroup = {
      op,
      binding: b,
      signature,
      cols,
      params: Array.from({ length: nParams }, () => []),
      rows: 0,
      keys: updateKey === null ? null : new Set<string>(),
    };
    this.pending = g;
    return g;
  }

  private async flushPending(): Promise<void> {
    const g = this.pending;
    if (!g || g.rows === 0) {
      this.pending = null;
      return;
    }
    this.pending = null;
    const b = g.binding;
    const table = b.table.plan;
    let text: string;
    switch (g.op) {
      case 'insert':
        text = sql.insertRows(table, g.cols.map((i) => b.columns[i] as ColumnRef), b.hasIdentityAlways);
        break;
      case 'update':
        text = sql.updateRowsByKey(
          table,
          b.keyIdx.map((i) => b.columns[i] as ColumnRef),
          g.cols.map((i) => b.columns[i] as ColumnRef),
        );
        break;
      case 'delete':
        text = sql.deleteRowsByKey(table, g.cols.map((i) => b.columns[i] as ColumnRef));
        break;
    }
    const name = statementName(text);
    const res = await this.client.query({ name, text, values: g.params });
    if (g.op !== 'insert' && (res.rowCount ?? 0) < g.rows) {
      // The target is missing rows the source changed: it diverged before (verify will show
      // where). Applying the rest is still right; say so loudly.
      this.log.warn(
        { table: b.display, op: g.op, expected: g.rows, matched: res.rowCount },
        'rows to change were not found on the target',
      );
    }
  }

  private async updateOneByValues(b: Binding, old: Tuple, next: Tuple): Promise<void> {
    const setIdx = next.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i]));
    const matchIdx = old.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i]));
    if (setIdx.length === 0) return;
    const text = sql.updateOneRowByValues(
      b.table.plan,
      setIdx.map((i) => b.columns[i] as ColumnRef),
      matchIdx.map((i) => b.columns[i] as ColumnRef),
    );
    const values = [...setIdx.map((i) => next[i]), ...matchIdx.map((i) => old[i])];
    const res = await this.client.query(text, values);
    if (res.rowCount === 0) this.log.warn({ table: b.display, op: 'update' }, 'row to update was not found on the target');
  }

  private async deleteOneByValues(b: Binding, old: Tuple): Promise<void> {
    const matchIdx = old.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i]));
    const text = sql.deleteOneRowByValues(b.table.plan, matchIdx.map((i) => b.columns[i] as ColumnRef));
    const res = await this.client.query(text, matchIdx.map((i) => old[i]));
    if (res.rowCount === 0) this.log.warn({ table: b.display, op: 'delete' }, 'row to delete was not found on the target');
  }
}

/**
 * Prepared statement names are per session and outlive an Applier, so they are derived
 * from the statement text: the same text always gets the same name.
 */
function statementName(text: string): string {
  return `wb_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
}

function presentColumns(tuple: Tuple): number[] {
  const out: number[] = [];
  tuple.forEach((v, i) => {
    if (v !== UNCHANGED_TOAST) out.push(i);
  });
  return out;
}

/** pgoutput times are microseconds since 2000-01-01 UTC; keep them exact as ISO text. */
export function commitTimeText(us: bigint | null): string | null {
  if (us === null) return null;
  const PG_EPOCH_US = 946_684_800_000_000n;
  const unixUs = us + PG_EPOCH_US;
  const ms = unixUs / 1000n;
  const micros = (unixUs % 1_000_000n).toString().padStart(6, '0');
  const iso = new Date(Number(ms)).toISOString(); // 2024-01-01T00:00:00.123Z
  return `${iso.slice(0, 19)}.${micros}Z`;
}
