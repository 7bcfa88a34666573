/**
 * Reads, from the source's catalogs, everything the selected tables need to exist elsewhere:
 * the tables and their partitions, columns, constraints, indexes, triggers, policies and
 * sequences, then what those refer to (types, functions, extensions), following references
 * until nothing new turns up; and the views of the selected schemas with what each reads and
 * calls (plan.ts decides which the tables bring). One REPEATABLE READ transaction, so it is one
 * consistent picture.
 */
import type pg from 'pg';
import {
  AUTH_HELPER_OIDS,
  READ_SCHEMA_SESSION,
  SCHEMA_COLLATIONS,
  SCHEMA_COLUMNS,
  SCHEMA_CONSTRAINTS,
  SCHEMA_EXTENSIONS,
  SCHEMA_FUNCTIONS,
  SCHEMA_INDEXES,
  SCHEMA_POLICIES,
  SCHEMA_REFERENCES,
  SCHEMA_SEQUENCES,
  SCHEMA_TABLES,
  SCHEMA_TRIGGERS,
  SCHEMA_TYPES,
  SCHEMA_VIEWS,
  VIEW_REFERENCES,
} from '../sql/schema.js';
import { withTransaction } from '../pg/transaction.js';
import { AUTH_HELPERS, isAppSchema } from './platform.js';

export interface ColumnDef {
  num: number;
  name: string;
  /** format_type(), schema-qualified: `extensions.citext`, `public.mood[]`, `numeric(10,2)`. */
  type: string;
  typeOid: number;
  notNull: boolean;
  identity: '' | 'a' | 'd';
  generated: '' | 's' | 'v';
  /** Declared on this table, not only inherited from a partitioned parent. */
  local: boolean;
  defaultOid: number | null;
  defaultExpr: string | null;
  collation: string | null;
  comment: string | null;
}

export interface TableDef {
  oid: number;
  schema: string;
  name: string;
  kind: 'r' | 'p';
  /** The partitioned table this one is a partition of. */
  parent: number | null;
  unlogged: boolean;
  partitionKey: string | null;
  partitionBound: string | null;
  rls: boolean;
  forceRls: boolean;
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  replicaIndex: string | null;
  comment: string | null;
  columns: ColumnDef[];
}

export interface ConstraintDef {
  oid: number;
  rel: number;
  name: string;
  type: 'p' | 'u' | 'c' | 'x' | 'f';
  def: string;
  /** Declared on this table (not a partition's copy of its parent's). */
  local: boolean;
  refRel: number | null;
  refTable: string | null;
  refSchema: string | null;
  comment: string | null;
}

export interface IndexDef {
  oid: number;
  rel: number;
  name: string;
  def: string;
  comment: string | null;
}

export interface TriggerDef {
  oid: number;
  rel: number;
  table: string;
  tableSchema: string;
  name: string;
  def: string;
  enabled: 'O' | 'D' | 'R' | 'A';
  functionOid: number;
  functionSchema: string;
  functionName: string;
  comment: string | null;
}

export interface PolicyDef {
  oid: number;
  rel: number;
  name: string;
  cmd: 'r' | 'a' | 'w' | 'd' | '*';
  permissive: boolean;
  roles: string[];
  usingExpr: string | null;
  checkExpr: string | null;
  comment: string | null;
}

export interface SequenceDef {
  oid: number;
  schema: string;
  name: string;
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
  ownerRel: number | null;
  ownerColumn: string | null;
  /** The sequence behind an identity column: made by the column itself. */
  identity: boolean;
  extension: string | null;
  comment: string | null;
}

export interface TypeDef {
  oid: number;
  schema: string;
  name: string;
  qualified: string;
  /** b base, c composite, d domain, e enum, r range, m multirange, p pseudo. */
  kind: string;
  category: string;
  elem: number;
  rel: number;
  /** For a composite: 'c' when it stands alone, 'r'/'p' when it is a table's row type. */
  relKind: string | null;
  base: string | null;
  baseOid: number;
  notNull: boolean;
  defaultExpr: string | null;
  collation: string | null;
  labels: string[];
  checks: string[];
  checkOids: number[];
  extension: string | null;
  comment: string | null;
  /** A composite type's attributes. */
  attributes: ColumnDef[];
}

