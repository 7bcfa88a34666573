/**
 * One run of the pipeline: connect, check, take the writer lock, initialise or resume from
 * the recorded state, and go through the phases until stopped or failed. The daemon calls
 * it again after a transient failure; every step is safe to repeat.
 */
import type pg from 'pg';
import { assertReplicaIdentities, planTables, resolveSelection, type TablePlan } from '../catalog/tables.js';
import type { Config } from '../config.js';
import { WalbridgeError } from '../errors.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { displayTable } from '../pg/ident.js';
import { ReplicationConnection, type SystemIdentity } from '../pg/replication.js';
import { openSourceReader, openTargetWriter } from '../pg/sessions.js';
import { RELEASE_WRITER_LOCK, TRY_WRITER_LOCK } from '../sql/state.js';
import { ensureStateSchema, loadPipeline, loadTables, stateExists, type PipelineState } from '../state/store.js';
import { checkDistinctClusters, checkSourceServer, findPublication, findSlot, serverInfo } from './checks.js';
import { initialize, type ExportedSnapshot } from './init.js';
import { backfillPhase, catchupPhase, streamingPhase, type PhaseContext } from './phases.js';
import type { LiveStatus } from './status.js';

export interface RunContext {
  config: Config;
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
    const { rows } = await control.query<{ locked: boolean }>(TRY_WRITER_LOCK, [ctx.config.slotName]);
    if (rows[0]?.locked) return true;
    if (!announced) {
      ctx.log.info('another walbridge instance is running this migration; standing by until it stops');
      ctx.status.phase = 'standby';
      ctx.metrics.setPhase('standby');
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

/** The recorded state must belong to this source, slot and selection. */
async function checkRecordedState(ctx: RunContext, catalog: pg.Client, control: pg.Client, state: PipelineState, identity: SystemIdentity, plans: TablePlan[]): Promise<void> {
  const { config } = ctx;
  if (state.sourceSystemId !== identity.systemId || state.sourceDatabase !== identity.database) {
    throw new WalbridgeError('state', 'the walbridge state on the target belongs to a migration from another source database', {
      hint: 'Check SOURCE_DATABASE_URL. To start a new migration into this target, run "walbridge teardown --target" first.',
    });
  }
  if (state.slotName !== config.slotName || state.publicationName !== config.publicationName) {
    throw new WalbridgeError(
      'state',
      `the target's walbridge state was created with slot "${state.slotName}" and publication "${state.publicationName}"`,
      { hint: `Set WALBRIDGE_SLOT=${state.slotName} and WALBRIDGE_PUBLICATION=${state.publicationName}, or run "walbridge teardown --target" to start over.` },
    );
  }
  const slot = await findSlot(catalog, config.slotName);
  if (!slot) {
    throw new WalbridgeError('slot', `the replication slot "${config.slotName}" no longer exists on the source; changes made since it was dropped cannot be streamed`, {
      hint: 'Resynchronise: run "walbridge teardown --target", empty the target tables, and start walbridge again for a fresh copy.',
    });
  }
  if (slot.wal_status === 'lost') {
    throw new WalbridgeError('slot', `the replication slot "${config.slotName}" was invalidated by the source (max_slot_wal_keep_size exceeded): WAL it needed is gone`, {
      hint: 'Resynchronise: run "walbridge teardown --target", empty the target tables, and start walbridge again. Keep walbridge running so the slot is read continuously.',
    });
  }
  const pub = await findPublication(catalog, config.publicationName);
  if (!pub) {
    throw new WalbridgeError('source', `the publication "${config.publicationName}" no longer exists on the source`, {
      hint: 'Resynchronise: run "walbridge teardown --target", empty the target tables, and start again.',
    });
  }
  const recorded = new Set((await loadTables(control)).map((t) => `${t.schema}.${t.name}`));
  const selected = new Set(plans.map(displayTable));
  const added = [...selected].filter((t) => !recorded.has(t));
  const removed = [...recorded].filter((t) => !selected.has(t));
  if (added.length > 0 || removed.length > 0) {
    throw new WalbridgeError(
      'config',
      `the table selection changed since this migration started (${[...added.map((t) => `+${t}`), ...removed.map((t) => `-${t}`)].join(', ')})`,
      { hint: 'Restore WALBRIDGE_SCHEMAS / WALBRIDGE_TABLES / WALBRIDGE_EXCLUDE_TABLES to what they were, or start over with "walbridge teardown --target".' },
    );
  }
}

export async function runPipeline(ctx: RunContext): Promise<void> {
  const { config, log } = ctx;
  const clients: pg.Client[] = [];
  let snapshot: ExportedSnapshot | null = null;
  try {
    ctx.status.phase = 'preflight';
    ctx.metrics.setPhase('preflight');
    const identity = await identify(config.sourceUrl);
    const catalog = await openSourceReader(config.sourceUrl, 'walbridge catalog');
    clients.push(catalog);
    const control = await openTargetWriter(config.targetUrl, 'walbridge apply');
    clients.push(control);

    const info = await serverInfo(catalog);
    checkSourceServer(info);
    const targetInfo = await serverInfo(control);
    await checkDistinctClusters(identity, info.database, control, targetInfo.database);

    if (!(await acquireWriterLock(ctx, control))) return;
    ctx.status.phase = 'preflight';
    ctx.metrics.setPhase('preflight');

    const selected = await resolveSelection(catalog, config);
    assertReplicaIdentities(selected);
    const plans = await planTables(catalog, control, selected);

    // Bring a state schema written by an older walbridge up to date (idempotent).
    if (await stateExists(control)) await ensureStateSchema(control);
    let state = await loadPipeline(control);
    if (state && state.phase !== 'init') await checkRecordedState(ctx, catalog, control, state, identity, plans);
    if (state === null || state.phase === 'init') {
      snapshot = await initialize(
        { sourceUrl: config.sourceUrl, slotName: config.slotName, publicationName: config.publicationName, control, catalog, identity, plans, log: log.child({ component: 'setup' }) },
        state,
      );
      state = await loadPipeline(control);
    }
    if (!state) throw new WalbridgeError('internal', 'walbridge state missing after initialisation');
    if (state.phase === 'done') {
      log.info('this migration was cut over already; nothing to do');
      ctx.status.phase = 'done';
      ctx.metrics.setPhase('done');
      return;
    }

    const phaseCtx: PhaseContext = { config, control, catalog, plans, log, metrics: ctx.metrics, status: ctx.status, signal: ctx.signal };
    if (state.phase === 'backfill') {
      const snap = snapshot;
      snapshot = null; // the phase owns it now
      await backfillPhase(phaseCtx, state, snap);
      if (ctx.signal.aborted) return;
      state = (await loadPipeline(control)) as PipelineState;
    }
    if (state.phase === 'catchup') {
      await catchupPhase(phaseCtx, state);
      if (ctx.signal.aborted) return;
      state = (await loadPipeline(control)) as PipelineState;
    }
    if (state.phase === 'streaming') {
      await streamingPhase(phaseCtx);
    }
  } finally {
    ctx.status.ready = false;
    if (snapshot) await snapshot.conn.close();
    const control = clients[1];
    if (control) await control.query(RELEASE_WRITER_LOCK, [config.slotName]).catch(() => {});
    for (const c of clients) await c.end().catch(() => {});
  }
}
