/**
 * Applies decoded pgoutput transactions to the target, exactly once and in commit order.
 *
 * - Several source transactions share one target transaction (fewer commits than native
 *   replication); the batch commits together with `walbridge.pipeline.applied_lsn`, so after
 *   any crash the target itself says where to resume, and nothing is applied twice.
 * - Changes are queued per table and grouped into as few statements as the order of changes
 *   to each row allows (queue.ts); between tables order does not matter, because target
 *   sessions run with session_replication_role = replica (no triggers, no foreign-key checks)
 *   and every other constraint is per table. An UPDATE that keeps its row's key is folded into
 *   the row's queued INSERT or UPDATE where no other constraint can notice. The whole batch,
 *   from BEGIN to COMMIT, is one round trip of prepared statements that take their rows as
 *   text[] parameters (statements.ts, params.ts, pg/batch.ts). Should the grouping trip a
 *   unique constraint, the batch is sent again in the source's exact order.
 * - A change to table T is applied only if its transaction committed at or after T's copy
 *   LSN: earlier ones are already in T's copy.
 * - Large transactions are sent as they arrive (bounded buffers inside an open target
 *   transaction), never held whole in memory.
 * - One batch is in flight on the target while the next one is decoded, queued and rendered:
 *   the target and the stream work at the same time. Only what the target has committed is
 *   reported durable.
 */
import type pg from 'pg';
import type { AddedColumnDdl } from '../catalog/added-column.js';
import type { TablePlan } from '../catalog/tables.js';
import { WalbridgeError } from '../errors.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { runBatch, type BatchStatement, type Param } from '../pg/batch.js';
import { displayTable, quoteIdent, quoteTable } from '../pg/ident.js';
import { RECORD_APPLIED } from '../sql/state.js';
import { textArray, textArrayOf } from './params.js';
import {
  type BeginMessage,
  type CommitMessage,
  type DeleteMessage,
  type InsertMessage,
  type PgoutputMessage,
  type RelationMessage,
  type TruncateMessage,
  type Tuple,
  type UpdateMessage,
} from './pgoutput.js';
import { renderStrict, TableQueue, type Group, type QueuedRow } from './queue.js';
import * as sql from './statements.js';
import type { ColumnRef } from './statements.js';

export interface TableRuntime {
  plan: TablePlan;
  /** Null while the table is not copied yet: its changes cannot be applied. */
  copyLsn: Lsn | null;
}

type ChangeOp = 'insert' | 'update' | 'delete' | 'truncate';

interface Binding {
  relation: RelationMessage;
  table: TableRuntime;
  display: string;
  /** Per relation column, the target column it writes. */
  columns: ColumnRef[];
  /** Indexes (into relation columns) that identify a row; empty: match on all old values. */
  keyIdx: number[];
  /** Every relation column, and that list as a signature (a row with every value sent). */
  allIdx: number[];
  allSignature: string;
  hasIdentityAlways: boolean;
  /** Relation columns that are GENERATED ALWAYS AS IDENTITY on the target. */
  identityAlwaysIdx: Set<number>;
  /** Relation columns that lead a btree index on the target (to find rows of a keyless table). */
  indexedIdx: number[];
  /** UPDATEs that keep the key may be folded into the row's queued change (queue.ts foldTarget). */
  foldUpdates: boolean;
  /** Changes queued since the last flush, by kind (for the metrics, once committed). */
  counts: Record<ChangeOp, number>;
}

/** A queued change: the row image whose values it writes, and the one its key comes from. */
interface Change extends QueuedRow {
  tuple: Tuple;
  keyTuple: Tuple;
}

/** Changes queued per table, or a statement that must run between them (TRUNCATE). */
type Segment = { kind: 'tables'; queues: Map<Binding, TableQueue<Change>> } | { kind: 'sql'; statement: BatchStatement };

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
  statement: BatchStatement;
  /** Rows it must change (UPDATE/DELETE), for the divergence warning. */
  expect: number | null;
  table: string;
  op: string;
}

/** A batch ready to go: the source's changes rendered, and what to count once it commits. */
interface PendingBatch {
  segments: Segment[];
  rendered: RenderedStatement[] | null;
  at: AppliedPosition | null;
  txns: number;
  counts: Array<[string, ChangeOp, number]>;
}