export interface CollationDef {
  /** Quoted `schema.name`, as columns and domains print it. */
  qualified: string;
  schema: string;
  name: string;
  /** c libc, i ICU, b builtin (17 and later). */
  provider: string;
  deterministic: boolean;
  /** libc's locale categories. */
  lcCollate: string | null;
  lcCtype: string | null;
  /** ICU's or builtin's locale. */
  locale: string | null;
  /** ICU tailoring rules (16 and later). */
  rules: string | null;
  extension: string | null;
  comment: string | null;
}

export interface FunctionDef {
  oid: number;
  schema: string;
  name: string;
  kind: string;
  args: string;
  def: string | null;
  language: string;
  extension: string | null;
  comment: string | null;
}

export interface ViewDef {
  oid: number;
  schema: string;
  name: string;
  /** v a view, m a materialized view. */
  kind: 'v' | 'm';
  /** pg_get_viewdef(): the SELECT, every name schema-qualified, ending with ';'. */
  query: string;
  /** reloptions as stored: `security_invoker=true`, `check_option=local`. */
  options: string[];
  comment: string | null;
  /** One per commented column. */
  columnComments: Array<{ name: string; comment: string }>;
}

/** Something a view reads or calls (not built in). */
export interface ViewReference {
  view: number;
  refClass: string;
  refOid: number;
  refSchema: string | null;
  /** pg_identify_object()'s identity: `public.teams`, `public.f(integer)`. */
  refName: string;
  refExtension: string | null;
  /** For a relation: its relkind and its name (unquoted). */
  refKind: string | null;
  refRelname: string | null;
  /** For a relation's column: its name. */
  refColumn: string | null;
  /** For a function: its name and identity arguments. */
  refFunction: string | null;
  refArgs: string | null;
  /** For a row type: its table (or standalone composite type's relation). */
  refTypeRelation: number | null;
  /** For a constraint (a primary key a GROUP BY relies on): its table. */
  refConstraintRelation: number | null;
}

/** An object (catalog and oid) referring to another that is not built in. */
export interface Reference {
  class: string;
  objid: number;
  /** For a table's column: its number. */
  subid: number;
  refClass: string;
  refOid: number;
  refSchema: string | null;
  refName: string;
  refExtension: string | null;
}

export interface SourceSchema {
  tables: TableDef[];
  constraints: ConstraintDef[];
  indexes: IndexDef[];
  /** Triggers on the selected tables. */
  triggers: TriggerDef[];
  /** Triggers on tables of Supabase's platform schemas (`on_auth_user_created`): listed, never made. */
  platformTriggers: TriggerDef[];
  policies: PolicyDef[];
  sequences: SequenceDef[];
  types: Map<number, TypeDef>;
  /** The app's collations the tables' columns, indexes and types use (not an extension's). */
  collations: CollationDef[];
  functions: Map<number, FunctionDef>;
  references: Reference[];
  /** Every extension something refers to: where it lives on the source. */
  extensions: Map<string, { schema: string; version: string }>;
  /** GoTrue's auth.uid() and friends as the source defines them (platform.ts), found or not. */
  authHelpers: FunctionDef[];
  /** The views and materialized views of the selected schemas, what each reads and calls. */
  views: ViewDef[];
  viewReferences: ViewReference[];
  /** The materialized views' indexes, and what they refer to (an operator class, a function). */
  viewIndexes: IndexDef[];
  viewIndexReferences: Reference[];
  /** Triggers on the views (INSTEAD OF): listed, not made. */
  viewTriggers: TriggerDef[];
}

/** Run fn in one read-only snapshot with every name printed schema-qualified. */
export async function inCatalogSnapshot<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  return withTransaction(
    client,
    async () => {
      await client.query(READ_SCHEMA_SESSION);
      return fn();
    },
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
}

async function rowsOf<T>(client: pg.ClientBase, sql: string, params: unknown[]): Promise<T[]> {
  return (await client.query<T & pg.QueryResultRow>(sql, params)).rows;
}

export async function readColumns(client: pg.ClientBase, rels: number[]): Promise<Map<number, ColumnDef[]>> {
  const out = new Map<number, ColumnDef[]>();
  for (const c of await rowsOf<ColumnDef & { rel: number }>(client, SCHEMA_COLUMNS, [rels])) out.set(c.rel, [...(out.get(c.rel) ?? []), c]);
  return out;
}

