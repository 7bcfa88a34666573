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
  insertRows,
  literal,
  truncateTables,
  updateOneRowByValues,
  updateRowsByKey,
  type ColumnRef,
} from '../../src/replicator/statements.js';

const table: TableName = { schema: 'public', name: 'Kundenbewertungen Ü' };
const col = (name: string, type = 'text'): ColumnRef => ({ name, type });
const cols = (n: number) => Array.from({ length: n }, (_, i) => col(`c${i}`, i % 2 ? 'bigint' : 'numeric(20,6)'));

/**
 * Read a standard SQL string literal back the way Postgres does with
 * standard_conforming_strings = on: doubled quotes become one, backslashes are plain.
 */
function unquote(lit: string): string {
  assert.ok(lit.startsWith("'") && lit.endsWith("'"), lit);
  const body = lit.slice(1, -1);
  assert.doesNotMatch(body.replace(/''/g, ''), /'/, 'a lone quote would end the literal early');
  return body.replace(/''/g, "'");
}

describe('apply statements', () => {
  test('a value literal reads back as exactly the value; NULL stays NULL', () => {
    for (const v of ["it's", "''", '\\', '\\x00ff', 'a\\\'b', 'tab\there', '"', '', '👨‍👩‍👧‍👦', "'; DROP TABLE users; --"]) {
      assert.equal(unquote(literal(v)), v);
    }
    assert.equal(literal(null), 'NULL');
    assert.notEqual(literal('NULL'), 'NULL', "the string 'NULL' is not the SQL NULL");
  });

  test('identifiers are quoted: odd column and table names cannot break out', () => {
    const sql = insertRows(table, [col('a"b'), col('Mixed Case')], [['1', '2']], false);
    assert.ok(sql.includes('"public"."Kundenbewertungen Ü"'), sql);
    assert.ok(sql.includes('"a""b"'), sql);
    assert.ok(sql.includes('"Mixed Case"'), sql);
    for (const s of [
      updateRowsByKey(table, [col('a"b')], [col('Mixed Case')], [['1', '2']]),
      deleteRowsByKey(table, [col('a"b')], [['1']]),
      updateOneRowByValues(table, [col('Mixed Case')], ['x'], [col('a"b')], ['y']),
      deleteOneRowByValues(table, [col('a"b')], ['y']),
    ]) {
      assert.ok(s.includes('"public"."Kundenbewertungen Ü"') && s.includes('"a""b"'), s);
    }
  });

  test('every row of a batch is in the statement, each value cast to its column type', () => {
    const rows = [
      ['1.5', '9223372036854775807', null],
      ["o'clock", '-1', '0'],
    ];
    const sql = insertRows(table, cols(3), rows, false);
    for (const r of rows) for (const v of r) assert.ok(sql.includes(literal(v)), `${literal(v)} in ${sql}`);
    assert.match(sql, /v\.c0::numeric\(20,6\), v\.c1::bigint, v\.c2::numeric\(20,6\)/);
  });

  test('OVERRIDING SYSTEM VALUE only when asked', () => {
    assert.ok(!insertRows(table, cols(2), [['1', '2']], false).includes('OVERRIDING'));
    assert.match(insertRows(table, cols(2), [['1', '2']], true), /\) OVERRIDING SYSTEM VALUE SELECT /);
  });

  test('a row found by its old values compares NULLs with IS NULL and changes one row only', () => {
    const sql = deleteOneRowByValues(table, [col('a'), col('b')], [null, 'x']);
    assert.match(sql, /x\."a" IS NULL AND x\."b"::text = \('x'::text\)::text/, 'both sides through the same cast');
    assert.match(sql, /LIMIT 1\)$/);
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
