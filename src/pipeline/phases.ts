/**
 * The three working phases after initialisation:
 *   backfill  — copy the tables not copied yet; meanwhile spool the change stream on the target
 *   catchup   — apply the spool in order
 *   streaming — apply the change stream as it comes, until stopped
 * Each phase ends by recording the next one on the target, so a restart resumes where the
 * last one stopped.
 */
import type pg from 'pg';
import { runBackfill } from '../backfill/backfill.js';
import { addedColumnDdl } from '../catalog/added-column.js';
import type { TablePlan } from '../catalog/tables.js';
import type { Config } from '../config.js';
import { WalbridgeError } from '../errors.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn, maxLsn, type Lsn } from '../lsn.js';
import { displayTable } from '../pg/ident.js';
import { ReplicationConnection } from '../pg/replication.js';
import { Applier, type AppliedPosition, type TableRuntime } from '../replicator/apply.js';
import { consumeStream, type StreamSink } from '../replicator/consume.js';
import { openTargetWriter } from '../pg/sessions.js';
import { decodePgoutput } from '../replicator/pgoutput.js';
import { readSpool, SpoolWriter } from '../replicator/spool.js';
import { WalStream, type XLogData } from '../replicator/stream.js';
import { CLEAR_SPOOL, DISCARD_PARTIAL_SPOOL, RESET_UNFINISHED_COPIES, SET_PHASE, SPOOL_MAX_ID } from '../sql/state.js';
import { loadPipeline, loadTables, withTransaction, type PipelineState, type TableState } from '../state/store.js';
import type { ExportedSnapshot } from './init.js';
import type { LiveStatus } from '../health/live-status.js';

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

