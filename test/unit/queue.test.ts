/**
 * The apply queue may group changes out of arrival order, but never two changes to the same
 * row: whatever order the rows of each statement are processed in, the result must equal
 * applying the source's changes one by one.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { renderStrict, TableQueue, type Group, type Op, type QueuedRow } from '../../src/replicator/apply/queue.js';

type Row = QueuedRow & { values: string[] };

/** A tiny deterministic PRNG, so a failure can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Change {
  op: Op;
  key: string;
  newKey: string;
  value: string;
}

/** Apply changes one by one to a table held as key -> value. */
function applySequential(changes: Change[]): Map<string, string> {
  const t = new Map<string, string>();
  for (const c of changes) {
    if (c.op === 'insert') t.set(c.key, c.value);
    else if (c.op === 'delete') t.delete(c.key);
    else {
      t.delete(c.key);
      t.set(c.newKey, c.value);
    }
  }
  return t;
}

/** Apply groups in order, the rows of each group in the order `shuffle` gives. */
function applyGroups(groups: Group<Row>[], byRow: Map<number, Change>, shuffle: <T>(xs: T[]) => T[]): Map<string, string> {
  const t = new Map<string, string>();
  for (const g of groups) {
    const rows = shuffle([...g.rows]);
    // One statement: every row is found in the table as it was before the statement.
    const before = new Map(t);
    for (const r of rows) {
      const c = byRow.get(r.seq) as Change;
      if (c.op === 'insert') {
        assert.ok(!t.has(c.key), `insert of an existing key ${c.key}`);
        t.set(c.key, c.value);
      } else if (c.op === 'delete') {
        t.delete(c.key);
      } else {
        assert.ok(before.has(c.key), `update of ${c.key}, which the statement cannot see`);
        t.delete(c.key);
        t.set(c.newKey, c.value);
      }
    }
  }
  return t;
}

function randomChanges(next: () => number, n: number): Change[] {
  const live = new Set<string>();
  const out: Change[] = [];
  for (let i = 0; i < n; i++) {
    const r = next();
    const keys = [...live];
    if (keys.length === 0 || r < 0.35) {
      let k: string;
      do k = `k${Math.floor(next() * 12)}`;
      while (live.has(k) && live.size < 12);
      if (live.has(k)) continue;
      live.add(k);
      out.push({ op: 'insert', key: k, newKey: k, value: `v${i}` });
    } else if (r < 0.8) {
      const k = keys[Math.floor(next() * keys.length)] as string;
      let nk = k;
      if (next() < 0.2) {
        const cand = `k${Math.floor(next() * 12)}`;
        if (!live.has(cand)) nk = cand;
      }
      live.delete(k);
      live.add(nk);
      out.push({ op: 'update', key: k, newKey: nk, value: `v${i}` });
    } else {
      const k = keys[Math.floor(next() * keys.length)] as string;
      live.delete(k);
      out.push({ op: 'delete', key: k, newKey: k, value: '' });
    }
  }
  return out;
}

/**
 * Queue the changes as the applier does. With `fold`, an UPDATE that keeps its key is folded
 * into the row's queued INSERT or UPDATE when the queue offers one: that change then writes
 * the UPDATE's value instead, and the UPDATE is not queued.
 */
function enqueue(changes: Change[], fold = false): { q: TableQueue<Row>; byRow: Map<number, Change>; folded: number } {
  const q = new TableQueue<Row>();
  const byRow = new Map<number, Change>();
  let folded = 0;
  changes.forEach((c, seq) => {
    if (fold && c.op === 'update' && c.newKey === c.key) {
      const target = q.foldTarget(c.key, 'all');
      if (target) {
        byRow.set(target.row.seq, { ...(byRow.get(target.row.seq) as Change), value: c.value });
        target.row.values = [c.value];
        folded++;
        return;
      }
    }
    byRow.set(seq, c);
    const keys = c.op === 'update' && c.newKey !== c.key ? [c.key, c.newKey] : [c.key];
    q.add(c.op, 'all', [0], { seq, values: [c.value], keys });
  });
  return { q, byRow, folded };
}

