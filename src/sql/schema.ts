/**
 * The catalog reads behind `walbridge schema` (src/schema/). Every query runs with
 * search_path = '' (READ_SCHEMA_SESSION), so format_type(), pg_get_expr() and the pg_get_*def()
 * functions print every name schema-qualified: the text they give is the statement to run on the
 * target, and the same object prints the same on both sides, whatever either role's search_path.
 *
 * Objects are named by oid within one read. Oids come back as float8, which node-postgres reads
 * as a JavaScript number, exact for any oid (< 2^32); columns are named as the fields of the
 * types in src/schema/read.ts, so a row is the object.
 */

/** Run first, inside the reading transaction. */
export const READ_SCHEMA_SESSION = `SELECT set_config('search_path', '', true)`;

/** The extension an object belongs to, for a row with columns classid and objid in scope. */
const extensionOf = (classid: string, objid: string) => `(
  SELECT x.extname FROM pg_depend e JOIN pg_extension x ON x.oid = e.refobjid
   WHERE e.classid = ${classid} AND e.objid = ${objid} AND e.refclassid = 'pg_extension'::regclass AND e.deptype = 'e'
   LIMIT 1)`;

/** The selected roots and every partition below them, parents before children. $1: root oids. */
export const SCHEMA_TABLES = `
WITH RECURSIVE tree AS (
  SELECT c.oid, NULL::oid AS parent, 0 AS depth FROM pg_class c WHERE c.oid = ANY($1::oid[])
  UNION ALL
  SELECT h.inhrelid, h.inhparent, t.depth + 1
    FROM pg_inherits h JOIN tree t ON h.inhparent = t.oid
    JOIN pg_class c ON c.oid = h.inhrelid AND c.relispartition
)
SELECT c.oid::int8::float8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
       t.parent::int8::float8 AS parent, t.depth,
       c.relpersistence = 'u' AS unlogged,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS "partitionKey",
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS "partitionBound",
       c.relrowsecurity AS rls, c.relforcerowsecurity AS "forceRls",
       c.relreplident AS "replicaIdentity",
       (SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = c.oid AND i.indisreplident) AS "replicaIndex",
       obj_description(c.oid, 'pg_class') AS comment
  FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace
 ORDER BY t.depth, n.nspname, c.relname`;

/** Columns of the given relations (tables, or a composite type's relation). $1: relation oids. */
export const SCHEMA_COLUMNS = `
SELECT a.attrelid::int8::float8 AS rel, a.attnum AS num, a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::int8::float8 AS "typeOid",
       a.attnotnull AS "notNull", a.attidentity AS identity, a.attgenerated AS generated, a.attislocal AS local,
       ad.oid::int8::float8 AS "defaultOid", pg_get_expr(ad.adbin, ad.adrelid) AS "defaultExpr",
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation,
       col_description(a.attrelid, a.attnum) AS comment
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum`;

/**
 * Constraints of the given tables but NOT NULL ones (PostgreSQL 18 records those as constraints
 * too; the columns carry them) and constraint triggers (read as triggers).
 */
export const SCHEMA_CONSTRAINTS = `
SELECT co.oid::int8::float8 AS oid, co.conrelid::int8::float8 AS rel, co.conname AS name, co.contype AS type,
       pg_get_constraintdef(co.oid) AS def,
       co.conislocal AND co.conparentid = 0 AS local,
       CASE WHEN co.contype = 'f' THEN co.confrelid::int8::float8 END AS "refRel",
       CASE WHEN co.contype = 'f' THEN quote_ident(rn.nspname) || '.' || quote_ident(rc.relname) END AS "refTable",
       CASE WHEN co.contype = 'f' THEN rn.nspname END AS "refSchema",
       obj_description(co.oid, 'pg_constraint') AS comment
  FROM pg_constraint co
  LEFT JOIN pg_class rc ON rc.oid = co.confrelid
  LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
 WHERE co.conrelid = ANY($1::oid[]) AND co.contype IN ('p', 'u', 'c', 'x', 'f')
 ORDER BY co.conrelid, co.contype, co.conname`;

/** Indexes that are neither a constraint's nor made by a partitioned parent's index. */
export const SCHEMA_INDEXES = `
SELECT i.indexrelid::int8::float8 AS oid, i.indrelid::int8::float8 AS rel, ic.relname AS name,
       pg_get_indexdef(i.indexrelid) AS def,
       obj_description(i.indexrelid, 'pg_class') AS comment
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = ANY($1::oid[])
   AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid AND co.contype IN ('p', 'u', 'x'))
   AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
 ORDER BY i.indrelid, ic.relname`;

