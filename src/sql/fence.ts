/**
 * The fence cutover sets on the database the app leaves (cutover/fence.ts): a statement trigger
 * on every migrated table and on each of its partitions, installed dormant ahead of time, and a
 * switch (a sequence) that makes all of them refuse writes at once; a record of the fence; and
 * the marker its raising writes in the change stream. Everything lives in a schema of its own,
 * walbridge_fence, so that removing walbridge's state (schema walbridge, which the way back
 * keeps on this same database) never removes a fence by accident.
 */
import { quoteIdent, quoteLiteral, quoteTable, type TableName } from '../pg/ident.js';

/** The prefix of the logical message the fence writes: the marker the applier looks for. */
export const FENCE_MARKER_PREFIX = 'walbridge.fence';

export const CREATE_FENCE_SCHEMA = `
CREATE SCHEMA IF NOT EXISTS walbridge_fence;
CREATE TABLE IF NOT EXISTS walbridge_fence.fences (
  -- The migration (its slot name) whose cutover raised the fence.
  migration  text PRIMARY KEY,
  -- 'forward': the migration's source, fenced by its cutover; 'reverse': its target, fenced by
  -- the cutover of the way back.
  direction  text NOT NULL,
  -- The logical message written once the fence stood (FENCE_MARKER_PREFIX).
  marker     text NOT NULL,
  set_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- This database's WAL position once the marker committed.
  lsn        pg_lsn,
  tables     text[] NOT NULL
)`;

/** A migration's fence objects, by name: one each (table groups fence their own tables). */
export interface FenceNames {
  /** The sequence whose is_called is the switch. */
  switch: string;
  /** The trigger function. */
  func: string;
  /** The trigger on each table. */
  trigger: string;
}

export function fenceNames(migration: string): FenceNames {
  return {
    switch: `walbridge_fence.${quoteIdent(`switch_${migration}`.slice(0, 63))}`,
    func: `walbridge_fence.${quoteIdent(`refuse_${migration}`.slice(0, 63))}`,
    trigger: `walbridge_fence_${migration}`.slice(0, 63),
  };
}

/**
 * The switch and the trigger function. The switch is a sequence because a sequence is not
 * versioned: setval() is seen by every session at once, whatever its transaction's snapshot (a
 * repeatable-read transaction that began before the fence would read a table row as it was).
 * The function is SECURITY DEFINER so that the app's roles need no right on walbridge_fence to
 * write while the fence is down; it raises SQLSTATE 25006 (read_only_sql_transaction), what
 * drivers and pools already treat as "this database takes no writes now", with the message and
 * hint its trigger was created with.
 */
export function createFenceSwitch(n: FenceNames): string {
  return `
CREATE SEQUENCE IF NOT EXISTS ${n.switch} MINVALUE 0 MAXVALUE 1 START 0;
CREATE OR REPLACE FUNCTION ${n.func}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
BEGIN
  IF (SELECT is_called FROM ${n.switch}) THEN
    RAISE EXCEPTION USING
      ERRCODE = 'read_only_sql_transaction',
      MESSAGE = format('%I.%I %s', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]),
      HINT = TG_ARGV[1];
  END IF;
  RETURN NULL;
END
$fn$`;
}

/** Up: every write to a fenced table fails from this instant on. Down: they go through again. */
export const SWITCH_UP = `SELECT setval($1::regclass, 1, true)`;
export const SWITCH_DOWN = `SELECT setval($1::regclass, 1, false)`;
export const SWITCH_EXISTS = `SELECT to_regclass($1) IS NOT NULL AS ok`;

/**
 * A lock on a busy table is waited for this long, then tried again (installing, lifting): less
 * than PostgreSQL's deadlock_timeout (1 s), so that an app transaction queued behind the request
 * never waits long enough for its deadlock check to fail it.
 */
export const FENCE_LOCK_TIMEOUT = `SET LOCAL lock_timeout = '500ms'`;

/**
 * Every table a write to `$1` (a quoted name) can reach: itself and, if partitioned, every
 * partition below it (pg_partition_tree lists nothing for a table that is not partitioned).
 */
