/**
 * The fence: from the moment cutover sets it, no write to a migrated table can commit on the
 * database the app leaves, whoever writes (the tables' owner, the API roles, a superuser, a
 * forgotten cron job), while walbridge's own way back still can.
 *
 * How: one transaction puts a statement trigger (sql/fence.ts) on every migrated table and
 * every partition, and writes a logical message, the marker. Triggers created the usual way do
 * not fire in sessions with session_replication_role = replica, which only replication apply
 * sessions use (walbridge's, and native logical replication's workers; setting it takes a
 * superuser): every other session's INSERT, UPDATE, DELETE, TRUNCATE, COPY FROM or MERGE on a
 * fenced table fails before it changes a row, with SQLSTATE 25006 and a message naming the move.
 * Only the tables' owner (or a superuser) can create such triggers, and on hosted Supabase
 * `postgres` owns the app's tables: no superuser needed.
 *
 * A write in flight cannot slip past: creating a trigger takes a lock that waits for every
 * transaction that has written to the table to end, and a write that comes after the fence
 * committed finds the trigger. So each write either commits before the fence (and its commit is
 * before the marker in the change stream: the applier carries it over) or fails.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { sqlState, WalbridgeError } from '../errors.js';
import { parseLsnOrNull } from '../lsn.js';
import { displayTable, quoteTable, type TableName } from '../pg/ident.js';
import {
  CREATE_FENCE_OBJECTS,
  createFenceTrigger,
  dropFenceTrigger,
  EMIT_FENCE_MARKER,
  FENCE_LOCK_TIMEOUT,
  FENCE_TARGETS,
  fenceTriggerName,
  FENCES_EXIST,
  FORGET_FENCE,
  RECORD_FENCE,
  RECORD_FENCE_LSN,
  TABLES_WITH_TRIGGER,
} from '../sql/fence.js';
import { readFences, type Fence, type FenceDirection } from '../state/fences.js';
import { withTransaction } from '../state/store.js';

export interface FenceSpec {
  /** The migration (its slot name): one fence each. */
  migration: string;
  direction: FenceDirection;
  tables: TableName[];
  /** What a refused write says after the table's name, and its hint: where the data lives now (in words, never a URL). */
  message: string;
  hint: string;
}

/** Lock timeouts and deadlocks with the app's transactions: the fence's transaction is started over this often. */
const FENCE_ATTEMPTS = 10;

/** The tables a fence on `tables` puts its trigger on: each, and every partition below a partitioned one. */
async function fenceTargets(client: pg.ClientBase, tables: TableName[]): Promise<TableName[]> {
  const out: TableName[] = [];
  for (const t of tables) out.push(...(await client.query<TableName>(FENCE_TARGETS, [quoteTable(t)])).rows);
  return out;
}

/**
 * Set the fence in one transaction; returns it with the position it committed at. A table a
 * long transaction keeps writing to is waited for a few seconds at a time, the transaction
 * started over meanwhile (so the app's other tables are not held longer); `onRetry` says why.
 */
export async function setFence(client: pg.ClientBase, spec: FenceSpec, onRetry?: (reason: string) => void): Promise<Fence> {
  const marker = `${spec.migration}:${randomUUID()}`;
  const trigger = fenceTriggerName(spec.migration);
  for (let attempt = 1; ; attempt++) {
    try {
      await withTransaction(client, async () => {
        await client.query(FENCE_LOCK_TIMEOUT);
        await client.query(CREATE_FENCE_OBJECTS);
        for (const t of await fenceTargets(client, spec.tables)) await client.query(createFenceTrigger(t, trigger, spec.message, spec.hint));
        await client.query(RECORD_FENCE, [spec.migration, spec.direction, marker, spec.tables.map(displayTable)]);
        await client.query(EMIT_FENCE_MARKER, [marker]);
      });
      break;
    } catch (err) {
      const code = sqlState(err);
      if ((code !== '55P03' && code !== '40P01') || attempt >= FENCE_ATTEMPTS) {
        if (code === '55P03' || code === '40P01') {
          throw new WalbridgeError('apply', `the fence could not be set: ${(err as Error).message} (${attempt} attempts); nothing was fenced`, {
            cause: err,
            hint: 'A session keeps a write transaction open on a migrated table (see pg_stat_activity: state "idle in transaction"). End it, then run cutover again.',
          });
        }
        throw err;
      }
      onRetry?.(code === '55P03' ? `a migrated table is locked by a transaction still writing to it (${(err as Error).message})` : 'a deadlock with a write transaction');
    }
  }
  const { rows } = await client.query<{ lsn: string }>(RECORD_FENCE_LSN, [spec.migration]);
  const fence = (await readFences(client)).find((f) => f.migration === spec.migration);
  if (!fence) throw new WalbridgeError('internal', 'the fence was set but its record is gone');
  return { ...fence, lsn: parseLsnOrNull(rows[0]?.lsn) };
}

/** Lift `migration`'s fence (its triggers and its record) in one transaction; returns the tables it stood on. */
export async function liftFence(client: pg.ClientBase, migration: string): Promise<string[]> {
  const trigger = fenceTriggerName(migration);
  return withTransaction(client, async () => {
    const { rows } = await client.query<TableName>(TABLES_WITH_TRIGGER, [trigger]);
    for (const t of rows) await client.query(dropFenceTrigger(t, trigger));
    if ((await client.query<{ ok: boolean }>(FENCES_EXIST)).rows[0]?.ok) await client.query(FORGET_FENCE, [migration]);
    return rows.map(displayTable);
  });
}
