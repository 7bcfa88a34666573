/**
 * The backfill: every table not copied yet is copied under one exported snapshot, several
 * at a time, largest first (so the longest copy starts earliest).
 */
import PQueue from 'p-queue';
import type { TablePlan } from '../catalog/tables.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import type { Lsn } from '../lsn.js';
import type { StateSql } from '../sql/state.js';
import type { LiveCopy } from '../status/report.js';
import { PartsScheduler } from './parts.js';
import { BackfillProgress } from './progress.js';
import { BackfillRun } from './run.js';
import { SessionPairs } from './session-pairs.js';
import { backfillTable, type BackfillContext, type FreshSnapshot } from './table.js';

export interface BackfillOptions {
  sourceUrl: string;
  targetUrl: string;
  /** lz4 for the values the copy TOASTs, where the target has it (pg/sessions.ts). */
  toastLz4: boolean;
  plans: TablePlan[];
  /** The state the copies are recorded in. */
  stateSql: StateSql;
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

export async function runBackfill(opts: BackfillOptions): Promise<void> {
  const plans = [...opts.plans].sort((a, b) => b.source.bytes - a.source.bytes);
  const queue = new PQueue({ concurrency: Math.max(1, opts.jobs) });
  const run = new BackfillRun(opts.signal);
  const sessions = new SessionPairs(opts.sourceUrl, opts.targetUrl, { toastLz4: opts.toastLz4 }, run);
  // The first failure, or an abort: no table starts any more, and every session is closed,
  // which also cuts off the copies in flight.
  run.onStop(() => {
    queue.clear();
    sessions.closeAll();
  });
  const stopOnAbort = run.stopOnAbort();
  const progress = new BackfillProgress(opts.log, opts.metrics, opts.live);
  const stopTicker = progress.logEvery(opts.progressIntervalMs ?? 10_000);
  const copyOptions = { maxBytesPerSecond: opts.maxBytesPerSecond ?? null, binary: opts.binary };
  const parts = new PartsScheduler({ jobs: opts.jobs, splitBytes: opts.splitBytes, snapshotName: opts.snapshotName, copyOptions }, sessions, run);
  const ctx: BackfillContext = {
    run,
    sessions,
    parts,
    progress,
    stateSql: opts.stateSql,
    snapshotName: opts.snapshotName,
    copyLsn: opts.copyLsn,
    freshSnapshot: opts.freshSnapshot,
    deferIndexes: opts.deferIndexes,
    copyOptions,
    log: opts.log,
  };

  try {
    // backfillTable records its own failure; the catch only keeps a rejection from going unhandled.
    for (const plan of plans) queue.add(() => backfillTable(plan, ctx)).catch(() => {});
    await queue.onIdle();
  } finally {
    stopTicker();
    stopOnAbort();
    await sessions.closeIdle();
  }
  run.throwIfFailed();
  if (run.aborted) throw new Error('backfill stopped');
}
