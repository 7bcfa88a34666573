/**
 * Copies in parts (src/backfill/parts.ts), the decisions that need no server: how a table
 * splits, and which table's part a spare session takes next.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CopyPart } from '../../src/backfill/copy.js';
import { mostBytesWaiting, splitTable, type TableShape } from '../../src/backfill/parts.js';

const MB = 1024 * 1024;

function shape(over: Partial<TableShape>): TableShape {
  return { bytes: 0, blocks: 0, tidRangeScan: true, leaves: [], ...over };
}

/** The parts that hold heap block `block` (the table may have grown past `blocks` since). */
function partsHolding(parts: CopyPart[], block: number): number {
  return parts.filter((p) => p.kind === 'blocks' && block >= p.from && (p.to === null || block < p.to)).length;
}

describe('splitTable', () => {
  test('an ordinary table splits in twice as many block ranges as sessions, each block in exactly one', () => {
    for (const blocks of [0, 1, 7, 8, 1000, 12_345]) {
      const parts = splitTable(shape({ bytes: 100 * MB, blocks }), false, 4, MB);
      assert.ok(parts);
      assert.equal(parts.length, 8);
      for (let b = 0; b < blocks + 5; b++) assert.equal(partsHolding(parts, b), 1, `block ${b} of ${blocks}`);
    }
  });

  test('no more parts than the table is worth, and none below two', () => {
    assert.equal(splitTable(shape({ bytes: 3 * MB, blocks: 400 }), false, 4, MB)?.length, 3);
    assert.equal(splitTable(shape({ bytes: 2 * MB - 1, blocks: 400 }), false, 4, MB), null);
  });

  test('without TID range scans (before 14) a table is copied in one piece', () => {
    assert.equal(splitTable(shape({ bytes: 100 * MB, blocks: 400, tidRangeScan: false }), false, 4, MB), null);
  });

  test('a partitioned table splits into its leaves, in the order given, whatever the sessions', () => {
    const leaves = ['"public"."big"', '"public"."mid"', '"public"."small"'];
    assert.deepEqual(
      splitTable(shape({ bytes: 10 * MB, leaves }), true, 2, MB),
      leaves.map((quotedName) => ({ kind: 'leaf', quotedName })),
    );
    assert.equal(splitTable(shape({ bytes: 10 * MB, leaves: leaves.slice(0, 1) }), true, 2, MB), null);
    assert.equal(splitTable(shape({ bytes: MB, leaves }), true, 2, MB), null);
  });
});

describe('mostBytesWaiting', () => {
  const job = (name: string, waiting: number, partBytes: number) => ({ name, queue: Array.from({ length: waiting }), partBytes });

  test('a spare session helps the table with the most bytes still waiting, not the most parts', () => {
    const jobs = [job('many small parts', 6, MB), job('few large parts', 2, 4 * MB), job('done', 0, 100 * MB)];
    assert.equal(mostBytesWaiting(jobs)?.name, 'few large parts');
  });

  test('on a tie the table that asked first', () => {
    assert.equal(mostBytesWaiting([job('first', 2, MB), job('second', 1, 2 * MB)])?.name, 'first');
  });

  test('none when no part waits', () => {
    assert.equal(mostBytesWaiting([job('done', 0, MB)]), null);
    assert.equal(mostBytesWaiting([]), null);
  });
});
