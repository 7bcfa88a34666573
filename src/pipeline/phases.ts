/**
 * The three working phases after initialisation:
 *   backfill  — copy the tables not copied yet; meanwhile spool the change stream on the target
 *   catchup   — apply the spool in order
 *   streaming — apply the change stream as it comes, until stopped
 * Each phase ends by recording the next one on the target, so a restart resumes where the
 * last one stopped. The stream path itself (feeds, the loop, the sinks) is in replicator/.
 */
import type pg from 'pg';
import { addedColumnDdl } from '../catalog/added-column.js';
import type { TablePlan } from '../catalog/tables.js';
import type { Config } from '../config.js';
import { WalbridgeError } from '../errors.js';
import type { LiveStatus } from '../health/live-status.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn, maxLsn } from '../lsn.js';
import { pgMicrosFromMs } from '../pg/epoch.js';
import { displayTable } from '../pg/ident.js';
import { openTargetWriter } from '../pg/sessions.js';
import { Applier } from '../replicator/apply/applier.js';
import type { TableRuntime } from '../replicator/apply/binding.js';
import { ApplySink } from '../replicator/apply/sink.js';
import { consumeChanges } from '../replicator/consume.js';
import { SpoolFeed, startSpooling, type Spooling } from '../replicator/spool.js';
import { openWalStream } from '../replicator/stream.js';
import { stateSql, type StateSql } from '../sql/state.js';
import { withTransaction } from '../pg/transaction.js';
import { loadPipeline, loadTables, type PipelineState, type TableState } from '../state/store.js';
import type { ExportedSnapshot } from './init.js';
import { TableSetChanger } from '../tables/changer.js';
import { isMigrated } from '../tables/requests.js';
import { copyUnder, temporarySnapshot } from './snapshot.js';

export interface PhaseContext {
  config: Config;
  control: pg.Client;
  catalog: pg.Client;
  plans: TablePlan[];
  log: Logger;
  metrics: Metrics;
  status: LiveStatus;
  signal: AbortSignal;
}

function publishTableGauges(metrics: Metrics, tables: TableState[]): void {
  for (const s of ['pending', 'copying', 'copied'] as const) {
    metrics.backfillTables.set({ state: s }, tables.filter((t) => t.state === s).length);
  }
  for (const t of tables) {
    const name = `${t.schema}.${t.name}`;
    if (t.rowsEstimated !== null) metrics.backfillRowsEstimated.set({ table: name }, Math.max(t.rowsEstimated, t.rowsCopied));
  }
}

/** Drain the change stream into the spool on `client`, from where the spool ends. */
function spoolFrom(ctx: PhaseContext, state: PipelineState, client: pg.Client, signal: AbortSignal, onFailure: () => void): Promise<Spooling> {
  return startSpooling({
    sourceUrl: ctx.config.sourceUrl,
    slotName: ctx.config.slotName,
    publicationName: ctx.config.publicationName,
    spooledLsn: maxLsn(state.spooledLsn, state.consistentLsn),
    spoolCommittedId: state.spoolCommittedId,
    client,
    stateSql: stateSql(ctx.config.stateSchema),
    metrics: ctx.metrics,
    log: ctx.log,
    signal,
    onFailure,
  });
}

/** An abort signal of a phase's own, also aborted when the run is: dispose() detaches it. */
function innerSignal(outer: AbortSignal): { controller: AbortController; dispose(): void } {
  const controller = new AbortController();
  const onAbort = () => controller.abort();
  outer.addEventListener('abort', onAbort, { once: true });
  return { controller, dispose: () => outer.removeEventListener('abort', onAbort) };
}

/**
 * Copy what is not copied yet while the stream is drained into the spool. Tables copied
 * under `snapshot` (fresh start) share the slot's consistent point; after a restart the
 * rest get a new snapshot from a temporary slot, and its later LSN as their copy LSN.
 */
