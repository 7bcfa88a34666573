/**
 * Applies decoded pgoutput transactions to the target, exactly once and in commit order. The
 * applier keeps the transaction and position state; the rest is in its neighbours:
 * binding.ts (a Relation message bound to its target table), changes.ts (changes queued and
 * folded), render.ts (statements), target-txn.ts (the batches in flight).
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
 * - While T is copied again during streaming (tables/), its messages are held instead
 *   (held.ts), written with the batch that passes them, and applied once its copy is in.
 * - Large transactions are sent as they arrive (bounded buffers inside an open target
 *   transaction), never held whole in memory.
 * - One batch is in flight on the target while the next one is decoded, queued and rendered:
 *   the target and the stream work at the same time. Only what the target has committed is
 *   reported durable.
 */
import type pg from 'pg';
import { WalbridgeError } from '../../errors.js';
import type { Metrics } from '../../health/metrics.js';
import type { Logger } from '../../log.js';
import { formatLsn, type Lsn } from '../../lsn.js';
import type { BatchStatement } from '../../pg/batch.js';
import { displayTable } from '../../pg/ident.js';
import { FENCE_MARKER_PREFIX } from '../../sql/fence.js';
import { PARTITION_TRUNCATE_PREFIX } from '../../sql/partition-truncate.js';
import type { StateSql } from '../../sql/state.js';
import { copyOfMessage, type PgoutputBytes } from '../consume.js';
import { encodeTruncate, type BeginMessage, type CommitMessage, type DeleteMessage, type InsertMessage, type LogicalMessage, type PgoutputMessage, type RelationMessage, type TruncateMessage, type UpdateMessage } from '../pgoutput.js';
import { bindRelation, type Binding, type DescribeAddedColumn, type TableRuntime } from './binding.js';
import { ChangeBatch } from './changes.js';
import { HeldMessages } from './held.js';
import { textArrayOf } from './params.js';
import { readPartitionTruncate, TargetPartitions } from './partition-truncate.js';
import { renderSegments } from './render.js';
import { TargetTransaction, type AppliedPosition, type PendingBatch } from './target-txn.js';

export interface ApplierOptions {
  /** walbridge's state on the target, recorded with each batch (applied position, changed rows, held changes). */
  stateSql: StateSql;
  batchChanges: number;
  batchMs: number;
  /** Send queued statements once they hold this many bytes of values (bounds memory). */
  maxBufferBytes?: number;
  describeAddedColumn?: DescribeAddedColumn;
  /**
   * Whether to record the rows each batch changes (walbridge.changed_rows): asked between
   * batches; true while "walbridge cutover" checks the content.
   */
  recordChangedRows?: () => boolean;
  /** walbridge's own statements that commit with each batch (the replay of held changes forgets what it applied). */
  extraRecords?: () => BatchStatement[];
  /** The migration (its slot name): a TRUNCATE of a partition reported by another migration's trigger is not ours. Unset: every one is. */
  migration?: string;
}

export class Applier {
  /** Per relation id, its binding; null for a relation that is not selected. */
  private readonly bindings = new Map<number, Binding | null>();
  /** Unselected relations not reported yet (once, if a change for one ever comes). */
  private readonly unselected = new Map<number, string>();
  /** Every Relation message received, as it came: a table added or held later is bound (and held) from it. */
  private readonly relations = new Map<number, { msg: RelationMessage; raw: Buffer | null }>();
  /** Messages of holding tables, written with the next batch. */
  private readonly held: HeldMessages;
  private readonly batch: ChangeBatch;
  private readonly target: TargetTransaction;
  private readonly maxBufferBytes: number;
  private readonly targetPartitions = new TargetPartitions();

  /** Source transaction being received, if any. */
  private current: BeginMessage | null = null;
  private skipCurrent = false;
  private batchStartedAt = 0;
  private txnsInBatch = 0;
  /** The fence marker of the source transaction being received, then of the batch it is in. */
  private markerInTransaction: string | null = null;
  private fenceMarker: string | null = null;
  /** Where the record of changed rows starts (the position before the first batch that keeps it). */
  private changesFrom: string;
  /** Recording was switched on and no batch has said so on the target yet. */
  private recordingStartUnsent = false;

  /** Last position handled (applied, or known to hold nothing for us); maybe not committed yet. */
  private position: AppliedPosition;
  /** Last position committed on the target. */
  private durable: AppliedPosition;
  /** Last position handed to the target (committed, or in flight). */
  private sent: AppliedPosition;

