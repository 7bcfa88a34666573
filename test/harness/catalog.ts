/**
 * A normalized description of tables as their catalogs define them, for comparing the schema of
 * two databases (possibly of different majors: 15 and 17) object by object.
 *
 * Everything is read from the catalogs through PostgreSQL's own deparsers (format_type,
 * pg_get_expr, pg_get_constraintdef, pg_get_indexdef, pg_get_triggerdef, pg_get_partkeydef), never
 * from SQL text someone wrote, in a read-only transaction with `search_path = ''`: every name they
 * print is then schema-qualified (`extensions.citext`, `auth.uid()`, `OPERATOR(extensions.~)`),
 * the same way on both sides, whatever search_path the objects were created under. These
 * deparsers print ordinary definitions identically on 15 and 17.
 *
 * Left out on purpose, because they legitimately differ between a source and its copy: oids and
 * attnums (a dropped column leaves a gap on the source only), owners and privileges (grants are
 * not carried), sequence positions (data), statistics, storage. PostgreSQL 18's NOT NULL
 * constraints (contype 'n') are left out too: not-null shows as the column's `notNull`.
 *
 * Every list is sorted (columns by position, the rest by name), so equal catalogs give
 * deep-equal descriptions and `assert.deepEqual` shows exactly what differs.
 */
import type pg from 'pg';

export interface SequenceDescription {
  /** schema.sequence */
  name: string;
  /** OWNED BY this column (serial, identity) or only used by its default (nextval of a standalone sequence). */
  owned: boolean;
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
}

export interface ColumnDescription {
  name: string;
  /** format_type with the typmod: `numeric(12,2)`, `extensions.citext`, `public.handle`. */
  type: string;
  notNull: boolean;
  /** pg_get_expr of the default, or of the generation expression of a generated column. */
  default: string | null;
  /** attidentity: '' | 'a' (ALWAYS) | 'd' (BY DEFAULT). */
  identity: string;
  /** attgenerated: '' | 's' (STORED). */
  generated: string;
  /** schema.collation when it is not the type's default collation. */
  collation: string | null;
  comment: string | null;
  /** The sequence the column owns (serial, identity) or its default calls, with its parameters. */
  sequence: SequenceDescription | null;
}

export interface ConstraintDescription {
  name: string;
  /** contype: p, u, f, c, x, t. */
  type: string;
  definition: string;
}

export interface IndexDescription {
  name: string;
  definition: string;
  valid: boolean;
  replicaIdentity: boolean;
}

export interface TriggerDescription {
  name: string;
  definition: string;
  /** tgenabled: O (origin), D (disabled), R (replica), A (always). */
  enabled: string;
}

export interface PolicyDescription {
  name: string;
  /** polcmd: r (SELECT), a (INSERT), w (UPDATE), d (DELETE), * (ALL). */
  command: string;
  permissive: boolean;
  /** Role names, sorted; `public` for PUBLIC. */
  roles: string[];
  using: string | null;
  withCheck: string | null;
}

export interface TableDescription {
  /** schema.table, unquoted. */
  name: string;
  /** r (table), p (partitioned table), … */
  relkind: string;
  persistence: string;
  /** pg_get_partkeydef, for a partitioned table. */
  partitionKey: string | null;
  /** The partitioned table this one is a partition of (schema.table). */
  partitionOf: string | null;
  /** pg_get_expr(relpartbound): `FOR VALUES FROM (…) TO (…)`, `DEFAULT`. */
  partitionBound: string | null;
  rowSecurity: boolean;
  forceRowSecurity: boolean;
  /** relreplident: d, n, f, i. */
  replicaIdentity: string;
  options: string[] | null;
  comment: string | null;
  columns: ColumnDescription[];
  constraints: ConstraintDescription[];
  indexes: IndexDescription[];
  triggers: TriggerDescription[];
  policies: PolicyDescription[];
}

export interface TypeDescription {
  /** schema.type */
  name: string;
  /** typtype: e (enum), d (domain), c (composite), r (range). */
  kind: string;
  comment: string | null;
  /** Enum labels in their order. */
  labels?: string[];
  /** Domain: base type, NOT NULL, default, constraints. */
  baseType?: string;
  notNull?: boolean;
  default?: string | null;
  constraints?: ConstraintDescription[];
  collation?: string | null;
  /** Composite: attributes in their order. */
  attributes?: { name: string; type: string; collation: string | null }[];
}

