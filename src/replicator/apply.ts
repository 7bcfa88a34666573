/**
 * Applies decoded pgoutput transactions to the target, exactly once and in commit order.
 *
 * - Several source transactions share one target transaction (fewer commits than native
 *   replication); the batch commits together with `walbridge.pipeline.applied_lsn`, so after
 *   any crash the target itself says where to resume, and nothing is applied twice.
 * - Changes are queued per table and grouped into as few statements as the order of changes
 *   to each row allows (queue.ts); between tables order does not matter, because target
 *   sessions run with session_replication_role = replica (no triggers, no foreign-key checks)
 *   and every other constraint is per table. The whole batch, from BEGIN to COMMIT, is one
 *   round trip. Should the grouping trip a unique constraint, the batch is sent again in the
 *   source's exact order.
 * - A change to table T is applied only if its transaction committed at or after T's copy
 *   LSN: earlier ones are already in T's copy.
 * - Large transactions are sent as they arrive (bounded buffers inside an open target
 *   transaction), never held whole in memory.
 * - One batch is in flight on the target while the next one is decoded and queued: the
 *   target and the stream work at the same time. Only what the target has committed is
 *   reported durable.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { AddedColumnDdl } from '../catalog/added-column.js';
import type { TablePlan } from '../catalog/tables.js';
import { WalbridgeError } from '../errors.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { displayTable, quoteIdent, quoteTable } from '../pg/ident.js';
import { recordAppliedSql } from '../sql/state.js';
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
import { renderStrict, TableQueue, type Group } from './queue.js';
import * as sql from './statements.js';
import type { ColumnRef, Value } from './statements.js';

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

/** Changes queued per table, or a statement that must run between them (TRUNCATE). */
type Segment = { kind: 'tables'; queues: Map<Binding, TableQueue> } | { kind: 'sql'; sql: string };

export interface ApplierOptions {
  batchChanges: number;
  batchMs: number;
  /** Send queued statements once they hold this many bytes of values (bounds memory). */
  maxBufferBytes?: number;
  /** The DDL that adds a column the source has and the target lacks (see catalog/added-column.ts). */
  describeAddedColumn?: (quotedTable: string, column: string) => Promise<AddedColumnDdl>;
}

export interface AppliedPosition {
  lsn: Lsn;
  commitTime: bigint | null;
}

interface RenderedStatement {
  sql: string;
  /** Rows to insert with COPY instead of `sql`. */
  copy?: { sql: string; data: string };
  /** Rows it must change (UPDATE/DELETE), for the divergence warning. */
  expect: number | null;
  table: string;
  op: string;
}

export class Applier {
  private readonly bindings = new Map<number, Binding | null>();
  private readonly unselected = new Map<number, string>();
  private readonly maxBufferBytes: number;

  /** Source transaction being received, if any. */
  private current: BeginMessage | null = null;
  private skipCurrent = false;
  private targetTxnOpen = false;
  private batchStartedAt = 0;
  private changesInBatch = 0;
  private txnsInBatch = 0;
  private segments: Segment[] = [];
  private bufferedBytes = 0;
  /** Arrival counter, for the strict (source order) rendering. */
  private seq = 0;
  /** Part of the open target transaction was sent already (a large source transaction). */
  private partialSent = false;
  private readonly changeCounts = new Map<string, number>();

