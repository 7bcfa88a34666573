/**
 * Source-side objects walbridge owns: its publication and its logical replication slot.
 * walbridge never alters another publication (Supabase's `supabase_realtime` stays as is).
 */
import { quoteIdent, quoteTable, type TableName } from '../pg/ident.js';

export const SELECT_PUBLICATION = `
SELECT p.pubname AS name, p.puballtables AS all_tables, p.pubviaroot AS via_root,
       ARRAY(SELECT pt.schemaname || '.' || pt.tablename FROM pg_publication_tables pt WHERE pt.pubname = p.pubname) AS tables
  FROM pg_publication p WHERE p.pubname = $1`;

export function createPublication(name: string, tables: TableName[]): string {
  // publish_via_partition_root: changes to any partition arrive as changes to the root,
  // which is the table the target has.
  return (
    `CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${tables.map(quoteTable).join(', ')} ` +
    `WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)`
  );
}

export function setPublicationTables(name: string, tables: TableName[]): string {
  return `ALTER PUBLICATION ${quoteIdent(name)} SET TABLE ${tables.map(quoteTable).join(', ')}`;
}

export const dropPublication = (name: string) => `DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`;

export const SELECT_SLOT = `
SELECT slot_name, plugin, slot_type, database, active, active_pid, temporary,
       restart_lsn::text, confirmed_flush_lsn::text, wal_status
  FROM pg_replication_slots WHERE slot_name = $1`;

export const DROP_SLOT = `SELECT pg_drop_replication_slot($1)`;

/** The source's current position, and the slot (if it exists): active, WAL it holds back, invalidated or not. */
export const SLOT_STATUS = `
SELECT pg_current_wal_lsn()::text AS current_lsn,
       s.slot_name IS NOT NULL AS exists,
       s.active,
       (pg_current_wal_lsn() - s.restart_lsn)::int8::text AS retained_bytes,
       s.wal_status
  FROM (SELECT 1) AS one
  LEFT JOIN pg_replication_slots s ON s.slot_name = $1`;

export const CURRENT_WAL_LSN = `SELECT pg_current_wal_lsn()::text AS lsn`;

export const ROLE_INFO = `
SELECT rolsuper AS superuser, rolreplication AS replication,
       has_database_privilege(current_user, current_database(), 'CREATE') AS can_create
  FROM pg_roles WHERE rolname = current_user`;
