/**
 * The way back's conversions (src/convert/way-back.ts): each column goes back through its
 * conversion's inverse; one without an inverse is marked one-way (preflight of the way back then
 * refuses its table, see catalog/tables.ts); a dropped column is not carried back at all.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConversions } from '../../src/convert/conversions.js';
import { isOneWay, wayBack } from '../../src/convert/way-back.js';

test('the way back inverts each conversion, marks one without an inverse, and leaves a dropped column alone', () => {
  const forward = parseConversions('public.t.v=vector_to_float32le;public.t.j=to_jsonb;public.t.s=sql:lower($1);public.t.d=drop');
  const back = wayBack(forward);
  assert.deepEqual([...back.keys()].sort(), ['public.t.j', 'public.t.s', 'public.t.v']);

  const v = back.get('public.t.v');
  const f = forward.get('public.t.v');
  assert.ok(v && f && f.toSource);
  assert.equal(isOneWay(v), false);
  assert.equal(v.toTarget('x'), f.toSource('x'), 'back through the inverse');
  assert.equal(v.toSource?.('x'), f.toTarget('x'), 'and forward again');
  assert.equal(v.readsSource('bytea'), true, 'it reads what the forward conversion wrote');
  assert.equal(v.readsSource('text'), false);

  for (const column of ['public.t.j', 'public.t.s']) {
    const c = back.get(column);
    assert.ok(c && isOneWay(c), `${column} has no way back`);
    assert.throws(() => c.toTarget('x'), /no way back/);
  }
});
