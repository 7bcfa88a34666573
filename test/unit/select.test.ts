/**
 * Table selection from WALBRIDGE_SCHEMAS, WALBRIDGE_TABLES and WALBRIDGE_EXCLUDE_TABLES.
 * A pattern is `schema.table` where `*` is a glob; every other character is literal.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { selectTables, type SelectionInput } from '../../src/catalog/select.js';
import type { TableName } from '../../src/pg/ident.js';

const t = (schema: string, name: string): TableName => ({ schema, name });

const catalog: TableName[] = [
  t('public', 'users'),
  t('public', 'Users'),
  t('public', 'mirt_a'),
  t('public', 'mirt_b'),
  t('public', 'mirtXa'),
  t('public', 'audit_log'),
  t('public', 'orders'),
  t('auth', 'users'),
  t('storage', 'objects'),
];

/** Selected tables as schema/name pairs, sorted, so the assertion reads as the expected set. */
function pick(all: TableName[], sel: Partial<SelectionInput>) {
  const r = selectTables(all, { schemas: ['public'], includeTables: null, excludeTables: [], ...sel });
  return {
    selected: r.selected.map((x) => `${x.schema}|${x.name}`).sort(),
    unmatchedIncludes: r.unmatchedIncludes,
    unmatchedExcludes: r.unmatchedExcludes,
  };
}

describe('selectTables', () => {
  test('without filters: every table of the listed schemas, and only those', () => {
    assert.deepEqual(pick(catalog, { schemas: ['public', 'auth'] }).selected, [
      'auth|users',
      'public|Users',
      'public|audit_log',
      'public|mirtXa',
      'public|mirt_a',
      'public|mirt_b',
      'public|orders',
      'public|users',
    ]);
  });

  test('returns the caller\'s own table objects', () => {
    const rows = [{ schema: 'public', name: 'users', oid: 16390 }];
    const r = selectTables(rows, { schemas: ['public'], includeTables: null, excludeTables: [] });
    assert.equal(r.selected[0], rows[0]);
  });

  test('an include glob selects matching tables; `_` is literal, not a wildcard', () => {
    assert.deepEqual(pick(catalog, { includeTables: ['public.mirt_*'] }).selected, ['public|mirt_a', 'public|mirt_b']);
  });

  test('names are case-sensitive', () => {
    assert.deepEqual(pick(catalog, { includeTables: ['public.users'] }).selected, ['public|users']);
  });

  test('an include outside the listed schemas selects nothing and is reported', () => {
    const r = pick(catalog, { includeTables: ['auth.users', 'public.orders'] });
    assert.deepEqual(r.selected, ['public|orders']);
    assert.deepEqual(r.unmatchedIncludes, ['auth.users']);
  });

  test('an exclude glob removes matching tables', () => {
    assert.deepEqual(pick(catalog, { excludeTables: ['public.audit_*', 'public.mirt*'] }).selected, [
      'public|Users',
      'public|orders',
      'public|users',
    ]);
  });

  test('an exclude overrides an include', () => {
    const r = pick(catalog, { includeTables: ['public.mirt_*'], excludeTables: ['public.mirt_b'] });
    assert.deepEqual(r.selected, ['public|mirt_a']);
    assert.deepEqual(r.unmatchedIncludes, []);
    assert.deepEqual(r.unmatchedExcludes, []);
  });

  test('patterns that match nothing are reported, the others are not', () => {
    const r = pick(catalog, {
      includeTables: ['public.mirt_*', 'public.nosuch', 'public.user'],
      excludeTables: ['public.ghost_*', 'public.mirt_a'],
    });
    assert.deepEqual(r.selected, ['public|mirt_b']);
    assert.deepEqual(r.unmatchedIncludes, ['public.nosuch', 'public.user']);
    assert.deepEqual(r.unmatchedExcludes, ['public.ghost_*']);
  });

  test('regex metacharacters in patterns are literal', () => {
    const tables = [
      t('public', 'a+b'),
      t('public', 'aab'),
      t('public', 'aaab'),
      t('public', 'x.y'),
      t('public', 'xzy'),
      t('public', 'a?b'),
      t('public', 'ab'),
      t('public', '(p)'),
      t('public', 'p'),
      t('public', '[s]'),
      t('public', 's'),
      t('public', 'q$'),
      t('public', 'r^t'),
      t('public', 'b\\d'),
      t('public', 'b1'),
      t('public', 'c|d'),
      t('public', 'c'),
    ];
    const cases: Array<[string, string[]]> = [
      ['public.a+b', ['public|a+b']],
      ['public.x.y', ['public|x.y']],
      ['public.a?b', ['public|a?b']],
      ['public.(p)', ['public|(p)']],
      ['public.[s]', ['public|[s]']],
      ['public.q$', ['public|q$']],
      ['public.r^t', ['public|r^t']],
      ['public.b\\d', ['public|b\\d']],
      ['public.c|d', ['public|c|d']],
    ];
    for (const [pattern, expected] of cases) {
      assert.deepEqual(pick(tables, { includeTables: [pattern] }).selected, expected, pattern);
    }
    // The dot between schema and table is literal too.
    assert.deepEqual(pick([t('public', 'x'), t('publicAx', 'y')], { schemas: ['public', 'publicAx'], includeTables: ['public.x'] }).selected, [
      'public|x',
    ]);
  });

  test('`*` in the table part matches any name, dots included, like a glob', () => {
    const tables = [t('public', 'x.y'), t('public', 'plain'), t('other', 'x.y')];
    assert.deepEqual(pick(tables, { includeTables: ['public.*'] }).selected, ['public|plain', 'public|x.y']);
    assert.deepEqual(pick(tables, { includeTables: ['public.x*'] }).selected, ['public|x.y']);
    assert.deepEqual(pick(tables, { schemas: ['public', 'other'], includeTables: ['*.x.y'] }).selected, ['other|x.y', 'public|x.y']);
  });

  test('`*` in the schema part matches every listed schema', () => {
    assert.deepEqual(pick(catalog, { schemas: ['public', 'auth', 'storage'], includeTables: ['*.users'] }).selected, [
      'auth|users',
      'public|users',
    ]);
  });

  // Matching runs on the joined text "schema.table", so a `*` can swallow the separator and a
  // pattern meant for one schema (or one table name) selects a table of another.
  test(
    '`*` does not move the boundary between schema and table',
    () => {
      // Table `t` in schema `public.x` is not a table of schema `public`.
      assert.deepEqual(pick([t('public.x', 't'), t('public', 'u')], { schemas: ['public', 'public.x'], includeTables: ['public.*'] }).selected, [
        'public|u',
      ]);
      // Table `x.audit` is not a table named `audit`.
      assert.deepEqual(pick([t('public', 'x.audit'), t('public', 'audit')], { excludeTables: ['*.audit'] }).selected, ['public|x.audit']);
    },
  );
});
