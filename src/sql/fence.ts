/**
 * The fence cutover sets on the database the app leaves (cutover/fence.ts): a statement
 * trigger on every migrated table, and on each of its partitions, that refuses every write by
 * a session that is not a replication apply session, and a record of it. Its objects live in a
 * schema of their own, walbridge_fence, so that removing walbridge's state (schema walbridge,
 * which the way back keeps on this same database) never removes a fence by accident.
 */
import { quoteIdent, quoteLiteral, quoteTable, type TableName } from '../pg/ident.js';

/** The prefix of the logical message the fence's transaction writes: the marker the applier looks for. */
export const FENCE_MARKER_PREFIX = 'walbridge.fence';

/**
 * The schema, the record and the trigger function. The function raises SQLSTATE 25006
 * (read_only_sql_transaction), what drivers and pools already treat as "this database takes
 * no writes now", with the message and hint the trigger was created with.
 */
export const CREATE_FENCE_OBJECTS = `
CREATE SCHEMA IF NOT EXISTS walbridge_fence;
CREATE TABLE IF NOT EXISTS walbridge_fence.fences (
  -- The migration (its slot name) whose cutover set the fence.
  migration  text PRIMARY KEY,
  -- 'forward': the migration's source, fenced by its cutover; 'reverse': its target, fenced by
  -- the cutover of the way back.
  direction  text NOT NULL,
  -- The logical message written in the fence's own transaction (FENCE_MARKER_PREFIX).
  marker     text NOT NULL,
  set_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- This database's WAL position once the fence committed.
  lsn        pg_lsn,
  tables     text[] NOT NULL
);
CREATE OR REPLACE FUNCTION walbridge_fence.refuse_write() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = 'read_only_sql_transaction',
    MESSAGE = format('%I.%I %s', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]),
    HINT = TG_ARGV[1];
END
$fn$`;

/** A lock on a busy table is waited for this long, then the fence's transaction starts over. */
export const FENCE_LOCK_TIMEOUT = `SET LOCAL lock_timeout = '3s'`;

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

/** The trigger of `migration`'s fence (one per migration: table groups fence their own tables). */
export function fenceTriggerName(migration: string): string {
  return `walbridge_fence_${migration}`.slice(0, 63);
}

/** Every statement that writes: INSERT (COPY FROM, MERGE, ON CONFLICT included), UPDATE, DELETE, TRUNCATE. */
export function createFenceTrigger(table: TableName, trigger: string, message: string, hint: string): string {
  return (
    `CREATE OR REPLACE TRIGGER ${quoteIdent(trigger)} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${quoteTable(table)} ` +
    `FOR EACH STATEMENT EXECUTE FUNCTION walbridge_fence.refuse_write(${quoteLiteral(message)}, ${quoteLiteral(hint)})`
  );
}

export function dropFenceTrigger(table: TableName, trigger: string): string {
  return `DROP TRIGGER IF EXISTS ${quoteIdent(trigger)} ON ${quoteTable(table)}`;
}

/** $1 migration, $2 direction, $3 marker, $4 tables (text[] of schema.table as displayed). */
export const RECORD_FENCE = `
INSERT INTO walbridge_fence.fences (migration, direction, marker, tables) VALUES ($1, $2, $3, $4::text[])
ON CONFLICT (migration) DO UPDATE
   SET direction = EXCLUDED.direction, marker = EXCLUDED.marker, set_at = clock_timestamp(), lsn = NULL, tables = EXCLUDED.tables`;

/** The marker, in the fence's transaction: the change stream carries it to the applier. */
export const EMIT_FENCE_MARKER = `SELECT pg_logical_emit_message(true, '${FENCE_MARKER_PREFIX}', $1)`;

/** Once the fence committed: everything committed before it is behind this position. */
export const RECORD_FENCE_LSN = `UPDATE walbridge_fence.fences SET lsn = pg_current_wal_lsn() WHERE migration = $1 RETURNING lsn::text AS lsn`;

export const FENCES_EXIST = `SELECT to_regclass('walbridge_fence.fences') IS NOT NULL AS ok`;

export const SELECT_FENCES = `
SELECT migration, direction, marker, set_at, lsn::text AS lsn, tables FROM walbridge_fence.fences ORDER BY migration`;

/** The tables that still carry trigger $1 (a fence half lifted, or set by hand). */
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
