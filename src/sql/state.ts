/**
 * walbridge's own state, kept on the target in one schema (`walbridge`, config.stateSchema).
 * Everything that makes a restart safe lives here and is written in the same target
 * transactions as the data it describes: a table's copy and its `copied` mark commit together;
 * applied changes and `applied_lsn` commit together; spooled changes and `spooled_lsn` commit
 * together.
 *
 * The statements are built for the schema they work on (stateSql), so that each caller names
 * the state it reads or writes and more than one state can live on a target.
 */
import { quoteIdent, quoteLiteral } from '../pg/ident.js';

/** The state schema unless configured otherwise. */
export const DEFAULT_STATE_SCHEMA = 'walbridge';

/* The tables themselves are made and changed by numbered steps: sql/migrations.ts. */

/**
 * The state schema as SQL names it: quoted, except the default name, which needs no quotes (so
 * its statements read as they always have, in logs and pg_stat_activity).
 */
export function stateSchemaIdent(schema: string): string {
  return schema === DEFAULT_STATE_SCHEMA ? schema : quoteIdent(schema);
}

/** Every statement that reads or writes the state in one schema (and the schema's name). */
export type StateSql = { readonly [K in keyof ReturnType<typeof buildStateSql>]: string };

/** `build`, called once per schema name: statements are built when a schema is first used, then shared. */
export function oncePerSchema<T>(build: (schema: string) => T): (schema: string) => T {
  const built = new Map<string, T>();
  return (schema) => {
    let out = built.get(schema);
    if (out === undefined) {
      out = build(schema);
      built.set(schema, out);
    }
    return out;
  };
}

/** The state statements for one schema (built once per schema). */
export const stateSql: (schema: string) => StateSql = oncePerSchema(buildStateSql);

