/**
 * The backfill: every table not copied yet is copied under one exported snapshot, several
 * at a time, largest first (so the longest copy starts earliest).
 */
import PQueue from 'p-queue';
import type pg from 'pg';
import type { TablePlan } from '../catalog/tables.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { WalbridgeError } from '../errors.js';
import { displayTable, quoteTable } from '../pg/ident.js';
import { deleteAllRows } from '../sql/catalog.js';
import { LOCK_PENDING_TABLE, MARK_COPIED, MARK_COPYING, MARK_COPYING_IN_PARTS, MOVE_COPY_LSN } from '../sql/state.js';
import type { LiveCopy } from '../status/report.js';
import { assertTargetEmpty, copyFormat, copyTable, openSnapshotRead, TableRewrittenError, type CopyDone, type CopyPart, type CopyProgress } from './copy.js';
import { buildIndexesAgain, setIndexesAside } from './indexes.js';
import { PartsScheduler } from './parts.js';
import { BackfillProgress } from './progress.js';
import { BackfillRun } from './run.js';
import { SessionPairs } from './session-pairs.js';

export interface BackfillOptions {
  sourceUrl: string;
  targetUrl: string;
  plans: TablePlan[];
  snapshotName: string;
  copyLsn: Lsn;
  jobs: number;
  /** A table of at least twice this many bytes (with TOAST) is copied in parts, on up to `jobs` sessions side by side. */
  splitBytes: number;
  /** Per copy job, in bytes of COPY data a second; null: as fast as the servers go. */
  maxBytesPerSecond?: number | null;
  /** Drop a table's plain secondary indexes while it is copied, build them after (indexes.ts). */
  deferIndexes: boolean;
  /** COPY in binary format where the table's types allow it (copy.ts). */
  binary: boolean;
  log: Logger;
  metrics: Metrics;
  signal: AbortSignal;
  /** Copies in flight, shown on the status page and recorded by the monitor. */
  live: Map<string, LiveCopy>;
  progressIntervalMs?: number;
  /**
   * A snapshot newer than `snapshotName`, for a table truncated or rewritten since that one
   * was taken; `lsn` is its copy LSN. Call release() once the copy has imported it.
   */
  freshSnapshot: () => Promise<FreshSnapshot>;
}

export interface FreshSnapshot {
  name: string;
  lsn: Lsn;
  release(): Promise<void>;
}

/** A table truncated on the source again and again while queued is copied under this many snapshots at most. */
const MAX_SNAPSHOTS_PER_TABLE = 5;

