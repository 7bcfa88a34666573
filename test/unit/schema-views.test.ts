/**
 * `walbridge schema`'s plan for views (src/schema/plan.ts), from catalogs as read.ts reads them:
 * which views are made, in which order, and what is listed as left out with what it lacks. The
 * e2e test (schema.test.ts) runs the same on a Supabase-shaped source; here, the cases it has no
 * room for, each on its own small catalog.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConversions } from '../../src/convert/conversions.js';
import { refreshOrder } from '../../src/cutover/materialized.js';
import { planSchema, type PlanOptions, type SchemaPlan } from '../../src/schema/plan.js';
import type { FunctionDef, SourceSchema, TableDef, ViewDef, ViewReference } from '../../src/schema/read.js';
import { sourceSchema, table, targetFacts } from '../helpers/schema-catalog.js';

const NOTES = 100;
const USERS_OF_AUTH = 200;
const OTHER = 300;

function view(oid: number, name: string, more: Partial<ViewDef> = {}): ViewDef {
  return { oid, schema: 'public', name, kind: 'v', query: ` SELECT 1 AS x FROM public.${name};`, options: [], comment: null, columnComments: [], ...more };
}

const NO_REF = { refExtension: null, refKind: null, refRelname: null, refColumn: null, refFunction: null, refArgs: null, refTypeRelation: null, refConstraintRelation: null };

/** `view` reads relation `oid` (a table or a view), optionally one of its columns. */
function reads(viewOid: number, oid: number, name: string, more: Partial<ViewReference> = {}): ViewReference {
  const [schema = 'public', relname = name] = name.split('.');
  return { ...NO_REF, view: viewOid, refClass: 'pg_class', refOid: oid, refSchema: schema, refName: name, refKind: 'r', refRelname: relname, ...more };
}

function calls(viewOid: number, oid: number, schema: string, fn: string): ViewReference {
  return { ...NO_REF, view: viewOid, refClass: 'pg_proc', refOid: oid, refSchema: schema, refName: `${schema}.${fn}()`, refFunction: fn, refArgs: '' };
}

const UID: FunctionDef = { oid: 900, schema: 'auth', name: 'uid', kind: 'f', args: '', def: 'CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql AS $$ SELECT 1 $$\n', language: 'sql', extension: null, comment: null };

function source(views: ViewDef[], viewReferences: ViewReference[], tables = [table(NOTES, 'notes')]): SourceSchema {
  return sourceSchema({ tables, authHelpers: [UID], views, viewReferences });
}

const target = targetFacts;

const plan = (src: SourceSchema, tgt = target(), opts: Partial<PlanOptions> = {}): SchemaPlan => planSchema(src, tgt, { schemas: ['public'], policies: 'keep', ...opts });
const viewSteps = (p: SchemaPlan) => p.steps.filter((s) => s.kind === 'view').map((s) => s.name);
const leftOut = (p: SchemaPlan, name: string) => p.leftOut.find((l) => l.name === name);

test('a view over a selected table is made after the table, with its options and comments', () => {
  const v = view(10, 'recent', { options: ['security_invoker=true'], comment: "it's recent", columnComments: [{ name: 'x', comment: 'the x' }] });
  const p = plan(source([v], [reads(10, NOTES, 'public.notes', { refColumn: 'body' })]));
  assert.deepEqual(p.problems, []);
  assert.deepEqual(viewSteps(p), ['public.recent']);
  const kinds = p.steps.map((s) => s.kind);
  assert.ok(kinds.indexOf('table') < kinds.indexOf('view'), kinds.join(' '));
  const sql = p.steps.find((s) => s.kind === 'view')?.sql ?? '';
  assert.equal(sql, 'CREATE VIEW "public"."recent" WITH (security_invoker=true) AS\nSELECT 1 AS x FROM public.recent;');
  assert.ok(p.steps.some((s) => s.sql === `COMMENT ON VIEW "public"."recent" IS 'it''s recent';`));
  assert.ok(p.steps.some((s) => s.sql === `COMMENT ON COLUMN "public"."recent"."x" IS 'the x';`));
});

