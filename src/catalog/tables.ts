/**
 * What walbridge knows about each selected table: its columns on both sides, its key,
 * whether it can be published safely. Built once at start from the two catalogs.
 */
import type pg from 'pg';
import { WalbridgeError } from '../errors.js';
import { displayTable, quoteIdent, quoteTable, type TableName } from '../pg/ident.js';
import { EXISTING_SCHEMAS, INDEXED_LEAD_COLUMNS, LIST_COLUMNS, LIST_TABLES, TABLES_WITH_SECONDARY_UNIQUE } from '../sql/catalog.js';
import { selectTables, type SelectionInput } from './select.js';
import { BUILTIN_CONVERSIONS, builtinName, suggestConversion, type ColumnConversion } from '../convert/conversions.js';
import { isOneWay } from '../convert/way-back.js';

export interface Column {
  name: string;
  /** format_type() with typmod, e.g. `numeric(20,6)`, `order_status[]`, `character varying(40)`. */
  type: string;
  typeOid: number;
  isArray: boolean;
  notNull: boolean;
  generated: boolean;
  /** '' none, 'a' GENERATED ALWAYS AS IDENTITY, 'd' BY DEFAULT. */
  identity: '' | 'a' | 'd';
  /** A type whose binary form means the same in any database: built-in, enum, domain over those (LIST_COLUMNS). */
  binaryIo: boolean;
}

export interface SourceTable extends TableName {
  oid: number;
  kind: 'r' | 'p';
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  primaryKey: string[];
  leavesWithoutIdentity: string[];
  estimatedRows: number;
  bytes: number;
}

/** A selected table with both sides' columns resolved. */
export interface TablePlan extends TableName {
  source: SourceTable;
  sourceColumns: Column[];
  targetColumns: Column[];
  /** Columns walbridge writes: on the source, not generated (pgoutput never sends generated ones). */
  copyColumns: Column[];
  /** Target key used to find a row for UPDATE/DELETE; empty means match on all columns (REPLICA IDENTITY FULL without a key). */
  targetKey: string[];
  /** The target table has a unique or exclusion constraint besides its primary key. */
  hasSecondaryUnique: boolean;
  /** Target columns that lead a btree index (a keyless table's rows are found through them). */
  indexedColumns: string[];
  /** Every copied column has the same type on both sides, one of those COPY's binary format can carry (Column.binaryIo). */
  binaryCopy: boolean;
  /** Declared conversions (WALBRIDGE_CONVERT) of this table's columns, by column name. */
  conversions: Map<string, ColumnConversion>;
}

interface TableRow {
  oid: string;
  schema: string;
  name: string;
  kind: 'r' | 'p';
  replica_identity: 'd' | 'n' | 'f' | 'i';
  primary_key: string[];
  leaves_without_identity: string[];
  estimated_rows: string;
  bytes: string;
}

interface ColumnRow {
  schema: string;
  name: string;
  column: string;
  type: string;
  type_oid: string;
  is_array: boolean;
  not_null: boolean;
  generated: boolean;
  identity: '' | 'a' | 'd';
  binary_io: boolean;
}

export async function listSourceTables(source: pg.ClientBase, schemas: string[]): Promise<SourceTable[]> {
  const { rows } = await source.query<TableRow>(LIST_TABLES, [schemas]);
  return rows.map((r) => ({
    oid: Number(r.oid),
    schema: r.schema,
    name: r.name,
    kind: r.kind,
    replicaIdentity: r.replica_identity,
    primaryKey: r.primary_key,
    leavesWithoutIdentity: r.leaves_without_identity,
    estimatedRows: Number(r.estimated_rows),
    bytes: Number(r.bytes),
  }));
}

/**
 * Columns of the given tables. Type names are read with search_path = pg_catalog, so every
 * type outside pg_catalog is schema-qualified (`extensions.vector`, `public.order_status`): the
 * same type prints the same on both servers whatever their search_path, and apply's casts
 * name it exactly.
 */
