/**
 * The fence: from the moment cutover raises it, no write to a migrated table can commit on the
 * database the app leaves, whoever writes (the tables' owner, the API roles, a superuser, a
 * forgotten cron job), while walbridge's own way back still can.
 *
 * How (sql/fence.ts):
 * - Installed ahead, dormant: a statement trigger on every migrated table and partition that
 *   checks a switch. Triggers created the usual way do not fire in sessions with
 *   session_replication_role = replica, which only replication apply sessions use (walbridge's,
 *   and native logical replication's workers; setting it takes a superuser): every other
 *   session's INSERT, UPDATE, DELETE, TRUNCATE, COPY FROM or MERGE on a fenced table fails
 *   before it changes a row, with SQLSTATE 25006 and a message naming the move. Only the tables'
 *   owner (or a role with TRIGGER) can create such triggers; on hosted Supabase `postgres` owns
 *   the app's tables: no superuser needed. Each trigger is created in a transaction of its own:
 *   creating one waits for the table's writers, and waiting for one table while holding another
 *   could close a deadlock with an app transaction that writes them in the other order (the app's
 *   transaction would fail with "deadlock detected", naming nothing); and each gives up after
 *   500 ms, before an app transaction queued behind it reaches its deadlock check, and is tried
 *   again.
 * - Raised: the switch goes up (every session sees it at once), then walbridge waits, watching
 *   pg_locks, until every transaction that held a write lock on a fenced table at that moment has
 *   ended; then a logical message, the marker, is written. So each write either got past the trigger before
 *   the switch and committed before the marker (the applier carries it over before cutover goes
 *   on), or it fails, with the fence's message.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { sqlState, WalbridgeError } from '../errors.js';
import { parseLsnOrNull } from '../lsn.js';
import { displayTable, quoteTable, type TableName } from '../pg/ident.js';
import {
  createFenceSwitch,
  createFenceTrigger,
  CREATE_FENCE_SCHEMA,
  dropFenceSwitch,
  dropFenceTrigger,
  EMIT_FENCE_MARKER,
  FENCE_LOCK_TIMEOUT,
  FENCE_TARGETS,
  fenceNames,
  FENCES_EXIST,
  FORGET_FENCE,
  WRITERS_NOW,
  RECORD_FENCE,
  RECORD_FENCE_LSN,
  RENEW_FENCE_MARKER,
  SWITCH_DOWN,
  SWITCH_EXISTS,
  SWITCH_UP,
  TABLES_WITH_TRIGGER,
} from '../sql/fence.js';
import { readFences, type Fence, type FenceDirection } from '../state/fences.js';
import { withTransaction } from '../pg/transaction.js';

export interface FenceSpec {
  /** The migration (its slot name): one fence each. */
  migration: string;
  direction: FenceDirection;
  tables: TableName[];
  /** What a refused write says after the table's name, and its hint: where the data lives now (in words, never a URL). */
  message: string;
  hint: string;
}

export interface RaiseOptions {
  /** A write transaction on a fenced table still open after this long stops the raising before the switch (0: do not look). */
  graceMs?: number;
  /** How long the writes under way when the switch goes up may take to end. */
  settleMs?: number;
  onRetry?: (reason: string) => void;
}

/** A raised fence, and when (this machine's clock, ms) its switch went up: writes are refused from then on. */
export type RaisedFence = Fence & { switchedAtMs: number };

/** A lock wait that timed out (or, in theory, a deadlock): that one statement is tried again. */
const LOCK_ATTEMPTS = 20;
const retryable = (err: unknown) => sqlState(err) === '55P03' || sqlState(err) === '40P01';

/** The tables a fence on `tables` stands on: each, and every partition below a partitioned one. */
export async function fenceTargets(client: pg.ClientBase, tables: TableName[]): Promise<TableName[]> {
  const out: TableName[] = [];
  for (const t of tables) out.push(...(await client.query<TableName>(FENCE_TARGETS, [quoteTable(t)])).rows);
  return out;
}