const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Run fn in a read-only transaction whose search_path is empty; the session's own setting is back afterwards. */
async function withEmptySearchPath<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SET LOCAL search_path = ''`);
    const out = await fn();
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

function splitName(table: string): [string, string] {
  const dot = table.indexOf('.');
  if (dot < 0) throw new Error(`describeTables: "${table}" is not schema.table`);
  return [table.slice(0, dot), table.slice(dot + 1)];
}

const COLLATION_OF = (att: string, type: string) =>
  `CASE WHEN ${att}.attcollation <> 0 AND ${att}.attcollation <> ${type}.typcollation
        THEN (SELECT cn.nspname || '.' || co.collname FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = ${att}.attcollation)
   END`;

/**
 * Describe the given tables ('schema.table', unquoted), each partitioned table with all its
 * partitions (at any depth), sorted by name. Throws if a table does not exist. The client must not
 * be inside a transaction.
 */
export async function describeTables(client: pg.ClientBase, tables: string[]): Promise<TableDescription[]> {
  return withEmptySearchPath(client, async () => {
    const schemas = tables.map((t) => splitName(t)[0]);
    const names = tables.map((t) => splitName(t)[1]);
    const found = await client.query<{ name: string; oid: string }>(
      `SELECT sel.schema || '.' || sel.name AS name, c.oid::text AS oid
         FROM unnest($1::text[], $2::text[]) AS sel(schema, name)
         LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = sel.schema
         LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = sel.name AND c.relkind IN ('r', 'p')`,
      [schemas, names],
    );
    const missing = found.rows.filter((r) => r.oid === null).map((r) => r.name);
    if (missing.length > 0) throw new Error(`describeTables: no such table: ${missing.join(', ')}`);

    // The tables and every partition below them.
    const rels = await client.query<{
      oid: string;
      name: string;
      relkind: string;
      persistence: string;
      partition_key: string | null;
      partition_of: string | null;
      partition_bound: string | null;
      rls: boolean;
      force_rls: boolean;
      replident: string;
      options: string[] | null;
      comment: string | null;
    }>(
      `SELECT DISTINCT c.oid::text AS oid, n.nspname || '.' || c.relname AS name, c.relkind::text AS relkind,
              c.relpersistence::text AS persistence,
              CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key,
              (SELECT pn.nspname || '.' || pc.relname FROM pg_catalog.pg_inherits i
                 JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
                WHERE i.inhrelid = c.oid AND c.relispartition) AS partition_of,
              CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END AS partition_bound,
              c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls, c.relreplident::text AS replident,
              c.reloptions AS options, pg_catalog.obj_description(c.oid, 'pg_class') AS comment
         FROM unnest($1::oid[]) AS root(oid)
         -- pg_partition_tree has no row for a table that is neither partitioned nor a partition.
         CROSS JOIN LATERAL (SELECT root.oid AS relid UNION SELECT relid FROM pg_catalog.pg_partition_tree(root.oid)) AS tree
         JOIN pg_catalog.pg_class c ON c.oid = tree.relid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')`,
      [found.rows.map((r) => r.oid)],
    );
    const oids = rels.rows.map((r) => r.oid);

    // One after the other: a pg.Client runs one query at a time.
    const columns = await client.query<{ rel: string } & Omit<ColumnDescription, 'sequence'> & { seq: SequenceDescription | null }>(
      `SELECT a.attrelid::text AS rel, a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
              a.attnotnull AS "notNull", pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default,
              a.attidentity::text AS identity, a.attgenerated::text AS generated,
              ${COLLATION_OF('a', 't')} AS collation,
              pg_catalog.col_description(a.attrelid, a.attnum) AS comment,
              (SELECT json_build_object('name', sn.nspname || '.' || s.relname, 'owned', x.owned,
                                        'type', pg_catalog.format_type(sq.seqtypid, NULL), 'start', sq.seqstart::text,
                                        'increment', sq.seqincrement::text, 'min', sq.seqmin::text, 'max', sq.seqmax::text,
                                        'cache', sq.seqcache::text, 'cycle', sq.seqcycle)
                 FROM (SELECT dep.objid AS seq, true AS owned FROM pg_catalog.pg_depend dep
                        WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype IN ('a', 'i')
                       UNION ALL
                       SELECT dep.refobjid, false FROM pg_catalog.pg_depend dep
                        WHERE d.oid IS NOT NULL AND dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = d.oid
                          AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass) x
                 JOIN pg_catalog.pg_class s ON s.oid = x.seq AND s.relkind = 'S'
                 JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
                 JOIN pg_catalog.pg_sequence sq ON sq.seqrelid = s.oid
                ORDER BY x.owned DESC LIMIT 1) AS seq
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum`,
      [oids],
      );
    const constraints = await client.query<{ rel: string } & ConstraintDescription>(
      `SELECT conrelid::text AS rel, conname AS name, contype::text AS type, pg_catalog.pg_get_constraintdef(oid) AS definition
         FROM pg_catalog.pg_constraint WHERE conrelid = ANY($1::oid[]) AND contype <> 'n'`,
      [oids],
      );
    const indexes = await client.query<{ rel: string } & IndexDescription>(
      `SELECT i.indrelid::text AS rel, c.relname AS name, pg_catalog.pg_get_indexdef(i.indexrelid) AS definition,
              i.indisvalid AS valid, i.indisreplident AS "replicaIdentity"
         FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = ANY($1::oid[])`,
      [oids],
      );
    const triggers = await client.query<{ rel: string } & TriggerDescription>(
      `SELECT tgrelid::text AS rel, tgname AS name, pg_catalog.pg_get_triggerdef(oid) AS definition, tgenabled::text AS enabled
         FROM pg_catalog.pg_trigger WHERE tgrelid = ANY($1::oid[]) AND NOT tgisinternal`,
      [oids],
      );
    const policies = await client.query<{ rel: string } & PolicyDescription>(
      `SELECT p.polrelid::text AS rel, p.polname AS name, p.polcmd::text AS command, p.polpermissive AS permissive,
              ARRAY(SELECT CASE WHEN r.oid = 0 THEN 'public' ELSE (SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = r.oid) END
                      FROM unnest(p.polroles) AS r(oid) ORDER BY 1)::text[] AS roles,
              pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using,
              pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS "withCheck"
         FROM pg_catalog.pg_policy p WHERE p.polrelid = ANY($1::oid[])`,
      [oids],
      );

    const of = <R extends { rel: string }>(rows: R[], oid: string): Omit<R, 'rel'>[] =>
      rows.filter((r) => r.rel === oid).map(({ rel: _rel, ...rest }) => rest);

    return rels.rows
      .map(
        (r): TableDescription => ({
          name: r.name,
          relkind: r.relkind,
          persistence: r.persistence,
          partitionKey: r.partition_key,
          partitionOf: r.partition_of,
          partitionBound: r.partition_bound,
          rowSecurity: r.rls,
          forceRowSecurity: r.force_rls,
          replicaIdentity: r.replident,
          options: r.options,
          comment: r.comment,
          // Columns stay in their order (the rows come ordered by attnum).
          columns: of(columns.rows, r.oid).map(({ seq, ...c }) => ({ ...c, sequence: seq })),
          constraints: of(constraints.rows, r.oid).sort(byName),
          indexes: of(indexes.rows, r.oid).sort(byName),
          triggers: of(triggers.rows, r.oid).sort(byName),
          policies: of(policies.rows, r.oid).sort(byName),
        }),
      )
      .sort(byName);
  });
}