export async function listColumns(db: pg.ClientBase | pg.Pool, tables: TableName[]): Promise<Map<string, Column[]>> {
  const client = 'totalCount' in db ? await db.connect() : db;
  let rows: ColumnRow[];
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL search_path = pg_catalog');
    rows = (await client.query<ColumnRow>(LIST_COLUMNS, [tables.map((t) => t.schema), tables.map((t) => t.name)])).rows;
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    if ('release' in client && typeof client.release === 'function') client.release();
  }
  const out = new Map<string, Column[]>();
  for (const r of rows) {
    const key = displayTable(r);
    const list = out.get(key) ?? [];
    list.push({
      name: r.column,
      type: r.type,
      typeOid: Number(r.type_oid),
      isArray: r.is_array,
      notNull: r.not_null,
      generated: r.generated,
      identity: r.identity,
      binaryIo: r.binary_io,
    });
    out.set(key, list);
  }
  return out;
}

/** Resolve the configured selection on the source; unknown schemas or filters are errors. */
export async function resolveSelection(source: pg.ClientBase, sel: SelectionInput): Promise<SourceTable[]> {
  const { rows: existing } = await source.query<{ name: string }>(EXISTING_SCHEMAS, [sel.schemas]);
  const missing = sel.schemas.filter((s) => !existing.some((e) => e.name === s));
  if (missing.length > 0) {
    throw new WalbridgeError('config', `schema ${missing.map((s) => `"${s}"`).join(', ')} does not exist on the source`, {
      hint: 'Fix WALBRIDGE_SCHEMAS (a comma list such as public,auth).',
    });
  }
  const all = await listSourceTables(source, sel.schemas);
  const { selected, unmatchedIncludes, unmatchedExcludes } = selectTables(all, sel);
  const unknown = [...unmatchedIncludes.map((g) => `WALBRIDGE_TABLES: ${g}`), ...unmatchedExcludes.map((g) => `WALBRIDGE_EXCLUDE_TABLES: ${g}`)];
  if (unknown.length > 0) {
    throw new WalbridgeError('config', `these table filters match no table of ${sel.schemas.join(', ')} on the source:\n  - ${unknown.join('\n  - ')}`, {
      hint: 'Write filters as schema.table (globs with * allowed) and check the spelling; names are case-sensitive.',
    });
  }
  if (selected.length === 0) {
    throw new WalbridgeError('config', `no table selected: schemas ${sel.schemas.join(', ')} hold no table matching the filters`, {
      hint: 'Check WALBRIDGE_SCHEMAS, WALBRIDGE_TABLES and WALBRIDGE_EXCLUDE_TABLES.',
    });
  }
  return selected;
}

/**
 * Publishing a table without a usable replica identity makes the *application's* UPDATE and
 * DELETE on it fail. walbridge never changes the source's tables itself: it stops and lets
 * the user choose. Returns the problem (message and the choices), or null.
 */
export function replicaIdentityProblem(tables: SourceTable[]): { message: string; fix: string } | null {
  const bad = tables.filter((t) => t.leavesWithoutIdentity.length > 0);
  if (bad.length === 0) return null;
  const lines = bad.map((t) => {
    const leaves = t.kind === 'p' ? ` (partitions: ${t.leavesWithoutIdentity.join(', ')})` : '';
    return `${displayTable(t)}${leaves}`;
  });
  const first = bad[0] as SourceTable;
  return {
    message:
      `${bad.length} selected table(s) have neither a primary key nor a replica identity:\n  - ${lines.join('\n  - ')}\n` +
      "Publishing them would make the application's UPDATE and DELETE on them fail on the source.",
    fix:
      'For each table choose one: add a primary key or unique index (ALTER TABLE ... REPLICA IDENTITY USING INDEX ...); ' +
      `or run ALTER TABLE ${quoteTable(first)} REPLICA IDENTITY FULL yourself (every UPDATE/DELETE then logs the whole old row); ` +
      `or leave it out with WALBRIDGE_EXCLUDE_TABLES=${bad.map(displayTable).join(',')}. walbridge never changes your source tables.`,
  };
}