/** User triggers (not a foreign key's, not a partitioned parent's clone) and the function each calls. */
export const SCHEMA_TRIGGERS = `
SELECT t.oid::int8::float8 AS oid, t.tgrelid::int8::float8 AS rel, quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) AS table,
       tn.nspname AS "tableSchema", t.tgname AS name,
       pg_get_triggerdef(t.oid) AS def, t.tgenabled AS enabled,
       p.oid::int8::float8 AS "functionOid", pn.nspname AS "functionSchema", p.proname AS "functionName",
       obj_description(t.oid, 'pg_trigger') AS comment
  FROM pg_trigger t
  JOIN pg_class tc ON tc.oid = t.tgrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
 WHERE NOT t.tgisinternal AND t.tgparentid = 0
   AND (t.tgrelid = ANY($1::oid[]) OR tn.nspname = ANY($2::text[]))
 ORDER BY t.tgrelid, t.tgname`;

/** Row-level security policies; roles by name, 'public' for PUBLIC. */
export const SCHEMA_POLICIES = `
SELECT p.oid::int8::float8 AS oid, p.polrelid::int8::float8 AS rel, p.polname AS name, p.polcmd AS cmd, p.polpermissive AS permissive,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END FROM unnest(p.polroles) AS r ORDER BY 1)::text[] AS roles,
       pg_get_expr(p.polqual, p.polrelid) AS "usingExpr",
       pg_get_expr(p.polwithcheck, p.polrelid) AS "checkExpr",
       obj_description(p.oid, 'pg_policy') AS comment
  FROM pg_policy p
 WHERE p.polrelid = ANY($1::oid[])
 ORDER BY p.polrelid, p.polname`;

/**
 * Sequences to create: owned by a column of the given tables (serial, identity), named in their
 * defaults, or standing alone (owned by nothing) in the given schemas. $1: table oids, $2: schemas.
 */
export const SCHEMA_SEQUENCES = `
WITH owner AS (
  SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS col, d.deptype
    FROM pg_depend d
   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
),
wanted AS (
  SELECT o.seq FROM owner o WHERE o.rel = ANY($1::oid[])
  UNION
  SELECT d.refobjid FROM pg_attrdef ad
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
   WHERE ad.adrelid = ANY($1::oid[])
  UNION
  SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'S' AND n.nspname = ANY($2::text[]) AND NOT EXISTS (SELECT 1 FROM owner o WHERE o.seq = c.oid)
)
SELECT c.oid::int8::float8 AS oid, n.nspname AS schema, c.relname AS name, format_type(s.seqtypid, NULL) AS type,
       s.seqstart::text AS start, s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max,
       s.seqcache::text AS cache, s.seqcycle AS cycle,
       o.rel::int8::float8 AS "ownerRel", a.attname AS "ownerColumn", COALESCE(o.deptype = 'i', false) AS identity,
       ${extensionOf(`'pg_class'::regclass`, 'c.oid')} AS extension,
       obj_description(c.oid, 'pg_class') AS comment
  FROM wanted w
  JOIN pg_class c ON c.oid = w.seq AND c.relkind = 'S'
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_sequence s ON s.seqrelid = c.oid
  LEFT JOIN owner o ON o.seq = c.oid
  LEFT JOIN pg_attribute a ON a.attrelid = o.rel AND a.attnum = o.col
 ORDER BY n.nspname, c.relname`;

/**
 * What the given objects refer to (not built in): functions, types, operators, operator classes,
 * collations, each with its schema and, when it belongs to one, its extension. $1: catalogs (regclass
 * names), $2: oids, pairwise. A column's type is recorded against its table (objsubid > 0).
 */
export const SCHEMA_REFERENCES = `
SELECT o.classid::text AS class, o.objid::int8::float8 AS objid, d.objsubid AS subid,
       d.refclassid::regclass::text AS "refClass", d.refobjid::int8::float8 AS "refOid",
       r.schema AS "refSchema", r.identity AS "refName", x.extname AS "refExtension"
  FROM unnest($1::regclass[], $2::oid[]) AS o(classid, objid)
  JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'n'
  CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, 0) AS r
  CROSS JOIN LATERAL (SELECT ${extensionOf('d.refclassid', 'd.refobjid')} AS extname) AS x
 WHERE d.refclassid IN ('pg_proc'::regclass, 'pg_type'::regclass, 'pg_operator'::regclass,
                        'pg_opclass'::regclass, 'pg_collation'::regclass)
   -- Built-in objects need nothing; an extension may put its own in pg_catalog (adminpack does).
   AND (x.extname IS NOT NULL OR (r.schema IS DISTINCT FROM 'pg_catalog' AND r.schema IS DISTINCT FROM 'information_schema'))`;