  constructor(
    client: pg.Client,
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
    this.batch = new ChangeBatch(log);
    this.held = new HeldMessages(opts.stateSql);
    this.target = new TargetTransaction(client, opts.stateSql, log, metrics);
    this.changesFrom = formatLsn(startAt.lsn);
    this.decideRecording(startAt);
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
    // A cutover waits for the fence's marker to be applied: it goes at once.
    if (this.fenceMarker !== null) return true;
    return this.batch.changeCount + this.held.count >= this.opts.batchChanges || Date.now() - this.batchStartedAt >= this.opts.batchMs;
  }

  /**
   * flush(false) would send nothing now: the target is still busy with the batch in flight and
   * what waits is not large yet, so the stream goes on being read and the next batch holds more.
   */
  get gathering(): boolean {
    return (
      this.target.busy &&
      this.fenceMarker === null &&
      this.batch.changeCount < 4 * this.opts.batchChanges &&
      this.batch.bufferedBytes < this.maxBufferBytes / 2
    );
  }

  /** Nothing is received but not yet committed (nor a start of recording changed rows to say). */
  get idle(): boolean {
    return this.current === null && this.position.lsn <= this.durable.lsn && !this.recordingAsked();
  }

  /**
   * Take one decoded message (`bytes`: as it came, kept for a holding table); a promise only
   * when it must wait (a new relation, a part of a large transaction to send).
   */
  handle(msg: PgoutputMessage, bytes?: PgoutputBytes): Promise<void> | void {
    switch (msg.tag) {
      case 'relation':
        return this.onRelation(msg, bytes);
      case 'begin':
        this.onBegin(msg);
        return;
      case 'commit':
        this.onCommit(msg);
        return;
      case 'message':
        return this.onMessage(msg, bytes);
      case 'insert':
      case 'update':
      case 'delete':
      case 'truncate':
        if (this.current === null) throw new Error(`pgoutput: ${msg.tag} outside a transaction`);
        this.target.throwIfFailed();
        if (this.skipCurrent) return;
        this.onChange(msg, bytes);
        // A large transaction: its part so far goes now, inside the open target transaction.
        if (this.batch.bufferedBytes + this.held.bytes >= this.maxBufferBytes) return this.target.sendPart(this.take(null));
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
   * that is durable now. Between source transactions only. The batch is rendered before the
   * one in flight is waited for, so the target does not wait for the rendering.
   *
   * With `wait` false (the stream has more to read), nothing is sent while the target is still
   * busy with the last batch, unless what waits has grown large: the stream goes on being read
   * and decoded meanwhile, and the next batch simply holds more (the target is the slower side).
   */
  async flush(wait = true): Promise<AppliedPosition> {
    if (this.current !== null) return this.durable;
    if (this.position.lsn <= this.sent.lsn && this.batch.isEmpty) {
      if (!wait && this.target.busy) return this.durable;
      await this.target.settle();
      // Nothing new, unless parts of a large transaction were sent and wait for their COMMIT, or
      // cutover asked for changed rows: a batch of that record alone tells it they are kept.
      if (this.recordingAsked()) this.decideRecording(this.sent);
      if (!this.target.isOpen && !this.recordingStartUnsent) return this.durable;
    }
    if (!wait && this.gathering) return this.durable;
    const at = { ...this.position };
    const txns = this.txnsInBatch;
    const counts = this.batch.takeCounts();
    const batch = this.take(at);
    this.txnsInBatch = 0;
    this.sent = at;
    this.decideRecording(at);
    await this.target.dispatch(batch, () => {
      this.durable = at;
      this.metrics.applyTransactions.inc(txns);
      for (const [table, op, n] of counts) this.metrics.applyChanges.inc({ table, op }, n);
    });
    return this.durable;
  }

  /** Wait for the batch in flight; throws if it failed. Returns the durable position. */
  async settle(): Promise<AppliedPosition> {
    await this.target.settle();
    return this.durable;
  }

  /** Everything received is committed (between source transactions). */
  async drain(): Promise<AppliedPosition> {
    await this.flush();
    return this.settle();
  }

  /** Abandon whatever is not committed (on shutdown or error); the source will send it again. */
  async rollback(): Promise<void> {
    await this.target.rollback();
    this.batch.clear();
    this.held.clear();
    // Whether the start of the record of changed rows committed is unknown: it is said again.
    this.batch.recordChangedRows(false);
    this.recordingStartUnsent = false;
    this.markerInTransaction = null;
    this.fenceMarker = null;
    this.current = null;
    this.txnsInBatch = 0;
    this.position = { ...this.durable };
    this.sent = { ...this.durable };
  }

  /**
   * What is queued as a batch (committing at `commitAt`, or a part of a large transaction when
   * null), rendered now unless it must go in exact source order, which is decided when it is sent.
   */
  private take(commitAt: AppliedPosition | null): PendingBatch {
    const segments = this.batch.takeSegments();
    const records: BatchStatement[] = [];
    const changed = this.batch.takeChangedRows();
    if (changed !== null && (changed.keys.length > 0 || this.recordingStartUnsent)) {
      this.recordingStartUnsent = false;
      records.push({
        text: this.opts.stateSql.RECORD_CHANGED_ROWS,
        params: [textArrayOf(changed.schemas), textArrayOf(changed.tables), textArrayOf(changed.keys), textArrayOf(changed.lsns), this.changesFrom],
      });
    }
    if (commitAt !== null && this.fenceMarker !== null) {
      records.push({ text: this.opts.stateSql.RECORD_FENCE_MARKER, params: [this.fenceMarker] });
      this.fenceMarker = null;
    }
    const held = this.held.take();
    if (held !== null) records.push(held);
    if (commitAt !== null && this.opts.extraRecords) records.push(...this.opts.extraRecords());
    return { segments, rendered: this.target.strictFor(commitAt) ? null : renderSegments(segments, false), records, commitAt };
  }

  /** Cutover asks for the rows changed and the batches do not record them yet. */
  private recordingAsked(): boolean {
    return (this.opts.recordChangedRows?.() ?? false) && !this.batch.recordsChangedRows;
  }

  /**
   * Between batches, `at` the position of the last one taken: do the next ones record the rows
   * they change? Switched on, the record is complete from `at` on.
   */
  private decideRecording(at: AppliedPosition): void {
    const on = this.opts.recordChangedRows?.() ?? false;
    if (on === this.batch.recordsChangedRows) return;
    this.batch.recordChangedRows(on);
    this.changesFrom = formatLsn(at.lsn);
    this.recordingStartUnsent = on;
  }

  private onBegin(msg: BeginMessage): void {
    if (this.current !== null) throw new Error('pgoutput: BEGIN inside a transaction');
    this.current = msg;
    // Already applied before a restart: the target's applied_lsn is past its commit.
    this.skipCurrent = msg.finalLsn < this.position.lsn;
    this.markerInTransaction = null;
    this.batch.beginTransaction(msg.finalLsn);
  }

  /** The fence's marker (a transactional logical message of the fence's own transaction), or a TRUNCATE of a partition. */
  private onMessage(msg: LogicalMessage, bytes: PgoutputBytes | undefined): Promise<void> | void {
    if (this.current === null || this.skipCurrent || !msg.transactional) return;
    if (msg.prefix === PARTITION_TRUNCATE_PREFIX) return this.onPartitionTruncate(msg, bytes);
    if (msg.prefix !== FENCE_MARKER_PREFIX) return;
    // Every slot carries every fence's marker: table groups on one source fence one after the
    // other, and each waits for its own (`<migration>:<uuid>`, cutover/fence.ts).
    const marker = msg.content.toString('utf8');
    if (this.opts.migration !== undefined && marker.slice(0, marker.lastIndexOf(':')) !== this.opts.migration) return;
    this.markerInTransaction = marker;
  }

  /**
   * A TRUNCATE of one partition, which pgoutput does not send through the root: walbridge's
   * trigger on the source reports it (sql/partition-truncate.ts). Applied by the rule of a
   * change to the root (inCopy); a root not copied yet takes it with its copy. The target's
   * partition is looked up the first time (a promise: the stream waits for it).
   */
  private onPartitionTruncate(msg: LogicalMessage, bytes: PgoutputBytes | undefined): Promise<void> | void {
    this.target.throwIfFailed();
    const t = readPartitionTruncate(msg.content);
    if (this.opts.migration !== undefined && t.migration !== this.opts.migration) return;
    const rootName = t.ancestors[t.ancestors.length - 1];
    const root = rootName === undefined ? undefined : this.tables.get(displayTable(rootName));
    if (root?.hold) {
      // Copied again meanwhile: applied with the root's other held changes, after its copy.
      if (!bytes) throw new WalbridgeError('internal', `a TRUNCATE of ${displayTable(t.partition)}, whose root is held, came without its bytes`);
      this.held.add(root.plan, (this.current as BeginMessage).finalLsn, copyOfMessage(bytes));
      return;
    }
    if (root === undefined || root.copyLsn === null || (this.current as BeginMessage).finalLsn < root.copyLsn) return;
    const truncate = () => this.batch.truncatePartition(root, t.partition, t.ancestors);
    if (this.targetPartitions.has(t.partition)) return truncate();
    return this.targetPartitions.check(root.plan, t.partition, (text, params) => this.target.read(text, params)).then(truncate);
  }

  private onCommit(msg: CommitMessage): void {
    if (this.current === null) throw new Error('pgoutput: COMMIT outside a transaction');
    const skipped = this.skipCurrent;
    this.current = null;
    this.skipCurrent = false;
    if (skipped) return;
    if (this.markerInTransaction !== null) {
      this.fenceMarker = this.markerInTransaction;
      this.markerInTransaction = null;
    }
    if (this.position.lsn <= this.sent.lsn) this.batchStartedAt = Date.now();
    if (msg.endLsn > this.position.lsn) this.position = { lsn: msg.endLsn, commitTime: msg.commitTime };
    this.txnsInBatch++;
  }

  /**
   * The table set changed while streaming (tables/), between source transactions: `name`
   * is applied (or held) as `runtime` says from now on, or not at all (null).
   */
  async setTable(name: string, runtime: TableRuntime | null): Promise<void> {
    if (runtime) this.tables.set(name, runtime);
    else this.tables.delete(name);
    for (const [id, { msg }] of this.relations) {
      if (displayTable(msg) !== name) continue;
      this.bindings.set(id, runtime ? await bindRelation(msg, runtime, this.opts.describeAddedColumn) : null);
      this.unselected.delete(id);
    }
  }

  /** The last Relation message received for `name`, as it came (held first when the table starts holding). */
  relationBytes(name: string): Buffer | null {
    let found: Buffer | null = null;
    for (const { msg, raw } of this.relations.values()) if (displayTable(msg) === name && raw) found = raw;
    return found;
  }

  private async onRelation(msg: RelationMessage, bytes?: PgoutputBytes): Promise<void> {
    const raw = bytes ? copyOfMessage(bytes) : null;
    this.relations.set(msg.relationId, { msg, raw });
    const table = this.tables.get(displayTable(msg));
    // Held even in a transaction applied before a restart: the held changes after it need it.
    if (table?.hold && raw) this.held.add(msg, this.current?.finalLsn ?? this.position.lsn, raw);
    if (!table) {
      // pgoutput also describes a partition itself before changes it publishes through the
      // partition's root; those changes arrive under the root's id. Anything else unselected
      // is ignored (and said so if a change for it ever comes).
      this.bindings.set(msg.relationId, null);
      this.unselected.set(msg.relationId, displayTable(msg));
      return;
    }
    this.bindings.set(msg.relationId, await bindRelation(msg, table, this.opts.describeAddedColumn));
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

  private onChange(msg: InsertMessage | UpdateMessage | DeleteMessage | TruncateMessage, bytes: PgoutputBytes | undefined): void {
    if (msg.tag === 'truncate') {
      this.onTruncate(msg);
      return;
    }
    const b = this.binding(msg.relationId);
    if (b === null) return;
    if (b.table.hold) {
      if (!bytes) throw new WalbridgeError('internal', `a change to ${b.display}, which is held, came without its bytes`);
      this.held.add(b.table.plan, (this.current as BeginMessage).finalLsn, copyOfMessage(bytes));
      return;
    }
    if (this.inCopy(b)) return;
    switch (msg.tag) {
      case 'insert':
        this.batch.insert(b, msg.newTuple);
        break;
      case 'update':
        this.batch.update(b, msg);
        break;
      case 'delete':
        this.batch.delete(b, msg);
        break;
    }
  }

  private onTruncate(msg: TruncateMessage): void {
    const bound = msg.relationIds.map((id) => this.binding(id)).filter((b): b is Binding => b !== null);
    for (const b of bound.filter((x) => x.table.hold)) {
      this.held.add(b.table.plan, (this.current as BeginMessage).finalLsn, encodeTruncate(b.relation.relationId, msg.cascade, msg.restartIdentity));
    }
    const targets = bound.filter((b) => !b.table.hold && !this.inCopy(b));
    if (targets.length > 0) this.batch.truncate(targets, msg.restartIdentity);
  }
}
