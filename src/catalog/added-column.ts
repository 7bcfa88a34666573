/**
 * The DDL that gives a target table a column the source added mid-stream, with the same
 * content. Logical decoding carries no DDL, and an ADD COLUMN with a default fills the rows
 * that existed before it without any change being streamed; so the suggestion must carry the
 * value those rows read on the source, not only the type.
 */
import type pg from 'pg';
import { quoteIdent } from '../pg/ident.js';
import { addedColumnMissingValue, SOURCE_ADDED_COLUMN } from '../sql/catalog.js';

export interface AddedColumnDdl {
  /** Statements to run on the target, in order. */
  statements: string[];
  /** Set when running them cannot reproduce the source's existing rows. */
  caveat: string | null;
}

export async function addedColumnDdl(catalog: pg.ClientBase, quotedTable: string, column: string): Promise<AddedColumnDdl> {
  const { rows } = await catalog.query<{ type: string; not_null: boolean; generated: string; default_expr: string | null; has_missing: boolean }>(
    SOURCE_ADDED_COLUMN,
    [quotedTable, column],
  );
  const col = rows[0];
  const add = `ALTER TABLE ${quotedTable} ADD COLUMN ${quoteIdent(column)}`;
  if (!col) return { statements: [`${add} <type>;`], caveat: 'the column is gone from the source again' };
  if (col.generated === 's') {
    return { statements: [`${add} ${col.type} GENERATED ALWAYS AS (${col.default_expr ?? ''}) STORED;`], caveat: null };
  }
  const notNull = col.not_null ? ' NOT NULL' : '';
  if (col.default_expr === null) return { statements: [`${add} ${col.type}${notNull};`], caveat: null };
  if (col.has_missing && !CONSTANT.test(col.default_expr)) {
    // The source evaluated its default once, at its ADD COLUMN (now() included): the target
    // must store that value, not evaluate the expression again at another time.
    const lit = await catalog
      .query<{ literal: string | null }>(addedColumnMissingValue(col.type), [quotedTable, column])
      .then((r) => r.rows[0]?.literal ?? null)
      .catch(() => null);
    if (lit !== null) {
      return {
        statements: [`${add} ${col.type}${notNull} DEFAULT ${lit};`, `ALTER TABLE ${quotedTable} ALTER COLUMN ${quoteIdent(column)} SET DEFAULT ${col.default_expr};`],
        caveat: null,
      };
    }
    return { statements: [`${add} ${col.type}${notNull} DEFAULT ${col.default_expr};`], caveat: null };
  }
  // The table was rewritten since (by this ADD COLUMN itself when its default is volatile,
  // or by a later ALTER), so the value its old rows read is not on record: a constant gives
  // the same again; anything else may not.
  return {
    statements: [`${add} ${col.type}${notNull} DEFAULT ${col.default_expr};`],
    caveat: CONSTANT.test(col.default_expr)
      ? null
      : `rows that existed before the source's ADD COLUMN got ${col.default_expr} as the source computed it then (random(), gen_random_uuid(), now() ...), ` +
        'which the target computes again; `walbridge verify` lists rows that differ (to make them equal, resynchronise: walbridge teardown --target, empty the target tables, start again)',
  };
}

/** A literal, possibly cast: 250, -1.5, 'it''s'::text, true, NULL::integer. */
const CONSTANT = /^(?:'(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false|null)(?:::[\w ."[\]()]+)?$/i;