const BEGIN: BatchStatement = { text: 'BEGIN', params: [] };
const COMMIT: BatchStatement = { text: 'COMMIT', params: [] };

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

  /** Last position handled (applied, or known to hold nothing for us); maybe not committed yet. */
  private position: AppliedPosition;
  /** Last position committed on the target. */
  private durable: AppliedPosition;
  /** Last position handed to the target (committed, or in flight). */
  private sent: AppliedPosition;
  /** The batch the target is executing (or has finished, until settle() takes its outcome). */
  private inFlight: Promise<void> | null = null;
  /** The target is executing a batch right now. */
  private busy = false;
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

  /** Take one decoded message; a promise only when it must wait (a new relation, a part of a large transaction to send). */
  handle(msg: PgoutputMessage): Promise<void> | void {
    switch (msg.tag) {
      case 'relation':
        return this.onRelation(msg);
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
        // A large transaction: its part so far goes now, inside the open target transaction.
        if (this.bufferedBytes >= this.maxBufferBytes) return this.sendPart();
        return;
      default:
        return;
    }
  }

  private async sendPart(): Promise<void> {
    const part = this.takeBatch(null);
    await this.settle();
    await this.send(part);
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
   * that is durable now. Between source transactions only. The batch is rendered before the
   * one in flight is waited for, so the target does not wait for the rendering.
   *
   * With `wait` false (the stream has more to read), nothing is sent while the target is still
   * busy with the last batch, unless what waits has grown large: the stream goes on being read
   * and decoded meanwhile, and the next batch simply holds more (the target is the slower side).
   */
  async flush(wait = true): Promise<AppliedPosition> {
    if (this.current !== null) return this.durable;
    if (this.position.lsn <= this.sent.lsn && this.segments.length === 0) {
      if (!wait && this.busy) return this.durable;
      await this.settle();
      // Nothing new, unless parts of a large transaction were sent and wait for their COMMIT.
      if (!this.targetTxnOpen) return this.durable;
    }
    if (!wait && this.busy && this.changesInBatch < 4 * this.opts.batchChanges && this.bufferedBytes < this.maxBufferBytes / 2) return this.durable;
    const batch = this.takeBatch({ ...this.position });
    const at = batch.at as AppliedPosition;
    this.sent = at;
    await this.settle();
    this.busy = true;
    this.inFlight = this.send(batch).then(
      () => {
        this.busy = false;
        this.durable = at;
        this.metrics.applyTransactions.inc(batch.txns);
        for (const [table, op, n] of batch.counts) this.metrics.applyChanges.inc({ table, op }, n);
      },
      (err: unknown) => {
        this.busy = false;
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

  /**
   * Take what is queued as a batch (committing at `at`, or a part of a large transaction when
   * null), rendered unless it must go in exact source order, which is decided when it is sent.
   */
  private takeBatch(at: AppliedPosition | null): PendingBatch {
    const segments = this.segments;
    this.segments = [];
    this.bufferedBytes = 0;
    const counts: Array<[string, ChangeOp, number]> = [];
    if (at !== null) {
      for (const b of this.bindings.values()) {
        if (b === null) continue;
        for (const op of ['insert', 'update', 'delete', 'truncate'] as const) {
          if (b.counts[op] > 0) counts.push([b.display, op, b.counts[op]]);
          b.counts[op] = 0;
        }
      }
    }
    const txns = this.txnsInBatch;
    if (at !== null) {
      this.txnsInBatch = 0;
      this.changesInBatch = 0;
    }
    const strict = at === null || this.partialSent;
    return { segments, rendered: strict ? null : this.render(segments, false), at, txns, counts };
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
    for (const b of this.bindings.values()) if (b) b.counts = zeroCounts();
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
   * Send a batch as one round trip; when it commits, also record its position and COMMIT. A
   * batch sent whole is grouped freely (queue.ts) and, if that trips a unique constraint, sent
   * again in the source's exact order. Parts of a large source transaction sent before its end
   * are always in exact order (they cannot be sent again).
   */
  private async send(batch: PendingBatch): Promise<void> {
    const commitAt = batch.at;
    if (batch.rendered === null) {
      await this.sendOnce(this.render(batch.segments, true), commitAt, true);
    } else {
      try {
        await this.sendOnce(batch.rendered, commitAt, false);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== '23505' && code !== '23P01') throw err;
        this.log.info({ code }, 'grouped statements tripped a unique constraint; applying the batch in source order');
        await this.sendOnce(this.render(batch.segments, true), commitAt, true);
      }
    }
    this.partialSent = commitAt === null;
  }

  private async sendOnce(statements: RenderedStatement[], commitAt: AppliedPosition | null, strict: boolean): Promise<void> {
    const opening = !this.targetTxnOpen;
    const batch: BatchStatement[] = [];
    if (opening) batch.push(BEGIN);
    for (const st of statements) batch.push(st.statement);
    if (commitAt !== null) {
      batch.push({ text: RECORD_APPLIED, params: [formatLsn(commitAt.lsn), commitTimeText(commitAt.commitTime)] });
      batch.push(COMMIT);
    }
    if (batch.length === 0) return;
    if (this.log.isLevelEnabled('trace')) {
      const byTable: Record<string, number> = {};
      for (const st of statements) byTable[`${st.table} ${st.op}`] = (byTable[`${st.table} ${st.op}`] ?? 0) + 1;
      this.log.trace({ byTable }, 'apply batch statements');
    }
    this.log.debug({ statements: statements.length, strict }, 'apply batch');
    this.targetTxnOpen = true;
    let rowCounts: number[];
    try {
      rowCounts = await runBatch(this.client, batch);
    } catch (err) {
      this.targetTxnOpen = false;
      await this.client.query('ROLLBACK').catch(() => {});
      throw err;
    }
    const first = opening ? 1 : 0;
    statements.forEach((st, k) => this.checkMatched(st, rowCounts[first + k] ?? 0));
    if (commitAt !== null) this.targetTxnOpen = false;
  }

  /** An UPDATE or DELETE that found fewer rows than it had changes: the target diverged before. */
  private checkMatched(s: RenderedStatement, matched: number): void {
    if (s.expect !== null && matched < s.expect) {
      // Verify shows where. Applying the rest is still right; say so loudly.
      this.log.warn({ table: s.table, op: s.op, expected: s.expect, matched }, 'rows to change were not found on the target');
      this.metrics.errors.inc({ kind: 'divergence' });
    }
  }

  private render(segments: Segment[], strict: boolean): RenderedStatement[] {
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
    const allIdx = msg.columns.map((_, i) => i);
    // Changes queued under an earlier description stay in that binding's own queue (rendered
    // first): folding never mixes two column layouts.
    const previous = this.bindings.get(msg.relationId);
    this.bindings.set(msg.relationId, {
      relation: msg,
      table,
      display: key,
      columns,
      keyIdx,
      allIdx,
      allSignature: allIdx.join(','),
      hasIdentityAlways: identityAlwaysIdx.size > 0,
      identityAlwaysIdx,
      indexedIdx: msg.columns.flatMap((c, i) => (table.plan.indexedColumns.includes(c.name) ? [i] : [])),
      foldUpdates: keyIdx.length > 0 && !table.plan.hasSecondaryUnique,
      // A new description of a relation mid-batch keeps counting what the old one queued.
      counts: previous ? previous.counts : zeroCounts(),
    });
    if (previous) previous.counts = zeroCounts();
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

  private count(b: Binding, op: ChangeOp): void {
    this.changesInBatch++;
    b.counts[op]++;
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
    this.segments.push({ kind: 'sql', statement: { text: sql.truncateTables(targets.map((b) => b.table.plan), msg.restartIdentity), params: [] } });
  }

  /** The queue of changes for this table in the current segment. */
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

  private enqueue(b: Binding, op: 'insert' | 'update' | 'delete', signature: string, cols: number[], tuple: Tuple, keyTuple: Tuple, keys: string[]): void {
    this.queue(b).add(op, signature, cols, { seq: this.seq++, tuple, keyTuple, keys, group: -1 });
    this.bufferedBytes += tuple.size + (keyTuple === tuple ? 0 : keyTuple.size) + 64;
  }

  /**
   * The identity of a row for ordering changes: its key, or for a table without one its
   * whole value (identical rows are interchangeable). Null when a value is an unchanged
   * TOAST marker and the row cannot be named.
   */
  private rowKey(b: Binding, tuple: Tuple): string | null {
    return tuple.keyOf(b.keyIdx.length > 0 ? b.keyIdx : b.allIdx);
  }

  private addInsert(b: Binding, tuple: Tuple): void {
    const complete = presentColumns(tuple, b);
    const cols = complete ? b.allIdx : b.allIdx.filter((i) => !tuple.isUnchanged(i));
    const key = this.rowKey(b, tuple);
    this.enqueue(b, 'insert', complete ? b.allSignature : cols.join(','), cols, tuple, tuple, key === null ? [] : [key]);
  }

  private addUpdate(b: Binding, msg: UpdateMessage): void {
    const old = msg.oldTuple;
    const next = msg.newTuple;
    if (b.keyIdx.length === 0) {
      if (msg.oldKind !== 'O' || old === null) {
        throw new WalbridgeError('apply', `UPDATE on ${b.display} carries no old row to find it by`);
      }
      const oldKey = this.rowKey(b, old);
      const newKey = this.rowKey(b, next);
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
      setCols = this.setColumns(b, old, next);
      if (setCols.length === 0) return;
      signature = setCols.join(',');
    }
    const keyText = keyTuple.keyOf(b.keyIdx) as string;
    const sameKey = old === null || b.keyIdx.every((i) => old.sameValue(i, next, i));
    if (sameKey && b.foldUpdates && this.fold(b, keyText, signature, next)) return;
    const keys = sameKey ? [keyText] : [keyText, next.keyOf(b.keyIdx) as string];
    this.enqueue(b, 'update', signature, setCols, next, keyTuple, keys);
  }

  /**
   * An UPDATE that keeps its row's key replaces the values of the row's queued INSERT (when it
   * sends every column) or of its queued UPDATE of the same columns: one row written once.
   */
  private fold(b: Binding, key: string, signature: string, next: Tuple): boolean {
    const target = this.queue(b).foldTarget(key, signature);
    if (target === null) return false;
    if (target.op === 'insert' && (signature !== b.allSignature || b.hasIdentityAlways)) return false;
    target.row.tuple = next;
    this.bufferedBytes += next.size;
    return true;
  }

  private addDelete(b: Binding, msg: DeleteMessage): void {
    const old = msg.oldTuple;
    if (b.keyIdx.length === 0) {
      const key = this.rowKey(b, old);
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
    this.enqueue(b, 'delete', b.keyIdx.join(','), b.keyIdx, old, old, [old.keyOf(b.keyIdx) as string]);
  }

  private addOneRow(b: Binding, statement: BatchStatement, keys?: string[]): void {
    this.queue(b).addStatement(statement, keys);
    for (const p of statement.params) this.bufferedBytes += 4 + (p === null ? 0 : typeof p === 'string' ? p.length : p.byteLength);
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

  /** The columns an UPDATE sets: every value sent but unchanged TOAST ones and GENERATED ALWAYS identities. */
  private setColumns(b: Binding, old: Tuple | null, next: Tuple): number[] {
    const out: number[] = [];
    for (let i = 0; i < next.length; i++) {
      if (next.isUnchanged(i)) continue;
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

function zeroCounts(): Record<ChangeOp, number> {
  return { insert: 0, update: 0, delete: 0, truncate: 0 };
}

/** True when every column's value was sent (no unchanged TOAST marker), the usual case. */
function presentColumns(tuple: Tuple, b: Binding): boolean {
  if (tuple.length !== b.allIdx.length) return false;
  for (let i = 0; i < tuple.length; i++) if (tuple.isUnchanged(i)) return false;
  return true;
}

/** The position in `matchIdx` of an indexed column whose old value is not NULL, if any. */
function probeOf(b: Binding, matchIdx: number[], old: Tuple): number | null {
  const k = matchIdx.findIndex((i) => b.indexedIdx.includes(i) && !old.isNull(i));
  return k < 0 ? null : k;
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
        const distinct = new Map<string, { row: Change; n: number }>();
        for (const r of rows) {
          const k = r.keys[0] as string;
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
