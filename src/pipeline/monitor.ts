/**
 * Watches the source side of replication every few seconds: how much WAL the slot holds
 * back (Supabase invalidates it past max_slot_wal_keep_size) and how far the target is
 * behind. Runs on its own connection so a busy apply never delays it.
 */
import type pg from 'pg';
import type { Config } from '../config.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { lsnDistance, parseLsn } from '../lsn.js';
import { openSourceReader } from '../pg/sessions.js';
import { SLOT_LAG } from '../sql/source.js';
import type { LiveStatus } from './status.js';

const PG_EPOCH_MS = 946_684_800_000;

export function startLagMonitor(opts: { config: Config; log: Logger; metrics: Metrics; status: LiveStatus; intervalMs?: number }): () => void {
  const { config, metrics, status } = opts;
  let client: pg.Client | null = null;
  let stopped = false;
  let running = false;

  const tick = async () => {
    if (running || stopped) return;
    running = true;
    try {
      client ??= await openSourceReader(config.sourceUrl, 'walbridge monitor');
      const { rows } = await client.query<{ current_lsn: string; retained_bytes: string | null; active: boolean }>(SLOT_LAG, [config.slotName]);
      const r = rows[0];
      if (!r) {
        metrics.slotActive.set(0);
        status.slotActive = false;
        return;
      }
      const current = parseLsn(r.current_lsn);
      status.sourceLsn = current;
      status.retainedWalBytes = r.retained_bytes === null ? null : Number(r.retained_bytes);
      status.slotActive = r.active;
      metrics.retainedWalBytes.set(status.retainedWalBytes ?? 0);
      metrics.slotActive.set(r.active ? 1 : 0);
      if (status.appliedLsn !== null) {
        const lagBytes = Number(lsnDistance(status.appliedLsn, current));
        metrics.lagBytes.set(lagBytes);
        const commitMs = status.appliedCommitTime === null ? null : Number(status.appliedCommitTime / 1000n) + PG_EPOCH_MS;
        // Caught up when nothing but our own bookkeeping lies between applied and current.
        const caughtUp = lagBytes === 0;
        metrics.lagSeconds.set(caughtUp || commitMs === null ? 0 : Math.max(0, (Date.now() - commitMs) / 1000));
      }
    } catch (err) {
      opts.log.debug({ err }, 'lag monitor query failed');
      await client?.end().catch(() => {});
      client = null;
    } finally {
      running = false;
    }
  };

  const timer = setInterval(() => void tick(), opts.intervalMs ?? 5000);
  timer.unref();
  void tick();
  return () => {
    stopped = true;
    clearInterval(timer);
    void client?.end().catch(() => {});
  };
}
