/**
 * SQL text for applying changes on the target.
 *
 * Values are written into the statement as quoted literals and cast by the target's own input
 * functions (`'123.450'::numeric(20,6)`): no value is ever parsed in JavaScript, and a whole
 * batch of statements — from BEGIN to COMMIT — travels to the target in one simple-query
 * round trip (node-postgres cannot pipeline parameterised statements, and a round trip per
 * statement is what made naive apply slow). Literals are safe because every target session
 * runs with standard_conforming_strings = on and Postgres text cannot contain NUL: doubling
 * the single quotes is the whole escaping.
 */
import { quoteIdent, quoteTable, type TableName } from '../pg/ident.js';

export interface ColumnRef {
  name: string;
  /** Target type with typmod, as format_type() prints it. */
  type: string;
}

export type Value = string | null;

export function literal(v: Value): string {
  return v === null ? 'NULL' : `'${v.replace(/'/g, "''")}'`;
}

function valuesList(rows: Value[][]): string {
  return rows.map((r) => `(${r.map(literal).join(', ')})`).join(', ');
}

/** `rows[i]` holds one value per column of `cols`. */
export function insertRows(table: TableName, cols: ColumnRef[], rows: Value[][], overridingSystemValue: boolean): string {
  if (cols.length === 0) return rows.map(() => `INSERT INTO ${quoteTable(table)} DEFAULT VALUES`).join(';\n');
  const names = cols.map((c) => quoteIdent(c.name)).join(', ');
  const aliases = cols.map((_, i) => `c${i}`).join(', ');
  const casts = cols.map((c, i) => `v.c${i}::${c.type}`).join(', ');
  const overriding = overridingSystemValue ? ' OVERRIDING SYSTEM VALUE' : '';
  return `INSERT INTO ${quoteTable(table)} (${names})${overriding} SELECT ${casts} FROM (VALUES ${valuesList(rows)}) AS v(${aliases})`;
}

/** A value in COPY's text format: backslash, newline, carriage return and tab escaped; NULL as \N. */
export function copyField(v: Value): string {
  if (v === null) return '\\N';
  return v.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

/**
 * Many rows for one table as COPY ... FROM STDIN: the fastest way into a table (no statement
 * to parse, rows inserted in bulk), with the same input functions as a cast. COPY writes
 * identity columns as given, like OVERRIDING SYSTEM VALUE.
 */
export function copyRows(table: TableName, cols: ColumnRef[], rows: Value[][]): { sql: string; data: string } {
  return {
    sql: `COPY ${quoteTable(table)} (${cols.map((c) => quoteIdent(c.name)).join(', ')}) FROM STDIN`,
    data: rows.map((r) => r.map(copyField).join('\t')).join('\n') + '\n',
  };
}

/** `rows[i]` holds the key values, then the SET values. */
export function updateRowsByKey(table: TableName, key: ColumnRef[], set: ColumnRef[], rows: Value[][]): string {
  const aliases = [...key.map((_, i) => `k${i}`), ...set.map((_, i) => `s${i}`)].join(', ');
  const assignments = set.map((c, i) => `${quoteIdent(c.name)} = v.s${i}::${c.type}`).join(', ');
  const where = key.map((c, i) => `t.${quoteIdent(c.name)} = v.k${i}::${c.type}`).join(' AND ');
  return `UPDATE ${quoteTable(table)} AS t SET ${assignments} FROM (VALUES ${valuesList(rows)}) AS v(${aliases}) WHERE ${where}`;
}

export function deleteRowsByKey(table: TableName, key: ColumnRef[], rows: Value[][]): string {
  const aliases = key.map((_, i) => `k${i}`).join(', ');
  const where = key.map((c, i) => `t.${quoteIdent(c.name)} = v.k${i}::${c.type}`).join(' AND ');
  return `DELETE FROM ${quoteTable(table)} AS t USING (VALUES ${valuesList(rows)}) AS v(${aliases}) WHERE ${where}`;
}

/**
 * Tables with REPLICA IDENTITY FULL and no key: a row is found by all its old values,
 * compared as text (json has no equality operator), and exactly one matching row is
 * changed even when several are identical. (tableoid, ctid) is unique across partitions.
 * Both sides go through the same cast: a cast to text is not always the output function
 * (boolean 't' casts to 'true', char(n) drops its padding, inet gains its /32).
 */
function oneRowMatching(table: TableName, match: ColumnRef[], old: Value[]): string {
  const cond = match
    .map((c, i) => {
      const v = old[i] ?? null;
      return v === null ? `x.${quoteIdent(c.name)} IS NULL` : `x.${quoteIdent(c.name)}::text = (${literal(v)}::${c.type})::text`;
    })
    .join(' AND ');
  return `(tableoid, ctid) = (SELECT x.tableoid, x.ctid FROM ${quoteTable(table)} AS x WHERE ${cond || 'true'} LIMIT 1)`;
}

export function updateOneRowByValues(table: TableName, set: ColumnRef[], values: Value[], match: ColumnRef[], old: Value[]): string {
  const assignments = set.map((c, i) => `${quoteIdent(c.name)} = ${literal(values[i] ?? null)}::${c.type}`).join(', ');
  return `UPDATE ${quoteTable(table)} SET ${assignments} WHERE ${oneRowMatching(table, match, old)}`;
}

export function deleteOneRowByValues(table: TableName, match: ColumnRef[], old: Value[]): string {
  return `DELETE FROM ${quoteTable(table)} WHERE ${oneRowMatching(table, match, old)}`;
}

/**
 * DELETE for a table without a key (REPLICA IDENTITY FULL): every row is given by all its old
 * values; identical rows are indistinguishable, so each distinct old row is deleted as many
 * times as it was deleted on the source, and no more. One scan of the table per batch.
 */
export function deleteRowsByValues(table: TableName, match: ColumnRef[], rows: Value[][]): string {
  const distinct = new Map<string, { values: Value[]; n: number }>();
  for (const r of rows) {
    const k = JSON.stringify(r);
    const d = distinct.get(k);
    if (d) d.n++;
    else distinct.set(k, { values: r, n: 1 });
  }
  const list = [...distinct.values()].map((d, i) => `(${i}, ${d.n}, ${d.values.map(literal).join(', ')})`).join(', ');
  const aliases = match.map((_, i) => `c${i}`).join(', ');
  const cond = match.map((c, i) => `x.${quoteIdent(c.name)}::text IS NOT DISTINCT FROM (v.c${i}::${c.type})::text`).join(' AND ');
  return (
    `DELETE FROM ${quoteTable(table)} AS t USING (` +
    `SELECT s.toid, s.tid FROM (SELECT x.tableoid AS toid, x.ctid AS tid, v.n, row_number() OVER (PARTITION BY v.g ORDER BY x.ctid) AS rn ` +
    `FROM ${quoteTable(table)} AS x JOIN (VALUES ${list}) AS v(g, n, ${aliases}) ON ${cond || 'true'}) AS s WHERE s.rn <= s.n` +
    `) AS d WHERE t.tableoid = d.toid AND t.ctid = d.tid`
  );
}

export function truncateTables(tables: TableName[], restartIdentity: boolean): string {
  // No CASCADE even if the source used it: like native replication, only the tables the
  // source sent are truncated, never others that happen to reference them on the target.
  return `TRUNCATE ${tables.map(quoteTable).join(', ')}${restartIdentity ? ' RESTART IDENTITY' : ''}`;
}
