/**
 * What the target holds already, read with the same empty search_path as the source, so names
 * and types print alike on both sides and can be compared as text.
 */
import type pg from 'pg';
import {
  TARGET_AVAILABLE_EXTENSIONS,
  TARGET_COLLATION_PROVIDERS,
  TARGET_COLLATIONS,
  TARGET_EXTENSIONS,
  TARGET_FUNCTIONS,
  TARGET_RELATIONS,
  TARGET_ROLES,
  TARGET_SCHEMAS,
  TARGET_TYPES,
} from '../sql/schema.js';
import { inCatalogSnapshot, readColumns, type ColumnDef } from './read.js';

export interface TargetFacts {
  schemas: Set<string>;
  roles: Set<string>;
  /** Installed extension → its schema. */
  extensions: Map<string, string>;
  available: Set<string>;
  /** format_type() of every type outside the system schemas. */
  types: Set<string>;
  /** `schema.name(identity arguments)`. */
  functions: Set<string>;
  /** Collations outside the system schemas, quoted `schema.name`. */
  collations: Set<string>;
  /** The collation providers it has: c libc, i ICU, b builtin (17 and later). */
  collationProviders: Set<string>;
  /** `schema.name` → kind. */
  relations: Map<string, { oid: number; kind: string }>;
  /** Columns of the relations named in `tables` that exist. */
  columns: Map<string, ColumnDef[]>;
}

export const functionKey = (schema: string, name: string, args: string): string => `${schema}.${name}(${args})`;

/** `tables`: `schema.name` of the source's tables, whose columns are read when they exist. */
export async function readTargetFacts(client: pg.ClientBase, tables: string[]): Promise<TargetFacts> {
  return inCatalogSnapshot(client, async () => {
    const names = async (sql: string) => new Set((await client.query<{ name: string }>(sql)).rows.map((r) => r.name));
    const schemas = await names(TARGET_SCHEMAS);
    const roles = await names(TARGET_ROLES);
    const available = await names(TARGET_AVAILABLE_EXTENSIONS);
    const extensions = new Map((await client.query<{ name: string; schema: string }>(TARGET_EXTENSIONS)).rows.map((r) => [r.name, r.schema]));
    const types = new Set((await client.query<{ qualified: string }>(TARGET_TYPES)).rows.map((r) => r.qualified));
    const functions = new Set((await client.query<{ schema: string; name: string; args: string }>(TARGET_FUNCTIONS)).rows.map((r) => functionKey(r.schema, r.name, r.args)));
    const collations = await names(TARGET_COLLATIONS);
    const collationProviders = await names(TARGET_COLLATION_PROVIDERS);
    const relations = new Map(
      (await client.query<{ oid: number; schema: string; name: string; kind: string }>(TARGET_RELATIONS)).rows.map((r) => [`${r.schema}.${r.name}`, { oid: r.oid, kind: r.kind }]),
    );
    const wanted = tables.map((t) => relations.get(t)).filter((r): r is { oid: number; kind: string } => r !== undefined);
    const byOid = await readColumns(client, wanted.map((r) => r.oid));
    const columns = new Map<string, ColumnDef[]>();
    for (const t of tables) {
      const rel = relations.get(t);
      if (rel) columns.set(t, byOid.get(rel.oid) ?? []);
    }
    return { schemas, roles, extensions, available, types, functions, collations, collationProviders, relations, columns };
  });
}
