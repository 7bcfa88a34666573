/**
 * Identifier and literal quoting as Postgres reads it: a quoted identifier is "..." with every
 * embedded " doubled; a standard string literal is '...' with every ' doubled and backslashes
 * taken literally (standard_conforming_strings, on by default since 9.1).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { displayTable, quoteIdent, quoteLiteral, quoteTable, sameTable, tableKey } from '../../src/pg/ident.js';

/** Read one quoted token the way the Postgres lexer does; fails unless `sql` is exactly one token. */
function readQuoted(sql: string, quote: '"' | "'"): string {
  assert.ok(sql.startsWith(quote) && sql.endsWith(quote) && sql.length >= 2, `not a quoted token: ${sql}`);
  const inner = sql.slice(1, -1);
  let out = '';
  for (let i = 0; i < inner.length; i++) {
    const ch = inner[i];
    if (ch === quote) {
      assert.equal(inner[i + 1], quote, `a lone ${quote} would end the token early: ${sql}`);
      i++;
    }
    out += ch;
  }
  return out;
}

const awkwardNames = [
  'MixedCase',
  'a"b',
  '"',
  '""already quoted""',
  'with space',
  'Kundenbewertungen Ü',
  '日本語のテーブル',
  'emoji 🦄',
  'x"; DROP TABLE users; --',
  "it's",
  'back\\slash',
  'select',
  'a.b',
];

describe('quoteIdent', () => {
  test('every name becomes one quoted identifier that reads back as itself', () => {
    for (const name of awkwardNames) {
      assert.equal(readQuoted(quoteIdent(name), '"'), name, name);
    }
  });

  test('mixed case, embedded quotes, spaces and non-ASCII are quoted, not folded or escaped otherwise', () => {
    assert.equal(quoteIdent('MixedCase'), '"MixedCase"');
    assert.equal(quoteIdent('a"b'), '"a""b"');
    assert.equal(quoteIdent('with space'), '"with space"');
    assert.equal(quoteIdent('Kundenbewertungen Ü'), '"Kundenbewertungen Ü"');
  });

  test('a NUL byte is refused (Postgres identifiers cannot hold one)', () => {
    assert.throws(() => quoteIdent('a\0b'), /NUL/);
  });
});

describe('quoteLiteral', () => {
  test('quotes and backslashes read back exactly as a standard string', () => {
    for (const value of ["it's", "''", 'C:\\temp\\new', "\\'", 'plain', '', 'Ü 🦄', "'); DROP TABLE t; --"]) {
      const lit = quoteLiteral(value);
      assert.ok(!/^[eE]'/.test(lit), 'must not be an E-string, whose backslashes are escapes');
      assert.equal(readQuoted(lit, "'"), value, value);
    }
    assert.equal(quoteLiteral("it's"), "'it''s'");
    assert.equal(quoteLiteral('a\\b'), "'a\\b'");
  });

  test('a NUL byte is refused', () => {
    assert.throws(() => quoteLiteral('a\0b'), /NUL/);
  });
});

describe('table names', () => {
  test('quoteTable quotes schema and table separately', () => {
    assert.equal(quoteTable({ schema: 'My Schema', name: 'Kundenbewertungen Ü' }), '"My Schema"."Kundenbewertungen Ü"');
    assert.equal(quoteTable({ schema: 'a.b', name: 'c' }), '"a.b"."c"');
    assert.notEqual(quoteTable({ schema: 'a.b', name: 'c' }), quoteTable({ schema: 'a', name: 'b.c' }));
  });

  test('displayTable is schema.table as people write it', () => {
    assert.equal(displayTable({ schema: 'public', name: 'users' }), 'public.users');
    assert.equal(displayTable({ schema: 'public', name: 'Kundenbewertungen Ü' }), 'public.Kundenbewertungen Ü');
  });

  test('tableKey tells apart tables whose display names collide', () => {
    const a = { schema: 'a.b', name: 'c' };
    const b = { schema: 'a', name: 'b.c' };
    assert.equal(displayTable(a), displayTable(b)); // why displayTable is not a key
    assert.notEqual(tableKey(a), tableKey(b));
    assert.equal(tableKey(a), tableKey({ schema: 'a.b', name: 'c' }));
    const m = new Map([
      [tableKey(a), 'first'],
      [tableKey(b), 'second'],
    ]);
    assert.equal(m.size, 2);
  });

  test('sameTable compares schema and name, case-sensitively', () => {
    assert.ok(sameTable({ schema: 'public', name: 'users' }, { schema: 'public', name: 'users' }));
    assert.ok(!sameTable({ schema: 'public', name: 'users' }, { schema: 'public', name: 'Users' }));
    assert.ok(!sameTable({ schema: 'a.b', name: 'c' }, { schema: 'a', name: 'b.c' }));
  });
});
