/**
 * Keeps the pipeline running: transient failures (a restarted server, a dropped
 * connection, a slot still held by the instance being replaced) are retried with capped,
 * jittered backoff; permanent ones are reported with their fix in phase `error`, and
 * retried slowly so that once the operator fixes the cause walbridge carries on by itself.
 */
import type { Config } from '../config.js';
import { describeError, isTransient } from '../errors.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { connect } from '../pg/connect.js';
import { stateSql } from '../sql/state.js';
import { stateExists } from '../state/store.js';
import { abortableDelay, runPipeline, type PipelineMode } from './run.js';
import type { LiveStatus } from '../health/live-status.js';

export interface SuperviseOptions {
  config: Config;
  log: Logger;
  metrics: Metrics;
  status: LiveStatus;
  signal: AbortSignal;
  /** Exit with an error instead of waiting in phase `error` (one-shot runs, tests). */
  exitOnError: boolean;
  mode?: PipelineMode;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  errorRetryMs?: number;
}

/**
 * Say on the target that this instance stopped in phase `error`, and why, for
 * `walbridge status` run from elsewhere. Only when no other instance runs the migration
 * (the writer lock is free): that one's own reports are the truth then. Ending the session
 * releases the lock again.
 */
async function recordError(config: Config, status: LiveStatus): Promise<void> {
  const c = await connect(config.targetUrl, { side: 'target', applicationName: 'walbridge monitor' });
  try {
    const state = stateSql(config.stateSchema);
    if (!(await stateExists(c, state))) return;
    const { rows } = await c.query<{ locked: boolean }>(state.TRY_WRITER_LOCK, [config.slotName]);
    if (rows[0]?.locked) await c.query(state.RECORD_DAEMON, ['error', status.lastError ? JSON.stringify(status.lastError) : null]);
  } finally {
    await c.end().catch(() => {});
  }
}

/** How often an instance stopped in phase error says so on the target. */
const ERROR_REPORT_MS = 5_000;

/** Resolves with the process exit code. */
export async function supervise(opts: SuperviseOptions): Promise<number> {
  const { log, metrics, status, signal } = opts;
  const minBackoff = opts.minBackoffMs ?? 500;
  const maxBackoff = opts.maxBackoffMs ?? 30_000;
  let attempt = 0;
  for (;;) {
    const startedAt = Date.now();
    try {
      await runPipeline({ config: opts.config, log, metrics, status, signal, mode: opts.mode ?? 'forward' });
      if (signal.aborted) return 0;
      if (status.phase === 'done') return 0;
      // The pipeline only returns on its own when stopped; anything else is a bug, retry.
      throw new Error('pipeline stopped unexpectedly');
    } catch (err) {
      if (signal.aborted) {
        log.info({ err }, 'stopped while failing');
        return 0;
      }
      const d = describeError(err);
      metrics.errors.inc({ kind: d.kind });
      status.lastError = { kind: d.kind, message: d.message, hint: d.hint, at: new Date().toISOString() };
      // It got back to copying or streaming (or ran for a while): this is a new failure, not
      // the same one again, so the backoff starts over.
      if ((status.readyAt !== null && status.readyAt >= startedAt) || Date.now() - startedAt > 60_000) attempt = 0;
      if (isTransient(err)) {
        attempt++;
        const ceiling = Math.min(maxBackoff, minBackoff * 2 ** Math.min(attempt, 16));
        const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
        log.warn({ err, retryInMs: delay, attempt }, `transient failure, retrying: ${d.message}`);
        if (!(await abortableDelay(delay, signal))) return 0;
        continue;
      }
      log.error({ err, hint: d.hint }, `walbridge cannot continue: ${d.message}${d.hint ? ` — fix: ${d.hint}` : ''}`);
      status.setPhase('error');
      if (opts.exitOnError) {
        await recordError(opts.config, status).catch(() => {});
        return 1;
      }
      // A column the operator is adding is picked up quickly; other fixes take longer.
      // Meanwhile the error is reported on the target at the monitor's pace, so that
      // "walbridge status" shows it and not a stale phase.
      const retryMs = opts.errorRetryMs ?? (d.kind === 'schema' ? 10_000 : 60_000);
      for (let waited = 0; waited < retryMs; waited += ERROR_REPORT_MS) {
        await recordError(opts.config, status).catch(() => {});
        if (!(await abortableDelay(Math.min(ERROR_REPORT_MS, retryMs - waited), signal))) return 0;
      }
    }
  }
}