export const FENCE_TARGETS = `
SELECT n.nspname AS schema, c.relname AS name
  FROM (SELECT $1::regclass AS relid UNION SELECT relid FROM pg_partition_tree($1::regclass)) AS p
  JOIN pg_class c ON c.oid = p.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
 ORDER BY n.nspname, c.relname`;

/** Every statement that writes: INSERT (COPY FROM, MERGE, ON CONFLICT included), UPDATE, DELETE, TRUNCATE. */
export function createFenceTrigger(table: TableName, n: FenceNames, message: string, hint: string): string {
  return (
    `CREATE OR REPLACE TRIGGER ${quoteIdent(n.trigger)} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${quoteTable(table)} ` +
    `FOR EACH STATEMENT EXECUTE FUNCTION ${n.func}(${quoteLiteral(message)}, ${quoteLiteral(hint)})`
  );
}

export function dropFenceTrigger(table: TableName, trigger: string): string {
  return `DROP TRIGGER IF EXISTS ${quoteIdent(trigger)} ON ${quoteTable(table)}`;
}

export function dropFenceSwitch(n: FenceNames): string {
  return `DROP FUNCTION IF EXISTS ${n.func}(); DROP SEQUENCE IF EXISTS ${n.switch}`;
}

/**
 * Waits until every transaction that has written to the table (ONLY: not its partitions, each
 * is waited for on its own) has ended, then lets go: a writer that got past the trigger before
 * the switch went up commits before the marker or not at all.
 */
/**
 * The transactions holding a write lock on one of the tables ($1, quoted names), from pg_locks,
 * which every role may read (pg_stat_activity hides other roles' sessions from a role without
 * pg_read_all_stats: its state is shown when it can be).
 */
export const WRITERS_NOW = `
SELECT DISTINCT l.virtualtransaction AS vxid, l.pid, c.oid::regclass::text AS "table", a.state
  FROM pg_locks l
  JOIN pg_class c ON c.oid = l.relation
  LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()
   AND l.relation = ANY (SELECT unnest($1::text[])::regclass)`;

/** $1 migration, $2 direction, $3 marker, $4 tables (text[] of schema.table as displayed). */
export const RECORD_FENCE = `
INSERT INTO walbridge_fence.fences (migration, direction, marker, tables) VALUES ($1, $2, $3, $4::text[])
ON CONFLICT (migration) DO UPDATE
   SET direction = EXCLUDED.direction, marker = EXCLUDED.marker, set_at = clock_timestamp(), lsn = NULL, tables = EXCLUDED.tables`;

/** A fence raised again after an interruption writes a new marker (the one before may never have been written). */
export const RENEW_FENCE_MARKER = `UPDATE walbridge_fence.fences SET marker = $2, lsn = NULL WHERE migration = $1`;

/** The marker: the change stream carries it to the applier after every write the fence let through. */
export const EMIT_FENCE_MARKER = `SELECT pg_logical_emit_message(true, '${FENCE_MARKER_PREFIX}', $1)`;

/** Once the marker committed: everything committed before the fence is behind this position. */
export const RECORD_FENCE_LSN = `UPDATE walbridge_fence.fences SET lsn = pg_current_wal_lsn() WHERE migration = $1 RETURNING lsn::text AS lsn`;

export const FENCES_EXIST = `SELECT to_regclass('walbridge_fence.fences') IS NOT NULL AS ok`;

export const SELECT_FENCES = `
SELECT migration, direction, marker, set_at, lsn::text AS lsn, tables FROM walbridge_fence.fences ORDER BY migration`;

/** The tables that carry trigger $1 (installed, dormant or up). */
export const TABLES_WITH_TRIGGER = `
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.tgname = $1 ORDER BY 1, 2`;

export const FORGET_FENCE = `DELETE FROM walbridge_fence.fences WHERE migration = $1`;

/** Tables of the selection (and their partitions) this role may not put a trigger on: $1 quoted names. */
export const TABLES_NOT_FENCEABLE = `
SELECT n.nspname || '.' || c.relname AS table, pg_get_userbyid(c.relowner) AS owner
  FROM unnest($1::text[]) AS s(name)
  CROSS JOIN LATERAL (SELECT s.name::regclass AS relid UNION SELECT relid FROM pg_partition_tree(s.name::regclass)) AS p
  JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT has_table_privilege(c.oid, 'TRIGGER')
 ORDER BY 1`;
