/**
 * walbridge's state schema on the target, as numbered steps. The daemon brings a target's
 * state up to the last step at start (state/migrate.ts), each step in the same transaction as
 * its record in `walbridge.migrations`, and refuses a state written by a newer walbridge.
 *
 * Add a step at the end, never change one that was released: a target may be at any of them.
 * Steps 1 and 2 are written to be run over a state made before states had versions (which
 * created these tables with IF NOT EXISTS and added columns at every start): such a state is
 * at version 0, and either step may find its work partly done already. Later steps need not be.
 *
 * Every statement is built for the state's schema (stateMigrations), `walbridge` unless
 * configured otherwise (config.stateSchema).
 */
import { oncePerSchema, stateSchemaIdent } from './state.js';
import { quoteLiteral } from '../pg/ident.js';

export interface Migration {
  version: number;
  /** What the step brings, for the record and the log. */
  name: string;
  sql: string;
}

interface MigrationStep {
  version: number;
  name: string;
  /** The step's SQL for the state schema `s` (as SQL names it: stateSchemaIdent). */
  sql: (s: string) => string;
}

type BuiltMigrations = ReturnType<typeof buildStateMigrations>;

/** The statements that make, read and upgrade the state in one schema. */
export type StateMigrations = { readonly [K in keyof BuiltMigrations]: BuiltMigrations[K] extends string ? string : BuiltMigrations[K] };

/** The migration statements for one schema (built once per schema). */
export const stateMigrations: (schema: string) => StateMigrations = oncePerSchema(buildStateMigrations);

function buildStateMigrations(schema: string) {
  const s = stateSchemaIdent(schema);
  /** A state table's qualified name as a text literal, for to_regclass. */
  const reg = (table: string) => quoteLiteral(`${s}.${table}`);
  return Object.freeze({
    /** Made before any step, so that the version can be read and recorded. */
    CREATE_MIGRATIONS_TABLE: `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.migrations (
  version     int PRIMARY KEY,
  name        text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
)`,

    STATE_VERSION: `SELECT COALESCE(max(version), 0) AS version FROM ${s}.migrations`,

    /**
     * Which state there is, without creating anything: versioned, made before versions (a pipeline
     * table but no version table), or none. (Reading the version in the same statement would not
     * do: a statement naming walbridge.migrations fails to plan where it does not exist.)
     */
    STATE_KIND: `
SELECT to_regclass(${reg('migrations')}) IS NOT NULL AS versioned,
       to_regclass(${reg('pipeline')}) IS NOT NULL AS unversioned`,

    RECORD_MIGRATION: `INSERT INTO ${s}.migrations (version, name) VALUES ($1, $2)`,

    /** One migration at a time, whoever runs it (two instances overlap during a deploy). */
    LOCK_MIGRATIONS: `SELECT pg_advisory_xact_lock(hashtext('walbridge'), hashtext('state migrations'))`,

    /** The steps in order. */
    MIGRATIONS: Object.freeze(STEPS.map((m): Migration => Object.freeze({ version: m.version, name: m.name, sql: m.sql(s) }))),
  });
}