export async function runBackfill(opts: BackfillOptions): Promise<void> {
  const { log } = opts;
  const plans = [...opts.plans].sort((a, b) => b.source.bytes - a.source.bytes);
  const queue = new PQueue({ concurrency: Math.max(1, opts.jobs) });
  const run = new BackfillRun(opts.signal);
  const sessions = new SessionPairs(opts.sourceUrl, opts.targetUrl, run);
  // The first failure, or an abort: no table starts any more, and every session is closed,
  // which also cuts off the copies in flight.
  run.onStop(() => {
    queue.clear();
    sessions.closeAll();
  });
  const stopOnAbort = run.stopOnAbort();
  const progress = new BackfillProgress(log, opts.metrics, opts.live);
  const stopTicker = progress.logEvery(opts.progressIntervalMs ?? 10_000);
  const copyOptions = { maxBytesPerSecond: opts.maxBytesPerSecond ?? null, binary: opts.binary };
  const scheduler = new PartsScheduler({ jobs: opts.jobs, splitBytes: opts.splitBytes, snapshotName: opts.snapshotName, copyOptions }, sessions, run);

  /**
   * The table was truncated or rewritten after the shared snapshot: read it under a snapshot
   * of its own, taken now. Its changes from that snapshot's LSN on are applied after the copy;
   * the ones before (the TRUNCATE or rewrite among them) are in what the copy reads.
   */
  const readUnderFreshSnapshot = async (source: pg.Client, plan: TablePlan, first: TableRewrittenError): Promise<Lsn> => {
    const tlog = log.child({ table: displayTable(plan) });
    let reason: TableRewrittenError = first;
    for (let attempt = 2; ; attempt++) {
      const fresh = await opts.freshSnapshot();
      tlog.warn({ lsn: formatLsn(fresh.lsn) }, `${reason.message}: copying it under a new snapshot`);
      try {
        await openSnapshotRead(source, plan, fresh.name);
        return fresh.lsn;
      } catch (err) {
        if (!(err instanceof TableRewrittenError) || attempt >= MAX_SNAPSHOTS_PER_TABLE) throw err;
        reason = err;
      } finally {
        // Imported (or failed): the temporary slot behind it must not hold WAL back any longer.
        await fresh.release();
      }
    }
  };

  /**
   * Take a pending table for this instance. If an earlier copy in parts was cut off, the
   * parts it committed are removed first, in the same target transaction (walbridge wrote
   * them: the table was empty when it started).
   */
  const claimTable = async (target: pg.Client, plan: TablePlan, tlog: Logger): Promise<void> => {
    await target.query('BEGIN');
    const { rows } = await target.query<{ copy_in_parts: boolean }>(LOCK_PENDING_TABLE, [plan.schema, plan.name]);
    if (rows.length === 0) {
      await target.query('ROLLBACK');
      throw new WalbridgeError('state', `${displayTable(plan)} is not pending any more: another instance copies it`, { transient: true });
    }
    if (rows[0]?.copy_in_parts) {
      tlog.info('removing the rows of a copy in parts that was cut off, before copying the table again');
      await target.query(deleteAllRows(quoteTable(plan)));
    }
    await target.query(MARK_COPYING, [plan.schema, plan.name, formatLsn(opts.copyLsn)]);
    await target.query('COMMIT');
  };

  /**
   * Copy a table in parts side by side (PartsScheduler), each part committed on its own; the
   * table is marked copied once all are in.
   */
  const copyInParts = async (
    source: pg.Client,
    target: pg.Client,
    plan: TablePlan,
    parts: CopyPart[],
    copyLsn: Lsn,
    onProgress: (d: CopyProgress) => void,
    tlog: Logger,
  ): Promise<CopyDone> => {
    const lsn = formatLsn(copyLsn);
    await assertTargetEmpty(target, plan);
    const marked = await target.query(MARK_COPYING_IN_PARTS, [plan.schema, plan.name, lsn]);
    if (marked.rowCount !== 1) throw new WalbridgeError('state', `${displayTable(plan)} is no longer this instance's to copy`, { transient: true });
    const total = await scheduler.copyParts(source, target, plan, parts, onProgress, tlog);
    // The indexes set aside, built again in the transaction that marks the table copied.
    await target.query('BEGIN');
    const t0 = Date.now();
    const indexesBuilt = await buildIndexesAgain(target, plan);
    const indexSeconds = (Date.now() - t0) / 1000;
    const copied = await target.query(MARK_COPIED, [plan.schema, plan.name, lsn, total.rows, total.bytes]);
    if (copied.rowCount !== 1) {
      await target.query('ROLLBACK');
      throw new WalbridgeError('state', `the copy of ${displayTable(plan)} is no longer this instance's to finish`, { transient: true });
    }
    await target.query('COMMIT');
    await source.query('COMMIT');
    return { ...total, indexesBuilt, indexSeconds };
  };

  const copyOne = async (plan: TablePlan) => {
    if (run.stopped) return;
    const table = displayTable(plan);
    const tlog = log.child({ table, lsn: formatLsn(opts.copyLsn) });
    await sessions.withPair(
      async ({ source, target }) => {
        await claimTable(target, plan, tlog);
        if (opts.deferIndexes) {
          const aside = await setIndexesAside(target, plan);
          if (aside.length > 0) tlog.info({ indexes: aside }, 'secondary indexes set aside for the copy; built again once its rows are in');
        }
        const copying = progress.started(plan);
        tlog.info({ estimatedRows: plan.source.estimatedRows, bytes: plan.source.bytes }, 'copy started');
        const { onProgress } = copying;
        let copyLsn = opts.copyLsn;
        try {
          await openSnapshotRead(source, plan, opts.snapshotName);
        } catch (err) {
          if (!(err instanceof TableRewrittenError)) throw err;
          copyLsn = await readUnderFreshSnapshot(source, plan, err);
          const moved = await target.query(MOVE_COPY_LSN, [plan.schema, plan.name, formatLsn(opts.copyLsn), formatLsn(copyLsn)]);
          if (moved.rowCount !== 1) throw new WalbridgeError('state', `${table} is no longer this instance's to copy`, { transient: true });
        }
        // A large table is split in parts copied side by side, all under the shared snapshot
        // (one taken for this table alone, after a rewrite, is not shared).
        const parts = copyLsn === opts.copyLsn ? await scheduler.planParts(source, plan) : null;
        const done =
          parts === null
            ? await copyTable(source, target, plan, copyLsn, { ...copyOptions, onProgress })
            : await copyInParts(source, target, plan, parts, copyLsn, onProgress, tlog);
        progress.finished(table);
        const seconds = (Date.now() - copying.startedAt) / 1000;
        if (done.indexesBuilt.length > 0) tlog.info({ indexes: done.indexesBuilt, seconds: done.indexSeconds }, 'secondary indexes built again');
        tlog.info(
          { rows: done.rows, bytes: done.bytes, seconds, rowsPerSec: Math.round(done.rows / Math.max(seconds, 0.001)), format: copyFormat(plan, copyOptions) },
          'copy finished',
        );
      },
      (err) => {
        progress.dropped(table);
        run.fail(err);
      },
    );
  };

  try {
    // copyOne records its own failure; the catch only keeps a rejection from going unhandled.
    for (const plan of plans) queue.add(() => copyOne(plan)).catch(() => {});
    await queue.onIdle();
  } finally {
    stopTicker();
    stopOnAbort();
    await sessions.closeIdle();
  }
  run.throwIfFailed();
  if (run.aborted) throw new Error('backfill stopped');
}