export interface TableComparison {
  plans: TablePlan[];
  /** Each stops the migration: the fix is in the text. */
  problems: string[];
  /** Worth knowing, not blocking. */
  warnings: string[];
}

/**
 * Join each selected source table with the target's definition: missing tables or columns,
 * type differences (a `vector` that became `bytea` is never cast silently), generated and
 * identity columns that disagree, nullability.
 */
export async function compareWithTarget(
  source: pg.ClientBase,
  target: pg.ClientBase,
  tables: SourceTable[],
  conversions: Map<string, ColumnConversion> = new Map(),
): Promise<TableComparison> {
  const names = [tables.map((t) => t.schema), tables.map((t) => t.name)];
  // One query at a time on each connection (pg queues concurrent ones, which is deprecated).
  const targetSide = async () => {
    const cols = await listColumns(target, tables);
    const uniques = await target.query<{ schema: string; name: string }>(TABLES_WITH_SECONDARY_UNIQUE, names);
    const indexed = await target.query<{ schema: string; name: string; columns: string[] }>(INDEXED_LEAD_COLUMNS, names);
    return [cols, uniques, indexed] as const;
  };
  const [srcCols, [dstCols, uniques, indexed]] = await Promise.all([listColumns(source, tables), targetSide()]);
  const withUnique = new Set(uniques.rows.map(displayTable));
  const indexedColumns = new Map(indexed.rows.map((r) => [displayTable(r), r.columns]));
  const problems: string[] = [];
  const warnings: string[] = [];
  const plans: TablePlan[] = [];
  const declared = new Set(conversions.keys());
  for (const t of tables) {
    const key = displayTable(t);
    const sourceColumns = srcCols.get(key) ?? [];
    const targetColumns = dstCols.get(key);
    const converted = new Map<string, ColumnConversion>();
    for (const sc of sourceColumns) {
      const c = conversions.get(`${key}.${sc.name}`);
      if (!c) continue;
      converted.set(sc.name, c);
      declared.delete(`${key}.${sc.name}`);
    }
    if (!targetColumns) {
      problems.push(`table ${key} does not exist on the target: walbridge schema makes it (and what it needs) from the source`);
      continue;
    }
    for (const sc of sourceColumns) {
      const tc = targetColumns.find((c) => c.name === sc.name);
      const col = `${key}.${sc.name}`;
      const conversion = converted.get(sc.name);
      if (conversion) {
        const problem = conversionProblem(t, sc, tc, conversion);
        if (problem) problems.push(problem);
        continue;
      }
      if (!tc) {
        if (!sc.generated) problems.push(`column ${col} is missing on the target: ALTER TABLE ${quoteTable(t)} ADD COLUMN ${quoteIdent(sc.name)} ${sc.type};`);
        else problems.push(`generated column ${col} is missing on the target: add it there with the same GENERATED ALWAYS AS (...) STORED expression`);
      } else if (sc.generated && !tc.generated) {
        problems.push(`column ${col} is generated on the source but a plain column on the target, where it would stay empty: make it GENERATED ALWAYS AS (...) STORED on the target`);
      } else if (!sc.generated && tc.generated) {
        problems.push(`column ${col} is generated on the target but not on the source: make it a plain column on the target`);
      } else if (tc.type !== sc.type) {
        const fits = suggestConversion(sc.type, tc.type);
        problems.push(
          `column ${col} is ${sc.type} on the source but ${tc.type} on the target: ` +
            (fits
              ? `walbridge does not convert it unless told to: declare WALBRIDGE_CONVERT="${col}=${fits}" (see docs/conversions.md), or ALTER TABLE ${quoteTable(t)} ALTER COLUMN ${quoteIdent(sc.name)} TYPE ${sc.type}; on the target, or exclude the table`
              : `values would be reinterpreted; ALTER TABLE ${quoteTable(t)} ALTER COLUMN ${quoteIdent(sc.name)} TYPE ${sc.type}; on the target, declare a conversion (WALBRIDGE_CONVERT="${col}=sql:…", see docs/conversions.md), or exclude the table`),
        );
      } else {
        if (tc.notNull && !sc.notNull && !sc.generated) {
          warnings.push(`column ${col} is NOT NULL on the target but nullable on the source: a NULL there would stop the copy or the stream`);
        }
        if (sc.identity !== tc.identity && (sc.identity === '' || tc.identity === '')) {
          warnings.push(
            `column ${col} is ${sc.identity === '' ? 'a plain column' : 'an identity column'} on the source but ${tc.identity === '' ? 'a plain column' : 'an identity column'} on the target: ` +
              'values are copied as they are; check the sequence after cutover',
          );
        }
      }
    }
    for (const tc of targetColumns) {
      const sc = sourceColumns.find((c) => c.name === tc.name);
      if (!sc && tc.notNull && !tc.generated && tc.identity === '') {
        // A NOT NULL column the source cannot fill would fail every copied row.
        problems.push(`column ${key}.${tc.name} exists only on the target and is NOT NULL: drop it or give it a default`);
      }
    }
    const copyColumns = sourceColumns.filter((c) => !c.generated && converted.get(c.name)?.kind !== 'drop');
    const binaryCopy = converted.size === 0 && copyColumns.every((sc) => {
      const tc = targetColumns.find((c) => c.name === sc.name);
      // The same type by name (for an enum or a domain the OIDs differ between databases).
      return sc.binaryIo && tc !== undefined && tc.binaryIo && tc.type === sc.type;
    });
    plans.push({
      schema: t.schema,
      name: t.name,
      source: t,
      sourceColumns,
      targetColumns,
      copyColumns,
      targetKey: t.primaryKey,
      hasSecondaryUnique: withUnique.has(key),
      indexedColumns: indexedColumns.get(key) ?? [],
      binaryCopy,
      conversions: converted,
    });
  }
  for (const name of declared) {
    problems.push(`WALBRIDGE_CONVERT names ${name}, which is no column of a selected table: check the spelling (schema.table.column, case-sensitive) or remove it`);
  }
  return { plans, problems, warnings };
}

