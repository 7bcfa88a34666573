/**
 * Runs for the life of the daemon, whatever the pipeline is doing (standby and error
 * included): every few seconds it reads walbridge's state on the target and the slot on the
 * source, updates the metrics and the status page, and records on the target the progress
 * of copies in flight and the last error, so `walbridge status` shows them from anywhere.
 * Its own connections, so a busy apply never delays it.
 */
import type pg from 'pg';
import type { Config } from '../config.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { connect } from '../pg/connect.js';
import { stateSql } from '../sql/state.js';
import { readFenceReports, readRecorded, readSlot } from '../status/collect.js';
import type { FenceReport } from '../status/report.js';
import type { LiveStatus } from '../health/live-status.js';

export function startMonitor(opts: {
  config: Config;
  log: Logger;
  metrics: Metrics;
  status: LiveStatus;
  intervalMs?: number;
  /** Called once when the target records that the migration was cut over. */
  onDone?: () => void;
}): () => Promise<void> {
  const { config, metrics, status, log } = opts;
  const state = stateSql(config.stateSchema);
  let source: pg.Client | null = null;
  let target: pg.Client | null = null;
  let stopped = false;
  let running: Promise<void> | null = null;
  let sourceFences: FenceReport[] = [];
  let targetFences: FenceReport[] = [];

  const refreshSource = async () => {
    source ??= await connect(config.sourceUrl, { side: 'source', applicationName: 'walbridge monitor' });
    status.slot = await readSlot(source, config.slotName);
    sourceFences = await readFenceReports(source, 'source');
  };

  const refreshTarget = async () => {
    target ??= await connect(config.targetUrl, { side: 'target', applicationName: 'walbridge monitor' });
    const recorded = await readRecorded(target, state);
    targetFences = await readFenceReports(target, 'target');
    // Only the instance holding the writer lock reports; a standby or starting one only reads.
    if (recorded.pipeline && status.writer) {
      for (const [table, p] of status.copies) {
        const dot = table.indexOf('.');
        await target.query(state.RECORD_COPY_PROGRESS, [table.slice(0, dot), table.slice(dot + 1), p.rows, p.bytes]);
      }
      await target.query(state.RECORD_DAEMON, [status.phase, status.lastError ? JSON.stringify(status.lastError) : null]);
    }
    status.recorded = recorded;
    const p = recorded.pipeline;
    if (p?.phase === 'done' && status.phase !== 'done' && status.writer) {
      log.info('the cutover is recorded on the target: this migration is done; stopping');
      opts.onDone?.();
    } else if (p?.phase === 'streaming' && status.writer) {
      // "walbridge cutover" is waiting for the app to stop: still streaming, shown as cutover.
      if (p.cutoverRequestedAt && status.phase === 'streaming') {
        status.setPhase('cutover');
      } else if (!p.cutoverRequestedAt && status.phase === 'cutover') {
        status.setPhase('streaming');
      }
    }
  };

  const publish = () => {
    status.fences = [...sourceFences, ...targetFences];
    const r = status.report();
    for (const database of ['source', 'target'] as const) {
      metrics.fencedTables.set({ database }, r.fences.filter((f) => f.database === database).reduce((n, f) => n + f.tables, 0));
    }
    metrics.slotActive.set(r.slot?.active ? 1 : 0);
    metrics.retainedWalBytes.set(r.slot?.retainedWalBytes ?? 0);
    if (r.lagBytes !== null) metrics.lagBytes.set(r.lagBytes);
    if (r.lagSeconds !== null) metrics.lagSeconds.set(r.lagSeconds);
    if (r.tables.length > 0) {
      for (const s of ['pending', 'copying', 'copied'] as const) metrics.backfillTables.set({ state: s }, r.totals[s]);
      for (const t of r.tables) if (t.rowsEstimated !== null) metrics.backfillRowsEstimated.set({ table: t.table }, t.rowsEstimated);
    }
  };

  const tick = async () => {
    // Each side on its own: an unreachable source must not hide the target's state.
    await refreshSource().catch(async (err: unknown) => {
      log.debug({ err }, 'monitor: source query failed');
      await source?.end().catch(() => {});
      source = null;
    });
    await refreshTarget().catch(async (err: unknown) => {
      log.debug({ err }, 'monitor: target query failed');
      await target?.end().catch(() => {});
      target = null;
    });
    publish();
  };

  const run = () => {
    if (running || stopped) return;
    running = tick().finally(() => {
      running = null;
    });
  };
  const timer = setInterval(run, opts.intervalMs ?? 2000);
  timer.unref();
  run();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
    await Promise.all([source?.end().catch(() => {}), target?.end().catch(() => {})]);
  };
}