export async function backfillPhase(ctx: PhaseContext, state: PipelineState, snapshot: ExportedSnapshot | null): Promise<void> {
  const { control } = ctx;
  const sql = stateSql(ctx.config.stateSchema);
  const log = ctx.log.child({ component: 'backfill' });
  await control.query(sql.RESET_UNFINISHED_COPIES);
  const recorded = await loadTables(control, sql);
  publishTableGauges(ctx.metrics, recorded);
  // Tables asked for while this phase runs are taken up once streaming (tables/changer.ts).
  const copiedOrLater = new Set(recorded.filter((t) => t.state === 'copied' || !isMigrated(t)).map((t) => `${t.schema}.${t.name}`));
  const pending = ctx.plans.filter((p) => !copiedOrLater.has(displayTable(p)));

  const inner = innerSignal(ctx.signal);
  let snap = snapshot;
  let spooling: Spooling | null = null;
  try {
    spooling = await spoolFrom(ctx, state, control, inner.controller.signal, () => inner.controller.abort());
    let copyError: unknown = null;
    try {
      if (pending.length > 0) {
        if (!snap) {
          snap = await temporarySnapshot(ctx.config);
          log.info({ lsn: formatLsn(snap.slot.consistentPoint), tables: pending.length }, 'resuming the copy under a new snapshot');
        }
        ctx.status.markReady('backfill');
        await copyUnder(snap, pending, { config: ctx.config, log, metrics: ctx.metrics, signal: inner.controller.signal, live: ctx.status.copies });
      }
    } catch (err) {
      copyError = err;
      inner.controller.abort();
    }
    // The drain ends after a final flush once the copy is done (or at once on abort). If it
    // failed, the stream broke first and that is the root cause: stop() throws it.
    await spooling.stop();
    if (copyError !== null) throw copyError;
    if (ctx.signal.aborted) return;
    await control.query(sql.SET_PHASE, ['catchup']);
    log.info({ lsn: formatLsn(spooling.writer.durableLsn) }, 'backfill finished; applying the changes spooled meanwhile');
  } finally {
    inner.dispose();
    if (snap) await snap.conn.close();
    if (spooling) await spooling.stop().catch(() => {});
  }
}


/** The tables the applier applies (or holds), as recorded: not removed, not an add waiting to be taken up. */
async function tableRuntimes(control: pg.Client, sql: StateSql, plans: TablePlan[]): Promise<Map<string, TableRuntime>> {
  const recorded = await loadTables(control, sql);
  const byName = new Map(recorded.map((t) => [`${t.schema}.${t.name}`, t]));
  const out = new Map<string, TableRuntime>();
  for (const plan of plans) {
    const t = byName.get(displayTable(plan));
    if (t && !isMigrated(t)) continue;
    out.set(displayTable(plan), { plan, copyLsn: t && t.state === 'copied' ? t.copyLsn : null, hold: t?.holding ?? false });
  }
  return out;
}

/** The applier, resuming from the position the target recorded, behind the one sink that applies (and reports it). */
function applySink(ctx: PhaseContext, tables: Map<string, TableRuntime>, state: PipelineState): { applier: Applier; sink: ApplySink } {
  const start = state.appliedLsn ?? state.consistentLsn;
  if (start === null) throw new WalbridgeError('state', 'walbridge state has no applied position', { hint: 'Run walbridge teardown --target and start again.' });
  const commitTime = state.appliedCommitTime ? pgMicrosFromMs(state.appliedCommitTime.getTime()) : null;
  const applier = new Applier(
    ctx.control,
    tables,
    { lsn: start, commitTime },
    {
      stateSql: stateSql(ctx.config.stateSchema),
      batchChanges: ctx.config.applyBatchChanges,
      batchMs: ctx.config.applyBatchMs,
      describeAddedColumn: (table, column) => addedColumnDdl(ctx.catalog, table, column),
      // While "walbridge cutover" runs, as the monitor last read it (every few seconds), or as
      // recorded when this phase started (a restart in the middle of a cutover keeps recording).
      recordChangedRows: () => (ctx.status.recorded?.pipeline ?? state).cutoverRequestedAt !== null,
      migration: ctx.config.slotName,
    },
    ctx.log.child({ component: 'apply' }),
    ctx.metrics,
  );
  return { applier, sink: new ApplySink(applier, ctx.status) };
}

