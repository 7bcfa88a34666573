/**
 * The batches in flight to the target: each goes as one round trip of prepared statements
 * (pg/batch.ts) inside a target transaction that ends, when the batch commits, with the
 * record of its position (RECORD_APPLIED) and COMMIT. One batch is in flight while the next
 * is decoded, queued and rendered: the target and the stream work at the same time.
 *
 * A batch sent whole is grouped freely (queue.ts) and, if that trips a unique constraint,
 * sent again in the source's exact order. Parts of a large source transaction sent before its
 * end are always in exact order (they cannot be sent again), and so is the rest of it.
 */
import type pg from 'pg';
import type { Metrics } from '../../health/metrics.js';
import type { Logger } from '../../log.js';
import { formatLsn, type Lsn } from '../../lsn.js';
import { runBatch, type BatchStatement } from '../../pg/batch.js';
import { pgMicrosToIso, type PgMicros } from '../../pg/epoch.js';
import type { StateSql } from '../../sql/state.js';
import type { Segment } from './changes.js';
import { renderSegments, type RenderedStatement } from './render.js';

export interface AppliedPosition {
  lsn: Lsn;
  commitTime: PgMicros | null;
}

/** A batch ready to go: its changes, rendered unless they must go in exact source order. */
export interface PendingBatch {
  segments: Segment[];
  rendered: RenderedStatement[] | null;
  /** walbridge's own records that commit with the changes (rows changed, a fence marker applied). */
  records: BatchStatement[];
  /** The position it commits at; null: a part of a large source transaction (no COMMIT yet). */
  commitAt: AppliedPosition | null;
}

const BEGIN: BatchStatement = { text: 'BEGIN', params: [] };
const COMMIT: BatchStatement = { text: 'COMMIT', params: [] };

export class TargetTransaction {
  /** BEGIN was sent and COMMIT not yet. */
  private open = false;
  /** Part of the open target transaction was sent already (a large source transaction). */
  private partSent = false;
  /** The batch the target is executing (or has finished, until settle() takes its outcome). */
  private inFlight: Promise<void> | null = null;
  private executing = false;
  private failure: unknown = null;

  constructor(
    private readonly client: pg.Client,
    /** The state whose applied position each batch records. */
    private readonly state: StateSql,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** The target is executing a batch right now. */
  get busy(): boolean {
    return this.executing;
  }

  /** A target transaction is open (parts of a large source transaction wait for their COMMIT). */
  get isOpen(): boolean {
    return this.open;
  }

  /** The next batch committing at `commitAt` must keep the source's exact order. */
  strictFor(commitAt: AppliedPosition | null): boolean {
    return commitAt === null || this.partSent;
  }

  /** The batch in flight failed: nothing more can be sent in this transaction. */
  throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }

  /**
   * Send `batch` once the one in flight has settled, without waiting for it to finish;
   * `onCommitted` runs when the target has committed it.
   */
  async dispatch(batch: PendingBatch, onCommitted: () => void): Promise<void> {
    await this.settle();
    this.executing = true;
    this.inFlight = this.send(batch).then(
      () => {
        this.executing = false;
        onCommitted();
      },
      (err: unknown) => {
        this.executing = false;
        this.failure = err;
      },
    );
  }

  /** Send a part of a large source transaction and wait for it (it keeps the transaction open). */
  async sendPart(batch: PendingBatch): Promise<void> {
    await this.settle();
    await this.send(batch);
  }

  /** Wait for the batch in flight; throws if it failed. */
  async settle(): Promise<void> {
    if (this.inFlight) {
      await this.inFlight;
      this.inFlight = null;
    }
    this.throwIfFailed();
  }

  /**
   * A read on the apply session, between batches: once the batch in flight has settled (a read
   * queued behind a batch that fails would run in its aborted transaction), inside the open
   * target transaction if parts of a large one were sent. Catalog reads only: it must not fail.
   */
  async read<R extends pg.QueryResultRow>(text: string, params: unknown[]): Promise<R[]> {
    await this.settle();
    return (await this.client.query<R>(text, params)).rows;
  }

  /** Abandon the open transaction, after the batch in flight finished or failed: ROLLBACK must not overtake it. */
  async rollback(): Promise<void> {
    if (this.inFlight) await this.inFlight;
    this.inFlight = null;
    this.failure = null;
    this.partSent = false;
    if (this.open) {
      this.open = false;
      await this.client.query('ROLLBACK').catch(() => {});
    }
  }

  private async send(batch: PendingBatch): Promise<void> {
    const { commitAt, records } = batch;
    if (batch.rendered === null) {
      await this.sendOnce(renderSegments(batch.segments, true), records, commitAt, true);
    } else {
      try {
        await this.sendOnce(batch.rendered, records, commitAt, false);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== '23505' && code !== '23P01') throw err;
        this.log.info({ code }, 'grouped statements tripped a unique constraint; applying the batch in source order');
        await this.sendOnce(renderSegments(batch.segments, true), records, commitAt, true);
      }
    }
    this.partSent = commitAt === null;
  }

  private async sendOnce(statements: RenderedStatement[], records: BatchStatement[], commitAt: AppliedPosition | null, strict: boolean): Promise<void> {
    const opening = !this.open;
    const batch: BatchStatement[] = [];
    if (opening) batch.push(BEGIN);
    for (const st of statements) batch.push(st.statement);
    batch.push(...records);
    if (commitAt !== null) {
      batch.push({ text: this.state.RECORD_APPLIED, params: [formatLsn(commitAt.lsn), pgMicrosToIso(commitAt.commitTime)] });
      batch.push(COMMIT);
    }
    if (batch.length === 0) return;
    if (this.log.isLevelEnabled('trace')) {
      const byTable: Record<string, number> = {};
      for (const st of statements) byTable[`${st.table} ${st.op}`] = (byTable[`${st.table} ${st.op}`] ?? 0) + 1;
      this.log.trace({ byTable }, 'apply batch statements');
    }
    this.log.debug({ statements: statements.length, strict }, 'apply batch');
    this.open = true;
    let rowCounts: number[];
    try {
      rowCounts = await runBatch(this.client, batch);
    } catch (err) {
      this.open = false;
      await this.client.query('ROLLBACK').catch(() => {});
      throw err;
    }
    const first = opening ? 1 : 0;
    statements.forEach((st, k) => this.checkMatched(st, rowCounts[first + k] ?? 0));
    if (commitAt !== null) this.open = false;
  }

  /** An UPDATE or DELETE that found fewer rows than it had changes: the target diverged before. */
  private checkMatched(s: RenderedStatement, matched: number): void {
    if (s.expect !== null && matched < s.expect) {
      // Verify shows where. Applying the rest is still right; say so loudly.
      this.log.warn({ table: s.table, op: s.op, expected: s.expect, matched }, 'rows to change were not found on the target');
      this.metrics.errors.inc({ kind: 'divergence' });
    }
  }
}
