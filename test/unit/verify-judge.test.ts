/**
 * How verify judges one row from its three reads (the source, the target once caught up with
 * that read, the source again): a difference is reported only once seen in two comparisons, so a
 * row the app inserted and deleted (or truncated) between the source's two reads, which the
 * target showed in between, is compared again instead of reported.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { judgeRow } from '../../src/verify/verify.js';

test('equal, or moved between the source reads: compared again', () => {
  const s = new Set<string>();
  assert.equal(judgeRow('[1]', 'h1', 'h1', 'h1', false, s), 'equal');
  assert.equal(judgeRow('[1]', undefined, undefined, 'h2', false, s), 'equal');
  assert.equal(judgeRow('[1]', 'h1', 'h2', 'h2', false, s), 'again');
  assert.equal(s.size, 0, 'a row that moved is not suspected of anything');
});

test('a row inserted and deleted between the source reads, shown by the target in between: compared again, then equal', () => {
  const s = new Set<string>();
  assert.equal(judgeRow('[7]', undefined, 'h7', undefined, false, s), 'again');
  // The next comparison: the target has applied the delete too.
  assert.equal(judgeRow('[7]', undefined, undefined, undefined, false, s), 'equal');
  // Without a key, a truncated row the target still showed.
  const k = new Set<string>();
  assert.equal(judgeRow('["9e3b"]', undefined, '1', undefined, true, k), 'again');
  assert.equal(judgeRow('["9e3b"]', undefined, undefined, undefined, true, k), 'equal');
});

test('a difference seen in two comparisons is reported, and named', () => {
  const cases: [string | undefined, string | undefined, boolean, string][] = [
    [undefined, 'h', false, 'extra on target'],
    ['h', undefined, false, 'missing on target'],
    ['h', 'x', false, 'changed'],
    ['2', '1', true, 'missing on target'],
    [undefined, '1', true, 'extra on target'],
    ['1', '3', true, 'extra on target'],
  ];
  for (const [a, t, keyless, kind] of cases) {
    const s = new Set<string>();
    assert.equal(judgeRow('[1]', a, t, a, keyless, s), 'again', `${a}/${t}: the first time`);
    assert.equal(judgeRow('[1]', a, t, a, keyless, s), kind, `${a}/${t}: the second time`);
  }
});
