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
  truncateTables,
  updateOneRowByValues,
  updateRowsByKey,
  type ColumnRef,
} from '../../src/replicator/statements.js';

const table: TableName = { schema: 'public', name: 'Kundenbewertungen Ü' };
const col = (name: string, type = 'text'): ColumnRef => ({ name, type });
const cols = (n: number) => Array.from({ length: n }, (_, i) => col(`c${i}`, i % 2 ? 'bigint' : 'numeric(20,6)'));

/** The distinct $n placeholders, sorted. */
function params(sql: string): number[] {
  return [...new Set([...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])))].sort((a, b) => a - b);
}
const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

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
    ]) {
      assert.ok(s.includes('"public"."Kundenbewertungen Ü"') && s.includes('"a""b"'), s);
    }
  });

  test('OVERRIDING SYSTEM VALUE only when asked', () => {
    assert.ok(!insertRows(table, cols(2), false).includes('OVERRIDING'));
    assert.match(insertRows(table, cols(2), true), /\) OVERRIDING SYSTEM VALUE SELECT /);
  });

  test('parameters are $1..$n with n the number of columns involved', () => {
    for (const n of [1, 3, 12]) {
      assert.deepEqual(params(insertRows(table, cols(n), false)), oneTo(n), `insert ${n}`);
      assert.deepEqual(params(deleteRowsByKey(table, cols(n))), oneTo(n), `delete ${n}`);
      assert.deepEqual(params(deleteOneRowByValues(table, cols(n))), oneTo(n), `delete by values ${n}`);
    }
    assert.deepEqual(params(updateRowsByKey(table, cols(2), cols(3))), oneTo(5));
    assert.deepEqual(params(updateOneRowByValues(table, cols(3), cols(4))), oneTo(7));
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
