/**
 * A partition the source gained under a table the target has already (a monthly job,
 * pg_partman's premade ones): `walbridge schema` makes it under that parent, and the daemon uses
 * the same plan (src/schema/partitions.ts). A target that cannot place a row of such a
 * partition says so in words that name the fix.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeError } from '../../src/errors.js';
import { planSchema } from '../../src/schema/plan.js';
import type { TableDef } from '../../src/schema/read.js';
import { sourceSchema, table, targetFacts } from '../helpers/schema-catalog.js';

const ROOT: TableDef = { ...table(100, 'ev'), kind: 'p', partitionKey: 'RANGE (id)' };
const partition = (oid: number, name: string, bound: string): TableDef => ({ ...table(oid, name), parent: ROOT.oid, partitionBound: bound, columns: ROOT.columns.map((c) => ({ ...c, local: false })) });

test('a partition missing under a parent the target has is made under it; one it has is left as it is', () => {
  const src = sourceSchema({ tables: [ROOT, partition(101, 'ev_1', 'FOR VALUES FROM (0) TO (100)'), partition(102, 'ev_2', 'FOR VALUES FROM (100) TO (200)')] });
  const tgt = targetFacts({
    relations: new Map([
      ['public.ev', { oid: 1, kind: 'p' }],
      ['public.ev_1', { oid: 2, kind: 'r' }],
    ]),
    columns: new Map([['public.ev', ROOT.columns]]),
  });
  const p = planSchema(src, tgt, { schemas: ['public'], policies: 'keep' });
  assert.deepEqual(p.problems, []);
  assert.deepEqual(
    p.steps.map((s) => `${s.kind} ${s.sql}`),
    ['partition CREATE TABLE "public"."ev_2" PARTITION OF "public"."ev" FOR VALUES FROM (100) TO (200);'],
  );
  assert.ok(p.present.some((x) => x.kind === 'partition' && x.name === 'public.ev_1'));
});

test('"no partition of relation … found for row" from the target becomes a schema error that names the table and the fix', () => {
  const d = describeError(Object.assign(new Error('no partition of relation "events" found for row'), { code: '23514' }));
  assert.equal(d.kind, 'schema');
  assert.match(d.message, /the target has no partition of table events for a row the source stored in one/);
  assert.match(d.hint ?? '', /walbridge makes the partitions the source gains on the target .* walbridge schema/);
  // Any other check violation stays as PostgreSQL says it.
  assert.equal(describeError(Object.assign(new Error('new row for relation "t" violates check constraint "c"'), { code: '23514' })).kind, 'internal');
});
