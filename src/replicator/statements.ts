/**
 * SQL text for applying changes on the target. Each shape takes one text[] per column and
 * unnests them, so a batch of any size is one round trip with a fixed parameter list (and
 * can be a prepared statement). Values arrive as text and are cast by the target's own
 * input functions: `u.c0::numeric(20,6)`; no value is ever parsed in JavaScript.
 */
import { quoteIdent, quoteTable, type TableName } from '../pg/ident.js';

export interface ColumnRef {
  name: string;
  /** Target type with typmod, as format_type() prints it. */
  type: string;
}

const arrays = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `$${i + from}::text[]`).join(', ');

export function insertRows(table: TableName, cols: ColumnRef[], overridingSystemValue: boolean): string {
  const names = cols.map((c) => quoteIdent(c.name)).join(', ');
  const aliases = cols.map((_, i) => `c${i}`).join(', ');
  const casts = cols.map((c, i) => `u.c${i}::${c.type}`).join(', ');
  const overriding = overridingSystemValue ? ' OVERRIDING SYSTEM VALUE' : '';
  return (
    `INSERT INTO ${quoteTable(table)} (${names})${overriding} ` +
    `SELECT ${casts} FROM unnest(${arrays(cols.length)}) AS u(${aliases})`
  );
}

/** Parameters: key columns first, then the SET columns. */
export function updateRowsByKey(table: TableName, key: ColumnRef[], set: ColumnRef[]): string {
  const aliases = [...key.map((_, i) => `k${i}`), ...set.map((_, i) => `s${i}`)].join(', ');
  const assignments = set.map((c, i) => `${quoteIdent(c.name)} = u.s${i}::${c.type}`).join(', ');
  const where = key.map((c, i) => `t.${quoteIdent(c.name)} = u.k${i}::${c.type}`).join(' AND ');
  return (
    `UPDATE ${quoteTable(table)} AS t SET ${assignments} ` +
    `FROM unnest(${arrays(key.length + set.length)}) AS u(${aliases}) WHERE ${where}`
  );
}

export function deleteRowsByKey(table: TableName, key: ColumnRef[]): string {
  const aliases = key.map((_, i) => `k${i}`).join(', ');
  const where = key.map((c, i) => `t.${quoteIdent(c.name)} = u.k${i}::${c.type}`).join(' AND ');
  return `DELETE FROM ${quoteTable(table)} AS t USING unnest(${arrays(key.length)}) AS u(${aliases}) WHERE ${where}`;
}

/**
 * Tables with REPLICA IDENTITY FULL and no key: a row is found by all its old values,
 * compared as text (json has no equality operator), and exactly one matching row is
 * changed even when several are identical. (tableoid, ctid) is unique across partitions.
 */
function oneRowMatching(table: TableName, match: ColumnRef[], firstParam: number): string {
  const cond = match
    .map((c, i) => `x.${quoteIdent(c.name)}::text IS NOT DISTINCT FROM $${i + firstParam}::text`)
    .join(' AND ');
  return `(tableoid, ctid) = (SELECT x.tableoid, x.ctid FROM ${quoteTable(table)} AS x WHERE ${cond || 'true'} LIMIT 1)`;
}

/** Parameters: SET values first, then the old values of `match`. */
export function updateOneRowByValues(table: TableName, set: ColumnRef[], match: ColumnRef[]): string {
  const assignments = set.map((c, i) => `${quoteIdent(c.name)} = $${i + 1}::text::${c.type}`).join(', ');
  return `UPDATE ${quoteTable(table)} SET ${assignments} WHERE ${oneRowMatching(table, match, set.length + 1)}`;
}

export function deleteOneRowByValues(table: TableName, match: ColumnRef[]): string {
  return `DELETE FROM ${quoteTable(table)} WHERE ${oneRowMatching(table, match, 1)}`;
}

export function truncateTables(tables: TableName[], restartIdentity: boolean): string {
  // No CASCADE even if the source used it: like native replication, only the tables the
  // source sent are truncated, never others that happen to reference them on the target.
  return `TRUNCATE ${tables.map(quoteTable).join(', ')}${restartIdentity ? ' RESTART IDENTITY' : ''}`;
}