/** Types by oid: what a CREATE TYPE or CREATE DOMAIN needs, and where each belongs. */
export const SCHEMA_TYPES = `
SELECT t.oid::int8::float8 AS oid, n.nspname AS schema, t.typname AS name, format_type(t.oid, NULL) AS qualified,
       t.typtype AS kind, t.typcategory AS category,
       t.typelem::int8::float8 AS elem, t.typrelid::int8::float8 AS rel,
       (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) AS "relKind",
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base,
       t.typbasetype::int8::float8 AS "baseOid", t.typnotnull AS "notNull",
       pg_get_expr(t.typdefaultbin, 0) AS "defaultExpr",
       CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> bt.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation,
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) AS labels,
       ARRAY(SELECT 'CONSTRAINT ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid)
               FROM pg_constraint c WHERE c.contypid = t.oid ORDER BY c.conname) AS checks,
       ARRAY(SELECT c.oid::int8::float8 FROM pg_constraint c WHERE c.contypid = t.oid) AS "checkOids",
       ${extensionOf(`'pg_type'::regclass`, 't.oid')} AS extension,
       obj_description(t.oid, 'pg_type') AS comment
  FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace
  LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
  LEFT JOIN pg_collation co ON co.oid = t.typcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE t.oid = ANY($1::oid[])`;

/**
 * Collations by qualified name (as a column or a domain prints it, as pg_identify_object names
 * it): what CREATE COLLATION needs. The locale is colliculocale up to 16 and colllocale from 17,
 * rules exist from 16: read through to_jsonb, whichever the source has.
 */
export const SCHEMA_COLLATIONS = `
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.collname) AS qualified, n.nspname AS schema, c.collname AS name,
       c.collprovider AS provider, c.collisdeterministic AS deterministic,
       j->>'collcollate' AS "lcCollate", j->>'collctype' AS "lcCtype",
       COALESCE(j->>'colllocale', j->>'colliculocale') AS locale, j->>'collicurules' AS rules,
       ${extensionOf(`'pg_collation'::regclass`, 'c.oid')} AS extension,
       obj_description(c.oid, 'pg_collation') AS comment
  FROM pg_collation c
  JOIN pg_namespace n ON n.oid = c.collnamespace
  CROSS JOIN LATERAL to_jsonb(c) AS j
 WHERE c.oid IN (SELECT to_regcollation(x) FROM unnest($1::text[]) AS x)
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY 1`;

/** Functions by oid, with their CREATE statement (none for an aggregate or a window function). */
export const SCHEMA_FUNCTIONS = `
SELECT p.oid::int8::float8 AS oid, n.nspname AS schema, p.proname AS name, p.prokind AS kind,
       pg_get_function_identity_arguments(p.oid) AS args,
       CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END AS def,
       l.lanname AS language,
       ${extensionOf(`'pg_proc'::regclass`, 'p.oid')} AS extension,
       obj_description(p.oid, 'pg_proc') AS comment
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = ANY($1::oid[])`;

/**
 * Views and materialized views of the given schemas, not an extension's, with their query as
 * pg_get_viewdef() prints it (schema-qualified under READ_SCHEMA_SESSION) and their options
 * (security_invoker, security_barrier, check_option). $1: schemas.
 */
export const SCHEMA_VIEWS = `
SELECT c.oid::int8::float8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
       pg_get_viewdef(c.oid) AS query, COALESCE(c.reloptions, '{}')::text[] AS options,
       obj_description(c.oid, 'pg_class') AS comment,
       COALESCE((SELECT json_agg(json_build_object('name', a.attname, 'comment', d.description) ORDER BY a.attnum)
                   FROM pg_attribute a JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::json) AS "columnComments"
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY($1::text[])
   AND ${extensionOf(`'pg_class'::regclass`, 'c.oid')} IS NULL
 ORDER BY n.nspname, c.relname`;

/**
 * What the given views read and call, from their rewrite rule's dependencies: relations (a
 * column's name when one is named), functions (name and arguments, to find them on the target),
 * types (the table or composite type behind a row type), constraints (a primary key a GROUP BY
 * leans on: its table), operators..., each with its schema and extension; built-in objects left
 * out. $1: view oids.
 */
