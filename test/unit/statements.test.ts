/**
 * Apply statements: only the properties a reader of the SQL can check without a server. Whether
 * Postgres accepts and executes them correctly is checked end to end against real clusters.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TableName } from '../../src/pg/ident.js';
import {
  deleteOneRowByValues,
  deleteRowsByKey,
  deleteRowsByValues,
  insertRows,
  truncateTables,
  updateOneRowByValues,
  updateRowsByKey,
  type ColumnRef,
} from '../../src/replicator/apply/statements.js';

const table: TableName = { schema: 'public', name: 'Kundenbewertungen Ü' };
const col = (name: string, type = 'text'): ColumnRef => ({ name, type });
const cols = (n: number) => Array.from({ length: n }, (_, i) => col(`c${i}`, i % 2 ? 'bigint' : 'numeric(20,6)'));

describe('apply statements', () => {
  test('identifiers are quoted: odd column and table names cannot break out', () => {
    const sql = insertRows(table, [col('a"b'), col('Mixed Case')], false);
    assert.ok(sql.includes('"public"."Kundenbewertungen Ü"'), sql);
    assert.ok(sql.includes('"a""b"'), sql);
    assert.ok(sql.includes('"Mixed Case"'), sql);
    for (const s of [
      updateRowsByKey(table, [col('a"b')], [col('Mixed Case')]),
      deleteRowsByKey(table, [col('a"b')]),
      updateOneRowByValues(table, [col('Mixed Case')], [col('a"b')]),
      deleteOneRowByValues(table, [col('a"b')]),
      deleteRowsByValues(table, [col('a"b')]),
    ]) {
      assert.ok(s.includes('"public"."Kundenbewertungen Ü"') && s.includes('"a""b"'), s);
    }
  });

  test('values are parameters, one text[] per column, each element cast to its column type', () => {
    const sql = insertRows(table, cols(3), false);
    assert.match(sql, /SELECT u\.c0::numeric\(20,6\), u\.c1::bigint, u\.c2::numeric\(20,6\) FROM unnest\(\$1::text\[\], \$2::text\[\], \$3::text\[\]\)/);
    const upd = updateRowsByKey(table, [col('id', 'bigint')], cols(2));
    assert.match(upd, /FROM unnest\(\$1::text\[\], \$2::text\[\], \$3::text\[\]\) AS u\(k0, s0, s1\) WHERE t\."id" = u\.k0::bigint$/);
    assert.match(upd, /"c0" = u\.s0::numeric\(20,6\), "c1" = u\.s1::bigint/);
    assert.match(deleteRowsByKey(table, [col('id', 'bigint'), col('n', 'smallint')]), /USING unnest\(\$1::text\[\], \$2::text\[\]\) AS u\(k0, k1\) WHERE t\."id" = u\.k0::bigint AND t\."n" = u\.k1::smallint$/);
    // A parameter is always declared text: its bytes are the source's text output, never another type's binary format.
    assert.match(updateOneRowByValues(table, [col('a', 'jsonb')], [col('b', 'numeric')]), /"a" = \$1::text::jsonb .*ROW\(\$2::text::numeric\)::text/);
  });

  test('the text of a statement depends on the table and columns only, so it is parsed once per connection', () => {
    assert.equal(insertRows(table, cols(2), false), insertRows(table, cols(2), false));
    assert.notEqual(insertRows(table, cols(2), false), insertRows(table, cols(3), false));
  });

  test('OVERRIDING SYSTEM VALUE only when asked', () => {
    assert.ok(!insertRows(table, cols(2), false).includes('OVERRIDING'));
    assert.match(insertRows(table, cols(2), true), /\) OVERRIDING SYSTEM VALUE SELECT /);
  });

  test('a row found by its old values compares whole rows through the same output functions and changes one row only', () => {
    const sql = deleteOneRowByValues(table, [col('a'), col('b')]);
    assert.match(sql, /ROW\(x\."a", x\."b"\)::text = ROW\(\$1::text::text, \$2::text::text\)::text/, 'both sides through the same output functions');
    assert.match(sql, /LIMIT 1\)$/);
    const probed = deleteOneRowByValues(table, [col('a'), col('b', 'bigint')], 1);
    assert.match(probed, /WHERE x\."b" = \$2::text::bigint AND ROW\(x\."a", x\."b"\)::text IS NOT DISTINCT FROM ROW\(\$1::text::text, \$2::text::bigint\)::text/, 'found through the indexed column');
    const many = deleteRowsByValues(table, [col('a'), col('b', 'bigint')], 1);
    assert.match(many, /JOIN unnest\(\$1::text\[\], \$2::text\[\], \$3::text\[\], \$4::text\[\]\) AS v\(g, n, c0, c1\) ON x\."b" = v\.c1::bigint AND /);
    assert.match(many, /row_number\(\) OVER \(PARTITION BY v\.g ORDER BY x\.ctid\) AS rn .* WHERE s\.rn <= s\.n/, 'identical rows: as many as the source deleted');
  });

  test('TRUNCATE names every table, never CASCADE, RESTART IDENTITY only when asked', () => {
    const tables = [table, { schema: 'auth', name: 'users' }];
    const plain = truncateTables(tables, false);
    assert.ok(plain.includes('"public"."Kundenbewertungen Ü"') && plain.includes('"auth"."users"'), plain);
    assert.ok(!/CASCADE/i.test(plain) && !/RESTART/i.test(plain), plain);
    const restart = truncateTables(tables, true);
    assert.match(restart, /RESTART IDENTITY/);
    assert.ok(!/CASCADE/i.test(restart), restart);
  });
});
