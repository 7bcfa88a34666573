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

/** The tables a publication publishes itself (not through a partitioned root), as schema and name. */
export const PUBLICATION_TABLES = `
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
  JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.pubname = $1`;

/** A table joins or leaves the publication while the slot streams (tables/). */
export const addPublicationTable = (publication: string, t: TableName) => `ALTER PUBLICATION ${quoteIdent(publication)} ADD TABLE ${quoteTable(t)}`;
export const dropPublicationTable = (publication: string, t: TableName) => `ALTER PUBLICATION ${quoteIdent(publication)} DROP TABLE ${quoteTable(t)}`;

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

/** What preflight needs to know about the source's role and capacity. */
export const SOURCE_CAPACITY = `
SELECT r.rolsuper AS superuser,
       r.rolreplication AS replication,
       has_database_privilege(current_user, current_database(), 'CREATE') AS can_create,
       current_user AS role,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_replication_slots)::int AS used_slots,
       current_setting('max_wal_senders')::int AS max_senders,
       (SELECT count(*) FROM pg_stat_replication)::int AS used_senders,
       (SELECT setting::int8 FROM pg_settings WHERE name = 'max_slot_wal_keep_size') AS keep_size_mb,
       pg_current_wal_lsn()::text AS lsn
  FROM pg_roles r WHERE r.rolname = current_user`;

/** Selected tables the current role does not own: CREATE PUBLICATION ... FOR TABLE needs ownership. */
export const TABLES_NOT_OWNED = `
SELECT n.nspname || '.' || c.relname AS table, pg_get_userbyid(c.relowner) AS owner
  FROM unnest($1::text[], $2::text[]) AS sel(schema, name)
  JOIN pg_namespace n ON n.nspname = sel.schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = sel.name
 WHERE NOT pg_has_role(current_user, c.relowner, 'USAGE')
 ORDER BY 1`;

/**
 * Extensions that provide the types of the selected tables' columns (pgvector's vector...): the
 * column's type itself, its element type (an array), and behind a domain its base type and that
 * type's element (a domain over citext, an array of such domains).
 */
export const EXTENSIONS_USED = `
SELECT e.extname AS extension, e.extnamespace::regnamespace::text AS schema,
       array_agg(DISTINCT n.nspname || '.' || c.relname || '.' || a.attname) AS columns
  FROM unnest($1::text[], $2::text[]) AS sel(schema, name)
  JOIN pg_namespace n ON n.nspname = sel.schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = sel.name
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type elem ON elem.oid = t.typelem
  LEFT JOIN pg_type base ON base.oid = coalesce(nullif(t.typbasetype, 0), elem.typbasetype)
  JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid IN (t.oid, t.typelem, base.oid, base.typelem) AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid
 GROUP BY e.extname, e.extnamespace ORDER BY 1`;

/**
 * The sequences cutover moves: those behind the selected tables' columns, owned by them (serial,
 * identity) or named in their defaults; and every sequence of the selected tables' schemas that
 * no column owns, with no table or column: an invoice or order number the app's code or a
 * trigger draws with nextval() is as much the app's as a serial, and would collide after cutover
 * if left behind. (A sequence owned by a table that is not migrated is that table's, left alone.)
 */
export const SEQUENCES_OF_TABLES = `
WITH cols AS (
  SELECT n.nspname || '.' || c.relname AS tbl, c.oid AS relid, a.attnum, a.attname
    FROM unnest($1::text[], $2::text[]) AS sel(schema, name)
    JOIN pg_namespace n ON n.nspname = sel.schema
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = sel.name
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
),
seqs AS (
  SELECT cols.tbl, cols.attname, d.objid AS seq
    FROM cols JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = cols.relid AND d.refobjsubid = cols.attnum
                              AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  UNION
  SELECT cols.tbl, cols.attname, d.refobjid
    FROM cols JOIN pg_attrdef ad ON ad.adrelid = cols.relid AND ad.adnum = cols.attnum
              JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
),
free AS (
  SELECT NULL::text AS tbl, NULL::name AS attname, s.oid AS seq
    FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
   WHERE s.relkind = 'S' AND n.nspname = ANY($1::text[])
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('a', 'i'))
     AND s.oid NOT IN (SELECT seq FROM seqs)
)
SELECT sn.nspname AS schema, s.relname AS name, x.tbl AS "table", x.attname AS "column", p.seqincrement::text AS increment
  FROM (SELECT * FROM seqs UNION ALL SELECT * FROM free) AS x
  JOIN pg_class s ON s.oid = x.seq AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_sequence p ON p.seqrelid = s.oid
 ORDER BY 1, 2`;

/** A reverse slot on the target, created at the cutover point (no snapshot needed: nothing to copy). */
export const CREATE_SLOT_SQL = `SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`;

/**
 * Run under the copy's snapshot, once the table is locked: is the storage the snapshot saw
 * still the table's storage? TRUNCATE and table-rewriting ALTER TABLE are not MVCC-safe: once
 * one commits, an older snapshot reads the new, empty or rewritten, storage as empty. The
 * snapshot's own view of pg_class (this query) still names the old relfilenode, while
 * pg_relation_filenode() reads the current catalog. $1 is the quoted table name.
 */
export const TABLE_REWRITTEN_SINCE_SNAPSHOT = `
SELECT NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = $1::regclass)
       OR EXISTS (SELECT 1 FROM pg_class c
                   WHERE c.relkind = 'r'
                     AND (c.oid = $1::regclass OR c.oid IN (SELECT relid FROM pg_partition_tree($1::regclass)))
                     AND c.relfilenode IS DISTINCT FROM pg_relation_filenode(c.oid)) AS rewritten`;

/**
 * How a table splits into parts copied side by side ($1 quoted name): its size with TOAST
 * (what the copy moves), its heap blocks, whether TID range scans exist (14+), and for a
 * partitioned table its leaf partitions, largest first.
 */
export const TABLE_PARTS = `
SELECT coalesce(sum(pg_table_size(pt.relid)), pg_table_size($1::regclass)) AS bytes,
       pg_relation_size($1::regclass) / current_setting('block_size')::int AS blocks,
       current_setting('server_version_num')::int >= 140000 AS tid_range_scan,
       coalesce(array_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname) ORDER BY pg_table_size(pt.relid) DESC)
                FILTER (WHERE pt.relid IS NOT NULL), '{}') AS leaves
  FROM (SELECT 1) one
  LEFT JOIN pg_partition_tree($1::regclass) pt ON pt.isleaf AND pt.relid <> $1::regclass
  LEFT JOIN pg_class c ON c.oid = pt.relid
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`;