export const VIEW_REFERENCES = `
SELECT w.ev_class::int8::float8 AS view, d.refclassid::regclass::text AS "refClass", d.refobjid::int8::float8 AS "refOid",
       r.schema AS "refSchema", r.identity AS "refName", x.extname AS "refExtension",
       (SELECT c.relkind::text FROM pg_class c WHERE d.refclassid = 'pg_class'::regclass AND c.oid = d.refobjid) AS "refKind",
       (SELECT c.relname FROM pg_class c WHERE d.refclassid = 'pg_class'::regclass AND c.oid = d.refobjid) AS "refRelname",
       (SELECT a.attname FROM pg_attribute a WHERE d.refclassid = 'pg_class'::regclass AND a.attrelid = d.refobjid AND a.attnum = d.refobjsubid AND d.refobjsubid > 0) AS "refColumn",
       (SELECT p.proname FROM pg_proc p WHERE d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid) AS "refFunction",
       (SELECT t.typrelid::int8::float8 FROM pg_type t WHERE d.refclassid = 'pg_type'::regclass AND t.oid = d.refobjid AND t.typrelid <> 0) AS "refTypeRelation",
       (SELECT co.conrelid::int8::float8 FROM pg_constraint co WHERE d.refclassid = 'pg_constraint'::regclass AND co.oid = d.refobjid) AS "refConstraintRelation",
       CASE WHEN d.refclassid = 'pg_proc'::regclass THEN pg_get_function_identity_arguments(d.refobjid) END AS "refArgs"
  FROM pg_rewrite w
  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.deptype = 'n'
  CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, 0) AS r
  CROSS JOIN LATERAL (SELECT ${extensionOf('d.refclassid', 'd.refobjid')} AS extname) AS x
 WHERE w.ev_class = ANY($1::oid[]) AND d.refobjid <> w.ev_class
   AND (x.extname IS NOT NULL OR (r.schema IS DISTINCT FROM 'pg_catalog' AND r.schema IS DISTINCT FROM 'information_schema'))
 ORDER BY 1, 2, 3, d.refobjsubid`;

/** GoTrue's claim readers (src/schema/platform.ts), which app functions may call in their bodies. */
export const AUTH_HELPER_OIDS = `
SELECT p.oid::int8::float8 AS oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'auth' AND p.proname = ANY($1::text[]) AND p.pronargs = 0`;

/** Extensions by name: the schema each lives in. */
export const SCHEMA_EXTENSIONS = `
SELECT x.extname AS name, n.nspname AS schema, x.extversion AS version
  FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
 WHERE x.extname = ANY($1::text[])`;

// ---------------------------------------------------------------------------------------------
// The target: what exists already (run with the same search_path = '').
// ---------------------------------------------------------------------------------------------

export const TARGET_SCHEMAS = `SELECT nspname AS name FROM pg_namespace`;
export const TARGET_ROLES = `SELECT rolname AS name FROM pg_roles`;
export const TARGET_EXTENSIONS = `
SELECT x.extname AS name, n.nspname AS schema FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace`;
export const TARGET_AVAILABLE_EXTENSIONS = `SELECT name FROM pg_available_extensions`;
export const TARGET_TYPES = `
SELECT format_type(t.oid, NULL) AS qualified FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`;
export const TARGET_COLLATIONS = `
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.collname) AS name FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')`;
/** Which collation providers the target's server was built with (i: ICU; b: builtin, from 17). */
export const TARGET_COLLATION_PROVIDERS = `SELECT DISTINCT collprovider AS name FROM pg_collation`;
export const TARGET_FUNCTIONS = `
SELECT n.nspname AS schema, p.proname AS name, pg_get_function_identity_arguments(p.oid) AS args
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')`;
export const TARGET_RELATIONS = `
SELECT c.oid::int8::float8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')`;

// ---------------------------------------------------------------------------------------------
// Partitions the source gained while walbridge runs (schema/partitions.ts).
// ---------------------------------------------------------------------------------------------

/**
 * On the source: the partitions, at every level, of the partitioned tables $1 (oids), by name
 * (as walbridge schema names its steps) and quoted, each with its parent (quoted) and the
 * constraint its bound puts on a row (pg_get_partition_constraintdef, names
 * qualified under the empty search_path). Parents before their partitions.
 */
export const SOURCE_PARTITIONS = `
SELECT n.nspname || '.' || c.relname AS name,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS quoted,
       quote_ident(pn.nspname) || '.' || quote_ident(pc.relname) AS parent,
       pg_get_partition_constraintdef(c.oid) AS "rowConstraint"
  FROM unnest($1::oid[]) AS r(oid)
  CROSS JOIN LATERAL pg_partition_tree(r.oid) AS t
  JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class pc ON pc.oid = t.parentrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
 WHERE t.level > 0
 ORDER BY t.level, 1`;

/** Of the quoted names $1, those the database lacks. */
export const MISSING_RELATIONS = `SELECT x AS name FROM unnest($1::text[]) AS x WHERE to_regclass(x) IS NULL`;

/** On the target: the DEFAULT partition of $1 (a quoted name), if it has one. */
export const DEFAULT_PARTITION = `
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.inhparent = to_regclass($1) AND c.relpartbound IS NOT NULL AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'`;

/** On the target: the columns of $1 (a quoted name) an INSERT may name (not generated). */
export const INSERTABLE_COLUMNS = `
SELECT quote_ident(attname) AS name FROM pg_attribute
 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
 ORDER BY attnum`;
