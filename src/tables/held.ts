/**
 * Applying a table's held changes once its copy is in: the messages the applier held while the
 * table was copied (replicator/apply/held.ts) go, in the order they came, through an applier of
 * their own that knows this table alone at its new copy LSN, so the copy's rule applies to them
 * as to any change (a transaction that committed before the copy LSN is in the copy already).
 * Each batch commits with the removal of the held rows it applied: after a crash, what is left
 * held is exactly what is left to apply.
 *
 * It runs between source transactions, with the main applier drained and waiting on the same
 * connection: nothing else writes this table meanwhile, and the stream waits in its socket.
 */
import type pg from 'pg';
import type { Config } from '../config.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { parseLsn, type Lsn } from '../lsn.js';
import { displayTable } from '../pg/ident.js';
import { Applier } from '../replicator/apply/applier.js';
import type { DescribeAddedColumn, TableRuntime } from '../replicator/apply/binding.js';
import { decodePgoutput } from '../replicator/pgoutput.js';
import { stateSql } from '../sql/state.js';

const READ_ROWS = 2000;

/** Apply and forget every change held for `table` (copied, at `table.copyLsn`); returns how many messages there were. */
export async function applyHeldChanges(
  control: pg.Client,
  table: TableRuntime,
  ctx: { config: Config; log: Logger; metrics: Metrics; describeAddedColumn?: DescribeAddedColumn },
): Promise<number> {
  const { schema, name } = table.plan;
  const state = stateSql(ctx.config.stateSchema);
  let applied = '0';
  const replay = new Applier(
    control,
    new Map([[displayTable(table.plan), { plan: table.plan, copyLsn: table.copyLsn }]]),
    { lsn: 0n, commitTime: null },
    {
      stateSql: state,
      batchChanges: ctx.config.applyBatchChanges,
      batchMs: Number.MAX_SAFE_INTEGER,
      ...(ctx.describeAddedColumn ? { describeAddedColumn: ctx.describeAddedColumn } : {}),
      // The held rows of every transaction in the batch, forgotten as the batch commits.
      extraRecords: () => [{ text: state.FORGET_HELD_UP_TO, params: [schema, name, applied] }],
    },
    ctx.log,
    ctx.metrics,
  );
  let after = '0';
  let open: Lsn | null = null;
  let lastOfOpen = '0';
  let count = 0;
  const commit = async () => {
    if (open === null) return;
    await replay.handle({ tag: 'commit', commitLsn: open, endLsn: open, commitTime: 0n });
    applied = lastOfOpen;
    open = null;
    if (replay.batchDue) await replay.flush();
  };
  try {
    for (;;) {
      const { rows } = await control.query<{ id: string; commit_lsn: string; data: Buffer }>(state.READ_HELD, [schema, name, after, READ_ROWS]);
      for (const row of rows) {
        // Held in the order they came: one held transaction's messages are contiguous.
        const lsn = parseLsn(row.commit_lsn);
        if (open !== lsn) {
          await commit();
          await replay.handle({ tag: 'begin', finalLsn: lsn, commitTime: 0n, xid: 0 });
          open = lsn;
        }
        const bytes = { buf: row.data, payloadStart: 0, end: row.data.length };
        await replay.handle(decodePgoutput(row.data), bytes);
        lastOfOpen = row.id;
        after = row.id;
        count++;
      }
      if (rows.length < READ_ROWS) break;
    }
    await commit();
    await replay.drain();
  } catch (err) {
    await replay.rollback();
    throw err;
  }
  return count;
}
