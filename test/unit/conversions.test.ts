/**
 * WALBRIDGE_CONVERT parsing (src/convert/conversions.ts): good specs give the conversions they
 * name, every bad one is a config error naming the entry and the fix; which source types each
 * builtin reads; and the conversion preflight suggests for a pair of types.
 * The SQL the conversions produce is run on real servers in test/e2e/conversions.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BUILTIN_CONVERSIONS, parseConversions, suggestConversion, type ColumnConversion } from '../../src/convert/conversions.js';
import { WalbridgeError } from '../../src/errors.js';

/** The WalbridgeError parseConversions throws; fails the test if it returns. */
function parseError(spec: string): WalbridgeError {
  try {
    parseConversions(spec);
  } catch (err) {
    assert.ok(err instanceof WalbridgeError, `not a WalbridgeError: ${String(err)}`);
    assert.equal(err.kind, 'config');
    assert.ok(err.hint, 'an error without a hint');
    return err;
  }
  assert.fail(`parseConversions accepted ${JSON.stringify(spec)}`);
}

function only(spec: string): ColumnConversion {
  const m = parseConversions(spec);
  assert.equal(m.size, 1);
  return [...m.values()][0] as ColumnConversion;
}

describe('parseConversions: good specs', () => {
  test('nothing set is no conversion', () => {
    assert.equal(parseConversions(undefined).size, 0);
    assert.equal(parseConversions('').size, 0);
    assert.equal(parseConversions(' ; ;').size, 0);
  });

  test('every form, keyed schema.table.column, spaces around the parts and a trailing ; ignored', () => {
    const m = parseConversions(
      ' public.mirt_memories.embedding = vector_to_float32le ;public.a.b=vector_to_float32be;public.a.c=vector_to_real_array;' +
        'auth.users.raw=to_jsonb; public.a.d=sql:upper($1);public.a.e=drop;',
    );
    assert.deepEqual([...m.keys()], ['public.mirt_memories.embedding', 'public.a.b', 'public.a.c', 'auth.users.raw', 'public.a.d', 'public.a.e']);
    const summary = [...m.values()].map((c) => [c.spec, c.kind, c.targetTypes, c.toSource !== null]);
    assert.deepEqual(summary, [
      ['vector_to_float32le', 'builtin', ['bytea'], true],
      ['vector_to_float32be', 'builtin', ['bytea'], true],
      ['vector_to_real_array', 'builtin', ['real[]'], true],
      ['to_jsonb', 'builtin', ['jsonb'], false],
      ['sql:upper($1)', 'sql', [], false],
      ['drop', 'drop', [], false],
    ]);
  });

  test('names keep their case and inner spaces; non-ASCII names are fine', () => {
    const m = parseConversions('Public.Mixed Case.Größe=drop');
    assert.deepEqual([...m.keys()], ['Public.Mixed Case.Größe']);
  });

  test('BUILTIN_CONVERSIONS lists the four builtins', () => {
    assert.deepEqual([...BUILTIN_CONVERSIONS], ['vector_to_float32le', 'vector_to_float32be', 'vector_to_real_array', 'to_jsonb']);
  });

  test('drop is never written', () => {
    assert.throws(() => only('public.a.b=drop').toTarget('x'), /never written/);
  });

  test('the builtins put the text expression in once, and to_jsonb is a cast', () => {
    for (const name of BUILTIN_CONVERSIONS) {
      const c = only(`s.t.c=${name}`);
      assert.equal(c.toTarget('u.c3').split('u.c3').length - 1, 1, name);
      if (c.toSource) assert.equal(c.toSource('u.c3').split('u.c3').length - 1, 1, name);
    }
    assert.equal(only('s.t.c=to_jsonb').toTarget('t.col::text'), '(t.col::text)::jsonb');
  });
});

describe('sql: expressions', () => {
  test('every $1 becomes the text expression, parenthesized, and so does the whole', () => {
    const c = only('s.t.c=sql:$1 || $1');
    assert.equal(c.toTarget('t.col::text'), '((t.col::text) || (t.col::text))');
    assert.equal(c.spec, 'sql:$1 || $1');
    assert.equal(c.toSource, null);
    assert.equal(c.readsSource('anything.at_all(3)'), true);
  });

  test('the expression may contain = ; $1 inside a literal, a quoted name or a dollar-quoted string stays', () => {
    const c = only(`s.t.c=sql:CASE WHEN $1 = '$1' THEN "$1" ELSE $q$ $1 $q$ || $$x$1$$ || E'\\'$1' END`);
    assert.equal(
      c.toTarget('u.c3'),
      `(CASE WHEN (u.c3) = '$1' THEN "$1" ELSE $q$ $1 $q$ || $$x$1$$ || E'\\'$1' END)`,
    );
  });

  test('$1 right before a cast or inside a call', () => {
    assert.equal(only('s.t.c=sql:$1::numeric(12,2)').toTarget('u.c3'), '((u.c3)::numeric(12,2))');
    assert.equal(only('s.t.c=sql:lower(trim($1))').toTarget('u.c3'), '(lower(trim((u.c3))))');
  });
});