const BUSY_TABLE_HINT =
  'A session keeps a write transaction open on a migrated table (see pg_stat_activity: state "idle in transaction"). End it, then run cutover again.';

/**
 * `sql` in a transaction of its own with a lock timeout, tried again while the lock is busy;
 * `hint` says what to do if it stays busy. Also for walbridge's other triggers on the source
 * (pipeline/partition-truncates.ts), which wait for a table's writers the same way.
 */
export async function lockingStatement(client: pg.ClientBase, sql: string, what: string, onRetry?: (reason: string) => void, hint = BUSY_TABLE_HINT): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await withTransaction(client, async () => {
        await client.query(FENCE_LOCK_TIMEOUT);
        await client.query(sql);
      });
      return;
    } catch (err) {
      if (!retryable(err) || attempt >= LOCK_ATTEMPTS) {
        if (!retryable(err)) throw err;
        throw new WalbridgeError('apply', `${what}: ${(err as Error).message} (${attempt} attempts)`, { cause: err, hint });
      }
      onRetry?.(`${what}: the table is locked by a transaction still writing to it`);
    }
  }
}

interface Writer {
  vxid: string;
  pid: number;
  table: string;
  state: string | null;
}

/** The transactions holding a write lock on one of `targets` now. */
async function writersNow(client: pg.ClientBase, targets: TableName[]): Promise<Writer[]> {
  return (await client.query<Writer>(WRITERS_NOW, [targets.map(quoteTable)])).rows;
}

/**
 * A transaction that writes to one of the tables and is still the same one `graceMs` later: an
 * app's transactions last milliseconds; one that lasts would keep the fence waiting, the app's
 * other writes refused meanwhile.
 */
async function longWriters(client: pg.ClientBase, targets: TableName[], graceMs: number): Promise<Writer | null> {
  const first = await writersNow(client, targets);
  if (first.length === 0) return null;
  await new Promise((r) => setTimeout(r, graceMs));
  const still = new Set((await writersNow(client, targets)).map((w) => w.vxid));
  return first.find((w) => still.has(w.vxid)) ?? null;
}

/**
 * Wait until every transaction that held a write lock on one of the tables when the switch went up
 * has ended (each got past the trigger before the switch, or will be refused by it). Watched in
 * pg_locks, not waited for with LOCK TABLE: a lock request would queue the app's next writes
 * behind it, and an app transaction waiting there while holding what another one waits for
 * would close a cycle that PostgreSQL's deadlock check may break by failing the app's
 * transaction. Returns a writer still there after `settleMs`, or null.
 */
async function waitForWriters(client: pg.ClientBase, targets: TableName[], settleMs: number): Promise<Writer | null> {
  const deadline = Date.now() + settleMs;
  const atSwitch = new Set((await writersNow(client, targets)).map((w) => w.vxid));
  for (let pause = 2; atSwitch.size > 0; pause = Math.min(pause * 2, 50)) {
    const left = (await writersNow(client, targets)).filter((w) => atSwitch.has(w.vxid));
    if (left.length === 0) return null;
    if (Date.now() > deadline) return left[0] ?? null;
    await new Promise((r) => setTimeout(r, pause));
  }
  return null;
}

/**
 * Install the fence, dormant: its switch and a trigger on every table and partition, each
 * created in a transaction of its own. Nothing is refused until raiseFence().
 */
export async function installFence(client: pg.ClientBase, spec: FenceSpec, onRetry?: (reason: string) => void): Promise<void> {
  const n = fenceNames(spec.migration);
  await withTransaction(client, async () => {
    await client.query(CREATE_FENCE_SCHEMA);
    await client.query(createFenceSwitch(n));
  });
  for (const t of await fenceTargets(client, spec.tables)) {
    await lockingStatement(client, createFenceTrigger(t, n, spec.message, spec.hint), `installing the fence on ${displayTable(t)}`, onRetry);
  }
}