test('a view over another view comes after it, whatever their order in the catalog', () => {
  const top = view(10, 'top');
  const base = view(20, 'base');
  const p = plan(source([top, base], [reads(10, 20, 'public.base', { refKind: 'v' }), reads(20, NOTES, 'public.notes')]));
  assert.deepEqual(viewSteps(p), ['public.base', 'public.top']);
});

test('views that read no selected table are not the selection’s business: neither made nor listed', () => {
  const p = plan(source([view(10, 'elsewhere')], [reads(10, OTHER, 'public.other')]));
  assert.deepEqual(viewSteps(p), []);
  assert.equal(leftOut(p, 'public.elsewhere'), undefined);
});

test('a view that also reads a table not selected is left out, naming it; the tables are made all the same', () => {
  const p = plan(source([view(10, 'joined')], [reads(10, NOTES, 'public.notes'), reads(10, OTHER, 'public.other')]));
  assert.deepEqual(p.problems, []);
  assert.ok(p.steps.some((s) => s.kind === 'table'));
  assert.match(leftOut(p, 'public.joined')?.reason ?? '', /public\.other, which is not among the selected tables/);
  assert.deepEqual(viewSteps(p), []);
});

test('a view over auth.users is left out as the platform’s; one over it is left out in turn', () => {
  const p = plan(
    source(
      [view(10, 'emails'), view(20, 'on_emails')],
      [reads(10, NOTES, 'public.notes'), reads(10, USERS_OF_AUTH, 'auth.users'), reads(20, 10, 'public.emails', { refKind: 'v' })],
    ),
  );
  assert.match(leftOut(p, 'public.emails')?.reason ?? '', /reads auth\.users: Supabase's platform/);
  assert.match(leftOut(p, 'public.on_emails')?.reason ?? '', /view public\.emails, left out/);
  assert.deepEqual(viewSteps(p), []);
});

test('auth.uid() in a view: kept with the function under --policies keep, left out under drop', () => {
  const src = source([view(10, 'mine')], [reads(10, NOTES, 'public.notes'), calls(10, UID.oid, 'auth', 'uid')]);
  const kept = plan(src);
  assert.deepEqual(viewSteps(kept), ['public.mine']);
  assert.ok(kept.steps.some((s) => s.kind === 'function' && s.name === 'auth.uid()'), JSON.stringify(kept.steps.map((s) => s.name)));
  const dropped = plan(src, target(), { policies: 'drop' });
  assert.match(leftOut(dropped, 'public.mine')?.reason ?? '', /calls auth\.uid\(\) \(--policies drop makes no auth function\)/);
  assert.ok(!dropped.steps.some((s) => s.kind === 'function'));
});

test('an app function no table needs: the view is left out, unless the target has the function', () => {
  const src = source([view(10, 'scored')], [reads(10, NOTES, 'public.notes'), calls(10, 500, 'public', 'score')]);
  assert.match(leftOut(plan(src), 'public.scored')?.reason ?? '', /function public\.score\(\), which walbridge schema makes only when a table needs it/);
  assert.deepEqual(viewSteps(plan(src, target({ functions: new Set(['public.score()']) }))), ['public.scored']);
});

test('a view reading a column that WALBRIDGE_CONVERT carries as another type is left out', () => {
  const src = source([view(10, 'bodies')], [reads(10, NOTES, 'public.notes', { refColumn: 'body' })]);
  const p = plan(src, target(), { conversions: parseConversions('public.notes.body=drop') });
  assert.match(leftOut(p, 'public.bodies')?.reason ?? '', /column public\.notes\.body as it is on the source/);
});

test('an extension the tables do not need: the view is left out, unless the target has it in the same schema', () => {
  const src = source([view(10, 'similar')], [reads(10, NOTES, 'public.notes'), { ...calls(10, 600, 'extensions', 'similarity'), refExtension: 'pg_trgm' }]);
  assert.match(leftOut(plan(src), 'public.similar')?.reason ?? '', /extension pg_trgm \(for extensions\.similarity\(\)\), which the tables do not need/);
  assert.deepEqual(viewSteps(plan(src, target({ extensions: new Map([['pg_trgm', 'extensions']]) }))), ['public.similar']);
  // Elsewhere on the target, `extensions.similarity(…)` would not resolve: left out, not a failed run.
  assert.match(leftOut(plan(src, target({ extensions: new Map([['pg_trgm', 'public']]) })), 'public.similar')?.reason ?? '', /extension pg_trgm in schema extensions, as on the source \(the target has it in public\)/);
});

test('a GROUP BY on a primary key, a row type of a selected table, a composite type the tables bring: all there for the view', () => {
  const money = { oid: 800, schema: 'public', name: 'money_amount', qualified: 'public.money_amount', kind: 'c', category: 'C', elem: 0, rel: 801, relKind: 'c', base: null, baseOid: 0, notNull: false, defaultExpr: null, collation: null, labels: [], checks: [], checkOids: [], extension: null, comment: null, attributes: [] };
  const notes = table(NOTES, 'notes');
  notes.columns.push({ ...(notes.columns[1] as TableDef['columns'][number]), num: 3, name: 'total', type: 'public.money_amount', typeOid: 800 });
  const src = source(
    [view(10, 'per_note')],
    [
      reads(10, NOTES, 'public.notes'),
      { ...NO_REF, view: 10, refClass: 'pg_constraint', refOid: 900, refSchema: 'public', refName: 'notes_pkey on public.notes', refConstraintRelation: NOTES },
      { ...NO_REF, view: 10, refClass: 'pg_type', refOid: 901, refSchema: 'public', refName: 'public.notes', refTypeRelation: NOTES },
      reads(10, 801, 'public.money_amount', { refKind: 'c' }),
    ],
    [notes],
  );
  src.types.set(800, money);
  const p = plan(src);
  assert.deepEqual(p.leftOut, []);
  assert.deepEqual(viewSteps(p), ['public.per_note']);
});

test('a table or sequence the target has already, though not selected, is there for the view', () => {
  const src = source([view(10, 'with_other')], [reads(10, NOTES, 'public.notes'), reads(10, OTHER, 'public.other'), reads(10, 400, 'public.counter', { refKind: 'S' })]);
  assert.match(leftOut(plan(src), 'public.with_other')?.reason ?? '', /public\.other, which is not among the selected tables/);
  const there = target({ relations: new Map([['public.other', { oid: 1, kind: 'r' }], ['public.counter', { oid: 2, kind: 'S' }]]) });
  assert.deepEqual(viewSteps(plan(src, there)), ['public.with_other']);
});

test('a materialized view’s index that needs what is missing is left out, the view made; a trigger on a view is listed', () => {
  const src = source([view(20, 'totals', { kind: 'm' })], [reads(20, NOTES, 'public.notes')]);
  src.viewIndexes.push({ oid: 31, rel: 20, name: 'totals_trgm', def: 'CREATE INDEX totals_trgm ON public.totals USING gin (x extensions.gin_trgm_ops)', comment: null });
  src.viewIndexReferences.push({ class: 'pg_class', objid: 31, subid: 0, refClass: 'pg_opclass', refOid: 77, refSchema: 'extensions', refName: 'extensions.gin_trgm_ops USING gin', refExtension: 'pg_trgm' });
  src.viewTriggers.push({ oid: 40, rel: 20, table: 'public.totals', tableSchema: 'public', name: 'totals_write', def: 'CREATE TRIGGER totals_write INSTEAD OF INSERT ON public.totals FOR EACH ROW EXECUTE FUNCTION public.f()', enabled: 'O', functionOid: 5, functionSchema: 'public', functionName: 'f', comment: null });
  const p = plan(src);
  assert.ok(p.steps.some((s) => s.kind === 'materialized-view' && s.name === 'public.totals'));
  assert.ok(!p.steps.some((s) => s.name === 'public.totals.totals_trgm'));
  assert.match(leftOut(p, 'public.totals.totals_trgm')?.reason ?? '', /extension pg_trgm/);
  assert.match(leftOut(p, 'public.totals.totals_write')?.choice ?? '', /CREATE TRIGGER totals_write INSTEAD OF INSERT/);
});

test('a materialized view is made empty, its indexes right after it, a view over it after them', () => {
  const src = source(
    [view(10, 'over_totals'), view(20, 'totals', { kind: 'm', comment: 'sums' })],
    [reads(10, 20, 'public.totals', { refKind: 'm' }), reads(20, NOTES, 'public.notes')],
  );
  src.viewIndexes.push({ oid: 30, rel: 20, name: 'totals_id_key', def: 'CREATE UNIQUE INDEX totals_id_key ON public.totals USING btree (x)', comment: null });
  const p = plan(src);
  const order = p.steps.filter((s) => s.name.startsWith('public.totals') || s.name === 'public.over_totals').map((s) => `${s.kind} ${s.name}`);
  assert.deepEqual(order, ['materialized-view public.totals', 'index public.totals.totals_id_key', 'view public.over_totals', 'comment public.totals']);
  assert.equal(p.steps[p.steps.findIndex((s) => s.kind === 'materialized-view')]?.sql, 'CREATE MATERIALIZED VIEW "public"."totals" AS\nSELECT 1 AS x FROM public.totals\nWITH NO DATA;');
  assert.ok(p.steps.some((s) => s.sql === `COMMENT ON MATERIALIZED VIEW "public"."totals" IS 'sums';`));
});

test('a view or materialized view that exists on the target is left as it is; a table of its name is named', () => {
  const p = plan(
    source([view(10, 'kept'), view(20, 'kept_m', { kind: 'm' }), view(30, 'clash')], [reads(10, NOTES, 'public.notes'), reads(20, NOTES, 'public.notes'), reads(30, NOTES, 'public.notes')]),
    target({ relations: new Map([['public.kept', { oid: 1, kind: 'v' }], ['public.kept_m', { oid: 2, kind: 'm' }], ['public.clash', { oid: 3, kind: 'r' }]]) }),
  );
  assert.deepEqual(viewSteps(p), []);
  assert.ok(p.present.some((x) => x.kind === 'view' && x.name === 'public.kept'));
  assert.ok(p.present.some((x) => x.kind === 'materialized-view' && x.name === 'public.kept_m'));
  assert.match(leftOut(p, 'public.clash')?.reason ?? '', /relkind r/);
});

test('a type the tables bring is there for the view, its array type too; another type is named as lacking', () => {
  const mood = { oid: 700, schema: 'public', name: 'mood', qualified: 'public.mood', kind: 'e', category: 'E', elem: 0, rel: 0, relKind: null, base: null, baseOid: 0, notNull: false, defaultExpr: null, collation: null, labels: ['ok'], checks: [], checkOids: [], extension: null, comment: null, attributes: [] };
  const notes = table(NOTES, 'notes');
  notes.columns.push({ ...(notes.columns[1] as TableDef['columns'][number]), num: 3, name: 'mood', type: 'public.mood', typeOid: 700 });
  const typed = (viewOid: number, name: string): ViewReference => ({ ...calls(viewOid, 0, 'public', 'x'), refClass: 'pg_type', refName: name, refFunction: null, refArgs: null });
  const src = source([view(10, 'moods'), view(20, 'colours')], [reads(10, NOTES, 'public.notes'), typed(10, 'public.mood[]'), reads(20, NOTES, 'public.notes'), typed(20, 'public.colour')], [notes]);
  src.types.set(700, mood);
  const p = plan(src);
  assert.deepEqual(viewSteps(p), ['public.moods']);
  assert.match(leftOut(p, 'public.colours')?.reason ?? '', /type public\.colour, which no selected table uses/);
});

test('a view in a schema of views only (PostgREST’s api) is made with its schema', () => {
  const p = plan(source([{ ...view(10, 'notes'), schema: 'api' }], [reads(10, NOTES, 'public.notes')]), target(), { schemas: ['public', 'api'] });
  assert.deepEqual(viewSteps(p), ['api.notes']);
  const kinds = p.steps.map((s) => `${s.kind} ${s.name}`);
  assert.ok(kinds.indexOf('schema api') >= 0 && kinds.indexOf('schema api') < kinds.indexOf('view api.notes'), kinds.join(', '));
});

test('cutover refreshes each materialized view after those it reads', () => {
  const views = [
    { oid: 1, name: 'top', reads: [2, 3] },
    { oid: 2, name: 'middle', reads: [3] },
    { oid: 3, name: 'bottom', reads: [] },
    { oid: 4, name: 'alone', reads: [99] },
  ];
  assert.deepEqual(
    refreshOrder(views).map((v) => v.name),
    ['bottom', 'middle', 'top', 'alone'],
  );
});