describe('apply queue', () => {
  test('an app interleaving "insert order, update order" becomes one INSERT and one UPDATE', () => {
    const changes: Change[] = [];
    for (let i = 0; i < 100; i++) {
      changes.push({ op: 'insert', key: `o${i}`, newKey: `o${i}`, value: 'new' });
      changes.push({ op: 'update', key: `o${i}`, newKey: `o${i}`, value: 'paid' });
    }
    const { q } = enqueue(changes);
    assert.deepEqual(
      q.groups.map((g) => [g.op, g.rows.length]),
      [
        ['insert', 100],
        ['update', 100],
      ],
    );
  });

  test('a row changed twice gets two statements, in order', () => {
    const { q } = enqueue([
      { op: 'insert', key: 'a', newKey: 'a', value: '1' },
      { op: 'update', key: 'a', newKey: 'a', value: '2' },
      { op: 'update', key: 'a', newKey: 'a', value: '3' },
      { op: 'delete', key: 'a', newKey: 'a', value: '' },
      { op: 'insert', key: 'a', newKey: 'a', value: '4' },
    ]);
    assert.deepEqual(q.groups.map((g) => g.op), ['insert', 'update', 'update', 'delete', 'insert']);
  });

  test('a statement that finds its row by value is a barrier nothing moves before', () => {
    const q = new TableQueue<Row>();
    q.add('insert', 'all', [0], { seq: 0, values: ['1'], keys: [] });
    q.addStatement({ text: 'DELETE ... LIMIT 1', params: [] });
    q.add('insert', 'all', [0], { seq: 2, values: ['2'], keys: [] });
    assert.deepEqual(q.groups.map((g) => [g.op, g.rows.length]), [['insert', 1], ['row', 0], ['insert', 1]]);
  });

  test('an UPDATE that keeps its key folds into the row\'s INSERT or last UPDATE, never past another change of the row', () => {
    const { q, folded } = enqueue(
      [
        { op: 'insert', key: 'a', newKey: 'a', value: '1' },
        { op: 'update', key: 'a', newKey: 'a', value: '2' },
        { op: 'update', key: 'b', newKey: 'b', value: '3' },
        { op: 'update', key: 'b', newKey: 'b', value: '4' },
        { op: 'delete', key: 'a', newKey: 'a', value: '' },
        { op: 'insert', key: 'a', newKey: 'a', value: '5' },
        { op: 'update', key: 'b', newKey: 'c', value: '6' },
        { op: 'update', key: 'c', newKey: 'c', value: '7' },
      ],
      true,
    );
    assert.equal(folded, 2);
    assert.deepEqual(
      q.groups.map((g) => [g.op, g.rows.map((r) => r.values[0])]),
      [
        ['insert', ['2']],
        ['update', ['4']],
        ['delete', ['']],
        ['insert', ['5']],
        ['update', ['6']],
        ['update', ['7']],
      ],
    );
  });

  test('grouped (with and without folding) and in any row order, the result equals applying the changes one by one (2,000 random histories)', () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const next = rng(seed);
      const changes = randomChanges(next, 5 + Math.floor(next() * 40));
      const { q, byRow } = enqueue(changes, seed % 2 === 0);
      const want = applySequential(changes);
      const shuffle = <T,>(xs: T[]) => xs.map((x) => [next(), x] as const).sort((a, b) => a[0] - b[0]).map(([, x]) => x);
      assert.deepEqual(applyGroups(q.groups, byRow, shuffle), want, `seed ${seed}`);
      assert.deepEqual(applyGroups(renderStrict(q, false), byRow, shuffle), want, `seed ${seed} (strict)`);
      // Strict order keeps the source's sequence exactly.
      const strictSeqs = renderStrict(q, true).flatMap((g) => g.rows.map((r) => r.seq));
      assert.deepEqual(strictSeqs, [...strictSeqs].sort((a, b) => a - b), `seed ${seed}: strict is arrival order`);
    }
  });
});
