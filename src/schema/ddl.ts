/**
 * The statements `walbridge schema` runs, made from what src/schema/read.ts read. Pure text:
 * every expression comes from PostgreSQL's own pg_get_*def()/pg_get_expr() under an empty
 * search_path (schema-qualified), every name from the catalogs passes through quoteIdent.
 */
import { quoteIdent, quoteLiteral } from '../pg/ident.js';
import type { CollationDef, ColumnDef, ConstraintDef, FunctionDef, PolicyDef, SequenceDef, TableDef, TypeDef, ViewDef } from './read.js';

export const qname = (schema: string, name: string): string => `${quoteIdent(schema)}.${quoteIdent(name)}`;

/** What every run of the plan starts with, inside its one transaction. */
export const APPLY_PREAMBLE = [
  // Function bodies may name tables made later in the same run (pg_dump does the same).
  'SET LOCAL check_function_bodies = false;',
  // The statements name every object with its schema; nothing may resolve elsewhere.
  "SET LOCAL search_path = '';",
];

export const createSchema = (schema: string): string => `CREATE SCHEMA ${quoteIdent(schema)};`;

export const createRole = (role: string): string => `CREATE ROLE ${quoteIdent(role)} NOLOGIN;`;

export const createExtension = (name: string, schema: string): string => `CREATE EXTENSION IF NOT EXISTS ${quoteIdent(name)} WITH SCHEMA ${quoteIdent(schema)} CASCADE;`;

/** A collation as the source defines it: ICU's or builtin's locale, or libc's two categories. */
export function createCollation(c: CollationDef): string {
  const options =
    c.provider === 'i'
      ? ['provider = icu', `locale = ${quoteLiteral(c.locale ?? '')}`, ...(c.rules ? [`rules = ${quoteLiteral(c.rules)}`] : [])]
      : c.provider === 'b'
        ? ['provider = builtin', `locale = ${quoteLiteral(c.locale ?? '')}`]
        : ['provider = libc', `lc_collate = ${quoteLiteral(c.lcCollate ?? '')}`, `lc_ctype = ${quoteLiteral(c.lcCtype ?? '')}`];
  if (!c.deterministic) options.push('deterministic = false');
  return `CREATE COLLATION ${qname(c.schema, c.name)} (${options.join(', ')});`;
}

export function createType(t: TypeDef): string {
  const name = qname(t.schema, t.name);
  if (t.kind === 'e') return `CREATE TYPE ${name} AS ENUM (${t.labels.map(quoteLiteral).join(', ')});`;
  if (t.kind === 'c') return `CREATE TYPE ${name} AS (\n${t.attributes.map((a) => `    ${quoteIdent(a.name)} ${a.type}${a.collation ? ` COLLATE ${a.collation}` : ''}`).join(',\n')}\n);`;
  // A domain.
  const parts = [`CREATE DOMAIN ${name} AS ${t.base}`];
  if (t.collation) parts.push(`COLLATE ${t.collation}`);
  if (t.defaultExpr !== null) parts.push(`DEFAULT ${t.defaultExpr}`);
  if (t.notNull) parts.push('NOT NULL');
  parts.push(...t.checks);
  return `${parts.join(' ')};`;
}

/** pg_get_functiondef() ends with a newline and no semicolon. */
export const createFunction = (f: FunctionDef): string => `${(f.def ?? '').trimEnd()};`;

function sequenceOptions(s: SequenceDef): string {
  return `START WITH ${s.start} INCREMENT BY ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'}`;
}

export const createSequence = (s: SequenceDef): string => `CREATE SEQUENCE ${qname(s.schema, s.name)} AS ${s.type} ${sequenceOptions(s)};`;

export const sequenceOwnedBy = (s: SequenceDef, table: TableDef): string =>
  `ALTER SEQUENCE ${qname(s.schema, s.name)} OWNED BY ${qname(table.schema, table.name)}.${quoteIdent(s.ownerColumn ?? '')};`;

function columnDef(c: ColumnDef, identity: SequenceDef | undefined, keepDefault: boolean): string {
  const parts = [`${quoteIdent(c.name)} ${c.type}`];
  if (c.collation) parts.push(`COLLATE ${c.collation}`);
  if (c.generated !== '' && c.defaultExpr !== null) parts.push(`GENERATED ALWAYS AS (${c.defaultExpr}) ${c.generated === 'v' ? 'VIRTUAL' : 'STORED'}`);
  else if (c.identity !== '') {
    const seq = identity ? ` (SEQUENCE NAME ${qname(identity.schema, identity.name)} ${sequenceOptions(identity)})` : '';
    parts.push(`GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${seq}`);
  } else if (c.defaultExpr !== null && keepDefault) parts.push(`DEFAULT ${c.defaultExpr}`);
  if (c.notNull) parts.push('NOT NULL');
  return parts.join(' ');
}