describe('parseConversions: each mistake names the entry and the fix', () => {
  test('an unknown conversion lists the known ones', () => {
    const err = parseError('public.mirt_memories.embedding=vector_to_float32');
    assert.match(err.message, /WALBRIDGE_CONVERT/);
    assert.match(err.message, /"public\.mirt_memories\.embedding=vector_to_float32": unknown conversion "vector_to_float32"/);
    for (const name of [...BUILTIN_CONVERSIONS, 'sql:', 'drop']) assert.ok(err.hint?.includes(name), `hint lacks ${name}: ${err.hint}`);
  });

  test("a missing '=' says the form, and what a ';' inside sql: did", () => {
    const err = parseError('public.a.b vector_to_float32le');
    assert.match(err.message, /"public\.a\.b vector_to_float32le": no '='/);
    assert.match(err.hint ?? '', /schema\.table\.column=|public\.mirt_memories\.embedding=vector_to_float32le/);
    const split = parseError('public.a.b=sql:upper($1); lower($1)');
    assert.match(split.message, /"lower\(\$1\)": no '='/);
    assert.match(split.hint ?? '', /chr\(59\)/);
    const quoted = parseError("public.a.b=sql:replace($1, ';', ',')");
    assert.match(quoted.message, /"public\.a\.b=sql:replace\(\$1, '": .*string literal is not closed \(a ';' ends the entry/);
    assert.match(quoted.hint ?? '', /chr\(59\)/);
  });

  test('a column named twice names both entries', () => {
    const err = parseError('public.a.b=drop;public.a.c=drop; public.a.b = to_jsonb');
    assert.match(err.message, /"public\.a\.b = to_jsonb": the column public\.a\.b is named twice \(also in "public\.a\.b=drop"\)/);
    assert.match(err.hint ?? '', /one conversion per column/);
  });

  test('an sql: expression without $1, with $2, with a comment, unclosed, or empty', () => {
    assert.match(parseError('public.a.b=sql:upper(x)').message, /does not use \$1/);
    assert.match(parseError("public.a.b=sql:upper('$1')").message, /does not use \$1/);
    assert.match(parseError('public.a.b=sql:$1 || $2').message, /uses \$2, but only \$1/);
    assert.match(parseError('public.a.b=sql:$10').message, /uses \$10/);
    assert.match(parseError('public.a.b=sql:$1 -- comment').message, /comment/);
    assert.match(parseError('public.a.b=sql:$1 /* c */').message, /comment/);
    assert.match(parseError("public.a.b=sql:$1 || 'x").message, /string literal is not closed/);
    assert.match(parseError('public.a.b=sql:$1 || $q$x').message, /\$q\$ is not closed/);
    const empty = parseError('public.a.b=sql:  ');
    assert.match(empty.message, /the sql: expression is empty/);
    assert.match(empty.hint ?? '', /public\.a\.b=sql:upper\(\$1\)/);
    assert.match(parseError('public.a.b=sql:x').hint ?? '', /\$1.*built-in/);
  });

  test('empty parts', () => {
    assert.match(parseError('=drop').message, /no column before '='/);
    assert.match(parseError('public.a.b=').message, /no conversion after '='/);
    assert.match(parseError('public..b=drop').message, /"public\.\.b" has an empty name/);
    assert.match(parseError('.a.b=drop').message, /has an empty name/);
    assert.match(parseError('public.a. =drop').message, /has an empty name/);
  });

  test("not three names: names with '.' are not supported, and the hint says so", () => {
    const two = parseError('mirt_memories.embedding=drop');
    assert.match(two.message, /"mirt_memories\.embedding" is not schema\.table\.column \(2 parts\)/);
    const four = parseError('public.my.table.col=drop');
    assert.match(four.message, /\(4 parts\)/);
    assert.match(four.hint ?? '', /'\.', '=' or ';' cannot be given/);
  });

  test('quoted names are refused with the way to write them', () => {
    const err = parseError('public."MyTable".col=drop');
    assert.match(err.message, /quoted names are not needed/);
    assert.match(err.hint ?? '', /case-sensitive and without quotes/);
  });
});

describe('source types each builtin reads', () => {
  const reads = (name: string, type: string) => only(`s.t.c=${name}`).readsSource(type);

  test('the vector conversions read pgvector vector in any schema, with or without dimensions', () => {
    for (const name of ['vector_to_float32le', 'vector_to_float32be', 'vector_to_real_array']) {
      for (const t of ['extensions.vector(3)', 'public.vector', 'vector', 'extensions.vector(1536)', '"My Schema".vector(16000)']) {
        assert.equal(reads(name, t), true, `${name} ${t}`);
      }
      for (const t of ['extensions.vector(3)[]', 'extensions.halfvec(3)', 'extensions.sparsevec(3)', 'bytea', 'real[]', 'text', 'public.vectors']) {
        assert.equal(reads(name, t), false, `${name} ${t}`);
      }
    }
  });

  test('to_jsonb reads json and text', () => {
    for (const t of ['json', 'text', 'character varying', 'character varying(200)', 'pg_catalog.json']) assert.equal(reads('to_jsonb', t), true, t);
    for (const t of ['jsonb', 'bytea', 'json[]', 'public.json_thing', 'extensions.vector(3)']) assert.equal(reads('to_jsonb', t), false, t);
  });
});

describe('suggestConversion', () => {
  test('the builtin that fits, else null', () => {
    assert.equal(suggestConversion('extensions.vector(1536)', 'bytea'), 'vector_to_float32le');
    assert.equal(suggestConversion('public.vector', 'real[]'), 'vector_to_real_array');
    assert.equal(suggestConversion('extensions.vector(3)', 'pg_catalog.bytea'), 'vector_to_float32le');
    assert.equal(suggestConversion('json', 'jsonb'), 'to_jsonb');
    assert.equal(suggestConversion('text', 'jsonb'), 'to_jsonb');
    assert.equal(suggestConversion('extensions.vector(3)', 'text'), null);
    assert.equal(suggestConversion('extensions.vector(3)', 'double precision[]'), null);
    assert.equal(suggestConversion('bytea', 'extensions.vector(3)'), null);
    assert.equal(suggestConversion('integer', 'bigint'), null);
    assert.equal(suggestConversion('jsonb', 'json'), null);
  });
});
