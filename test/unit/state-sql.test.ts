/**
 * walbridge's state statements are built for the schema the configuration names: every one of
 * them names that schema (none is left on `walbridge`), quoted, and the default's read as
 * always. Whether Postgres runs them is checked end to end (state-migrations, replication, …).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LATEST_STATE_VERSION, stateMigrations } from '../../src/sql/migrations.js';
import { DEFAULT_STATE_SCHEMA, stateSql } from '../../src/sql/state.js';

/** SQL without its comments, and without the writer's and the migrations' lock keys (hashtext('walbridge'), which stay). */
const code = (sql: string) => sql.replace(/--.*$/gm, '').replace(/hashtext\('walbridge'\)/g, '');

const statements = (o: object): [string, string][] => Object.entries(o).filter((e): e is [string, string] => typeof e[1] === 'string' && e[0] !== 'schema');

describe('state statements', () => {
  test('another schema is named by every statement, quoted, and walbridge by none', () => {
    const odd = 'Grp "x"';
    const sql = stateSql(odd);
    assert.equal(sql.schema, odd);
    for (const [name, text] of statements(sql)) assert.doesNotMatch(code(text), /walbridge/, name);
    assert.equal(sql.DROP_STATE, 'DROP SCHEMA IF EXISTS "Grp ""x""" CASCADE');
    assert.match(sql.STATE_EXISTS, /to_regclass\('"Grp ""x""".pipeline'\)/);
    assert.match(sql.STATE_PRESENCE, /nspname = 'Grp "x"'/);
    assert.match(sql.SET_PHASE, /^UPDATE "Grp ""x""".pipeline /);
    const m = stateMigrations(odd);
    for (const [name, text] of statements(m)) assert.doesNotMatch(code(text), /walbridge/, name);
    assert.equal(m.MIGRATIONS.length, LATEST_STATE_VERSION);
    for (const step of m.MIGRATIONS) assert.doesNotMatch(code(step.sql), /walbridge/, `step ${step.version}`);
    assert.match(m.CREATE_MIGRATIONS_TABLE, /CREATE SCHEMA IF NOT EXISTS "Grp ""x""";/);
  });

  test('the default schema is written as it always was, unquoted', () => {
    const sql = stateSql(DEFAULT_STATE_SCHEMA);
    assert.equal(sql.DROP_STATE, 'DROP SCHEMA IF EXISTS walbridge CASCADE');
    assert.equal(sql.SET_PHASE, 'UPDATE walbridge.pipeline SET phase = $1, updated_at = now() WHERE id = 1');
    assert.equal(sql.STATE_EXISTS, "SELECT to_regclass('walbridge.pipeline') IS NOT NULL AS exists");
    assert.equal(stateMigrations(DEFAULT_STATE_SCHEMA).STATE_VERSION, 'SELECT COALESCE(max(version), 0) AS version FROM walbridge.migrations');
  });

  test('built once per schema, and frozen', () => {
    assert.equal(stateSql('a'), stateSql('a'));
    assert.notEqual(stateSql('a'), stateSql('b'));
    assert.ok(Object.isFrozen(stateSql('a')));
    assert.equal(stateMigrations('a'), stateMigrations('a'));
    assert.ok(Object.isFrozen(stateMigrations('a')));
    assert.ok(Object.isFrozen(stateMigrations('a').MIGRATIONS));
  });
});