  /** Last position handled (applied, or known to hold nothing for us); maybe not committed yet. */
  private position: AppliedPosition;
  /** Last position committed on the target. */
  private durable: AppliedPosition;
  /** Last position handed to the target (committed, or in flight). */
  private sent: AppliedPosition;
  /** The batch the target is executing right now, if any. */
  private inFlight: Promise<void> | null = null;
  private inFlightError: unknown = null;

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
    this.sent = { ...startAt };
    this.maxBufferBytes = opts.maxBufferBytes ?? 8 * 1024 * 1024;
  }

  get durablePosition(): AppliedPosition {
    return this.durable;
  }

  get inTransaction(): boolean {
    return this.current !== null;
  }

  /** True when what was received should be committed at this transaction boundary. */
  get batchDue(): boolean {
    if (this.current !== null) return false;
    if (this.position.lsn <= this.sent.lsn) return false;
    return this.changesInBatch >= this.opts.batchChanges || Date.now() - this.batchStartedAt >= this.opts.batchMs;
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
        this.onCommit(msg);
        return;
      case 'insert':
      case 'update':
      case 'delete':
      case 'truncate':
        if (this.current === null) throw new Error(`pgoutput: ${msg.tag} outside a transaction`);
        if (this.inFlightError !== null) throw this.inFlightError;
        if (this.skipCurrent) return;
        this.onChange(msg);
        if (this.bufferedBytes >= this.maxBufferBytes) {
          // A large transaction: its part so far goes now, inside the open target transaction.
          await this.settle();
          await this.send(this.takeSegments(), null);
        }
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
    if (this.current === null && lsn > this.position.lsn) {
      if (this.position.lsn <= this.sent.lsn) this.batchStartedAt = Date.now();
      this.position = { lsn, commitTime: this.position.commitTime };
    }
  }

  /**
   * Hand what has been received so far (complete source transactions) to the target as one
   * batch, after the one in flight has committed, without waiting for it; returns the position
   * that is durable now. Between source transactions only.
   */
  async flush(): Promise<AppliedPosition> {
    if (this.current !== null) return this.durable;
    await this.settle();
    if (this.position.lsn <= this.sent.lsn && !this.targetTxnOpen && this.segments.length === 0) return this.durable;
    const at = { ...this.position };
    const segments = this.takeSegments();
    const txns = this.txnsInBatch;
    const counts = new Map(this.changeCounts);
    this.changeCounts.clear();
    this.txnsInBatch = 0;
    this.changesInBatch = 0;
    this.sent = at;
    this.inFlight = this.send(segments, at).then(
      () => {
        this.durable = at;
        this.metrics.applyTransactions.inc(txns);
        for (const [k, n] of counts) {
          const [table, op] = k.split('\0') as [string, string];
          this.metrics.applyChanges.inc({ table, op }, n);
        }
      },
      (err: unknown) => {
        this.inFlightError = err;
      },
    );
    return this.durable;
  }

  /** Wait for the batch in flight; throws if it failed. Returns the durable position. */
  async settle(): Promise<AppliedPosition> {
    if (this.inFlight) {
      await this.inFlight;
      this.inFlight = null;
    }
    if (this.inFlightError !== null) throw this.inFlightError;
    return this.durable;
  }

  /** Everything received is committed (between source transactions). */
  async drain(): Promise<AppliedPosition> {
    await this.flush();
    return this.settle();
  }

  private takeSegments(): Segment[] {
    const segments = this.segments;
    this.segments = [];
    this.bufferedBytes = 0;
    return segments;
  }

  /** Abandon whatever is not committed (on shutdown or error); the source will send it again. */
  async rollback(): Promise<void> {
    // Let the batch in flight finish or fail first: ROLLBACK must not overtake it.
    if (this.inFlight) await this.inFlight;
    this.inFlight = null;
    this.inFlightError = null;
    this.segments = [];
    this.bufferedBytes = 0;
    this.partialSent = false;
    this.current = null;
    this.changeCounts.clear();
    this.txnsInBatch = 0;
    this.changesInBatch = 0;
    if (this.targetTxnOpen) {
      this.targetTxnOpen = false;
      await this.client.query('ROLLBACK').catch(() => {});
    }
    this.position = { ...this.durable };
    this.sent = { ...this.durable };
  }

  /**
   * Send everything queued as one script; with `commitAt`, also record that position and
   * COMMIT in the same round trip. A batch sent whole is grouped freely (queue.ts) and, if
   * that trips a unique constraint, sent again in the source's exact order. Parts of a large
   * source transaction sent before its end are always in exact order (they cannot be sent again).
   */
  private async send(segments: Segment[], commitAt: AppliedPosition | null): Promise<void> {
    const strict = commitAt === null || this.partialSent;
    try {
      await this.sendOnce(segments, commitAt, strict);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (strict || (code !== '23505' && code !== '23P01')) throw err;
      this.log.info({ code }, 'grouped statements tripped a unique constraint; applying the batch in source order');
      await this.sendOnce(segments, commitAt, true);
    }
    this.partialSent = commitAt === null;
  }

  private async sendOnce(segments: Segment[], commitAt: AppliedPosition | null, strict: boolean): Promise<void> {
    const statements = this.render(segments, strict);
    // The batch as steps: runs of statements travel as one script, a COPY is its own exchange.
    type Step = { sql: string; statement: RenderedStatement | null } | { copy: { sql: string; data: string } };
    const steps: Step[] = [];
    const opening = !this.targetTxnOpen;
    if (opening) steps.push({ sql: 'BEGIN', statement: null });
    for (const st of statements) steps.push(st.copy ? { copy: st.copy } : { sql: st.sql, statement: st });
    if (commitAt !== null) {
      steps.push({ sql: recordAppliedSql(formatLsn(commitAt.lsn), commitTimeText(commitAt.commitTime)), statement: null });
      steps.push({ sql: 'COMMIT', statement: null });
    }
    if (steps.length === 0) return;
    if (this.log.isLevelEnabled('trace')) {
      const byTable: Record<string, number> = {};
      for (const st of statements) byTable[`${st.table} ${st.op}`] = (byTable[`${st.table} ${st.op}`] ?? 0) + 1;
      this.log.trace({ byTable }, 'apply batch statements');
    }
    this.log.debug({ statements: statements.length, strict }, 'apply batch');
    this.targetTxnOpen = true;
    try {
      for (let i = 0; i < steps.length; ) {
        const step = steps[i] as Step;
        if ('copy' in step) {
          await pipeline(Readable.from([step.copy.data]), this.client.query(copyFrom(step.copy.sql)));
          i++;
          continue;
        }
        const run: { sql: string; statement: RenderedStatement | null }[] = [];
        while (i < steps.length && 'sql' in (steps[i] as Step)) run.push(steps[i++] as { sql: string; statement: RenderedStatement | null });
        const r = (await this.client.query(run.map((x) => x.sql).join(';\n'))) as pg.QueryResult | pg.QueryResult[];
        const results = Array.isArray(r) ? r : [r];
        run.forEach((x, k) => this.checkMatched(x.statement, results[k]?.rowCount ?? 0));
      }
    } catch (err) {
      this.targetTxnOpen = false;
      await this.client.query('ROLLBACK').catch(() => {});
      throw err;
    }
    if (commitAt !== null) this.targetTxnOpen = false;
  }

  /** An UPDATE or DELETE that found fewer rows than it had changes: the target diverged before. */
  private checkMatched(s: RenderedStatement | null, matched: number): void {
    if (s !== null && s.expect !== null && matched < s.expect) {
      // Verify shows where. Applying the rest is still right; say so loudly.
      this.log.warn({ table: s.table, op: s.op, expected: s.expect, matched }, 'rows to change were not found on the target');
      this.metrics.errors.inc({ kind: 'divergence' });
    }
  }

  private render(segments: Segment[], strict: boolean): RenderedStatement[] {
    const out: RenderedStatement[] = [];
    for (const seg of segments) {
      if (seg.kind === 'sql') {
        out.push({ sql: seg.sql, expect: null, table: '', op: 'truncate' });
        continue;
      }
      for (const [b, q] of seg.queues) {
        const groups = strict ? renderStrict(q, b.table.plan.hasSecondaryUnique) : q.groups;
        for (const g of groups) out.push(renderGroup(b, g));
      }
    }
    return out;
  }

  private onBegin(msg: BeginMessage): void {
    if (this.current !== null) throw new Error('pgoutput: BEGIN inside a transaction');
    this.current = msg;
    // Already applied before a restart: the target's applied_lsn is past its commit.
    this.skipCurrent = msg.finalLsn < this.position.lsn;
  }

  private onCommit(msg: CommitMessage): void {
    if (this.current === null) throw new Error('pgoutput: COMMIT outside a transaction');
    const skipped = this.skipCurrent;
    this.current = null;
    this.skipCurrent = false;
    if (skipped) return;
    if (this.position.lsn <= this.sent.lsn) this.batchStartedAt = Date.now();
    if (msg.endLsn > this.position.lsn) this.position = { lsn: msg.endLsn, commitTime: msg.commitTime };
    this.txnsInBatch++;
  }

  private async onRelation(msg: RelationMessage): Promise<void> {
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
        missing.map(async (c): Promise<AddedColumnDdl> =>
          this.opts.describeAddedColumn
            ? await this.opts.describeAddedColumn(quoteTable(msg), c.name)
            : { statements: [`ALTER TABLE ${quoteTable(msg)} ADD COLUMN ${quoteIdent(c.name)} <type oid ${c.typeOid}>;`], caveat: null },
        ),
      );
      const caveats = ddl.flatMap((d) => (d.caveat ? [d.caveat] : []));
      throw new WalbridgeError(
        'schema',
        `the source's table ${key} has new column(s) ${missing.map((c) => c.name).join(', ')} that the target lacks; ` +
          'changes to it are held back (nothing is lost: they are applied once the column exists)',
        {
          hint:
            `Run on the target: ${ddl.flatMap((d) => d.statements).join(' ')} walbridge continues by itself after the next retry.` +
            (caveats.length > 0 ? ` Note: ${caveats.join('; ')}.` : ''),
          transient: false,
        },
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

  private count(b: Binding, op: string): void {
    this.changesInBatch++;
    const k = `${b.display}\0${op}`;
    this.changeCounts.set(k, (this.changeCounts.get(k) ?? 0) + 1);
  }

  private onChange(msg: InsertMessage | UpdateMessage | DeleteMessage | TruncateMessage): void {
    if (msg.tag === 'truncate') {
      this.onTruncate(msg);
      return;
    }
    const b = this.binding(msg.relationId);
    if (b === null || this.inCopy(b)) return;
    this.count(b, msg.tag);
    switch (msg.tag) {
      case 'insert':
        this.addInsert(b, msg.newTuple);
        break;
      case 'update':
        this.addUpdate(b, msg);
        break;
      case 'delete':
        this.addDelete(b, msg);
        break;
    }
  }

  private onTruncate(msg: TruncateMessage): void {
    const targets = msg.relationIds
      .map((id) => this.binding(id))
      .filter((b): b is Binding => b !== null && !this.inCopy(b));
    if (targets.length === 0) return;
    for (const b of targets) this.count(b, 'truncate');
    // Everything queued before runs before it, everything after runs after it.
    this.segments.push({ kind: 'sql', sql: sql.truncateTables(targets.map((b) => b.table.plan), msg.restartIdentity) });
  }

  /** The queue of changes for this table in the current segment. */
  private queue(b: Binding): TableQueue {
    let seg = this.segments[this.segments.length - 1];
    if (seg === undefined || seg.kind !== 'tables') {
      seg = { kind: 'tables', queues: new Map() };
      this.segments.push(seg);
    }
    let q = seg.queues.get(b);
    if (!q) {
      q = new TableQueue();
      seg.queues.set(b, q);
    }
    return q;
  }

  private enqueue(b: Binding, op: 'insert' | 'update' | 'delete', signature: string, cols: number[], values: Value[], keys: string[]): void {
    this.queue(b).add(op, signature, cols, { seq: this.seq++, values, keys });
    for (const v of values) this.bufferedBytes += v === null ? 4 : v.length + 4;
  }

  /**
   * The identity of a row for ordering changes: its key, or for a table without one its
   * whole value (identical rows are interchangeable). Null when a value is an unchanged
   * TOAST marker and the row cannot be named.
   */
  private rowKey(b: Binding, tuple: Tuple): string | null {
    const idx = b.keyIdx.length > 0 ? b.keyIdx : tuple.map((_, i) => i);
    const values = idx.map((i) => tuple[i]);
    return values.some((v) => v === UNCHANGED_TOAST) ? null : JSON.stringify(values);
  }

  private addInsert(b: Binding, tuple: Tuple): void {
    const cols = presentColumns(tuple);
    const key = this.rowKey(b, tuple);
    const keys = key === null ? [] : [key];
    this.enqueue(b, 'insert', cols.join(','), cols, cols.map((i) => tuple[i] as Value), keys);
  }

  private addUpdate(b: Binding, msg: UpdateMessage): void {
    const old = msg.oldTuple;
    if (b.keyIdx.length === 0) {
      if (msg.oldKind !== 'O' || old === null) {
        throw new WalbridgeError('apply', `UPDATE on ${b.display} carries no old row to find it by`);
      }
      const oldKey = this.rowKey(b, old);
      const newKey = this.rowKey(b, msg.newTuple);
      this.addOneRow(b, this.updateOneByValues(b, old, msg.newTuple), oldKey === null || newKey === null ? undefined : [oldKey, newKey]);
      return;
    }
    const keySource = old ?? msg.newTuple;
    const keyValues = b.keyIdx.map((i) => keySource[i] as TupleValue);
    if (keyValues.some((v) => v === UNCHANGED_TOAST || v === null)) {
      throw new WalbridgeError('apply', `UPDATE on ${b.display} arrived without its key values`);
    }
    // Columns to SET: everything sent except unchanged TOAST values (the target keeps its
    // copy) and GENERATED ALWAYS identity columns, which an UPDATE cannot set.
    const setCols: number[] = [];
    msg.newTuple.forEach((v, i) => {
      if (v === UNCHANGED_TOAST) return;
      if (b.identityAlwaysIdx.has(i)) {
        this.noteIdentityChange(b, i, old, v);
        return;
      }
      setCols.push(i);
    });
    if (setCols.length === 0) return;
    const keyText = JSON.stringify(keyValues);
    const newKeyText = JSON.stringify(b.keyIdx.map((i) => msg.newTuple[i]));
    const keys = newKeyText === keyText ? [keyText] : [keyText, newKeyText];
    this.enqueue(
      b,
      'update',
      `${b.keyIdx.join(',')}|${setCols.join(',')}`,
      setCols,
      [...(keyValues as Value[]), ...setCols.map((i) => msg.newTuple[i] as Value)],
      keys,
    );
  }

  private addDelete(b: Binding, msg: DeleteMessage): void {
    if (b.keyIdx.length === 0) {
      const key = this.rowKey(b, msg.oldTuple);
      if (key === null) {
        this.addOneRow(b, this.deleteOneByValues(b, msg.oldTuple));
      } else {
        // Whole old rows, deleted together in one statement per batch (deleteRowsByValues).
        const all = msg.oldTuple.map((_, i) => i);
        this.enqueue(b, 'delete', `values|${all.length}`, all, msg.oldTuple as Value[], [key]);
      }
      return;
    }
    const keyValues = b.keyIdx.map((i) => msg.oldTuple[i] as TupleValue);
    if (keyValues.some((v) => v === UNCHANGED_TOAST || v === null)) {
      throw new WalbridgeError('apply', `DELETE on ${b.display} arrived without its key values`);
    }
    this.enqueue(b, 'delete', b.keyIdx.join(','), b.keyIdx, keyValues as Value[], [JSON.stringify(keyValues)]);
  }

  private addOneRow(b: Binding, statement: string, keys?: string[]): void {
    this.queue(b).addStatement(statement, keys);
    this.bufferedBytes += statement.length;
  }

  /**
   * On the source an identity ALWAYS column only changes through UPDATE ... SET col = DEFAULT;
   * the target cannot be given that value by an UPDATE. Say so, rather than stop the stream.
   */
  private noteIdentityChange(b: Binding, i: number, old: Tuple | null, v: TupleValue): void {
    const before = old?.[i];
    if (old !== null && before !== UNCHANGED_TOAST && before !== v) {
      this.log.warn(
        { table: b.display, column: b.columns[i]?.name },
        'an UPDATE changed a GENERATED ALWAYS identity value on the source; the target keeps the old value (verify will show the row)',
      );
    }
  }

  private updateOneByValues(b: Binding, old: Tuple, next: Tuple): string {
    const setIdx = next.flatMap((v, i) => {
      if (v === UNCHANGED_TOAST) return [];
      if (b.identityAlwaysIdx.has(i)) {
        this.noteIdentityChange(b, i, old, v);
        return [];
      }
      return [i];
    });
    const matchIdx = old.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i]));
    return sql.updateOneRowByValues(
      b.table.plan,
      setIdx.map((i) => b.columns[i] as ColumnRef),
      setIdx.map((i) => next[i] as Value),
      matchIdx.map((i) => b.columns[i] as ColumnRef),
      matchIdx.map((i) => old[i] as Value),
    );
  }

  private deleteOneByValues(b: Binding, old: Tuple): string {
    const matchIdx = old.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i]));
    return sql.deleteOneRowByValues(
      b.table.plan,
      matchIdx.map((i) => b.columns[i] as ColumnRef),
      matchIdx.map((i) => old[i] as Value),
    );
  }
}