async function openStream(ctx: PhaseContext, startLsn: Lsn): Promise<WalStream> {
  const conn = await ReplicationConnection.open(ctx.config.sourceUrl, 'walbridge stream');
  try {
    await conn.identifySystem(ctx.config.sourceUrl);
  } catch (err) {
    await conn.close();
    throw err;
  }
  ctx.log.info({ component: 'stream', slot: ctx.config.slotName, lsn: formatLsn(startLsn) }, 'streaming changes from the slot');
  return WalStream.start(conn, { slotName: ctx.config.slotName, publicationName: ctx.config.publicationName, startLsn });
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

/**
 * The change stream drained into the spool on the target, until `stop()`: the source never
 * holds WAL for walbridge while the copy runs, nor while the spool is applied afterwards.
 */
interface Spooling {
  spool: SpoolWriter;
  /** Ends the drain after a final flush; resolves when it has (rejects if the stream broke). */
  stop(): Promise<void>;
  /** Settles when the drain ends by itself (a failure) or after stop(). */
  readonly done: Promise<void>;
}

async function startSpooling(ctx: PhaseContext, state: PipelineState, client: pg.Client, signal: AbortSignal, onFailure: () => void): Promise<Spooling> {
  // Rows past the last complete transaction were cut off by a crash; it is sent again.
  await client.query(DISCARD_PARTIAL_SPOOL, [state.spoolCommittedId.toString()]);
  const { rows } = await client.query<{ max_id: string }>(SPOOL_MAX_ID);
  const start = maxLsn(state.spooledLsn, state.consistentLsn);
  const stream = await openStream(ctx, start);
  const spool = new SpoolWriter(client, { lsn: start, lastId: BigInt(rows[0]?.max_id ?? '0') }, ctx.metrics);
  let stopping = false;
  const done = consumeStream(stream, spool, { signal, idleFlushMs: 200, until: () => stopping })
    .catch((err: unknown) => {
      onFailure();
      throw err;
    })
    .finally(() => stream.close());
  done.catch(() => {}); // observed by whoever awaits stop() or done
  return {
    spool,
    done,
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

/**
 * Copy what is not copied yet while the stream is drained into the spool. Tables copied
 * under `snapshot` (fresh start) share the slot's consistent point; after a restart the
 * rest get a new snapshot from a temporary slot, and its later LSN as their copy LSN.
 */
export async function backfillPhase(ctx: PhaseContext, state: PipelineState, snapshot: ExportedSnapshot | null): Promise<void> {
  const { control } = ctx;
  const log = ctx.log.child({ component: 'backfill' });
  await control.query(RESET_UNFINISHED_COPIES);
  const recorded = await loadTables(control);
  publishTableGauges(ctx.metrics, recorded);
  const copied = new Set(recorded.filter((t) => t.state === 'copied').map((t) => `${t.schema}.${t.name}`));
  const pending = ctx.plans.filter((p) => !copied.has(displayTable(p)));

  const inner = new AbortController();
  const onOuterAbort = () => inner.abort();
  ctx.signal.addEventListener('abort', onOuterAbort, { once: true });
  let snap = snapshot;
  let spooling: Spooling | null = null;
  try {
    spooling = await startSpooling(ctx, state, control, inner.signal, () => inner.abort());
    let copyError: unknown = null;
    try {
      if (pending.length > 0) {
        if (!snap) {
          snap = await temporarySnapshot(ctx);
          log.info({ lsn: formatLsn(snap.slot.consistentPoint), tables: pending.length }, 'resuming the copy under a new snapshot');
        }
        ctx.status.markReady('backfill');
        await runBackfill({
          sourceUrl: ctx.config.sourceUrl,
          targetUrl: ctx.config.targetUrl,
          plans: pending,
          snapshotName: snap.slot.snapshotName,
          copyLsn: snap.slot.consistentPoint,
          jobs: ctx.config.copyJobs,
          maxBytesPerSecond: ctx.config.copyMaxBytesPerSecond,
          splitBytes: ctx.config.copySplitBytes,
          deferIndexes: ctx.config.copyDeferIndexes,
          binary: ctx.config.copyBinary,
          log,
          metrics: ctx.metrics,
          signal: inner.signal,
          live: ctx.status.copies,
          freshSnapshot: async () => {
            const own = await temporarySnapshot(ctx);
            return { name: own.slot.snapshotName, lsn: own.slot.consistentPoint, release: () => own.conn.close() };
          },
        });
      }
    } catch (err) {
      copyError = err;
      inner.abort();
    }
    // The drain ends after a final flush once the copy is done (or at once on abort). If it
    // failed, the stream broke first and that is the root cause: stop() throws it.
    await spooling.stop();
    if (copyError !== null) throw copyError;
    if (ctx.signal.aborted) return;
    await control.query(SET_PHASE, ['catchup']);
    log.info({ lsn: formatLsn(spooling.spool.durableLsn) }, 'backfill finished; applying the changes spooled meanwhile');
  } finally {
    ctx.signal.removeEventListener('abort', onOuterAbort);
    if (snap) await snap.conn.close();
    if (spooling) await spooling.stop().catch(() => {});
  }
}

/**
 * A snapshot taken now, from a temporary slot (dropped when its connection closes): tables
 * copied under it are consistent at the slot's consistent point.
 */
async function temporarySnapshot(ctx: PhaseContext): Promise<ExportedSnapshot> {
  const conn = await ReplicationConnection.open(ctx.config.sourceUrl, 'walbridge snapshot');
  const name = `${ctx.config.slotName.slice(0, 40)}_copy_${process.pid}_${snapshotSerial++}_${Date.now() % 100000}`;
  const slot = await conn.createSlot(name, { temporary: true }).catch(async (err: unknown) => {
    await conn.close();
    throw err;
  });
  return { conn, slot };
}
let snapshotSerial = 0;

async function tableRuntimes(control: pg.Client, plans: TablePlan[]): Promise<Map<string, TableRuntime>> {
  const recorded = await loadTables(control);
  const byName = new Map(recorded.map((t) => [`${t.schema}.${t.name}`, t]));
  const out = new Map<string, TableRuntime>();
  for (const plan of plans) {
    const t = byName.get(displayTable(plan));
    out.set(displayTable(plan), { plan, copyLsn: t && t.state === 'copied' ? t.copyLsn : null });
  }
  return out;
}

function newApplier(ctx: PhaseContext, tables: Map<string, TableRuntime>, state: PipelineState): Applier {
  const start = state.appliedLsn ?? state.consistentLsn;
  if (start === null) throw new WalbridgeError('state', 'walbridge state has no applied position', { hint: 'Run walbridge teardown --target and start again.' });
  const commitTime = state.appliedCommitTime ? BigInt(state.appliedCommitTime.getTime() - 946_684_800_000) * 1000n : null;
  return new Applier(
    ctx.control,
    tables,
    { lsn: start, commitTime },
    {
      batchChanges: ctx.config.applyBatchChanges,
      batchMs: ctx.config.applyBatchMs,
      describeAddedColumn: (table, column) => addedColumnDdl(ctx.catalog, table, column),
    },
    ctx.log.child({ component: 'apply' }),
    ctx.metrics,
  );
}

/**
 * Apply the spool in arrival order, while the stream keeps being drained into it on a
 * second connection (the spool can hold hours of changes: the slot must not wait for it).
 * Once the applier is close behind the drain, the drain stops, the rest is applied, and the
 * live stream takes over from the last applied position.
 */
export async function catchupPhase(ctx: PhaseContext, state: PipelineState): Promise<void> {
  const { control } = ctx;
  const log = ctx.log.child({ component: 'spool' });
  await control.query(DISCARD_PARTIAL_SPOOL, [state.spoolCommittedId.toString()]);
  const applier = newApplier(ctx, await tableRuntimes(control, ctx.plans), state);
  ctx.status.markReady('streaming');
  const inner = new AbortController();
  const onOuterAbort = () => inner.abort();
  ctx.signal.addEventListener('abort', onOuterAbort, { once: true });
  const writer = await openTargetWriter(ctx.config.targetUrl, 'walbridge spool');
  let spooling: Spooling | null = null;
  let messages = 0;
  try {
    spooling = await startSpooling(ctx, state, writer, inner.signal, () => inner.abort());
    let after = 0n;
    let draining = true;
    for (;;) {
      if (inner.signal.aborted) {
        await applier.rollback();
        await spooling.stop(); // throws the stream's failure, if that is why
        return;
      }
      // Only rows of complete transactions, committed by the drain, are applied.
      const upTo = spooling.spool.durableCompleteId;
      let read = 0;
      for await (const row of readSpool(control, after, upTo)) {
        const handled = applier.handle(decodePgoutput(row.data));
        if (handled) await handled;
        after = row.id;
        read++;
        messages++;
        if (applier.batchDue) {
          const pos = await applier.flush(false);
          ctx.status.appliedLsn = pos.lsn;
          ctx.status.appliedCommitTime = pos.commitTime;
        }
      }
      if (!draining) {
        if (read === 0) break;
        continue;
      }
      if (upTo - after < 1000n && read < 1000) {
        // Close behind the drain: stop it (it flushes what it holds) and apply the rest.
        await spooling.stop();
        draining = false;
        continue;
      }
      if (read === 0) await new Promise((r) => setTimeout(r, 50));
    }
    if (applier.inTransaction) {
      throw new WalbridgeError('state', 'the spool ends inside a transaction', { hint: 'Report this as a bug; restart walbridge to retry.' });
    }
    const pos = await applier.drain();
    ctx.status.appliedLsn = pos.lsn;
    await withTransaction(control, async () => {
      await control.query(CLEAR_SPOOL);
      await control.query(SET_PHASE, ['streaming']);
    });
    log.info({ messages, lsn: formatLsn(pos.lsn) }, 'spool applied; streaming');
  } catch (err) {
    await applier.rollback();
    throw err;
  } finally {
    ctx.signal.removeEventListener('abort', onOuterAbort);
    if (spooling) await spooling.stop().catch(() => {});
    await writer.end().catch(() => {});
  }
}

class ApplySink implements StreamSink {
  constructor(
    private readonly applier: Applier,
    private readonly status: LiveStatus,
  ) {}
  handle(x: XLogData): Promise<void> | void {
    return this.applier.handle(decodePgoutput(x.buf, x.payloadStart, x.end));
  }
  noteIdlePosition(lsn: Lsn): void {
    this.applier.noteIdlePosition(lsn);
  }
  get flushDue(): boolean {
    return this.applier.batchDue;
  }
  get idle(): boolean {
    return this.applier.idle;
  }
  get inTransaction(): boolean {
    return this.applier.inTransaction;
  }
  get durableLsn(): Lsn {
    return this.applier.durablePosition.lsn;
  }
  async flush(wait: boolean): Promise<Lsn> {
    return this.report(await this.applier.flush(wait));
  }
  async drain(): Promise<Lsn> {
    return this.report(await this.applier.drain());
  }
  private report(pos: AppliedPosition): Lsn {
    this.status.appliedLsn = pos.lsn;
    if (pos.commitTime !== null) this.status.appliedCommitTime = pos.commitTime;
    return pos.lsn;
  }
  async abandon(): Promise<void> {
    await this.applier.rollback();
  }
}

/** Apply the live change stream until stopped. */
export async function streamingPhase(ctx: PhaseContext): Promise<void> {
  const state = await loadPipeline(ctx.control);
  if (!state) throw new WalbridgeError('state', 'walbridge state disappeared from the target', { hint: 'Was walbridge teardown run meanwhile?' });
  const tables = await tableRuntimes(ctx.control, ctx.plans);
  const notCopied = [...tables.values()].filter((t) => t.copyLsn === null).map((t) => displayTable(t.plan));
  if (notCopied.length > 0) {
    throw new WalbridgeError('state', `tables not copied yet while streaming: ${notCopied.join(', ')}`, {
      hint: 'They were added after the copy; adding tables to a running migration is not supported yet. Remove them from the selection.',
    });
  }
  const applier = newApplier(ctx, tables, state);
  ctx.status.appliedLsn = applier.durablePosition.lsn;
  const stream = await openStream(ctx, applier.durablePosition.lsn);
  ctx.status.markReady('streaming');
  try {
    await consumeStream(stream, new ApplySink(applier, ctx.status), { signal: ctx.signal, idleFlushMs: ctx.config.applyBatchMs });
  } finally {
    await stream.close();
  }
}