/** The steps, their SQL written for the schema's name as SQL text (s). */
const STEPS: readonly MigrationStep[] = [
  {
    version: 1,
    name: 'pipeline, tables, cutover and spool',
    sql: (s) => `
CREATE TABLE IF NOT EXISTS ${s}.pipeline (
  id                  int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  source_system_id    text NOT NULL,
  source_database     text NOT NULL,
  slot_name           text NOT NULL,
  publication_name    text NOT NULL,
  -- 'init': publication/slot being created; 'backfill': copying (changes go to the spool);
  -- 'catchup': applying the spool; 'streaming'; 'done' after cutover.
  phase               text NOT NULL,
  consistent_lsn      pg_lsn,
  -- End LSN of the last source transaction applied (or a position with nothing left before it).
  applied_lsn         pg_lsn,
  applied_commit_time timestamptz,
  -- End LSN of the last source transaction whose messages are all in walbridge.spool.
  spooled_lsn         pg_lsn,
  -- Last spool row of a complete transaction; rows after it belong to one that was cut off.
  spool_committed_id  int8 NOT NULL DEFAULT 0,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The cutover, once done: where, when, what it checked; and the slot prepared for the way back.
CREATE TABLE IF NOT EXISTS ${s}.cutover (
  id            int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  lsn           pg_lsn NOT NULL,
  at            timestamptz NOT NULL DEFAULT now(),
  tables        jsonb NOT NULL,
  sequences     jsonb NOT NULL,
  reverse_slot  text,
  reverse_lsn   pg_lsn
);

CREATE TABLE IF NOT EXISTS ${s}.tables (
  schema_name       text NOT NULL,
  table_name        text NOT NULL,
  -- 'pending' -> 'copying' -> 'copied'
  state             text NOT NULL,
  -- A change to this table is applied only if its transaction committed at or after copy_lsn.
  copy_lsn          pg_lsn,
  rows_estimated    int8,
  bytes_estimated   int8,
  rows_copied       int8 NOT NULL DEFAULT 0,
  bytes_copied      int8 NOT NULL DEFAULT 0,
  copy_started_at   timestamptz,
  copy_finished_at  timestamptz,
  PRIMARY KEY (schema_name, table_name)
);

-- pgoutput messages received while the copy runs, in arrival order, applied after it.
CREATE TABLE IF NOT EXISTS ${s}.spool (
  id    int8 PRIMARY KEY,
  lsn   pg_lsn NOT NULL,
  data  bytea NOT NULL
)`,
  },
  {
    version: 2,
    name: 'daemon reports, cutover request, copies in parts, deferred indexes',
    sql: (s) => `
-- The last error an operator must see (kind, message, hint), for "walbridge status" on a laptop.
ALTER TABLE ${s}.pipeline ADD COLUMN IF NOT EXISTS last_error jsonb;
-- What the running daemon last said about itself, and when (is anyone running?).
ALTER TABLE ${s}.pipeline ADD COLUMN IF NOT EXISTS daemon_phase text;
ALTER TABLE ${s}.pipeline ADD COLUMN IF NOT EXISTS daemon_seen_at timestamptz;
-- Set by "walbridge cutover" while it waits for the app to stop writing (phase cutover).
ALTER TABLE ${s}.pipeline ADD COLUMN IF NOT EXISTS cutover_requested_at timestamptz;

-- Set while a table is copied in parts (block ranges, partitions), each committed on its own:
-- after a crash its target table holds some of them, and is emptied before it is copied again.
ALTER TABLE ${s}.tables ADD COLUMN IF NOT EXISTS copy_in_parts boolean NOT NULL DEFAULT false;

-- Plain secondary indexes of a target table dropped while the table is copied (maintaining them
-- row by row is slower than building them once): their definitions, until they are built again
-- in the transaction that marks the table copied (or by "walbridge teardown --target").
CREATE TABLE IF NOT EXISTS ${s}.deferred_indexes (
  schema_name  text NOT NULL,
  table_name   text NOT NULL,
  index_name   text NOT NULL,
  definition   text NOT NULL,
  comment      text,
  PRIMARY KEY (schema_name, table_name, index_name)
)`,
  },
  {
    version: 3,
    name: 'cutover: rows changed while it checks, the content checked, the fence',
    sql: (s) => `
-- Set by the applier when it starts recording the rows it changes, because "walbridge cutover"
-- asked for it (cutover_requested_at): the position from which walbridge.changed_rows is complete.
ALTER TABLE ${s}.pipeline ADD COLUMN changes_tracked_from pg_lsn;
-- The last fence marker (a logical message the fence's transaction wrote on the source) that
-- the target has applied: everything committed on the source before the fence is applied then.
ALTER TABLE ${s}.pipeline ADD COLUMN fence_marker text;
-- The content was checked equal, while the source took writes, at content_checked_at: every
-- row changed in a source transaction committing before content_checked_from included.
ALTER TABLE ${s}.pipeline ADD COLUMN content_checked_at timestamptz;
ALTER TABLE ${s}.pipeline ADD COLUMN content_checked_from pg_lsn;
-- Where the source's fence committed, and how long writes were refused until the cutover was recorded.
ALTER TABLE ${s}.cutover ADD COLUMN fence_lsn pg_lsn;
ALTER TABLE ${s}.cutover ADD COLUMN writes_paused_seconds numeric;

-- The rows the applier changed while a cutover checks the content: the key's values (a JSON
-- array of their text, as verify reads them), or '*' for the whole table (a TRUNCATE, or a table
-- without a key); lsn: the end of the last batch that changed it.
CREATE TABLE ${s}.changed_rows (
  schema_name  text NOT NULL,
  table_name   text NOT NULL,
  key          text NOT NULL,
  lsn          pg_lsn NOT NULL,
  PRIMARY KEY (schema_name, table_name, key)
)`,
  },
  {
    version: 4,
    name: 'the table set changed while streaming: requests, held changes, the selection',
    sql: (s) => `
-- What "walbridge tables add/remove" or "walbridge resync" (or a changed WALBRIDGE_TABLES) asked
-- of this table: 'add', 'remove' or 'resync'; the daemon takes it up while streaming and clears it.
ALTER TABLE ${s}.tables ADD COLUMN request text;
ALTER TABLE ${s}.tables ADD COLUMN requested_at timestamptz;
-- Its changes from the stream are kept in walbridge.held_changes instead of applied: the table
-- is being copied (again) while the others stream; they are applied once its copy is in.
ALTER TABLE ${s}.tables ADD COLUMN holding boolean NOT NULL DEFAULT false;
-- The target table holds rows that are not walbridge's copy (a resync): emptied before the copy.
ALTER TABLE ${s}.tables ADD COLUMN empty_before_copy boolean NOT NULL DEFAULT false;
-- state 'removed': no longer applied nor published; its rows stay on the target.
ALTER TABLE ${s}.tables ADD COLUMN removed_at timestamptz;

-- WALBRIDGE_SCHEMAS / WALBRIDGE_TABLES / WALBRIDGE_EXCLUDE_TABLES as the daemon last started with
-- them: a start with other values changes the table set as the commands would.
ALTER TABLE ${s}.pipeline ADD COLUMN selection jsonb;

-- The raw pgoutput messages (a Relation message, or a change) of holding tables, in stream
-- order, with the commit LSN of their source transaction; written in the same target
-- transaction as the applied position that passes them, removed in the one that applies them.
CREATE TABLE ${s}.held_changes (
  id           int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  schema_name  text NOT NULL,
  table_name   text NOT NULL,
  commit_lsn   pg_lsn NOT NULL,
  data         bytea NOT NULL
);
CREATE INDEX held_changes_table ON ${s}.held_changes (schema_name, table_name, id)`,
  },
];

export const LATEST_STATE_VERSION = STEPS.reduce((max, m) => Math.max(max, m.version), 0);
