/**
 * Copies under a snapshot taken now: the backfill resumed after a restart, and a table added
 * or copied again while the others stream (tables/). A temporary slot exports the snapshot and
 * gives its consistent point, the copy LSN of every table copied under it.
 */
import { runBackfill } from '../backfill/backfill.js';
import type { TablePlan } from '../catalog/tables.js';
import type { Config } from '../config.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { ReplicationConnection } from '../pg/replication.js';
import { stateSql } from '../sql/state.js';
import type { LiveCopy } from '../status/report.js';
import type { ExportedSnapshot } from './init.js';

let snapshotSerial = 0;

/** A snapshot taken now, from a temporary slot (dropped when its connection closes). */
export async function temporarySnapshot(config: Config): Promise<ExportedSnapshot> {
  const conn = await ReplicationConnection.open(config.sourceUrl, 'walbridge snapshot');
  const name = `${config.slotName.slice(0, 40)}_copy_${process.pid}_${snapshotSerial++}_${Date.now() % 100000}`;
  const slot = await conn.createSlot(name, { temporary: true }).catch(async (err: unknown) => {
    await conn.close();
    throw err;
  });
  return { conn, slot };
}

/** Copy `plans` under `snap` with the configured copy settings; each table is marked copied at the snapshot's LSN. */
export async function copyUnder(
  snap: ExportedSnapshot,
  plans: TablePlan[],
  ctx: { config: Config; log: Logger; metrics: Metrics; signal: AbortSignal; live: Map<string, LiveCopy> },
): Promise<void> {
  const { config } = ctx;
  await runBackfill({
    sourceUrl: config.sourceUrl,
    targetUrl: config.targetUrl,
    toastLz4: config.toastLz4,
    plans,
    stateSql: stateSql(config.stateSchema),
    snapshotName: snap.slot.snapshotName,
    copyLsn: snap.slot.consistentPoint,
    jobs: config.copyJobs,
    maxBytesPerSecond: config.copyMaxBytesPerSecond,
    splitBytes: config.copySplitBytes,
    deferIndexes: config.copyDeferIndexes,
    binary: config.copyBinary,
    log: ctx.log,
    metrics: ctx.metrics,
    signal: ctx.signal,
    live: ctx.live,
    freshSnapshot: async () => {
      const own = await temporarySnapshot(config);
      return { name: own.slot.snapshotName, lsn: own.slot.consistentPoint, release: () => own.conn.close() };
    },
  });
}
