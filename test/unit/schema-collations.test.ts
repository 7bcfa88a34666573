/**
 * `walbridge schema`'s plan for the app's collations (src/schema/plan.ts): made before the types
 * and tables that use them, as the source defines them, and a problem, before anything is
 * written, when the target cannot make one. The e2e test (schema.test.ts) makes an ICU one on a
 * real target; here, each case on its own small catalog.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planSchema, type SchemaPlan } from '../../src/schema/plan.js';
import type { CollationDef, SourceSchema, TableDef, ViewDef, ViewReference } from '../../src/schema/read.js';
import type { TargetFacts } from '../../src/schema/target.js';
import { sourceSchema, table, targetFacts } from '../helpers/schema-catalog.js';

const CASE_INSENSITIVE: CollationDef = {
  qualified: 'public.case_insensitive',
  schema: 'public',
  name: 'case_insensitive',
  provider: 'i',
  deterministic: false,
  lcCollate: null,
  lcCtype: null,
  locale: 'und-u-ks-level2',
  rules: null,
  extension: null,
  comment: 'compares ignoring case',
};

/** public.people, its body column under `collation`. */
function people(collation: string): TableDef {
  const t = table(100, 'people');
  return { ...t, columns: t.columns.map((c) => (c.name === 'body' ? { ...c, collation } : c)) };
}

const plan = (src: SourceSchema, tgt: TargetFacts = targetFacts()): SchemaPlan => planSchema(src, tgt, { schemas: ['public'], policies: 'keep' });
const sqlOf = (p: SchemaPlan, kind: string) => p.steps.filter((s) => s.kind === kind).map((s) => s.sql);

test('an ICU collation a column uses is made before the table, nondeterministic, with its comment', () => {
  const p = plan(sourceSchema({ tables: [people('public.case_insensitive')], collations: [CASE_INSENSITIVE] }));
  assert.deepEqual(p.problems, []);
  assert.deepEqual(sqlOf(p, 'collation'), [`CREATE COLLATION "public"."case_insensitive" (provider = icu, locale = 'und-u-ks-level2', deterministic = false);`]);
  const kinds = p.steps.map((s) => s.kind);
  assert.ok(kinds.indexOf('collation') < kinds.indexOf('table'), kinds.join(' '));
  assert.match(sqlOf(p, 'table')[0] ?? '', /"body" text COLLATE public\.case_insensitive/);
  assert.ok(sqlOf(p, 'comment').includes(`COMMENT ON COLLATION "public"."case_insensitive" IS 'compares ignoring case';`));
});

test('a libc collation keeps its two categories; ICU rules are kept', () => {
  const libc: CollationDef = { ...CASE_INSENSITIVE, qualified: 'public.bytes', name: 'bytes', provider: 'c', deterministic: true, lcCollate: 'C', lcCtype: 'C.UTF-8', locale: null, comment: null };
  const ruled: CollationDef = { ...CASE_INSENSITIVE, qualified: 'public.ruled', name: 'ruled', deterministic: true, locale: 'und', rules: '&a < g', comment: null };
  const p = plan(sourceSchema({ tables: [people('public.bytes')], collations: [libc, ruled] }));
  assert.deepEqual(sqlOf(p, 'collation'), [
    `CREATE COLLATION "public"."bytes" (provider = libc, lc_collate = 'C', lc_ctype = 'C.UTF-8');`,
    `CREATE COLLATION "public"."ruled" (provider = icu, locale = 'und', rules = '&a < g');`,
  ]);
});

test('a collation the target has already is left as it is', () => {
  const p = plan(sourceSchema({ tables: [people('public.case_insensitive')], collations: [CASE_INSENSITIVE] }), targetFacts({ collations: new Set(['public.case_insensitive']) }));
  assert.deepEqual(sqlOf(p, 'collation'), []);
  assert.ok(p.present.some((x) => x.kind === 'collation' && x.name === 'public.case_insensitive'));
});

test('a target without ICU, or before 17 for a builtin one: a problem naming the provider and the fix', () => {
  const noIcu = plan(sourceSchema({ tables: [people('public.case_insensitive')], collations: [CASE_INSENSITIVE] }), targetFacts({ collationProviders: new Set(['c']) }));
  assert.equal(noIcu.problems.length, 1);
  assert.match(noIcu.problems[0]?.message ?? '', /collation public\.case_insensitive uses ICU, which the target's server lacks/);
  assert.match(noIcu.problems[0]?.fix ?? '', /create public\.case_insensitive there yourself/);
  const builtin: CollationDef = { ...CASE_INSENSITIVE, provider: 'b', deterministic: true, locale: 'C.UTF-8' };
  const old = plan(sourceSchema({ tables: [people('public.case_insensitive')], collations: [builtin] }));
  assert.match(old.problems[0]?.message ?? '', /builtin provider \(17 and later\)/);
  assert.deepEqual(sqlOf(plan(sourceSchema({ collations: [builtin] }), targetFacts({ collationProviders: new Set(['c', 'i', 'b']) })), 'collation'), [
    `CREATE COLLATION "public"."case_insensitive" (provider = builtin, locale = 'C.UTF-8');`,
  ]);
});

test("a collation in one of the platform's schemas is a problem: walbridge schema does not make those schemas", () => {
  const p = plan(sourceSchema({ tables: [people('storage.ci')], collations: [{ ...CASE_INSENSITIVE, qualified: 'storage.ci', schema: 'storage', name: 'ci' }] }));
  assert.match(p.problems[0]?.message ?? '', /collation storage\.ci .* part of Supabase's platform/);
});

test('a view is made when the collation it uses is made for a table, and left out naming it otherwise', () => {
  const NO_REF = { refExtension: null, refKind: null, refRelname: null, refColumn: null, refFunction: null, refArgs: null, refTypeRelation: null, refConstraintRelation: null };
  const readsPeople: ViewReference = { ...NO_REF, view: 10, refClass: 'pg_class', refOid: 100, refSchema: 'public', refName: 'public.people', refKind: 'r', refRelname: 'people' };
  const usesCollation: ViewReference = { ...NO_REF, view: 10, refClass: 'pg_collation', refOid: 5000, refSchema: 'public', refName: 'public.case_insensitive' };
  const v: ViewDef = { oid: 10, schema: 'public', name: 'sorted_people', kind: 'v', query: ' SELECT 1;', options: [], comment: null, columnComments: [] };
  const made = plan(sourceSchema({ tables: [people('public.case_insensitive')], collations: [CASE_INSENSITIVE], views: [v], viewReferences: [readsPeople, usesCollation] }));
  assert.deepEqual(made.steps.filter((s) => s.kind === 'view').map((s) => s.name), ['public.sorted_people']);
  const out = plan(sourceSchema({ tables: [table(100, 'people')], views: [v], viewReferences: [readsPeople, usesCollation] }));
  assert.match(out.leftOut.find((l) => l.name === 'public.sorted_people')?.reason ?? '', /collation public\.case_insensitive, which no selected table uses/);
});
