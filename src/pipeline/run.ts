/**
 * One run of the pipeline: connect, check, take the writer lock, initialise or resume from
 * the recorded state, and go through the phases until stopped or failed. The daemon calls
 * it again after a transient failure; every step is safe to repeat.
 */
import type pg from 'pg';
import type { Config } from '../config.js';
import { isTransient, WalbridgeError } from '../errors.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { ReplicationConnection, type SystemIdentity } from '../pg/replication.js';
import { openSourceReader, openTargetWriter } from '../pg/sessions.js';
import { stateSql } from '../sql/state.js';
import { assertPreflight, runPreflight } from '../preflight/checks.js';
import { checkStateVersion, migrateState } from '../state/migrate.js';
import { loadPipeline, type PipelineState } from '../state/store.js';
import { initialize, initializeReverse, type ExportedSnapshot } from './init.js';
import { makeMissingPartitions } from '../schema/partitions.js';
import { installPartitionTruncates } from './partition-truncates.js';
import { backfillPhase, catchupPhase, streamingPhase, type PhaseContext } from './phases.js';
import type { LiveStatus } from '../health/live-status.js';
import { recordFirstSelection, recordStartSelection, startSelection } from '../tables/selection.js';

/** forward: source → target with a copy; reverse: the rollback window, target → source from the cutover point. */
export type PipelineMode = 'forward' | 'reverse';

export interface RunContext {
  config: Config;
  mode?: PipelineMode;
  log: Logger;
  metrics: Metrics;
  status: LiveStatus;
  signal: AbortSignal;
  /** How often a standby instance retries the writer lock. */
  standbyPollMs?: number;
}

async function identify(url: string): Promise<SystemIdentity> {
  const probe = await ReplicationConnection.open(url, 'walbridge probe');
  try {
    return await probe.identifySystem(url);
  } finally {
    await probe.close();
  }
}

/** Wait (phase standby) until this instance is the only writer. Returns false if stopped meanwhile. */
async function acquireWriterLock(ctx: RunContext, control: pg.Client): Promise<boolean> {
  let announced = false;
  for (;;) {
    const { rows } = await control.query<{ locked: boolean }>(stateSql(ctx.config.stateSchema).TRY_WRITER_LOCK, [ctx.config.slotName]);
    if (rows[0]?.locked) {
      ctx.status.writer = true;
      ctx.status.writerSince = Date.now();
      return true;
    }
    if (!announced) {
      ctx.log.info('another walbridge instance is running this migration; standing by until it stops');
      ctx.status.setPhase('standby');
      announced = true;
    }
    const waited = await abortableDelay(ctx.standbyPollMs ?? 2000, ctx.signal);
    if (!waited) return false;
  }
}

export function abortableDelay(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export async function runPipeline(ctx: RunContext): Promise<void> {
  const { config, log } = ctx;
  /** walbridge's state on the target. */
  const sql = stateSql(config.stateSchema);
  const clients: pg.Client[] = [];
  let snapshot: ExportedSnapshot | null = null;
  try {
    ctx.status.setPhase('preflight');
    // A pooler or a role without REPLICATION is reported with the other preflight problems;
    // an unreachable source is retried.
    let identity: SystemIdentity | null = null;
    let identityError: unknown = null;
    try {
      identity = await identify(config.sourceUrl);
    } catch (err) {
      if (isTransient(err)) throw err;
      identityError = err;
    }
    const catalog = await openSourceReader(config.sourceUrl, 'walbridge catalog');
    clients.push(catalog);
    const control = await openTargetWriter(config.targetUrl, 'walbridge apply', config);
    clients.push(control);

    if (!(await acquireWriterLock(ctx, control))) return;
    ctx.status.setPhase('preflight');

    // Bring a state written by an older walbridge up to date; refuse one written by a newer one.
    if ((await checkStateVersion(control, sql)) !== null) {
      const migrated = await migrateState(control, sql);
      if (migrated.to > migrated.from) log.info({ component: 'setup', ...migrated }, "walbridge's state on the target upgraded");
    }
    let state = await loadPipeline(control, sql);
    const reverse = ctx.mode === 'reverse';
    // A recorded migration runs on its recorded tables, changed as a changed selection asks.
    const selection = await startSelection(catalog, control, config, state);
    const report = await runPreflight({
      config,
      source: catalog,
      target: control,
      identity,
      identityError,
      state,
      walSampleMs: 0,
      reverse,
      ...(selection ? { migrationTables: selection.tables } : {}),
    });
    for (const c of report.checks.filter((x) => x.status === 'warn')) log.warn({ component: 'preflight', check: c.id, fix: c.fix }, c.message);
    assertPreflight(report);
    if (selection) await recordStartSelection(control, sql, selection, log.child({ component: 'tables' }));
    if (!identity) throw new WalbridgeError('internal', 'no system identity after a passing preflight');
    const plans = report.plans;
    if (state?.phase !== 'done') {
      // Before the slot on a first start, so that every TRUNCATE of a partition after its
      // consistent point is reported; at each start after, for partitions attached meanwhile.
      const setupLog = log.child({ component: 'setup' });
      const relay = await installPartitionTruncates(catalog, config.slotName, plans.map((p) => p.source), (why) => setupLog.info(`retrying: ${why}`));
      if (relay.added.length > 0) setupLog.info({ partitions: relay.added }, `walbridge's TRUNCATE trigger put on ${relay.added.length} partition(s): a TRUNCATE of one of them alone reaches the target`);
      // Before any row is copied or applied: the target must be able to place every row.
      const made = await makeMissingPartitions(catalog, control, config, plans.map((p) => p.source));
      if (made.length > 0) setupLog.info({ partitions: made }, `made ${made.length} partition(s) the source has and the target lacked`);
    }

    if (reverse && state === null) {
      await initializeReverse({ config, control, catalog, identity, plans, log: log.child({ component: 'setup' }) });
      state = await loadPipeline(control, sql);
    } else if (state === null || state.phase === 'init') {
      snapshot = await initialize(
        { sourceUrl: config.sourceUrl, slotName: config.slotName, publicationName: config.publicationName, stateSql: sql, control, catalog, identity, plans, log: log.child({ component: 'setup' }) },
        state,
      );
      await recordFirstSelection(control, config);
      state = await loadPipeline(control, sql);
    }
    if (!state) throw new WalbridgeError('internal', 'walbridge state missing after initialisation');
    if (state.phase === 'done') {
      log.info('this migration was cut over already; nothing to do');
      ctx.status.setPhase('done');
      return;
    }

    const phaseCtx: PhaseContext = { config, control, catalog, plans, log, metrics: ctx.metrics, status: ctx.status, signal: ctx.signal };
    if (state.phase === 'backfill') {
      const snap = snapshot;
      snapshot = null; // the phase owns it now
      await backfillPhase(phaseCtx, state, snap);
      if (ctx.signal.aborted) return;
      state = (await loadPipeline(control, sql)) as PipelineState;
    }
    if (state.phase === 'catchup') {
      await catchupPhase(phaseCtx, state);
      if (ctx.signal.aborted) return;
      state = (await loadPipeline(control, sql)) as PipelineState;
    }
    if (state.phase === 'streaming') {
      await streamingPhase(phaseCtx);
    }
  } finally {
    ctx.status.ready = false;
    ctx.status.writer = false;
    if (snapshot) await snapshot.conn.close();
    const control = clients[1];
    if (control) await control.query(sql.RELEASE_WRITER_LOCK, [config.slotName]).catch(() => {});
    for (const c of clients) await c.end().catch(() => {});
  }
}