/**
 * The selected tables (by oid) and everything they need. `schemas` are the selected schemas:
 * their standalone sequences come along, and triggers on the platform's tables are listed.
 */
export async function readSourceSchema(client: pg.ClientBase, rootOids: number[], schemas: string[]): Promise<SourceSchema> {
  const isApp = (schema: string) => isAppSchema(schema, schemas);
  return inCatalogSnapshot(client, async () => {
    const tableRows = await rowsOf<Omit<TableDef, 'columns'>>(client, SCHEMA_TABLES, [rootOids]);
    const oids = tableRows.map((t) => t.oid);
    const columns = await readColumns(client, oids);
    const tables: TableDef[] = tableRows.map((t) => ({ ...t, columns: columns.get(t.oid) ?? [] }));
    const constraints = await rowsOf<ConstraintDef>(client, SCHEMA_CONSTRAINTS, [oids]);
    const indexes = await rowsOf<IndexDef>(client, SCHEMA_INDEXES, [oids]);
    // Triggers on the platform's tables are read to be listed: the schemas of the source that are
    // the platform's and not selected.
    const platformSchemas = (await rowsOf<{ name: string }>(client, 'SELECT nspname AS name FROM pg_namespace', []))
      .map((r) => r.name)
      .filter((s) => !isApp(s) && !s.startsWith('pg_') && s !== 'information_schema');
    const allTriggers = await rowsOf<TriggerDef>(client, SCHEMA_TRIGGERS, [oids, platformSchemas]);
    const selected = new Set(oids);
    const triggers = allTriggers.filter((t) => selected.has(t.rel));
    const platformTriggers = allTriggers.filter((t) => !selected.has(t.rel));
    const policies = await rowsOf<PolicyDef>(client, SCHEMA_POLICIES, [oids]);
    const sequences = await rowsOf<SequenceDef>(client, SCHEMA_SEQUENCES, [oids, schemas]);

    const roots: Array<[string, number]> = [
      ...tables.map((t): [string, number] => ['pg_class', t.oid]),
      ...tables.flatMap((t) => t.columns.filter((c) => c.defaultOid !== null).map((c): [string, number] => ['pg_attrdef', c.defaultOid as number])),
      ...constraints.map((c): [string, number] => ['pg_constraint', c.oid]),
      ...indexes.map((i): [string, number] => ['pg_class', i.oid]),
      ...triggers.map((t): [string, number] => ['pg_trigger', t.oid]),
      ...policies.map((p): [string, number] => ['pg_policy', p.oid]),
    ];
    const followed = await followReferences(client, roots, tables.flatMap((t) => t.columns.map((c) => c.typeOid)), isApp);
    const collations = await readCollations(client, tables, followed);
    const helperOids = (await rowsOf<{ oid: number }>(client, AUTH_HELPER_OIDS, [AUTH_HELPERS])).map((r) => r.oid);
    const authHelpers = await readFunctions(client, helperOids);
    const views = await rowsOf<ViewDef>(client, SCHEMA_VIEWS, [schemas]);
    const viewReferences = views.length === 0 ? [] : await rowsOf<ViewReference>(client, VIEW_REFERENCES, [views.map((v) => v.oid)]);
    const materialized = views.filter((v) => v.kind === 'm').map((v) => v.oid);
    const viewIndexes = materialized.length === 0 ? [] : await rowsOf<IndexDef>(client, SCHEMA_INDEXES, [materialized]);
    const viewIndexReferences = viewIndexes.length === 0 ? [] : await readReferences(client, viewIndexes.map((i): [string, number] => ['pg_class', i.oid]));
    const viewTriggers = views.length === 0 ? [] : await rowsOf<TriggerDef>(client, SCHEMA_TRIGGERS, [views.map((v) => v.oid), []]);
    return { tables, constraints, indexes, triggers, platformTriggers, policies, sequences, ...followed, collations, authHelpers, views, viewReferences, viewIndexes, viewIndexReferences, viewTriggers };
  });
}

/**
 * From the given objects, every function, type and extension they lead to. Types are read whole
 * (a domain's base, a composite's attributes, an array's element); the app's functions are followed
 * too (their argument and result types). Extensions' objects stop the walk: the extension brings them.
 */
