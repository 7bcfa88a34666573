/**
 * walbridge's TRUNCATE triggers on the partitions of the migrated partitioned tables (the why
 * is in sql/partition-truncate.ts): put on when the daemon starts, on every partition that
 * lacks one (a partition attached since the last start too), and removed with walbridge's
 * other objects on the source, by cutover and by teardown.
 *
 * Creating or dropping a trigger waits for the partition's writers: each is done the fence's
 * way (cutover/fence.ts), in a transaction of its own that gives up on the lock after 500 ms
 * and tries again, so an app transaction queued behind it never waits long.
 */
import type pg from 'pg';
import type { SourceTable } from '../catalog/tables.js';
import { fenceTargets, lockingStatement } from '../cutover/fence.js';
import { sqlState, WalbridgeError } from '../errors.js';
import { displayTable, quoteTable, sameTable, type TableName } from '../pg/ident.js';
import { withTransaction } from '../pg/transaction.js';
import { dropFenceTrigger, TABLES_NOT_FENCEABLE, TABLES_WITH_TRIGGER } from '../sql/fence.js';
import {
  createPartitionTruncateFunction,
  createPartitionTruncateTrigger,
  DROP_FENCE_SCHEMA_IF_EMPTY,
  dropPartitionTruncateFunction,
  partitionTruncateNames,
} from '../sql/partition-truncate.js';

export interface InstalledTriggers {
  /** Partitions that got their trigger now. */
  added: string[];
  /** Partitions that have it (added now or before). */
  covered: number;
  /** Partitions this role may not put a trigger on (preflight's `partitions` check says so, with the fix). */
  refused: string[];
}

const BUSY_PARTITION_HINT =
  'A session keeps a write transaction open on that partition (see pg_stat_activity: state "idle in transaction"). walbridge tries again by itself; end that transaction if it lasts.';

/**
 * Put the migration's trigger on every partition, at every level, of the partitioned tables
 * among `tables`, where it is missing. Idempotent; nothing at all without a partitioned table.
 */
export async function installPartitionTruncates(client: pg.ClientBase, migration: string, tables: SourceTable[], onRetry?: (reason: string) => void): Promise<InstalledTriggers> {
  const roots = tables.filter((t) => t.kind === 'p');
  const out: InstalledTriggers = { added: [], covered: 0, refused: [] };
  if (roots.length === 0) return out;
  const n = partitionTruncateNames(migration);
  await withTransaction(client, async () => {
    await client.query(createPartitionTruncateFunction(n));
  });
  const has = new Set((await client.query<TableName>(TABLES_WITH_TRIGGER, [n.trigger])).rows.map(displayTable));
  const refused = new Set((await client.query<{ table: string }>(TABLES_NOT_FENCEABLE, [roots.map(quoteTable)])).rows.map((r) => r.table));
  const partitions = (await fenceTargets(client, roots)).filter((t) => !roots.some((r) => sameTable(r, t)));
  for (const p of partitions) {
    const name = displayTable(p);
    if (refused.has(name)) {
      out.refused.push(name);
      continue;
    }
    out.covered++;
    if (has.has(name)) continue;
    try {
      await lockingStatement(client, createPartitionTruncateTrigger(p, n, migration), `putting walbridge's TRUNCATE trigger on ${name}`, onRetry, BUSY_PARTITION_HINT);
    } catch (err) {
      // A partition busy for longer than the retries: the daemon's start is tried again later.
      if (err instanceof WalbridgeError) throw new WalbridgeError('source', err.message, { cause: err, hint: err.hint, transient: true });
      throw err;
    }
    out.added.push(name);
  }
  return out;
}

/**
 * Remove the migration's triggers, then their function, then the fence's schema if nothing
 * else is in it (a fence's record keeps it). A partition still busy after the retries keeps its
 * trigger, and the function stays for it: counted in `left`, and removed by the next teardown.
 */
export async function removePartitionTruncates(client: pg.ClientBase, migration: string): Promise<{ removed: number; left: number }> {
  const n = partitionTruncateNames(migration);
  const { rows } = await client.query<TableName>(TABLES_WITH_TRIGGER, [n.trigger]);
  let left = 0;
  for (const t of rows) {
    await lockingStatement(client, dropFenceTrigger(t, n.trigger), `removing walbridge's TRUNCATE trigger from ${displayTable(t)}`, undefined, BUSY_PARTITION_HINT).catch(() => left++);
  }
  if (left === 0) {
    await client.query(dropPartitionTruncateFunction(n));
    await client.query(DROP_FENCE_SCHEMA_IF_EMPTY).catch((err: unknown) => {
      if (sqlState(err) !== '2BP01') throw err;
    });
  }
  return { removed: rows.length - left, left };
}
