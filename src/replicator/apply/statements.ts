/**
 * SQL text for applying changes on the target.
 *
 * Values never appear in the SQL: every statement takes its rows as parameters, one text[]
 * per column (`unnest($1::text[], $2::text[], …)`), and casts each element with the target's
 * own input function (`u.c0::numeric(20,6)`), as COPY would. So no value is ever parsed in
 * JavaScript, a statement's text depends only on the table and the columns it writes (it is
 * parsed once per connection and kept, see pg/batch.ts), and the target never parses a long
 * literal list. Parameters are declared `text`/`text[]` explicitly: the element bytes are the
 * source's text output (params.ts), never another type's binary format.
 */
import { valueOf } from '../../convert/value.js';
import { quoteIdent, quoteTable, type TableName } from '../../pg/ident.js';

export interface ColumnRef {
  name: string;
  /** Target type with typmod, as format_type() prints it. */
  type: string;
  /**
   * A declared conversion (src/convert/): the target's value as an SQL expression of the
   * source value's text, which it is given. Unset: the text is read by the type's input function.
   */
  convert?: (text: string) => string;
}

/** `$1::text[], $2::text[], …` for n arrays starting at $from. */
function arrayParams(n: number, from = 1): string {
  return Array.from({ length: n }, (_, i) => `$${from + i}::text[]`).join(', ');
}

/** Insert rows given as one text[] per column of `cols`. */
export function insertRows(table: TableName, cols: ColumnRef[], overridingSystemValue: boolean): string {
  const names = cols.map((c) => quoteIdent(c.name)).join(', ');
  const casts = cols.map((c, i) => valueOf(c, `u.c${i}`)).join(', ');
  const overriding = overridingSystemValue ? ' OVERRIDING SYSTEM VALUE' : '';
  const aliases = cols.map((_, i) => `c${i}`).join(', ');
  return `INSERT INTO ${quoteTable(table)} (${names})${overriding} SELECT ${casts} FROM unnest(${arrayParams(cols.length)}) AS u(${aliases})`;
}

/** A row with no column to write (every column has its default). No parameters. */
export function insertDefaultValues(table: TableName): string {
  return `INSERT INTO ${quoteTable(table)} DEFAULT VALUES`;
}

/** Parameters: the key columns' arrays, then the SET columns'. */
export function updateRowsByKey(table: TableName, key: ColumnRef[], set: ColumnRef[]): string {
  const aliases = [...key.map((_, i) => `k${i}`), ...set.map((_, i) => `s${i}`)].join(', ');
  const assignments = set.map((c, i) => `${quoteIdent(c.name)} = ${valueOf(c, `u.s${i}`)}`).join(', ');
  const where = key.map((c, i) => `t.${quoteIdent(c.name)} = ${valueOf(c, `u.k${i}`)}`).join(' AND ');
  return `UPDATE ${quoteTable(table)} AS t SET ${assignments} FROM unnest(${arrayParams(key.length + set.length)}) AS u(${aliases}) WHERE ${where}`;
}

/** Parameters: the key columns' arrays. */
export function deleteRowsByKey(table: TableName, key: ColumnRef[]): string {
  const aliases = key.map((_, i) => `k${i}`).join(', ');
  const where = key.map((c, i) => `t.${quoteIdent(c.name)} = ${valueOf(c, `u.k${i}`)}`).join(' AND ');
  return `DELETE FROM ${quoteTable(table)} AS t USING unnest(${arrayParams(key.length)}) AS u(${aliases}) WHERE ${where}`;
}

/*
 * Tables with REPLICA IDENTITY FULL and no key: a row is found by all its old values, and
 * exactly one matching row is changed even when several are identical ((tableoid, ctid) is
 * unique across partitions). Rows are compared as `ROW(...)::text` on both sides: the same
 * output functions read both (json has no equality operator, and a cast to text is not always
 * the output function), NULL stays distinct from '', and text equality can be hashed, so a
 * batch of deletes is one hash join instead of a comparison of every pair. `probe` (an index
 * into `match`) names a column that leads a btree index on the target and is not NULL in the
 * rows given: the rows are then found through that index, not by reading the whole table.
 */

