/**
 * SQL for content verification. A table is compared in key ranges; each range is summed up
 * on both sides as an ordered md5 of every row's text (ROW(columns)::text, written by the
 * same output functions and session settings on both servers), and a range that differs is
 * read row by row, one md5 per row, to name the keys that differ.
 */
import { quoteIdent, quoteLiteral, quoteTable, type TableName } from '../pg/ident.js';

/** A value as an SQL literal (standard_conforming_strings = on), or NULL. */
function sqlValue(v: string | null): string {
  return v === null ? 'NULL' : quoteLiteral(v);
}

export interface VerifyShape {
  table: TableName;
  /** Columns compared, in the source's order (generated ones included: both sides compute them). */
  columns: string[];
  /** Key columns with their types; empty: the table has no key and is compared as a multiset. */
  key: { name: string; type: string; collatable: boolean }[];
  /** Compare text keys byte-wise, when the two databases sort text differently. */
  byteOrder: boolean;
  /**
   * Columns carried through a declared conversion (src/convert/): the target's value as an SQL
   * expression of the source value's text, to read the source the way the target holds it.
   * Never a key column.
   */
  converted?: Map<string, (text: string) => string>;
}

/** Which database a query reads: the source reads converted columns through their conversion. */
export type VerifySide = 'source' | 'target';

/** A range (lo, hi] of keys, as text tuples; null bounds are open. */
export interface KeyRange {
  lo: string[] | null;
  hi: string[] | null;
}

const col = (s: VerifyShape, name: string, collatable: boolean) => `t.${quoteIdent(name)}${s.byteOrder && collatable ? ' COLLATE "C"' : ''}`;
const keyList = (s: VerifyShape) => s.key.map((k) => col(s, k.name, k.collatable)).join(', ');
function rowText(s: VerifyShape, side: VerifySide): string {
  const value = (c: string) => {
    const convert = side === 'source' ? s.converted?.get(c) : undefined;
    return convert ? convert(`t.${quoteIdent(c)}::text`) : `t.${quoteIdent(c)}`;
  };
  return `md5(ROW(${s.columns.map(value).join(', ')})::text)`;
}

function tuple(s: VerifyShape, values: string[]): string {
  return s.key.map((k, i) => `${sqlValue(values[i] ?? null)}::${k.type}${s.byteOrder && k.collatable ? ' COLLATE "C"' : ''}`).join(', ');
}

function rangeWhere(s: VerifyShape, r: KeyRange): string {
  const parts: string[] = [];
  if (r.lo) parts.push(`(${keyList(s)}) > (${tuple(s, r.lo)})`);
  if (r.hi) parts.push(`(${keyList(s)}) <= (${tuple(s, r.hi)})`);
  return parts.length > 0 ? parts.join(' AND ') : 'true';
}

/** Every `chunk`-th key in key order: the upper bounds of ranges of `chunk` rows. */
export function rangeBoundaries(s: VerifyShape, chunk: number): string {
  const keys = keyList(s);
  const asText = s.key.map((_, i) => `k${i}::text`).join(', ');
  const aliased = s.key.map((k, i) => `${col(s, k.name, k.collatable)} AS k${i}`).join(', ');
  return (
    `SELECT ${asText} FROM (SELECT ${aliased}, row_number() OVER (ORDER BY ${keys}) AS rn FROM ${quoteTable(s.table)} AS t) AS s ` +
    `WHERE rn % ${Math.max(1, Math.floor(chunk))} = 0 ORDER BY ${s.key.map((_, i) => `k${i}`).join(', ')}`
  );
}

/** Row count and one md5 over the range's rows in key order (or in md5 order without a key). */
export function rangeHash(s: VerifyShape, r: KeyRange, side: VerifySide): string {
  const order = s.key.length > 0 ? keyList(s) : rowText(s, side);
  return (
    `SELECT count(*)::int8::text AS n, md5(string_agg(${rowText(s, side)}, '' ORDER BY ${order})) AS h ` +
    `FROM ${quoteTable(s.table)} AS t WHERE ${rangeWhere(s, r)}`
  );
}

/** One line per row: the key as text (or, without a key, the row's md5 with its multiplicity) and the row's md5. */
export function rangeRows(s: VerifyShape, r: KeyRange, side: VerifySide): string {
  if (s.key.length === 0) {
    return `SELECT ${rowText(s, side)} AS k0, count(*)::text AS h FROM ${quoteTable(s.table)} AS t GROUP BY 1`;
  }
  const keys = s.key.map((k, i) => `t.${quoteIdent(k.name)}::text AS k${i}`).join(', ');
  return `SELECT ${keys}, ${rowText(s, side)} AS h FROM ${quoteTable(s.table)} AS t WHERE ${rangeWhere(s, r)} ORDER BY ${keyList(s)}`;
}

/** The rows with these keys (for rechecking rows that changed while being compared). */
export function rowsByKeys(s: VerifyShape, keys: string[][], side: VerifySide): string {
  const selectKeys = s.key.map((k, i) => `t.${quoteIdent(k.name)}::text AS k${i}`).join(', ');
  const values = keys.map((k) => `(${tuple(s, k)})`).join(', ');
  return `SELECT ${selectKeys}, ${rowText(s, side)} AS h FROM ${quoteTable(s.table)} AS t WHERE (${keyList(s)}) IN (${values})`;
}
