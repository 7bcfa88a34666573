/**
 * The target's materialized views, for cutover to fill (cutover/materialized.ts). $1: schemas.
 * Each with whether it holds rows yet, whether it has a unique index that REFRESH ...
 * CONCURRENTLY can use (valid, immediate, btree, on plain columns, no WHERE), and the
 * materialized views it reads, directly or through plain views, so that each is refreshed after
 * them.
 */
export const TARGET_MATERIALIZED_VIEWS = `
WITH RECURSIVE matviews AS (
  SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'm' AND n.nspname = ANY($1::text[])
),
reads(matview, rel) AS (
  SELECT w.ev_class, d.refobjid
    FROM matviews m JOIN pg_rewrite w ON w.ev_class = m.oid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> w.ev_class
  UNION
  SELECT r.matview, d.refobjid
    FROM reads r JOIN pg_class v ON v.oid = r.rel AND v.relkind = 'v'
    JOIN pg_rewrite w ON w.ev_class = v.oid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> w.ev_class
)
SELECT c.oid::int8::float8 AS oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, c.relispopulated AS populated,
       EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indimmediate AND am.amname = 'btree'
                  AND i.indpred IS NULL AND i.indexprs IS NULL) AS "uniqueIndex",
       ARRAY(SELECT r.rel::int8::float8 FROM reads r JOIN matviews m ON m.oid = r.rel WHERE r.matview = c.oid AND r.rel <> c.oid) AS reads
  FROM matviews m JOIN pg_class c ON c.oid = m.oid JOIN pg_namespace n ON n.oid = c.relnamespace
 ORDER BY n.nspname, c.relname`;

export const refreshMaterializedView = (quotedName: string, concurrently: boolean): string => `REFRESH MATERIALIZED VIEW ${concurrently ? 'CONCURRENTLY ' : ''}${quotedName}`;