function rowText(alias: string, cols: ColumnRef[]): string {
  return `ROW(${cols.map((c) => `${alias}.${quoteIdent(c.name)}`).join(', ')})::text`;
}

/**
 * The condition that finds rows whose values are `values` (one SQL expression per column of
 * `match`). With a probe the rows are found by the indexed column alone (hash key or index
 * scan) and only those are compared whole: IS NOT DISTINCT FROM (never NULL here, so the same
 * as =) cannot be hashed, which keeps the row texts out of the hash key, so they are not
 * computed for every row of the table.
 */
function matchCondition(match: ColumnRef[], values: string[], probe: number | null): string {
  if (match.length === 0) return 'true';
  const given = `ROW(${match.map((c, i) => valueOf(c, values[i] as string)).join(', ')})::text`;
  if (probe === null) return `${rowText('x', match)} = ${given}`;
  const p = match[probe] as ColumnRef;
  return `x.${quoteIdent(p.name)} = ${valueOf(p, values[probe] as string)} AND ${rowText('x', match)} IS NOT DISTINCT FROM ${given}`;
}

function oneRowMatching(table: TableName, match: ColumnRef[], firstParam: number, probe: number | null): string {
  const cond = matchCondition(match, match.map((_, i) => `$${firstParam + i}::text`), probe);
  return `(tableoid, ctid) = (SELECT x.tableoid, x.ctid FROM ${quoteTable(table)} AS x WHERE ${cond} LIMIT 1)`;
}

/** One row found by its old values. Parameters: the SET values, then the old values (one text each). */
export function updateOneRowByValues(table: TableName, set: ColumnRef[], match: ColumnRef[], probe: number | null = null): string {
  const assignments = set.map((c, i) => `${quoteIdent(c.name)} = ${valueOf(c, `$${i + 1}::text`)}`).join(', ');
  return `UPDATE ${quoteTable(table)} SET ${assignments} WHERE ${oneRowMatching(table, match, set.length + 1, probe)}`;
}

/** One row found by its old values. Parameters: the old values (one text each). */
export function deleteOneRowByValues(table: TableName, match: ColumnRef[], probe: number | null = null): string {
  return `DELETE FROM ${quoteTable(table)} WHERE ${oneRowMatching(table, match, 1, probe)}`;
}

/**
 * DELETE for a table without a key (REPLICA IDENTITY FULL): every row is given by all its old
 * values; identical rows are indistinguishable, so each distinct old row is deleted as many
 * times as it was deleted on the source, and no more. Parameters: a text[] of group ids, one
 * of counts (how many times each distinct row goes), then one per column of `match`.
 */
export function deleteRowsByValues(table: TableName, match: ColumnRef[], probe: number | null = null): string {
  const aliases = match.map((_, i) => `c${i}`).join(', ');
  const cond = matchCondition(match, match.map((_, i) => `v.c${i}`), probe);
  return (
    `DELETE FROM ${quoteTable(table)} AS t USING (` +
    `SELECT s.toid, s.tid FROM (SELECT x.tableoid AS toid, x.ctid AS tid, v.n::int AS n, row_number() OVER (PARTITION BY v.g ORDER BY x.ctid) AS rn ` +
    `FROM ${quoteTable(table)} AS x JOIN unnest(${arrayParams(match.length + 2)}) AS v(g, n, ${aliases}) ON ${cond}) AS s WHERE s.rn <= s.n` +
    `) AS d WHERE t.tableoid = d.toid AND t.ctid = d.tid`
  );
}

export function truncateTables(tables: TableName[], restartIdentity: boolean): string {
  // No CASCADE even if the source used it: like native replication, only the tables the
  // source sent are truncated, never others that happen to reference them on the target.
  return `TRUNCATE ${tables.map(quoteTable).join(', ')}${restartIdentity ? ' RESTART IDENTITY' : ''}`;
}
