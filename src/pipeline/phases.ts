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
import type { TablePlan } from '../catalog/tables.js';
import type { Config } from '../config.js';
import { WalbridgeError } from '../errors.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn, maxLsn, type Lsn } from '../lsn.js';
import { displayTable } from '../pg/ident.js';
import { ReplicationConnection } from '../pg/replication.js';
import { Applier, type TableRuntime } from '../replicator/apply.js';
import { consumeStream, type StreamSink } from '../replicator/consume.js';
import { decodePgoutput } from '../replicator/pgoutput.js';
import { readSpool, SpoolWriter } from '../replicator/spool.js';
import { WalStream, type XLogData } from '../replicator/stream.js';
import { CLEAR_SPOOL, DISCARD_PARTIAL_SPOOL, RESET_UNFINISHED_COPIES, SET_PHASE, SPOOL_MAX_ID } from '../sql/state.js';
import { loadPipeline, loadTables, withTransaction, type PipelineState, type TableState } from '../state/store.js';
import type { ExportedSnapshot } from './init.js';
import { markReady, type LiveStatus } from './status.js';

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

  // Rows past the last complete transaction were cut off by a crash; it is sent again.
  await control.query(DISCARD_PARTIAL_SPOOL, [state.spoolCommittedId.toString()]);
  const { rows } = await control.query<{ max_id: string }>(SPOOL_MAX_ID);
  const spoolStart = maxLsn(state.spooledLsn, state.consistentLsn);

  const inner = new AbortController();
  const onOuterAbort = () => inner.abort();
  ctx.signal.addEventListener('abort', onOuterAbort, { once: true });
  let snap = snapshot;
  let stream: WalStream | null = null;
  try {
    stream = await openStream(ctx, spoolStart);
    const spool = new SpoolWriter(control, { lsn: spoolStart, lastId: BigInt(rows[0]?.max_id ?? '0') }, ctx.metrics);
    let copyDone = false;
    const consumer = consumeStream(stream, spool, { signal: inner.signal, idleFlushMs: 500, until: () => copyDone }).catch(
      (err: unknown) => {
        inner.abort();
        throw err;
      },
    );
    // Keep the rejection observed until we await it below.
    consumer.catch(() => {});

    let copyError: unknown = null;
    try {
      if (pending.length > 0) {
        if (!snap) {
          const conn = await ReplicationConnection.open(ctx.config.sourceUrl, 'walbridge snapshot');
          const name = `${ctx.config.slotName.slice(0, 40)}_copy_${process.pid}_${Date.now() % 100000}`;
          const slot = await conn.createSlot(name, { temporary: true }).catch(async (err: unknown) => {
            await conn.close();
            throw err;
          });
          snap = { conn, slot };
          log.info({ lsn: formatLsn(slot.consistentPoint), tables: pending.length }, 'resuming the copy under a new snapshot');
        }
        markReady(ctx.status, 'backfill', ctx.metrics);
        await runBackfill({
          sourceUrl: ctx.config.sourceUrl,
          targetUrl: ctx.config.targetUrl,
          plans: pending,
          snapshotName: snap.slot.snapshotName,
          copyLsn: snap.slot.consistentPoint,
          jobs: ctx.config.copyJobs,
          log,
          metrics: ctx.metrics,
          signal: inner.signal,
          live: ctx.status.copies,
        });
      }
      copyDone = true;
    } catch (err) {
      copyError = err;
      inner.abort();
    }
    // The consumer ends after a final flush once the copy is done (or at once on abort).
    // If it failed, the stream broke first and that is the root cause: it is thrown here.
    await consumer;
    if (copyError !== null) throw copyError;
    if (ctx.signal.aborted) return;
    await control.query(SET_PHASE, ['catchup']);
    log.info({ lsn: formatLsn(spool.durableLsn) }, 'backfill finished; applying the changes spooled meanwhile');
  } finally {
    ctx.signal.removeEventListener('abort', onOuterAbort);
    if (snap) await snap.conn.close();
    if (stream) await stream.close();
  }
}

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

function describeTypeVia(catalog: pg.Client) {
  return async (oid: number, mod: number) => {
    const { rows } = await catalog.query<{ t: string }>('SELECT format_type($1::oid, $2::int) AS t', [oid, mod]);
    return rows[0]?.t ?? `<type ${oid}>`;
  };
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
      describeSourceType: describeTypeVia(ctx.catalog),
    },
    ctx.log.child({ component: 'apply' }),
    ctx.metrics,
  );
}

/** Apply the spool, in arrival order, then start streaming. */
export async function catchupPhase(ctx: PhaseContext, state: PipelineState): Promise<void> {
  const { control } = ctx;
  const log = ctx.log.child({ component: 'spool' });
  await control.query(DISCARD_PARTIAL_SPOOL, [state.spoolCommittedId.toString()]);
  const applier = newApplier(ctx, await tableRuntimes(control, ctx.plans), state);
  markReady(ctx.status, 'streaming', ctx.metrics);
  let messages = 0;
  try {
    for await (const buf of readSpool(control)) {
      if (ctx.signal.aborted) {
        await applier.rollback();
        return;
      }
      await applier.handle(decodePgoutput(buf));
      messages++;
      if (applier.batchDue) {
        const pos = await applier.flush();
        ctx.status.appliedLsn = pos.lsn;
        ctx.status.appliedCommitTime = pos.commitTime;
      }
    }
    if (applier.inTransaction) {
      throw new WalbridgeError('state', 'the spool ends inside a transaction', { hint: 'Report this as a bug; restart walbridge to retry.' });
    }
    const pos = await applier.flush();
    ctx.status.appliedLsn = pos.lsn;
    await withTransaction(control, async () => {
      await control.query(CLEAR_SPOOL);
      await control.query(SET_PHASE, ['streaming']);
    });
    log.info({ messages, lsn: formatLsn(pos.lsn) }, 'spool applied; streaming');
  } catch (err) {
    await applier.rollback();
    throw err;
  }
}

class ApplySink implements StreamSink {
  constructor(
    private readonly applier: Applier,
    private readonly status: LiveStatus,
  ) {}
  async handle(x: XLogData): Promise<void> {
    await this.applier.handle(decodePgoutput(x.payload));
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
  async flush(): Promise<Lsn> {
    const pos = await this.applier.flush();
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
  markReady(ctx.status, 'streaming', ctx.metrics);
  try {
    await consumeStream(stream, new ApplySink(applier, ctx.status), { signal: ctx.signal, idleFlushMs: ctx.config.applyBatchMs });
  } finally {
    await stream.close();
  }
}