/**
 * A table, or a partition (its columns come from its parent). `identityOf` gives the sequence
 * behind an identity column, `keepDefault` whether a column's default comes across.
 */
export function createTable(t: TableDef, parent: TableDef | undefined, identityOf: (c: ColumnDef) => SequenceDef | undefined, keepDefault: (c: ColumnDef) => boolean): string {
  const head = `CREATE ${t.unlogged ? 'UNLOGGED ' : ''}TABLE ${qname(t.schema, t.name)}`;
  const partitionBy = t.partitionKey ? ` PARTITION BY ${t.partitionKey}` : '';
  if (parent) return `${head} PARTITION OF ${qname(parent.schema, parent.name)} ${t.partitionBound ?? 'DEFAULT'}${partitionBy};`;
  const cols = t.columns.map((c) => `    ${columnDef(c, identityOf(c), keepDefault(c))}`);
  return `${head} (\n${cols.join(',\n')}\n)${partitionBy};`;
}

export const addConstraint = (t: TableDef, c: ConstraintDef): string => `ALTER TABLE ${qname(t.schema, t.name)} ADD CONSTRAINT ${quoteIdent(c.name)} ${c.def};`;

/**
 * pg_get_indexdef() says `ON ONLY` for a partitioned table's index, which leaves it invalid until
 * each partition's index is attached; without ONLY, PostgreSQL makes the partitions' indexes too.
 */
export const createIndex = (def: string): string => `${def.replace(/ ON ONLY /, ' ON ')};`;

export function replicaIdentity(t: TableDef): string | null {
  const name = qname(t.schema, t.name);
  if (t.replicaIdentity === 'f') return `ALTER TABLE ${name} REPLICA IDENTITY FULL;`;
  if (t.replicaIdentity === 'n') return `ALTER TABLE ${name} REPLICA IDENTITY NOTHING;`;
  if (t.replicaIdentity === 'i' && t.replicaIndex) return `ALTER TABLE ${name} REPLICA IDENTITY USING INDEX ${quoteIdent(t.replicaIndex)};`;
  return null;
}

export const createTrigger = (def: string): string => `${def};`;

/** A trigger not in the default state (fires on origin): disabled, replica-only, or always. */
export function triggerState(t: TableDef, name: string, enabled: 'O' | 'D' | 'R' | 'A'): string | null {
  const verb = { O: null, D: 'DISABLE TRIGGER', R: 'ENABLE REPLICA TRIGGER', A: 'ENABLE ALWAYS TRIGGER' }[enabled];
  return verb ? `ALTER TABLE ${qname(t.schema, t.name)} ${verb} ${quoteIdent(name)};` : null;
}

export function enableRls(t: TableDef): string[] {
  const name = qname(t.schema, t.name);
  return [...(t.rls ? [`ALTER TABLE ${name} ENABLE ROW LEVEL SECURITY;`] : []), ...(t.forceRls ? [`ALTER TABLE ${name} FORCE ROW LEVEL SECURITY;`] : [])];
}

const POLICY_COMMAND = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' } as const;

export function createPolicy(t: TableDef, p: PolicyDef): string {
  const roles = p.roles.map((r) => (r === 'public' ? 'PUBLIC' : quoteIdent(r))).join(', ');
  let sql = `CREATE POLICY ${quoteIdent(p.name)} ON ${qname(t.schema, t.name)} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${POLICY_COMMAND[p.cmd]} TO ${roles}`;
  if (p.usingExpr !== null) sql += ` USING (${p.usingExpr})`;
  if (p.checkExpr !== null) sql += ` WITH CHECK (${p.checkExpr})`;
  return `${sql};`;
}

/** `COMMENT ON <what> IS '<text>';` — `what` already quoted, e.g. `TABLE "public"."t"`. */
export const comment = (what: string, text: string): string => `COMMENT ON ${what} IS ${quoteLiteral(text)};`;

/**
 * A view as pg_get_viewdef() prints its query (names schema-qualified, ending with ';'), with its
 * options as stored (`security_invoker=true`, `check_option=local`: all are reloptions of a view).
 * A materialized view is made empty (WITH NO DATA): its rows are computed on the target when
 * cutover refreshes it, from the rows copied there.
 */
export function createView(v: ViewDef): string {
  const options = v.options.length > 0 ? ` WITH (${v.options.join(', ')})` : '';
  const query = v.query.trim().replace(/;$/, '');
  return v.kind === 'm' ? `CREATE MATERIALIZED VIEW ${qname(v.schema, v.name)}${options} AS\n${query}\nWITH NO DATA;` : `CREATE VIEW ${qname(v.schema, v.name)}${options} AS\n${query};`;
}