/** Inserts of at least this many rows to one table in one batch use COPY. */
const COPY_MIN_ROWS = 32;

function renderGroup(b: Binding, g: Group): RenderedStatement {
  const table = b.table.plan;
  const col = (i: number) => b.columns[i] as ColumnRef;
  const rows = g.rows.map((r) => r.values);
  switch (g.op) {
    case 'insert':
      // Many rows go by COPY (fastest); a few ride along in the batch's script (no extra round trip).
      return rows.length >= COPY_MIN_ROWS
        ? { sql: '', copy: sql.copyRows(table, g.cols.map(col), rows), expect: null, table: b.display, op: 'insert' }
        : { sql: sql.insertRows(table, g.cols.map(col), rows, b.hasIdentityAlways), expect: null, table: b.display, op: 'insert' };
    case 'update':
      return { sql: sql.updateRowsByKey(table, b.keyIdx.map(col), g.cols.map(col), rows), expect: rows.length, table: b.display, op: 'update' };
    case 'delete':
      return b.keyIdx.length > 0
        ? { sql: sql.deleteRowsByKey(table, g.cols.map(col), rows), expect: rows.length, table: b.display, op: 'delete' }
        : { sql: sql.deleteRowsByValues(table, g.cols.map(col), rows), expect: rows.length, table: b.display, op: 'delete' };
    case 'row':
      return { sql: g.sql as string, expect: 1, table: b.display, op: 'change' };
  }
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