async function followReferences(
  client: pg.ClientBase,
  firstRoots: Array<[string, number]>,
  firstTypes: number[],
  isApp: (schema: string) => boolean,
): Promise<Pick<SourceSchema, 'types' | 'functions' | 'references' | 'extensions'>> {
  const types = new Map<number, TypeDef>();
  const functions = new Map<number, FunctionDef>();
  const references: Reference[] = [];
  const extensionNames = new Set<string>();
  let roots = firstRoots;
  let typeQueue = firstTypes;
  while (roots.length > 0 || typeQueue.length > 0) {
    const refs = roots.length === 0 ? [] : await readReferences(client, roots);
    references.push(...refs);
    roots = [];
    const funcQueue: number[] = [];
    for (const r of refs) {
      if (r.refExtension) extensionNames.add(r.refExtension);
      else if (r.refClass === 'pg_type') typeQueue.push(r.refOid);
      else if (r.refClass === 'pg_proc' && !functions.has(r.refOid)) funcQueue.push(r.refOid);
    }
    const newTypes = [...new Set(typeQueue)].filter((t) => !types.has(t));
    typeQueue = [];
    for (const t of await readTypes(client, newTypes)) {
      types.set(t.oid, t);
      if (t.extension) {
        extensionNames.add(t.extension);
        continue;
      }
      if (t.schema === 'pg_catalog' || t.schema === 'information_schema') continue;
      typeQueue.push(...[t.elem, t.baseOid].filter((o) => o !== 0), ...t.attributes.map((a) => a.typeOid));
      roots.push(...t.checkOids.map((o): [string, number] => ['pg_constraint', o]));
    }
    for (const f of await readFunctions(client, [...new Set(funcQueue)])) {
      functions.set(f.oid, f);
      if (f.extension) extensionNames.add(f.extension);
      else if (isApp(f.schema)) roots.push(['pg_proc', f.oid]);
    }
  }
  const extensions = new Map(
    (await rowsOf<{ name: string; schema: string; version: string }>(client, SCHEMA_EXTENSIONS, [[...extensionNames]])).map((r) => [r.name, { schema: r.schema, version: r.version }]),
  );
  return { types, functions, references, extensions };
}

/**
 * The collations that columns (of the tables and of composite types) and domains name, and the
 * ones indexes and constraints depend on: by name, as each prints it.
 */
async function readCollations(client: pg.ClientBase, tables: TableDef[], followed: Pick<SourceSchema, 'types' | 'references'>): Promise<CollationDef[]> {
  const types = [...followed.types.values()];
  const named = [
    ...tables.flatMap((t) => t.columns.map((c) => c.collation)),
    ...types.flatMap((t) => [t.collation, ...t.attributes.map((a) => a.collation)]),
    ...followed.references.filter((r) => r.refClass === 'pg_collation').map((r) => r.refName),
  ].filter((n): n is string => n !== null);
  if (named.length === 0) return [];
  return (await rowsOf<CollationDef>(client, SCHEMA_COLLATIONS, [[...new Set(named)]])).filter((c) => c.extension === null);
}

async function readReferences(client: pg.ClientBase, roots: Array<[string, number]>): Promise<Reference[]> {
  return rowsOf<Reference>(client, SCHEMA_REFERENCES, [roots.map((r) => r[0]), roots.map((r) => r[1])]);
}

async function readTypes(client: pg.ClientBase, oids: number[]): Promise<TypeDef[]> {
  if (oids.length === 0) return [];
  const types = await rowsOf<Omit<TypeDef, 'attributes'>>(client, SCHEMA_TYPES, [oids]);
  const composites = types.filter((t) => t.kind === 'c').map((t) => t.rel);
  const attributes = composites.length > 0 ? await readColumns(client, composites) : new Map<number, ColumnDef[]>();
  return types.map((t) => ({ ...t, attributes: attributes.get(t.rel) ?? [] }));
}

async function readFunctions(client: pg.ClientBase, oids: number[]): Promise<FunctionDef[]> {
  return oids.length === 0 ? [] : rowsOf<FunctionDef>(client, SCHEMA_FUNCTIONS, [oids]);
}
