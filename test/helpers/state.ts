/**
 * Reading walbridge's recorded state on the target, as an operator would with psql.
 */
import type { Cluster } from '../harness/cluster.js';
import type { WriteLoad, WriteLoadStats } from '../harness/fixture.js';
import { waitFor } from '../harness/lsn.js';
import { errorsOf, type DaemonProcess } from './daemon.js';

export interface PipelineRow {
  phase: string;
  consistent_lsn: string | null;
  applied_lsn: string | null;
  spooled_lsn: string | null;
}

export interface TableRow {
  table: string;
  state: string;
  copy_lsn: string | null;
  rows_copied: string;
  copy_finished_at: Date | null;
}

/** `stateSchema`: walbridge's state schema on the target (walbridge_<group> for a table group). */
export async function pipelineRow(target: Cluster, stateSchema = 'walbridge'): Promise<PipelineRow | null> {
  const exists = await target.query<{ ok: boolean }>(`SELECT to_regclass('${stateSchema}.pipeline') IS NOT NULL AS ok`);
  if (!exists[0]?.ok) return null;
  const rows = await target.query<PipelineRow>(
    `SELECT phase, consistent_lsn::text, applied_lsn::text, spooled_lsn::text FROM ${stateSchema}.pipeline`,
  );
  return rows[0] ?? null;
}

export async function tableRows(target: Cluster): Promise<TableRow[]> {
  const exists = await target.query<{ ok: boolean }>(`SELECT to_regclass('walbridge.tables') IS NOT NULL AS ok`);
  if (!exists[0]?.ok) return [];
  return target.query<TableRow>(
    `SELECT schema_name || '.' || table_name AS table, state, copy_lsn::text, rows_copied::text, copy_finished_at
       FROM walbridge.tables ORDER BY 1`,
  );
}

/** Wait for a recorded phase; fail at once, with the daemon's errors, if it reports one. */
export async function waitForPhase(target: Cluster, phase: string, opts: { daemon?: DaemonProcess; timeoutMs?: number; stateSchema?: string } = {}): Promise<void> {
  let failed: string | null = null;
  await waitFor(
    async () => {
      if (opts.daemon?.logs().some((l) => l.level === 'error' || l.level === 'fatal')) {
        failed = errorsOf(opts.daemon);
        return true;
      }
      return (await pipelineRow(target, opts.stateSchema))?.phase === phase;
    },
    { what: `phase ${phase}`, timeoutMs: opts.timeoutMs ?? 120_000, intervalMs: 100 },
  );
  if (failed !== null) throw new Error(`the daemon failed while waiting for phase ${phase}:\n${failed}`);
}

/**
 * Wait until the target has applied everything the source wrote up to now: the source's
 * current WAL position is read once, then the target's recorded applied position must reach it.
 */
export async function waitForCatchUp(source: Cluster, target: Cluster, timeoutMs = 120_000, stateSchema = 'walbridge'): Promise<void> {
  const [{ lsn } = { lsn: '0/0' }] = await source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  await waitFor(
    async () => {
      const rows = await target.query<{ done: boolean }>(
        `SELECT applied_lsn >= $1::pg_lsn AS done FROM ${stateSchema}.pipeline WHERE phase = 'streaming'`,
        [lsn],
      );
      return rows[0]?.done === true;
    },
    { what: `target to apply up to source LSN ${lsn}`, timeoutMs, intervalMs: 100 },
  );
}

/**
 * Stop the app's write load; if any of its transactions failed, fail with its errors and the
 * source server's (a deadlock's DETAIL names both sides): walbridge's work on the source must
 * never make the app's writes fail.
 */
export async function stopLoadCleanly(load: WriteLoad, source: Cluster): Promise<WriteLoadStats> {
  const stats = await load.stop();
  if (stats.errors > 0) {
    const serverLog = (await source.logTail(2000))
      .split('\n')
      .filter((l) => /ERROR|DETAIL|HINT|STATEMENT|CONTEXT/.test(l))
      .slice(-40)
      .join('\n');
    throw new Error(`${stats.errors} of the app's transactions on the source failed: ${load.recentErrors.join(' | ')}\n--- the source's server log ---\n${serverLog}`);
  }
  return stats;
}

export async function sourceObjects(source: Cluster): Promise<{ slots: string[]; publications: string[] }> {
  const slots = await source.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots ORDER BY 1');
  const pubs = await source.query<{ pubname: string }>('SELECT pubname FROM pg_publication ORDER BY 1');
  return { slots: slots.map((s) => s.slot_name), publications: pubs.map((p) => p.pubname) };
}
