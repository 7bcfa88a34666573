/**
 * Catalog queries, shared by source and target. Kept apart from control flow so the
 * SQL can be read (and run by hand in psql) on its own.
 */

/** Ordinary and partitioned tables of the given schemas; partitions are reached through their root. */
export const LIST_TABLES = `
WITH selected AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = ANY($1::text[])
     AND c.relkind IN ('r', 'p')
     AND NOT c.relispartition
),
-- The tables that hold the rows: a partitioned table's leaf partitions, or the table itself
-- (pg_partition_tree returns nothing for a table that is not partitioned).
leaves AS (
  SELECT s.oid AS root, pt.relid AS leaf
    FROM selected s CROSS JOIN LATERAL pg_partition_tree(s.oid) pt
   WHERE s.relkind = 'p' AND pt.isleaf
  UNION ALL
  SELECT s.oid, s.oid FROM selected s WHERE s.relkind = 'r'
),
-- Whose replica identity matters: the leaves (DML runs on them) and, for a partitioned table,
-- the root too (changes are published through it, with its identity).
identity_holders AS (
  SELECT root, leaf AS rel FROM leaves
  UNION ALL
  SELECT s.oid, s.oid FROM selected s WHERE s.relkind = 'p'
)
SELECT s.oid::int8::text                          AS oid,
       s.nspname                                  AS schema,
       s.relname                                  AS name,
       s.relkind                                  AS kind,
       s.relreplident                             AS replica_identity,
       COALESCE((SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = s.oid AND i.indisprimary), '{}')  AS primary_key,
       -- Tables whose UPDATE/DELETE would fail once published: no usable replica identity.
       -- For a partitioned table the leaves decide, since DML runs on them.
       ARRAY(SELECT l.oid::regclass::text
               FROM identity_holders ih JOIN pg_class l ON l.oid = ih.rel
              WHERE ih.root = s.oid
                AND NOT (
                      l.relreplident = 'f'
                   OR (l.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = l.oid AND i.indisprimary))
                   OR (l.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = l.oid AND i.indisreplident))
                ))                                 AS leaves_without_identity,
       COALESCE((SELECT sum(GREATEST(l.reltuples, 0))::int8
                   FROM leaves lv JOIN pg_class l ON l.oid = lv.leaf WHERE lv.root = s.oid), 0)::text AS estimated_rows,
       COALESCE((SELECT sum(pg_table_size(lv.leaf))::int8
                   FROM leaves lv WHERE lv.root = s.oid), 0)::text AS bytes
  FROM selected s
 ORDER BY s.nspname, s.relname`;

export const EXISTING_SCHEMAS = `SELECT nspname AS name FROM pg_namespace WHERE nspname = ANY($1::text[])`;

/** Columns of the tables given by schema/name pairs, in attnum order. */
export const LIST_COLUMNS = `
SELECT n.nspname                             AS schema,
       c.relname                             AS name,
       a.attname                             AS column,
       a.attnum                              AS num,
       format_type(a.atttypid, a.atttypmod)  AS type,
       a.atttypid::int8::text                AS type_oid,
       t.typcategory = 'A'                   AS is_array,
       a.attnotnull                          AS not_null,
       a.attgenerated <> ''                  AS generated,
       a.attidentity                         AS identity,
       -- COPY's binary format carries values as the type's send/receive functions write them,
       -- which means the same in two databases for: a built-in type (same OID and format in
       -- every version) that has them, but not the reg* types, whose binary form is the OID of
       -- an object that differs between databases; an array of such (an array's elements carry
       -- their type's OID, so not of anything else); an enum (its label, looked up again on
       -- the target); a domain over any of these (its base type's form).
       -- Composites and extension types stay text: their binary form carries OIDs or depends
       -- on the extension's version.
       (CASE WHEN b.typtype = 'e' THEN true
             ELSE b.oid < 16384
                  AND b.typsend::oid <> 0 AND b.typreceive::oid <> 0
                  AND (e.oid IS NULL OR (e.oid < 16384 AND e.typsend::oid <> 0 AND e.typreceive::oid <> 0))
                  AND coalesce(e.typname, b.typname) NOT LIKE 'reg%'
        END)                                 AS binary_io
  FROM unnest($1::text[], $2::text[]) AS sel(schema, name)
  JOIN pg_namespace n ON n.nspname = sel.schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = sel.name
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  -- b: the type itself, or a domain's base type (one level; a domain over a domain stays text)
  JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
  LEFT JOIN pg_type e ON b.typcategory = 'A' AND e.oid = b.typelem
 ORDER BY n.nspname, c.relname, a.attnum`;

