/**
 * Reads, from the source's catalogs, everything the selected tables need to exist elsewhere:
 * the tables and their partitions, columns, constraints, indexes, triggers, policies and
 * sequences, then what those refer to (types, functions, extensions), following references
 * until nothing new turns up. One REPEATABLE READ transaction, so it is one consistent picture.
 */
import type pg from 'pg';
import {
  AUTH_HELPER_OIDS,
  READ_SCHEMA_SESSION,
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
} from '../sql/schema.js';
import { AUTH_HELPERS, isPlatformSchema } from './platform.js';

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
  functions: Map<number, FunctionDef>;
  references: Reference[];
  /** Every extension something refers to: where it lives on the source. */
  extensions: Map<string, { schema: string; version: string }>;
  /** GoTrue's auth.uid() and friends as the source defines them (platform.ts), found or not. */
  authHelpers: FunctionDef[];
}

/** pg returns int8 as text: oids and numbers to JavaScript numbers, exact below 2^53. */
const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** Run fn in one read-only snapshot with every name printed schema-qualified. */
export async function inCatalogSnapshot<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(READ_SCHEMA_SESSION);
    const out = await fn();
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function rowsOf<T>(client: pg.ClientBase, sql: string, params: unknown[]): Promise<T[]> {
  return (await client.query<T & pg.QueryResultRow>(sql, params)).rows;
}

export async function readColumns(client: pg.ClientBase, rels: number[]): Promise<Map<number, ColumnDef[]>> {
  const rows = await rowsOf<Record<string, unknown>>(client, SCHEMA_COLUMNS, [rels]);
  const out = new Map<number, ColumnDef[]>();
  for (const r of rows) {
    const list = out.get(num(r.rel)) ?? [];
    list.push({
      num: num(r.num),
      name: r.name as string,
      type: r.type as string,
      typeOid: num(r.type_oid),
      notNull: r.not_null as boolean,
      identity: r.identity as ColumnDef['identity'],
      generated: r.generated as ColumnDef['generated'],
      local: r.local as boolean,
      defaultOid: numOrNull(r.default_oid),
      defaultExpr: r.default_expr as string | null,
      collation: r.collation as string | null,
      comment: r.comment as string | null,
    });
    out.set(num(r.rel), list);
  }
  return out;
}

/**
 * The selected tables (by oid) and everything they need. `schemas` are the selected schemas:
 * their standalone sequences come along, and triggers on the platform's tables are listed.
 */