function buildStateSql(schema: string) {
  const s = stateSchemaIdent(schema);
  /** The schema's name as a text literal. */
  const lit = quoteLiteral(schema);
  /** A state table's qualified name as a text literal, for to_regclass. */
  const reg = (table: string) => quoteLiteral(`${s}.${table}`);
  return Object.freeze({
    /** The schema these statements work on (unquoted). */
    schema,

    /** Leave nothing behind of a start that could not succeed (the first start's own state). */
    DROP_STATE: `DROP SCHEMA IF EXISTS ${s} CASCADE`,

    /** Whether the schema exists, and whether indexes set aside during a copy may still be recorded. */
    STATE_PRESENCE: `
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ${lit}) AS exists,
       to_regclass(${reg('deferred_indexes')}) IS NOT NULL AS deferred`,

    /** The cutover's record, if this database holds one (the way back starts from it). */
    CUTOVER_RECORDED: `SELECT to_regclass(${reg('cutover')}) IS NOT NULL AS ok`,

    /** Verify waits for the target to have applied the source's position $1. */
    APPLIED_AT_LEAST: `SELECT applied_lsn >= $1::pg_lsn AS done FROM ${s}.pipeline`,

    SELECT_PIPELINE: `
SELECT source_system_id, source_database, slot_name, publication_name, phase,
       consistent_lsn::text, applied_lsn::text, spooled_lsn::text, spool_committed_id::text,
       applied_commit_time, last_error, updated_at, daemon_phase, daemon_seen_at, cutover_requested_at,
       changes_tracked_from::text, fence_marker, content_checked_at, content_checked_from::text, selection
  FROM ${s}.pipeline WHERE id = 1`,

    REQUEST_CUTOVER: `UPDATE ${s}.pipeline SET cutover_requested_at = now() WHERE id = 1`,

    /** A cutover starts over: the daemon records the rows it changes from now on, nothing checked yet. */
    START_CUTOVER_CHECKS: `
UPDATE ${s}.pipeline
   SET cutover_requested_at = now(), changes_tracked_from = NULL, content_checked_at = NULL, content_checked_from = NULL, fence_marker = NULL
 WHERE id = 1`,
    FORGET_CHANGED_ROWS: `TRUNCATE ${s}.changed_rows`,

    /** No cutover under way any more: the daemon stops recording changed rows. */
    CANCEL_CUTOVER: `
UPDATE ${s}.pipeline
   SET cutover_requested_at = NULL, changes_tracked_from = NULL, content_checked_at = NULL, content_checked_from = NULL
 WHERE id = 1`,

    /** The content was found equal, for every row changed in transactions committed before $1. */
    RECORD_CONTENT_CHECKED: `UPDATE ${s}.pipeline SET content_checked_at = now(), content_checked_from = $1::pg_lsn WHERE id = 1`,

    /** The rows changed in source transactions that committed at or after $1: key '*' is a whole table. */
    CHANGED_ROWS_SINCE: `
SELECT schema_name, table_name, key FROM ${s}.changed_rows WHERE lsn >= $1::pg_lsn ORDER BY schema_name, table_name, key`,

    COUNT_CHANGED_ROWS_SINCE: `SELECT count(*)::int AS n FROM ${s}.changed_rows WHERE lsn >= $1::pg_lsn`,

    /** $1 lsn, $2 tables, $3 sequences, $4 the fence's position, $5 seconds writes were refused. */
    RECORD_CUTOVER: `
INSERT INTO ${s}.cutover (lsn, tables, sequences, fence_lsn, writes_paused_seconds)
VALUES ($1::pg_lsn, $2::jsonb, $3::jsonb, $4::pg_lsn, $5::numeric)
ON CONFLICT (id) DO UPDATE SET lsn = EXCLUDED.lsn, at = now(), tables = EXCLUDED.tables, sequences = EXCLUDED.sequences,
                               reverse_slot = NULL, reverse_lsn = NULL,
                               fence_lsn = EXCLUDED.fence_lsn, writes_paused_seconds = EXCLUDED.writes_paused_seconds`,

    /** The slot kept for the way back ($1) and where it starts ($2), once made after the record. */
    RECORD_REVERSE_SLOT: `UPDATE ${s}.cutover SET reverse_slot = $1, reverse_lsn = $2::pg_lsn WHERE id = 1`,

    SELECT_CUTOVER: `
SELECT lsn::text, at, tables, sequences, reverse_slot, reverse_lsn::text, fence_lsn::text, writes_paused_seconds::float8 AS writes_paused_seconds
  FROM ${s}.cutover WHERE id = 1`,

    /** The daemon's own view (phase, last error), refreshed every few seconds by its monitor. */
    RECORD_DAEMON: `UPDATE ${s}.pipeline SET daemon_phase = $1, last_error = $2::jsonb, daemon_seen_at = now() WHERE id = 1`,

    /** Rows copied so far by a copy in progress (the final count is written with the copy itself). */
    RECORD_COPY_PROGRESS: `
UPDATE ${s}.tables SET rows_copied = $3, bytes_copied = $4
 WHERE schema_name = $1 AND table_name = $2 AND state = 'copying'`,

    STATE_EXISTS: `SELECT to_regclass(${reg('pipeline')}) IS NOT NULL AS exists`,

    INSERT_PIPELINE: `
INSERT INTO ${s}.pipeline (source_system_id, source_database, slot_name, publication_name, phase)
VALUES ($1, $2, $3, $4, 'init')`,

    SET_PHASE: `UPDATE ${s}.pipeline SET phase = $1, updated_at = now() WHERE id = 1`,

    START_BACKFILL: `
UPDATE ${s}.pipeline
   SET phase = 'backfill', consistent_lsn = $1::pg_lsn, applied_lsn = $1::pg_lsn, spooled_lsn = $1::pg_lsn,
       updated_at = now()
 WHERE id = 1`,

    /** The way back starts streaming at once: nothing to copy, the tables hold the data as of the cutover. */
    START_STREAMING_AT: `
UPDATE ${s}.pipeline
   SET phase = 'streaming', consistent_lsn = $1::pg_lsn, applied_lsn = $1::pg_lsn, spooled_lsn = $1::pg_lsn, updated_at = now()
 WHERE id = 1`,

    INSERT_COPIED_TABLE: `
INSERT INTO ${s}.tables (schema_name, table_name, state, copy_lsn, rows_estimated, bytes_estimated, copy_finished_at)
VALUES ($1, $2, 'copied', $3::pg_lsn, $4, $5, now())`,

    UPSERT_TABLE: `
INSERT INTO ${s}.tables (schema_name, table_name, state, copy_lsn, rows_estimated, bytes_estimated)
VALUES ($1, $2, 'pending', $3::pg_lsn, $4, $5)
ON CONFLICT (schema_name, table_name) DO UPDATE
   SET rows_estimated = EXCLUDED.rows_estimated, bytes_estimated = EXCLUDED.bytes_estimated`,

    /** The tables this state carries (or will once a request is taken up), names only: another group's check reads them. */
    CARRIED_TABLES: `SELECT schema_name AS schema, table_name AS name FROM ${s}.tables WHERE state <> 'removed' OR request = 'add'`,

    /** $1: count the held changes of holding tables (a scan of held_changes each; null otherwise). */
    SELECT_TABLES: `
SELECT schema_name, table_name, state, copy_lsn::text, rows_estimated::text, bytes_estimated::text,
       rows_copied::text, bytes_copied::text, copy_started_at, copy_finished_at,
       request, requested_at, holding, removed_at,
       CASE WHEN $1::boolean AND t.holding
            THEN (SELECT count(*) FROM ${s}.held_changes h WHERE h.schema_name = t.schema_name AND h.table_name = t.table_name)
       END::text AS held
  FROM ${s}.tables t ORDER BY schema_name, table_name`,

    /**
     * A pending table, locked until MARK_COPYING: must its target table be emptied first (a copy in
     * parts cut off by a crash left some parts; a resync copies over the rows there)?
     */
    LOCK_PENDING_TABLE: `
SELECT copy_in_parts OR empty_before_copy AS empty_first FROM ${s}.tables
 WHERE schema_name = $1 AND table_name = $2 AND state = 'pending' FOR UPDATE`,

    /** Only a pending table can start copying: a second instance cannot take one already started. */
    MARK_COPYING: `
UPDATE ${s}.tables SET state = 'copying', copy_lsn = $3::pg_lsn, copy_started_at = now(), copy_finished_at = NULL,
       copy_in_parts = false
 WHERE schema_name = $1 AND table_name = $2 AND state = 'pending'`,

    /** Committed before the first range is: from here on a crash leaves rows to remove. */
    MARK_COPYING_IN_PARTS: `
UPDATE ${s}.tables SET copy_in_parts = true
 WHERE schema_name = $1 AND table_name = $2 AND state = 'copying' AND copy_lsn = $3::pg_lsn`,

    /** Only the copy that started it (same copy LSN, still copying) can finish it. */
    MARK_COPIED: `
UPDATE ${s}.tables
   SET state = 'copied', rows_copied = $4, bytes_copied = $5, copy_finished_at = now(), copy_in_parts = false,
       empty_before_copy = false
 WHERE schema_name = $1 AND table_name = $2 AND state = 'copying' AND copy_lsn = $3::pg_lsn`,

    /** A copy that starts again under a newer snapshot (its table was rewritten after the first). */
    MOVE_COPY_LSN: `
UPDATE ${s}.tables SET copy_lsn = $4::pg_lsn
 WHERE schema_name = $1 AND table_name = $2 AND state = 'copying' AND copy_lsn = $3::pg_lsn`,

    /** A copy that was cut off rolled back with its data; it starts over under a new snapshot. */
    RESET_UNFINISHED_COPIES: `UPDATE ${s}.tables SET state = 'pending' WHERE state = 'copying'`,

    /**
     * Record the last applied position; it ends each apply batch, inside the batch's transaction.
     * $1 the last applied commit's end LSN, $2 its commit time (text, may be NULL). Never moves back.
     */
    RECORD_APPLIED: `
UPDATE ${s}.pipeline
   SET applied_lsn = $1::pg_lsn, applied_commit_time = COALESCE($2::timestamptz, applied_commit_time), updated_at = now()
 WHERE id = 1 AND applied_lsn <= $1::pg_lsn`,

    /**
     * Rows a batch changed while a cutover checks the content (see sql/migrations.ts, step 3):
     * $1 schemas, $2 tables, $3 keys (JSON arrays of text, or '*'), $4 the commit LSN of the source
     * transaction of each. $5: the position before this batch, where the record starts if it is the first.
     */
    RECORD_CHANGED_ROWS: `
WITH started AS (
  UPDATE ${s}.pipeline SET changes_tracked_from = COALESCE(changes_tracked_from, $5::pg_lsn) WHERE id = 1
)
INSERT INTO ${s}.changed_rows AS c (schema_name, table_name, key, lsn)
SELECT s, t, k, max(l::pg_lsn) FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(s, t, k, l) GROUP BY s, t, k
ON CONFLICT (schema_name, table_name, key) DO UPDATE SET lsn = greatest(c.lsn, EXCLUDED.lsn)`,

    /** A batch applied the fence's marker ($1): everything the source committed before its fence is applied with it. */
    RECORD_FENCE_MARKER: `UPDATE ${s}.pipeline SET fence_marker = $1 WHERE id = 1`,

    RECORD_SPOOLED: `
UPDATE ${s}.pipeline
   SET spooled_lsn = $1::pg_lsn, spool_committed_id = $2, updated_at = now()
 WHERE id = 1 AND spooled_lsn <= $1::pg_lsn`,

    /** Rows of a transaction whose end never reached the spool: it will be received again. */
    DISCARD_PARTIAL_SPOOL: `DELETE FROM ${s}.spool WHERE id > $1`,

    SPOOL_MAX_ID: `SELECT COALESCE(max(id), 0)::text AS max_id FROM ${s}.spool`,

    COPY_INTO_SPOOL: `COPY ${s}.spool (id, lsn, data) FROM STDIN`,

    READ_SPOOL: `SELECT s.id::text AS id, s.data FROM ${s}.spool s WHERE s.id > $1 AND s.id <= $2 ORDER BY s.id LIMIT $3`,

    CLEAR_SPOOL: `TRUNCATE ${s}.spool`,

    /**
     * Single writer: the session that holds this lock is the only one that copies or applies.
     * A second instance (Railway starts a new deploy before stopping the old one) waits.
     */
    TRY_WRITER_LOCK: `SELECT pg_try_advisory_lock(hashtext('walbridge'), hashtext($1)) AS locked`,
    RELEASE_WRITER_LOCK: `SELECT pg_advisory_unlock(hashtext('walbridge'), hashtext($1))`,
    RECORD_DEFERRED_INDEX: `
INSERT INTO ${s}.deferred_indexes (schema_name, table_name, index_name, definition, comment)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,

    DEFERRED_INDEXES_OF: `
SELECT index_name, definition, comment FROM ${s}.deferred_indexes
 WHERE schema_name = $1 AND table_name = $2 ORDER BY index_name`,

    ALL_DEFERRED_INDEXES: `
SELECT schema_name, table_name, index_name, definition, comment FROM ${s}.deferred_indexes
 ORDER BY schema_name, table_name, index_name`,

    FORGET_DEFERRED_INDEXES: `DELETE FROM ${s}.deferred_indexes WHERE schema_name = $1 AND table_name = $2`,

    /* The table set changed while streaming (tables/): requests, holding tables, held changes. */

    /** "walbridge tables add": a new row, or one removed before; $3 rows and $4 bytes estimated. */
    REQUEST_ADD: `
INSERT INTO ${s}.tables AS t (schema_name, table_name, state, rows_estimated, bytes_estimated, request, requested_at)
VALUES ($1, $2, 'pending', $3, $4, 'add', now())
ON CONFLICT (schema_name, table_name) DO UPDATE
   SET request = 'add', requested_at = now(), rows_estimated = EXCLUDED.rows_estimated, bytes_estimated = EXCLUDED.bytes_estimated`,

    /** "walbridge tables remove" ($3 = 'remove') or "walbridge resync" ($3 = 'resync'). */
    REQUEST_CHANGE: `
UPDATE ${s}.tables SET request = $3, requested_at = now() WHERE schema_name = $1 AND table_name = $2`,

    /** An add never taken up, removed again: nothing of it exists anywhere yet. */
    FORGET_UNTAKEN_ADD: `
DELETE FROM ${s}.tables
 WHERE schema_name = $1 AND table_name = $2 AND request = 'add' AND copy_lsn IS NULL AND NOT holding`,

    /**
     * The daemon takes an add or a resync up: from now on the table's changes are held, and it is
     * copied again under a fresh snapshot; $3: empty the target table before the copy.
     */
    START_HOLDING: `
UPDATE ${s}.tables
   SET state = 'pending', holding = true, empty_before_copy = $3, request = NULL, requested_at = NULL, removed_at = NULL,
       rows_copied = 0, bytes_copied = 0, copy_started_at = NULL, copy_finished_at = NULL
 WHERE schema_name = $1 AND table_name = $2`,

    /** Its held changes are applied (in the same transaction): its changes are applied as they come again. */
    STOP_HOLDING: `
UPDATE ${s}.tables SET holding = false WHERE schema_name = $1 AND table_name = $2 AND state = 'copied'`,

    /** The daemon takes a remove up: not applied nor published any more; its rows stay on the target. */
    MARK_REMOVED: `
UPDATE ${s}.tables
   SET state = 'removed', holding = false, empty_before_copy = false, request = NULL, requested_at = NULL, removed_at = now()
 WHERE schema_name = $1 AND table_name = $2`,

    /**
     * Changes of holding tables, in stream order: $1 schemas, $2 tables, $3 commit LSNs, $4 the
     * raw pgoutput messages (base64), as arrays of text. Ids follow the order of the arrays.
     */
    HOLD_CHANGES: `
INSERT INTO ${s}.held_changes (schema_name, table_name, commit_lsn, data)
SELECT s, t, l::pg_lsn, decode(d, 'base64')
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(s, t, l, d, n)
 ORDER BY n`,

    /** The next held messages of a table after id $3, at most $4 (ordered by the column, not by its text). */
    READ_HELD: `
SELECT h.id::text AS id, h.commit_lsn::text AS commit_lsn, h.data FROM ${s}.held_changes h
 WHERE h.schema_name = $1 AND h.table_name = $2 AND h.id > $3 ORDER BY h.id LIMIT $4`,

    /** Applied: committed with the changes they held. */
    FORGET_HELD_UP_TO: `DELETE FROM ${s}.held_changes WHERE schema_name = $1 AND table_name = $2 AND id <= $3`,

    FORGET_HELD: `DELETE FROM ${s}.held_changes WHERE schema_name = $1 AND table_name = $2`,

    /** The selection (WALBRIDGE_SCHEMAS, _TABLES, _EXCLUDE_TABLES) this start runs with. */
    RECORD_SELECTION: `UPDATE ${s}.pipeline SET selection = $1::jsonb WHERE id = 1`,
  });
}

/* Not the state's: a catalog query, the same whatever the schema. */

/**
 * The plain secondary indexes of a target table ($1, a quoted name) that can be dropped during
 * its copy and built again exactly: not a key, unique or exclusion index, not behind a
 * constraint or anything else that depends on it, not the replica identity or the clustered
 * index, valid, in the default tablespace, without per-column statistics targets, on an
 * ordinary table. Run with search_path = pg_catalog so every name in the definition is qualified.
 */
/** Every walbridge state on a database (walbridge, walbridge_<group>): the table groups sharing it. */
export const STATE_SCHEMAS = `
SELECT n.nspname AS schema FROM pg_namespace n
 WHERE (n.nspname = 'walbridge' OR n.nspname LIKE 'walbridge\\_%')
   AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'tables' AND c.relkind = 'r')
 ORDER BY 1`;

export const DEFERRABLE_INDEXES = `
SELECT ic.relname AS index_name, pg_get_indexdef(i.indexrelid) AS definition,
       obj_description(i.indexrelid, 'pg_class') AS comment
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class tc ON tc.oid = i.indrelid
 WHERE i.indrelid = $1::regclass
   AND tc.relkind = 'r'
   AND NOT i.indisprimary AND NOT i.indisunique AND NOT i.indisexclusion
   AND NOT i.indisreplident AND NOT i.indisclustered
   AND i.indisvalid AND i.indisready AND i.indislive
   AND ic.reltablespace = 0 AND NOT ic.relispartition
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid)
   AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0)
 ORDER BY ic.relname`;
