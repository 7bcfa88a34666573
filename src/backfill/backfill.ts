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
import { TABLE_PARTS } from '../sql/source.js';
import { LOCK_PENDING_TABLE, MARK_COPIED, MARK_COPYING, MARK_COPYING_IN_PARTS, MOVE_COPY_LSN } from '../sql/state.js';
import type { LiveCopy } from '../status/report.js';
import { assertTargetEmpty, copyFormat, copyPart, copyTable, importSnapshot, lockForCopy, openSnapshotRead, TableRewrittenError, type CopyDone, type CopyPart, type CopyProgress } from './copy.js';
import { buildIndexesAgain, setIndexesAside } from './indexes.js';
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
   * Copies in parts in progress, and the extra session pairs that help them: at most jobs - 1
   * at a time, each taking the next part of whichever table has the most bytes of parts still
   * waiting (any table: they all read under the same snapshot), part after part, so the largest
   * table does not end up copying alone on one session at the end.
   */
  interface PartsJob {
    plan: TablePlan;
    queue: CopyPart[];
    /** Bytes per part (an estimate, to pick whom to help). */
    partBytes: number;
    total: CopyProgress;
    onProgress: (d: CopyProgress) => void;
    /** Parts being copied by helpers right now. */
    inFlight: number;
    idle: (() => void) | null;
  }
  const partsJobs = new Set<PartsJob>();
  let spareSessions = Math.max(0, opts.jobs - 1);
  let helpers = 0;

  const copyOnePart = async (job: PartsJob, part: CopyPart, s: pg.Client, t: pg.Client) => {
    const done = await copyPart(s, t, job.plan, part, { ...copyOptions, onProgress: job.onProgress });
    job.total.rows += done.rows;
    job.total.bytes += done.bytes;
  };

  const nextJob = (): PartsJob | null => {
    let best: PartsJob | null = null;
    for (const j of partsJobs) if (j.queue.length > 0 && (best === null || j.queue.length * j.partBytes > best.queue.length * best.partBytes)) best = j;
    return best;
  };

  /** A session pair of its own under the shared snapshot, copying parts until none wait. */
  const help = () =>
    sessions.withPair(
      async ({ source: s, target: t }) => {
        await importSnapshot(s, opts.snapshotName);
        const locked = new Set<PartsJob>();
        for (let job = nextJob(); job !== null && !run.failed; job = nextJob()) {
          if (!locked.has(job)) {
            await lockForCopy(s, job.plan);
            locked.add(job);
          }
          const part = job.queue.shift();
          if (part === undefined) continue;
          job.inFlight++;
          try {
            await copyOnePart(job, part, s, t);
          } finally {
            job.inFlight--;
            if (job.inFlight === 0 && job.queue.length === 0) job.idle?.();
          }
        }
        await s.query('COMMIT');
      },
      (err) => {
        // As any copy failing: the backfill stops (every session closed) and is run again.
        run.fail(err);
        for (const j of partsJobs) j.idle?.();
      },
    );

  /** Start helpers while session pairs are spare and parts wait for more than the helpers running. */
  const lendSessions = () => {
    while (spareSessions > 0 && !run.stopped) {
      let waiting = 0;
      for (const j of partsJobs) waiting += j.queue.length;
      if (waiting <= helpers) return;
      spareSessions--;
      helpers++;
      void help().finally(() => {
        spareSessions++;
        helpers--;
        lendSessions();
      });
    }
  };

  /**
   * The parts of a table large enough to split (block ranges of an ordinary table, leaves of
   * a partitioned one), or null to copy it in one piece. More parts than sessions, so that
   * sessions lent from tables that finished early find work.
   */
  const planParts = async (source: pg.Client, plan: TablePlan): Promise<CopyPart[] | null> => {
    if (opts.jobs < 2) return null;
    const { rows } = await source.query<{ bytes: string; blocks: string; tid_range_scan: boolean; leaves: string[] }>(TABLE_PARTS, [quoteTable(plan)]);
    const t = rows[0];
    if (!t) return null;
    const worth = Math.floor(Number(t.bytes) / Math.max(1, opts.splitBytes));
    if (plan.source.kind === 'p') return t.leaves.length >= 2 && worth >= 2 ? t.leaves.map((quotedName) => ({ kind: 'leaf', quotedName })) : null;
    const n = Math.min(2 * opts.jobs, worth);
    if (!t.tid_range_scan || !(n >= 2)) return null;
    const per = Math.ceil(Number(t.blocks) / n);
    return Array.from({ length: n }, (_, i) => ({ kind: 'blocks', from: i * per, to: i === n - 1 ? null : (i + 1) * per }));
  };

  /**
   * Copy a table in parts side by side: on the table's own session pair (whose source
   * transaction holds the table's lock throughout) and on pairs lent from the shared pool
   * (lendSessions), all under the same snapshot. Each part commits on its own; the table is
   * marked copied once all are in.
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
    const job: PartsJob = {
      plan,
      queue: [...parts],
      partBytes: plan.source.bytes / Math.max(1, parts.length),
      total: { rows: 0, bytes: 0 },
      onProgress,
      inFlight: 0,
      idle: null,
    };
    partsJobs.add(job);
    try {
      const before = helpers;
      lendSessions();
      tlog.info({ parts: parts.length, helpers: helpers - before, by: parts[0]?.kind === 'leaf' ? 'partition' : 'block range' }, 'copying in parts side by side');
      for (let part = job.queue.shift(); part !== undefined && !run.failed; part = job.queue.shift()) await copyOnePart(job, part, source, target);
      // The last parts may still be copying on helpers' sessions.
      if (job.inFlight > 0 && !run.failed) await new Promise<void>((resolve) => (job.idle = resolve));
    } finally {
      partsJobs.delete(job);
    }
    run.throwIfFailed();
    const total = job.total;
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
        const parts = copyLsn === opts.copyLsn ? await planParts(source, plan) : null;
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