/**
 * Describe the enums, domains, composite types and ranges defined in the given schemas (not the row
 * types of tables), sorted by name. The client must not be inside a transaction.
 */
export async function describeTypes(client: pg.ClientBase, schemas: string[]): Promise<TypeDescription[]> {
  return withEmptySearchPath(client, async () => {
    const types = await client.query<{
      oid: string;
      name: string;
      kind: string;
      comment: string | null;
      base_type: string | null;
      not_null: boolean;
      default: string | null;
      collation: string | null;
      relid: string;
    }>(
      `SELECT t.oid::text AS oid, n.nspname || '.' || t.typname AS name, t.typtype::text AS kind,
              pg_catalog.obj_description(t.oid, 'pg_type') AS comment,
              CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END AS base_type,
              t.typnotnull AS not_null, pg_catalog.pg_get_expr(t.typdefaultbin, 0) AS default,
              CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> bt.typcollation
                   THEN (SELECT cn.nspname || '.' || co.collname FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation)
              END AS collation,
              t.typrelid::text AS relid
         FROM pg_catalog.pg_type t
         JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
        WHERE n.nspname = ANY($1::text[]) AND t.typtype IN ('e', 'd', 'c', 'r')
          AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')`,
      [schemas],
    );
    const out: TypeDescription[] = [];
    for (const t of types.rows) {
      const d: TypeDescription = { name: t.name, kind: t.kind, comment: t.comment };
      if (t.kind === 'e') {
        const { rows } = await client.query<{ label: string }>(
          'SELECT enumlabel AS label FROM pg_catalog.pg_enum WHERE enumtypid = $1::oid ORDER BY enumsortorder',
          [t.oid],
        );
        d.labels = rows.map((r) => r.label);
      } else if (t.kind === 'd') {
        const { rows } = await client.query<ConstraintDescription>(
          `SELECT conname AS name, contype::text AS type, pg_catalog.pg_get_constraintdef(oid) AS definition
             FROM pg_catalog.pg_constraint WHERE contypid = $1::oid AND contype <> 'n'`,
          [t.oid],
        );
        Object.assign(d, { baseType: t.base_type ?? '', notNull: t.not_null, default: t.default, collation: t.collation, constraints: rows.sort(byName) });
      } else if (t.kind === 'c') {
        const { rows } = await client.query<{ name: string; type: string; collation: string | null }>(
          `SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, ${COLLATION_OF('a', 'ty')} AS collation
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
            WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
          [t.relid],
        );
        d.attributes = rows;
      }
      out.push(d);
    }
    return out.sort(byName);
  });
}