/** A declared conversion that cannot work on this column, or null. */
function conversionProblem(t: SourceTable, sc: Column, tc: Column | undefined, c: ColumnConversion): string | null {
  const col = `${displayTable(t)}.${sc.name}`;
  if (c.kind === 'drop') return null;
  if (isOneWay(c)) return `column ${col} was converted with ${c.spec}, which has no way back: the way back (run --reverse) cannot carry ${displayTable(t)}; exclude it from the way back (WALBRIDGE_EXCLUDE_TABLES) and move its changes yourself`;
  if (t.primaryKey.includes(sc.name)) return `column ${col} is part of the primary key, which walbridge finds rows by: it cannot be converted (${c.spec})`;
  if (sc.generated) return `column ${col} is generated: the target computes it, there is nothing to convert (remove ${c.spec} from WALBRIDGE_CONVERT)`;
  if (!tc) return `column ${col} is missing on the target: create it with the type ${c.spec} produces (${c.targetTypes.join(' or ') || 'your choice'}), or declare ${col}=drop`;
  if (!c.readsSource(sc.type)) return `column ${col} is ${sc.type} on the source, which ${c.spec} does not read (${BUILTIN_CONVERSIONS.join(', ')} or sql:… are known)`;
  if (c.targetTypes.length > 0 && !c.targetTypes.includes(builtinName(tc.type))) return `column ${col} is ${tc.type} on the target, but ${c.spec} produces ${c.targetTypes.join(' or ')}`;
  return null;
}
