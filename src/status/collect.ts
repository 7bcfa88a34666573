/**
 * Reading the facts a status report is built from: walbridge's state on the target and its
 * slot on the source. Used by the daemon's monitor and by `walbridge status` alike.
 */
import type pg from 'pg';
import { WalbridgeError } from '../errors.js';
import { formatLsn } from '../lsn.js';
import { LATEST_STATE_VERSION } from '../sql/migrations.js';
import type { StateSql } from '../sql/state.js';
import { SLOT_STATUS } from '../sql/source.js';
import { readFences } from '../state/fences.js';
import { checkStateVersion } from '../state/migrate.js';
import { loadPipeline, loadTables, type PipelineState, type TableState } from '../state/store.js';
import type { FenceReport, SlotReport } from './report.js';

/** The fences standing on one of the two databases. */
export async function readFenceReports(client: pg.ClientBase, database: FenceReport['database']): Promise<FenceReport[]> {
  return (await readFences(client)).map((f) => ({
    database,
    migration: f.migration,
    direction: f.direction,
    since: f.setAt.toISOString(),
    lsn: f.lsn === null ? null : formatLsn(f.lsn),
    tables: f.tables.length,
  }));
}

export async function readRecorded(target: pg.ClientBase, state: StateSql): Promise<{ pipeline: PipelineState | null; tables: TableState[] }> {
  const version = await checkStateVersion(target, state);
  if (version !== null && version < LATEST_STATE_VERSION) {
    throw new WalbridgeError('state', `walbridge's state on the target is at version ${version}, written by an older walbridge that still runs this migration`, {
      hint: "The daemon of this release upgrades it when it starts (redeploy it); until then, run the daemon's own release of walbridge status.",
    });
  }
  const pipeline = await loadPipeline(target, state);
  const tables = pipeline ? await loadTables(target, state) : [];
  return { pipeline, tables };
}

export async function readSlot(source: pg.ClientBase, slotName: string): Promise<SlotReport> {
  const { rows } = await source.query<{ current_lsn: string; exists: boolean; active: boolean | null; retained_bytes: string | null; wal_status: string | null }>(
    SLOT_STATUS,
    [slotName],
  );
  const r = rows[0];
  return {
    name: slotName,
    exists: r?.exists ?? false,
    active: r?.active ?? false,
    retainedWalBytes: r?.retained_bytes == null ? null : Number(r.retained_bytes),
    walStatus: r?.wal_status ?? null,
    sourceLsn: r?.current_lsn ?? null,
  };
}
