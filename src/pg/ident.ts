/**
 * Identifier and literal quoting. Every identifier that reaches SQL text passes through
 * `quoteIdent` exactly once, so mixed-case, spaced and non-ASCII names ("Kundenbewertungen Ü")
 * work and nothing from a catalog can inject SQL.
 */

export interface TableName {
  readonly schema: string;
  readonly name: string;
}

export function quoteIdent(ident: string): string {
  if (ident.includes('\0')) throw new Error('identifier contains a NUL byte');
  return `"${ident.replace(/"/g, '""')}"`;
}

export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('literal contains a NUL byte');
  // E'' strings would interpret backslashes; a standard string only doubles quotes.
  return `'${value.replace(/'/g, "''")}'`;
}

/** `"schema"."table"` for SQL text. */
export function quoteTable(t: TableName): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

/** `schema.table` as people write it: logs, metrics labels, state rows, config filters. */
export function displayTable(t: TableName): string {
  return `${t.schema}.${t.name}`;
}

export function tableKey(t: TableName): string {
  // A separator that cannot occur in identifiers (NUL is forbidden in them).
  return `${t.schema}\0${t.name}`;
}

export function sameTable(a: TableName, b: TableName): boolean {
  return a.schema === b.schema && a.name === b.name;
}