/** Which of the given tables hold at least one row (target emptiness check before a first copy). */
export const tableHasRows = (quotedTable: string) => `SELECT EXISTS (SELECT 1 FROM ${quotedTable}) AS has_rows`;

/** Every row of a target table removed, inside the caller's transaction (a copy in parts that was cut off). */
export const deleteAllRows = (quotedTable: string) => `DELETE FROM ${quotedTable}`;

export const SERVER_INFO = `
SELECT current_setting('server_version_num')::int AS version_num,
       current_database()                         AS database,
       current_setting('wal_level')               AS wal_level,
       pg_encoding_to_char(d.encoding)            AS encoding
  FROM pg_database d WHERE d.datname = current_database()`;

/** Used to refuse a source and target that are the same cluster; may be denied to non-superusers. */
export const SYSTEM_IDENTIFIER = `SELECT system_identifier::text AS system_id FROM pg_control_system()`;

/**
 * Tables (among the given schema/name pairs) with a unique or exclusion constraint besides the
 * primary key. Such constraints are checked row by row, so a batch of UPDATEs in one
 * statement could trip over a value that one row releases and another takes.
 */
export const TABLES_WITH_SECONDARY_UNIQUE = `
SELECT DISTINCT n.nspname AS schema, c.relname AS name
  FROM unnest($1::text[], $2::text[]) AS sel(schema, name)
  JOIN pg_namespace n ON n.nspname = sel.schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = sel.name
  JOIN pg_index i ON i.indrelid = c.oid
 WHERE (i.indisunique AND NOT i.indisprimary) OR i.indisexclusion`;

/**
 * Columns (of the given schema/name pairs) that lead a valid, non-partial btree index: a row
 * of a table without a key is then found through the index by that column's value, instead of
 * a scan of the whole table.
 */
export const INDEXED_LEAD_COLUMNS = `
SELECT n.nspname AS schema, c.relname AS name, array_agg(DISTINCT a.attname::text) AS columns
  FROM unnest($1::text[], $2::text[]) AS sel(schema, name)
  JOIN pg_namespace n ON n.nspname = sel.schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = sel.name
  JOIN pg_index i ON i.indrelid = c.oid
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
 WHERE i.indisvalid AND i.indpred IS NULL AND i.indkey[0] <> 0
 GROUP BY n.nspname, c.relname`;

/**
 * A column the source has and the target lacks ($1 a quoted table name, $2 the column): what
 * `ADD COLUMN` on the target needs to give it the same content. `has_missing` is PostgreSQL's
 * "fast default": the rows that existed before the source's ADD COLUMN read one stored value.
 */
export const SOURCE_ADDED_COLUMN = `
SELECT format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null, a.attgenerated AS generated,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr, a.atthasmissing AS has_missing
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped`;

/** That stored value as a literal; `type` comes from format_type above. */
export function addedColumnMissingValue(type: string): string {
  return `
SELECT quote_literal((a.attmissingval::text::${type}[])[1]) AS literal
  FROM pg_attribute a
 WHERE a.attrelid = $1::regclass AND a.attname = $2`;
}

/** Extensions installed in the database (the target must have those the selected columns' types come from). */
export const INSTALLED_EXTENSIONS = `SELECT extname FROM pg_extension`;