export async function readSourceSchema(client: pg.ClientBase, rootOids: number[], schemas: string[]): Promise<SourceSchema> {
  // A schema the user selected is the app's, whatever its name.
  const isApp = (schema: string) => schemas.includes(schema) || !isPlatformSchema(schema);
  return inCatalogSnapshot(client, async () => {
    const tableRows = await rowsOf<Record<string, unknown>>(client, SCHEMA_TABLES, [rootOids]);
    const oids = tableRows.map((r) => num(r.oid));
    const columns = await readColumns(client, oids);
    const tables: TableDef[] = tableRows.map((r) => ({
      oid: num(r.oid),
      schema: r.schema as string,
      name: r.name as string,
      kind: r.kind as 'r' | 'p',
      parent: numOrNull(r.parent),
      unlogged: r.unlogged as boolean,
      partitionKey: r.partition_key as string | null,
      partitionBound: r.partition_bound as string | null,
      rls: r.rls as boolean,
      forceRls: r.force_rls as boolean,
      replicaIdentity: r.replica_identity as TableDef['replicaIdentity'],
      replicaIndex: r.replica_index as string | null,
      comment: r.comment as string | null,
      columns: columns.get(num(r.oid)) ?? [],
    }));
    const constraints: ConstraintDef[] = (await rowsOf<Record<string, unknown>>(client, SCHEMA_CONSTRAINTS, [oids])).map((r) => ({
      oid: num(r.oid),
      rel: num(r.rel),
      name: r.name as string,
      type: r.type as ConstraintDef['type'],
      def: r.def as string,
      local: r.local as boolean,
      refRel: numOrNull(r.ref_rel),
      refTable: r.ref_table as string | null,
      refSchema: r.ref_schema as string | null,
      comment: r.comment as string | null,
    }));
    const indexes: IndexDef[] = (await rowsOf<Record<string, unknown>>(client, SCHEMA_INDEXES, [oids])).map((r) => ({
      oid: num(r.oid),
      rel: num(r.rel),
      name: r.name as string,
      def: r.def as string,
      comment: r.comment as string | null,
    }));
    // Triggers on the platform's tables are read to be listed: the schemas of the source that are
    // the platform's and not selected.
    const platformSchemas = (await rowsOf<{ name: string }>(client, 'SELECT nspname AS name FROM pg_namespace', []))
      .map((r) => r.name)
      .filter((s) => isPlatformSchema(s) && !schemas.includes(s) && !s.startsWith('pg_') && s !== 'information_schema');
    const allTriggers: TriggerDef[] = (await rowsOf<Record<string, unknown>>(client, SCHEMA_TRIGGERS, [oids, platformSchemas])).map((r) => ({
      oid: num(r.oid),
      rel: num(r.rel),
      table: r.table as string,
      tableSchema: r.table_schema as string,
      name: r.name as string,
      def: r.def as string,
      enabled: r.enabled as TriggerDef['enabled'],
      functionOid: num(r.function_oid),
      functionSchema: r.function_schema as string,
      functionName: r.function_name as string,
      comment: r.comment as string | null,
    }));
    const selected = new Set(oids);
    const triggers = allTriggers.filter((t) => selected.has(t.rel));
    const platformTriggers = allTriggers.filter((t) => !selected.has(t.rel));
    const policies: PolicyDef[] = (await rowsOf<Record<string, unknown>>(client, SCHEMA_POLICIES, [oids])).map((r) => ({
      oid: num(r.oid),
      rel: num(r.rel),
      name: r.name as string,
      cmd: r.cmd as PolicyDef['cmd'],
      permissive: r.permissive as boolean,
      roles: r.roles as string[],
      usingExpr: r.using_expr as string | null,
      checkExpr: r.check_expr as string | null,
      comment: r.comment as string | null,
    }));
    const sequences: SequenceDef[] = (await rowsOf<Record<string, unknown>>(client, SCHEMA_SEQUENCES, [oids, schemas])).map((r) => ({
      oid: num(r.oid),
      schema: r.schema as string,
      name: r.name as string,
      type: r.type as string,
      start: r.start as string,
      increment: r.increment as string,
      min: r.min as string,
      max: r.max as string,
      cache: r.cache as string,
      cycle: r.cycle as boolean,
      ownerRel: numOrNull(r.owner_rel),
      ownerColumn: r.owner_column as string | null,
      identity: r.identity === true,
      extension: r.extension as string | null,
      comment: r.comment as string | null,
    }));

    const roots: Array<[string, number]> = [
      ...tables.map((t): [string, number] => ['pg_class', t.oid]),
      ...tables.flatMap((t) => t.columns.filter((c) => c.defaultOid !== null).map((c): [string, number] => ['pg_attrdef', c.defaultOid as number])),
      ...constraints.map((c): [string, number] => ['pg_constraint', c.oid]),
      ...indexes.map((i): [string, number] => ['pg_class', i.oid]),
      ...triggers.map((t): [string, number] => ['pg_trigger', t.oid]),
      ...policies.map((p): [string, number] => ['pg_policy', p.oid]),
    ];
    const followed = await followReferences(client, roots, tables.flatMap((t) => t.columns.map((c) => c.typeOid)), isApp);
    const helperOids = (await rowsOf<{ oid: string }>(client, AUTH_HELPER_OIDS, [AUTH_HELPERS])).map((r) => num(r.oid));
    const authHelpers = await readFunctions(client, helperOids);
    return { tables, constraints, indexes, triggers, platformTriggers, policies, sequences, ...followed, authHelpers };
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

async function readReferences(client: pg.ClientBase, roots: Array<[string, number]>): Promise<Reference[]> {
  const rows = await rowsOf<Record<string, unknown>>(client, SCHEMA_REFERENCES, [roots.map((r) => r[0]), roots.map((r) => r[1])]);
  return rows.map((r) => ({
    class: r.class as string,
    objid: num(r.objid),
    subid: num(r.subid),
    refClass: r.ref_class as string,
    refOid: num(r.ref_oid),
    refSchema: r.ref_schema as string | null,
    refName: r.ref_name as string,
    refExtension: r.ref_extension as string | null,
  }));
}

async function readTypes(client: pg.ClientBase, oids: number[]): Promise<TypeDef[]> {
  if (oids.length === 0) return [];
  const rows = await rowsOf<Record<string, unknown>>(client, SCHEMA_TYPES, [oids]);
  const composites = rows.filter((r) => r.kind === 'c').map((r) => num(r.rel));
  const attributes = composites.length > 0 ? await readColumns(client, composites) : new Map<number, ColumnDef[]>();
  return rows.map((r) => ({
    oid: num(r.oid),
    schema: r.schema as string,
    name: r.name as string,
    qualified: r.qualified as string,
    kind: r.kind as string,
    category: r.category as string,
    elem: num(r.elem),
    rel: num(r.rel),
    relKind: r.rel_kind as string | null,
    base: r.base as string | null,
    baseOid: num(r.base_oid),
    notNull: r.not_null as boolean,
    defaultExpr: r.default_expr as string | null,
    collation: r.collation as string | null,
    labels: r.labels as string[],
    checks: r.checks as string[],
    checkOids: (r.check_oids as string[]).map(num),
    extension: r.extension as string | null,
    comment: r.comment as string | null,
    attributes: attributes.get(num(r.rel)) ?? [],
  }));
}

async function readFunctions(client: pg.ClientBase, oids: number[]): Promise<FunctionDef[]> {
  if (oids.length === 0) return [];
  return (await rowsOf<Record<string, unknown>>(client, SCHEMA_FUNCTIONS, [oids])).map((r) => ({
    oid: num(r.oid),
    schema: r.schema as string,
    name: r.name as string,
    kind: r.kind as string,
    args: r.args as string,
    def: r.def as string | null,
    language: r.language as string,
    extension: r.extension as string | null,
    comment: r.comment as string | null,
  }));
}