/**
 * Raise the installed fence; returns it with the position its marker committed at. Run again on
 * a fence that stands (a cutover interrupted after raising it), it waits for the writers again
 * and writes a new marker, the one before may never have been written.
 */
export async function raiseFence(client: pg.ClientBase, spec: FenceSpec, opts: RaiseOptions = {}): Promise<RaisedFence> {
  const n = fenceNames(spec.migration);
  const targets = await fenceTargets(client, spec.tables);
  const standing = (await readFences(client)).some((f) => f.migration === spec.migration);
  const marker = `${spec.migration}:${randomUUID()}`;
  if (standing) {
    await client.query(RENEW_FENCE_MARKER, [spec.migration, marker]);
  } else {
    const graceMs = opts.graceMs ?? 1000;
    const long = graceMs > 0 ? await longWriters(client, targets, graceMs) : null;
    if (long) {
      throw new WalbridgeError('apply', `a transaction keeps writing to ${long.table} (pid ${long.pid}${long.state ? `, ${long.state}` : ''}): the fence would refuse the app's writes while it waits for it; nothing was fenced`, {
        hint: `End that transaction (or wait for it: SELECT pg_terminate_backend(${long.pid}) ends it by force), then run cutover again.`,
      });
    }
    // Recorded before the switch goes up: a fence must never stand without status saying so.
    await client.query(RECORD_FENCE, [spec.migration, spec.direction, marker, spec.tables.map(displayTable)]);
  }
  const switchedAtMs = Date.now();
  await client.query(SWITCH_UP, [n.switch]);
  const stillWriting = await waitForWriters(client, targets, opts.settleMs ?? 10_000);
  if (stillWriting) {
    await client.query(SWITCH_DOWN, [n.switch]).catch(() => {});
    await client.query(FORGET_FENCE, [spec.migration]).catch(() => {});
    throw new WalbridgeError('apply', `writes to ${stillWriting.table} under way when the fence went up did not end within ${Math.round((opts.settleMs ?? 10_000) / 1000)} s (pid ${stillWriting.pid}); the fence is lifted again`, {
      hint: 'A session keeps a write transaction open on that table (see pg_stat_activity). End it, then run cutover again.',
    });
  }
  await withTransaction(client, async () => {
    await client.query(EMIT_FENCE_MARKER, [marker]);
  });
  const { rows } = await client.query<{ lsn: string }>(RECORD_FENCE_LSN, [spec.migration]);
  const fence = (await readFences(client)).find((f) => f.migration === spec.migration);
  if (!fence) throw new WalbridgeError('internal', 'the fence was raised but its record is gone');
  return { ...fence, lsn: parseLsnOrNull(rows[0]?.lsn), switchedAtMs };
}

/**
 * Lift `migration`'s fence: the switch goes down (every table takes writes again at once), the
 * record goes, then the triggers, each in a transaction of its own (a table still busy after a
 * few tries keeps its dormant trigger, which refuses nothing). Returns the migrated tables it
 * stood on (as recorded when raised; a dormant one: the tables and partitions with its trigger).
 */
export async function liftFence(client: pg.ClientBase, migration: string): Promise<string[]> {
  const n = fenceNames(migration);
  const { rows: tables } = await client.query<TableName>(TABLES_WITH_TRIGGER, [n.trigger]);
  if (!(await client.query<{ ok: boolean }>(FENCES_EXIST)).rows[0]?.ok) return tables.map(displayTable);
  const raised = (await readFences(client)).find((f) => f.migration === migration);
  const { rows } = await client.query<{ ok: boolean }>(SWITCH_EXISTS, [n.switch]);
  if (rows[0]?.ok) await client.query(SWITCH_DOWN, [n.switch]);
  await client.query(FORGET_FENCE, [migration]);
  let left = 0;
  for (const t of tables) {
    await lockingStatement(client, dropFenceTrigger(t, n.trigger), `removing the fence's trigger from ${displayTable(t)}`).catch(() => left++);
  }
  if (left === 0) await client.query(dropFenceSwitch(n));
  return raised?.tables ?? tables.map(displayTable);
}