/**
 * Apply the spool in arrival order, while the stream keeps being drained into it on a
 * second connection (the spool can hold hours of changes: the slot must not wait for it).
 * Once the applier is close behind the drain, the drain stops, the rest is applied, and the
 * live stream takes over from the last applied position.
 */
export async function catchupPhase(ctx: PhaseContext, state: PipelineState): Promise<void> {
  const { control } = ctx;
  const sql = stateSql(ctx.config.stateSchema);
  const log = ctx.log.child({ component: 'spool' });
  await control.query(sql.DISCARD_PARTIAL_SPOOL, [state.spoolCommittedId.toString()]);
  const { applier, sink } = applySink(ctx, await tableRuntimes(control, sql, ctx.plans), state);
  ctx.status.markReady('streaming');
  const inner = innerSignal(ctx.signal);
  const writer = await openTargetWriter(ctx.config.targetUrl, 'walbridge spool', ctx.config);
  let spooling: Spooling | null = null;
  try {
    spooling = await spoolFrom(ctx, state, writer, inner.controller.signal, () => inner.controller.abort());
    await consumeChanges(new SpoolFeed(control, sql, spooling, applier.durablePosition.lsn), sink, {
      signal: inner.controller.signal,
      idleFlushMs: ctx.config.applyBatchMs,
    });
    if (inner.controller.signal.aborted) {
      await spooling.stop(); // throws the stream's failure, if that is why
      return;
    }
    const pos = applier.durablePosition;
    await withTransaction(control, async () => {
      await control.query(sql.CLEAR_SPOOL);
      await control.query(sql.SET_PHASE, ['streaming']);
    });
    log.info({ lsn: formatLsn(pos.lsn) }, 'spool applied; streaming');
  } finally {
    inner.dispose();
    if (spooling) await spooling.stop().catch(() => {});
    await writer.end().catch(() => {});
  }
}

/**
 * Apply the live change stream until stopped, while the table set may change (tables/): a
 * table added or copied again is held meanwhile, not applied.
 */
export async function streamingPhase(ctx: PhaseContext): Promise<void> {
  // A copy of a table added or resynced that a crash cut off starts over under a new snapshot.
  const sql = stateSql(ctx.config.stateSchema);
  await ctx.control.query(sql.RESET_UNFINISHED_COPIES);
  const state = await loadPipeline(ctx.control, sql);
  if (!state) throw new WalbridgeError('state', 'walbridge state disappeared from the target', { hint: 'Was walbridge teardown run meanwhile?' });
  const tables = await tableRuntimes(ctx.control, sql, ctx.plans);
  const notCopied = [...tables.values()].filter((t) => t.copyLsn === null && !t.hold).map((t) => displayTable(t.plan));
  if (notCopied.length > 0) {
    throw new WalbridgeError('state', `tables not copied yet while streaming: ${notCopied.join(', ')}`, {
      hint: `Add them to the running migration with "walbridge tables add ${notCopied.join(' ')}".`,
    });
  }
  const { applier, sink } = applySink(ctx, tables, state);
  const { config } = ctx;
  const changer = new TableSetChanger({
    config,
    control: ctx.control,
    applier,
    plans: new Map(ctx.plans.map((p) => [displayTable(p), p])),
    describeAddedColumn: (table, column) => addedColumnDdl(ctx.catalog, table, column),
    log: ctx.log,
    metrics: ctx.metrics,
    status: ctx.status,
    signal: ctx.signal,
  });
  const stream = await openWalStream(config.sourceUrl, { slotName: config.slotName, publicationName: config.publicationName, startLsn: applier.durablePosition.lsn }, ctx.log);
  ctx.status.markReady('streaming');
  changer.start();
  try {
    await consumeChanges(stream, sink, { signal: ctx.signal, idleFlushMs: config.applyBatchMs, atBoundary: changer.atBoundary });
  } finally {
    await changer.stop();
    await stream.close();
  }
}
