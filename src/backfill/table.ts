/**
 * The backfill of one table, on one session pair: claim it, set its indexes aside, read it
 * under the shared snapshot (or a fresh one after a rewrite), copy it whole or in parts, and
 * mark it copied.
 */
import type pg from 'pg';
import type { TablePlan } from '../catalog/tables.js';
import { WalbridgeError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { displayTable, quoteTable } from '../pg/ident.js';
import { deleteAllRows } from '../sql/catalog.js';
import type { StateSql } from '../sql/state.js';
import { assertTargetEmpty, copyFormat, copyTable, openSnapshotRead, TableRewrittenError, type CopyDone, type CopyOptions, type CopyPart, type CopyProgress } from './copy.js';
import { buildIndexesAgain, setIndexesAside } from './indexes.js';
import type { PartsScheduler } from './parts.js';
import type { BackfillProgress } from './progress.js';
import type { BackfillRun } from './run.js';
import type { SessionPairs } from './session-pairs.js';

/** A table truncated on the source again and again while queued is copied under this many snapshots at most. */
const MAX_SNAPSHOTS_PER_TABLE = 5;

/** A snapshot of a table's own, taken after the shared one (see BackfillOptions.freshSnapshot). */
export interface FreshSnapshot {
  name: string;
  lsn: Lsn;
  release(): Promise<void>;
}

/** What every table's backfill shares. */
export interface BackfillContext {
  run: BackfillRun;
  sessions: SessionPairs;
  parts: PartsScheduler;
  progress: BackfillProgress;
  /** The state the copies are recorded in. */
  stateSql: StateSql;
  /** The shared snapshot, and the copy LSN it is consistent at. */
  snapshotName: string;
  copyLsn: Lsn;
  freshSnapshot: () => Promise<FreshSnapshot>;
  deferIndexes: boolean;
  copyOptions: Omit<CopyOptions, 'onProgress'>;
  log: Logger;
}

/** Copy `plan`, unless the run has stopped; a failure is the run's (BackfillRun.fail), not thrown. */
export async function backfillTable(plan: TablePlan, ctx: BackfillContext): Promise<void> {
  if (ctx.run.stopped) return;
  const table = displayTable(plan);
  const tlog = ctx.log.child({ table, lsn: formatLsn(ctx.copyLsn) });
  await ctx.sessions.withPair(
    async ({ source, target }) => {
      await claimTable(target, ctx.stateSql, plan, ctx.copyLsn, tlog);
      if (ctx.deferIndexes) {
        const aside = await setIndexesAside(target, ctx.stateSql, plan);
        if (aside.length > 0) tlog.info({ indexes: aside }, 'secondary indexes set aside for the copy; built again once its rows are in');
      }
      const progress = ctx.progress.started(plan);
      tlog.info({ estimatedRows: plan.source.estimatedRows, bytes: plan.source.bytes }, 'copy started');
      const copyLsn = await openRead(source, target, plan, ctx);
      // A large table is split in parts copied side by side, all under the shared snapshot
      // (one taken for this table alone, after a rewrite, is not shared).
      const parts = copyLsn === ctx.copyLsn ? await ctx.parts.planParts(source, plan) : null;
      const done =
        parts === null
          ? await copyTable(source, target, ctx.stateSql, plan, copyLsn, { ...ctx.copyOptions, onProgress: progress.onProgress })
          : await copyInParts(source, target, ctx.stateSql, plan, parts, copyLsn, progress.onProgress, ctx.parts, tlog);
      ctx.progress.finished(table);
      const seconds = (Date.now() - progress.startedAt) / 1000;
      if (done.indexesBuilt.length > 0) tlog.info({ indexes: done.indexesBuilt, seconds: done.indexSeconds }, 'secondary indexes built again');
      tlog.info(
        { rows: done.rows, bytes: done.bytes, seconds, rowsPerSec: Math.round(done.rows / Math.max(seconds, 0.001)), format: copyFormat(plan, ctx.copyOptions) },
        'copy finished',
      );
    },
    (err) => {
      ctx.progress.dropped(table);
      ctx.run.fail(err);
    },
  );
}

/**
 * Take a pending table for this instance. If an earlier copy in parts was cut off, the
 * parts it committed are removed first, in the same target transaction (walbridge wrote
 * them: the table was empty when it started); so are the rows of a table copied again
 * ("walbridge resync"). DELETE, not TRUNCATE: other target tables may reference it.
 */
async function claimTable(target: pg.ClientBase, state: StateSql, plan: TablePlan, copyLsn: Lsn, tlog: Logger): Promise<void> {
  await target.query('BEGIN');
  const { rows } = await target.query<{ empty_first: boolean }>(state.LOCK_PENDING_TABLE, [plan.schema, plan.name]);
  if (rows.length === 0) {
    await target.query('ROLLBACK');
    throw new WalbridgeError('state', `${displayTable(plan)} is not pending any more: another instance copies it`, { transient: true });
  }
  if (rows[0]?.empty_first) {
    tlog.info('removing the rows of the target table (a copy in parts cut off, or a resync) before copying it again');
    await target.query(deleteAllRows(quoteTable(plan)));
  }
  await target.query(state.MARK_COPYING, [plan.schema, plan.name, formatLsn(copyLsn)]);
  await target.query('COMMIT');
}

/**
 * Open the table's read on `source` under the shared snapshot, or under a fresh one if the
 * table was rewritten since (its copy LSN moved on the target too); returns its copy LSN.
 */
async function openRead(source: pg.ClientBase, target: pg.ClientBase, plan: TablePlan, ctx: BackfillContext): Promise<Lsn> {
  try {
    await openSnapshotRead(source, plan, ctx.snapshotName);
    return ctx.copyLsn;
  } catch (err) {
    if (!(err instanceof TableRewrittenError)) throw err;
    const copyLsn = await readUnderFreshSnapshot(source, plan, err, ctx.freshSnapshot, ctx.log);
    const moved = await target.query(ctx.stateSql.MOVE_COPY_LSN, [plan.schema, plan.name, formatLsn(ctx.copyLsn), formatLsn(copyLsn)]);
    if (moved.rowCount !== 1) throw new WalbridgeError('state', `${displayTable(plan)} is no longer this instance's to copy`, { transient: true });
    return copyLsn;
  }
}

/**
 * The table was truncated or rewritten after the shared snapshot: read it under a snapshot
 * of its own, taken now. Its changes from that snapshot's LSN on are applied after the copy;
 * the ones before (the TRUNCATE or rewrite among them) are in what the copy reads.
 */
async function readUnderFreshSnapshot(
  source: pg.ClientBase,
  plan: TablePlan,
  first: TableRewrittenError,
  freshSnapshot: () => Promise<FreshSnapshot>,
  log: Logger,
): Promise<Lsn> {
  const tlog = log.child({ table: displayTable(plan) });
  let reason: TableRewrittenError = first;
  for (let attempt = 2; ; attempt++) {
    const fresh = await freshSnapshot();
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
}

/**
 * Copy a table in parts side by side (PartsScheduler), each part committed on its own; the
 * table is marked copied once all are in.
 */
async function copyInParts(
  source: pg.ClientBase,
  target: pg.ClientBase,
  state: StateSql,
  plan: TablePlan,
  parts: CopyPart[],
  copyLsn: Lsn,
  onProgress: (d: CopyProgress) => void,
  scheduler: PartsScheduler,
  tlog: Logger,
): Promise<CopyDone> {
  const lsn = formatLsn(copyLsn);
  await assertTargetEmpty(target, plan);
  const marked = await target.query(state.MARK_COPYING_IN_PARTS, [plan.schema, plan.name, lsn]);
  if (marked.rowCount !== 1) throw new WalbridgeError('state', `${displayTable(plan)} is no longer this instance's to copy`, { transient: true });
  const total = await scheduler.copyParts(source, target, plan, parts, onProgress, tlog);
  // The indexes set aside, built again in the transaction that marks the table copied.
  await target.query('BEGIN');
  const t0 = Date.now();
  const indexesBuilt = await buildIndexesAgain(target, state, plan);
  const indexSeconds = (Date.now() - t0) / 1000;
  const copied = await target.query(state.MARK_COPIED, [plan.schema, plan.name, lsn, total.rows, total.bytes]);
  if (copied.rowCount !== 1) {
    await target.query('ROLLBACK');
    throw new WalbridgeError('state', `the copy of ${displayTable(plan)} is no longer this instance's to finish`, { transient: true });
  }
  await target.query('COMMIT');
  await source.query('COMMIT');
  return { ...total, indexesBuilt, indexSeconds };
}
