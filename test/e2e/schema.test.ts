/**
 * `walbridge schema`: from a source built the way Supabase builds one (test/harness/supabase.ts;
 * PostgreSQL 15, read as `mig`, Supabase's `postgres`) it creates on an empty target (17, as its
 * superuser) what the selected tables need, and nothing of Supabase's platform.
 *
 * The main pair goes through the whole story: a dry run writes nothing; a real run makes the
 * target's catalogs equal to the source's for every app table (compared object by object through
 * test/harness/catalog.ts), except what the report lists as left out (the foreign key to
 * auth.users, the webhook trigger), and its views (the one over auth.users left out, the
 * materialized view made empty); a second run has nothing to do; then walbridge migrates the
 * data over it and cuts over (which fills the materialized view), and the app's own statements
 * work on the new database: defaults, identity, sequences, generated columns, triggers, the views,
 * and a query under RLS as PostgREST makes it.
 * A spare target cluster (17) takes the runs that need a fresh one: `--policies drop`, a schema of
 * views only (api), a table that exists with another column type, a table whose default needs an
 * extension the target lacks.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { describeTables, describeTypes, type TableDescription } from '../harness/catalog.js';
import { startCluster, startPair, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import {
  createSupabaseSource,
  signUp,
  SUPABASE_API_ROLES,
  SUPABASE_APP_TABLES,
  SUPABASE_MIG,
  SUPABASE_PARTITIONS,
  SUPABASE_PLATFORM_DEPENDENT,
  SUPABASE_PLATFORM_ROLES,
  SUPABASE_USERS,
  SUPABASE_MATVIEW,
  SUPABASE_VIEW_LEFT_OUT,
  SUPABASE_VIEWS,
} from '../harness/supabase.js';
import { runCli, startDaemon, type CliResult, type DaemonProcess } from '../helpers/daemon.js';
import { waitForCatchUp, waitForPhase } from '../helpers/state.js';

let source: Cluster;
let target: Cluster;
/** A second empty target (17) for the runs that need a fresh one; roles are cluster-wide. */
let spare: Cluster;
let mig: { user: string; password: string };
const clusters: Cluster[] = [];
const daemons: DaemonProcess[] = [];

before(async () => {
  const [pair, extra] = await Promise.allSettled([startPair({ sourceMajor: 15, targetMajor: 17, namePrefix: 'schema' }), startCluster({ major: 17, name: 'schema-spare' })]);
  if (pair.status === 'fulfilled') clusters.push(pair.value.source, pair.value.target);
  if (extra.status === 'fulfilled') clusters.push(extra.value);
  if (pair.status === 'rejected') throw pair.reason;
  if (extra.status === 'rejected') throw extra.reason;
  ({ source, target } = pair.value);
  spare = extra.value;
  mig = await createSupabaseSource(source);
  sourceTables = await describeApp(source);
});

after(async () => {
  for (const d of daemons) d.kill('SIGKILL');
  await Promise.all(clusters.map((c) => c.destroy()));
});

const APP_AND_PARTITIONS = [...SUPABASE_APP_TABLES, ...SUPABASE_PARTITIONS];
const { alice, bob } = SUPABASE_USERS;
const PLATFORM_SCHEMAS = ['storage', 'realtime', 'supabase_functions', 'graphql', 'graphql_public', 'vault', 'net', 'pgsodium', 'cron'];

/** The command's environment: the source as mig (Supabase's postgres), a target as its superuser. */
const env = (targetUrl: string, extra: Record<string, string> = {}): Record<string, string> => ({
  SOURCE_DATABASE_URL: source.url('app', mig),
  TARGET_DATABASE_URL: targetUrl,
  ...extra,
});

// ---------------------------------------------------------------------------------------------
// The report (--json) and how it maps onto the catalogs
// ---------------------------------------------------------------------------------------------

interface Step {
  kind: string;
  name: string;
  sql: string;
}
interface LeftOut {
  kind: string;
  name: string;
  reason: string;
  choice: string;
}
interface Report {
  ok: boolean;
  applied: boolean;
  steps: Step[];
  present: { kind: string; name: string }[];
  leftOut: LeftOut[];
  problems: { message: string; fix: string }[];
}

function reportOf(r: CliResult): Report {
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.stdout);
  } catch (err) {
    throw new Error(`--json did not print one JSON object (exit ${r.code}): ${(err as Error).message}\n${r.out}`);
  }
  const rep = parsed as Report;
  for (const key of ['steps', 'present', 'leftOut', 'problems'] as const) assert.ok(Array.isArray(rep[key]), `report.${key} is a list:\n${r.stdout}`);
  assert.equal(typeof rep.ok, 'boolean', r.stdout);
  assert.equal(typeof rep.applied, 'boolean', r.stdout);
  return rep;
}

/** The table a `schema.table[.object]` name is on, and the object part; null when it is on none of `tables`. */
function locate(tables: TableDescription[], name: string): { table: TableDescription; object: string | null } | null {
  for (const table of tables) {
    if (name === table.name) return { table, object: null };
    if (name.startsWith(`${table.name}.`)) return { table, object: name.slice(table.name.length + 1) };
  }
  return null;
}

/** Does this left-out entry name something in these descriptions? */
function touches(tables: TableDescription[], l: LeftOut): boolean {
  const hit = locate(tables, l.name);
  if (!hit) return false;
  if (hit.object === null) return true;
  const t = hit.table;
  return [...t.constraints, ...t.indexes, ...t.triggers, ...t.policies, ...t.columns].some((o) => o.name === hit.object);
}

/** The source's description as the target should have it: without what the report says is left out. */
function withoutLeftOut(tables: TableDescription[], leftOut: LeftOut[]): TableDescription[] {
  let out = structuredClone(tables);
  for (const l of leftOut) {
    const hit = locate(out, l.name);
    if (!hit) continue;
    const t = hit.table;
    const name = hit.object;
    if (name === null) {
      if (l.kind === 'table' || l.kind === 'partition') out = out.filter((x) => x !== t);
      else if (l.kind === 'rls') Object.assign(t, { rowSecurity: false, forceRowSecurity: false });
      else if (l.kind === 'comment') t.comment = null;
      continue;
    }
    if (l.kind === 'constraint' || l.kind === 'foreign-key') t.constraints = t.constraints.filter((c) => c.name !== name);
    else if (l.kind === 'index') t.indexes = t.indexes.filter((c) => c.name !== name);
    else if (l.kind === 'trigger') t.triggers = t.triggers.filter((c) => c.name !== name);
    else if (l.kind === 'policy') t.policies = t.policies.filter((c) => c.name !== name);
    else {
      // Something of a column: its comment, or its default (e.g. DEFAULT auth.uid() without auth).
      const col = t.columns.find((c) => c.name === name);
      if (col && l.kind === 'comment') col.comment = null;
      else if (col) col.default = null;
    }
  }
  return out;
}

/** Equal descriptions, compared table by table so that a failure names the table. */
function assertSameTables(actual: TableDescription[], expected: TableDescription[], what: string): void {
  assert.deepEqual(
    actual.map((t) => t.name),
    expected.map((t) => t.name),
    `${what}: the same tables and partitions`,
  );
  for (const [i, t] of expected.entries()) assert.deepEqual(actual[i], t, `${what}: ${t.name}`);
}

const describeApp = (c: Cluster, db = 'app') => c.withClient((k) => describeTables(k, SUPABASE_APP_TABLES), db);
const describePublicTypes = (c: Cluster, db = 'app') => c.withClient((k) => describeTypes(k, ['public']), db);
/** The app's collations as a user compares them: provider, locale (colliculocale up to 16, colllocale from 17), determinism, comment. */
const describeCollations = (c: Cluster) =>
  c.query(
    `SELECT collname, collprovider, collisdeterministic, COALESCE(to_jsonb(co)->>'colllocale', to_jsonb(co)->>'colliculocale') AS locale,
            obj_description(co.oid, 'pg_collation') AS comment
       FROM pg_collation co WHERE collnamespace = 'public'::regnamespace ORDER BY 1`,
  );

interface ViewDescription {
  name: string;
  kind: string;
  options: string[] | null;
  comment: string | null;
  columns: string[];
}
/**
 * The views of public (`schema.name`): columns with their types, options, comments. Not the query
 * as pg_get_viewdef() prints it: 16 and later print the same query without naming the table in
 * front of each column. What the views show is compared once the rows are there (after cutover).
 */
const describeViews = (c: Cluster): Promise<ViewDescription[]> =>
  c.query<ViewDescription>(
    `SELECT 'public.' || c.relname AS name, c.relkind::text AS kind, c.reloptions::text[] AS options,
            obj_description(c.oid, 'pg_class') AS comment,
            ARRAY(SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ': ' || coalesce(col_description(c.oid, a.attnum), '-')
                    FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 ORDER BY a.attnum) AS columns
       FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm') ORDER BY 1`,
  );
/** What a view shows, as sorted JSON rows. */
const viewRows = async (c: Cluster, view: string) => (await c.query<{ r: string }>(`SELECT to_jsonb(v)::text AS r FROM ${view} v`)).map((x) => x.r).sort();

/**
 * Everything a run could have written to a database, as lists of names: compared before and
 * after a run that must write nothing. Roles are the cluster's.
 */
async function fingerprint(c: Cluster, db = 'app'): Promise<Record<string, string[]>> {
  return c.withClient(async (k) => {
    const list = async (sql: string) => (await k.query<{ x: string }>(sql)).rows.map((r) => r.x);
    const userNs = `n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'`;
    return {
      schemas: await list(`SELECT n.nspname AS x FROM pg_namespace n WHERE ${userNs} ORDER BY 1`),
      roles: await list(`SELECT rolname AS x FROM pg_roles ORDER BY 1`),
      extensions: await list(`SELECT extname || ' in ' || extnamespace::regnamespace::text AS x FROM pg_extension ORDER BY 1`),
      relations: await list(
        `SELECT n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '') AS x
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${userNs} ORDER BY 1`,
      ),
      types: await list(`SELECT n.nspname || '.' || t.typname AS x FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${userNs} ORDER BY 1`),
      functions: await list(`SELECT p.oid::regprocedure::text AS x FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${userNs} ORDER BY 1`),
      triggers: await list(`SELECT tgrelid::regclass::text || '.' || tgname AS x FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`),
      policies: await list(`SELECT schemaname || '.' || tablename || '.' || policyname AS x FROM pg_policies ORDER BY 1`),
      eventTriggers: await list(`SELECT evtname AS x FROM pg_event_trigger ORDER BY 1`),
      publications: await list(`SELECT pubname AS x FROM pg_publication ORDER BY 1`),
      defaultAcl: await list(`SELECT defaclrole::regrole::text || ' ' || defaclacl::text AS x FROM pg_default_acl ORDER BY 1`),
      comments: await list(`SELECT classoid::regclass::text || ' ' || objoid || ' ' || objsubid || ' ' || description AS x FROM pg_description WHERE objoid >= 16384 ORDER BY 1`),
    };
  }, db);
}

/** `CREATE TABLE public.x` (quoted or not, IF NOT EXISTS or not, PARTITION OF or not). */
function createTableRe(table: string): RegExp {
  const [schema, name] = table.split('.') as [string, string];
  return new RegExp(`CREATE TABLE\\s+(IF NOT EXISTS\\s+)?"?${schema}"?\\."?${name}"?[\\s(]`, 'i');
}

/** The source's policies that need Supabase's API roles or its auth functions. */
function platformPolicies(tables: TableDescription[]): string[] {
  return tables.flatMap((t) =>
    t.policies
      .filter((p) => p.roles.some((r) => SUPABASE_API_ROLES.includes(r)) || /\bauth\./.test(`${p.using ?? ''} ${p.withCheck ?? ''}`))
      .map((p) => `${t.name}.${p.name}`),
  );
}

/** What a dry run reported; the real run does what it said (its left-out list is checked against the catalogs). */
let dryRun: Report | undefined;
/** The source's tables, described before walbridge touches the source (the cutover puts its fence there). */
let sourceTables: TableDescription[];
/** The target's tables and whole catalog after the first real run; unset if it failed. */
let targetTables: TableDescription[] | undefined;
let targetAfterRun: Record<string, string[]> | undefined;
/** Set once the migration cut over: the app's tests on the new database need it. */
let cutOver = false;

// ---------------------------------------------------------------------------------------------
// The main pair
// ---------------------------------------------------------------------------------------------

test('--dry-run prints the statements it would run and writes nothing', { timeout: 120_000 }, async () => {
  const before = await fingerprint(target);

  const text = await runCli(['schema', '--dry-run'], env(target.url()));
  assert.equal(text.code, 0, text.out);
  for (const t of APP_AND_PARTITIONS) assert.match(text.stdout, createTableRe(t), `a CREATE TABLE for ${t} in:\n${text.stdout}`);
  // The left-out list, with its reasons.
  assert.match(text.stdout, /profiles_id_fkey/);
  assert.match(text.stdout, /invoices_created_webhook/);

  const json = await runCli(['schema', '--dry-run', '--json'], env(target.url()));
  assert.equal(json.code, 0, json.out);
  const rep = reportOf(json);
  dryRun = rep;
  assert.equal(rep.ok, true, json.stdout);
  assert.equal(rep.applied, false, json.stdout);
  assert.deepEqual(rep.problems, []);
  for (const t of SUPABASE_APP_TABLES) assert.ok(rep.steps.some((s) => s.kind === 'table' && s.name === t), `a step {kind: table, name: ${t}}`);
  for (const t of SUPABASE_PARTITIONS) assert.ok(rep.steps.some((s) => (s.kind === 'partition' || s.kind === 'table') && s.name === t), `a step creating ${t}`);
  for (const t of APP_AND_PARTITIONS) {
    const creates = rep.steps.filter((s) => createTableRe(t).test(s.sql));
    assert.equal(creates.length, 1, `one step creates ${t}: ${JSON.stringify(creates)}`);
  }
  // The views, after every table, each after the views it reads.
  const viewSteps = rep.steps.map((s, i) => ({ ...s, i })).filter((s) => s.kind === 'view');
  assert.deepEqual(viewSteps.map((s) => s.name).sort(), [...SUPABASE_VIEWS].sort(), JSON.stringify(viewSteps));
  const lastTable = Math.max(...rep.steps.map((s, i) => (s.kind === 'table' || s.kind === 'partition' || s.kind === 'constraint' ? i : -1)));
  for (const v of viewSteps) assert.ok(v.i > lastTable, `view ${v.name} after the tables and their keys`);
  const stepOf = (name: string) => viewSteps.find((s) => s.name === name)?.i ?? -1;
  assert.ok(stepOf('public.team_directory') < stepOf('public.pinned_by_team'), 'public.pinned_by_team after the view it reads');
  // The materialized view, empty, then its unique index.
  const matview = rep.steps.findIndex((s) => s.kind === 'materialized-view' && s.name === SUPABASE_MATVIEW);
  assert.ok(matview > lastTable, JSON.stringify(rep.steps.map((s) => `${s.kind} ${s.name}`)));
  assert.match(rep.steps[matview]?.sql ?? '', /WITH NO DATA;$/);
  assert.equal(rep.steps[matview + 1]?.name, `${SUPABASE_MATVIEW}.invoice_totals_user_id_key`);

  // The text prints the same statements, in the order they run, each ending with ';'.
  let at = 0;
  for (const s of rep.steps) {
    const sql = s.sql.trim().replace(/;\s*$/, '');
    const i = text.stdout.indexOf(sql, at);
    assert.ok(i >= 0, `step ${s.kind} ${s.name} (${sql.slice(0, 80)}…) printed by the text dry run after position ${at}`);
    at = i + sql.length;
    assert.match(text.stdout.slice(at), /^\s*;/, `the statement of ${s.kind} ${s.name} ends with ';'`);
  }

  assert.deepEqual(await fingerprint(target), before, 'the dry runs wrote nothing to the target');
  assert.deepEqual((await target.query(`SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace`)).length, 0);
});

test('a real run: the tables as on the source, minus what depends on Supabase; none of the platform', { timeout: 120_000 }, async () => {
  const dry = dryRun;
  assert.ok(dry, 'the dry run (the previous test) passed: its report says what is left out');
  const r = await runCli(['schema'], env(target.url()));
  assert.equal(r.code, 0, r.out);
  // It prints what it created, the left-out list, and a summary last.
  for (const t of APP_AND_PARTITIONS) assert.ok(r.stdout.includes(t), `${t} among what it created:\n${r.stdout}`);
  assert.match(r.stdout, /profiles_id_fkey/);
  assert.match(r.stdout, /invoices_created_webhook/);
  const lastLine = r.stdout.trimEnd().split('\n').pop() ?? '';
  assert.match(lastLine, /\S/);
  assert.doesNotMatch(lastLine, /;\s*$/, 'the last line summarizes, it is not a statement');

  // Every app table, partition, column, default, constraint, index, trigger, policy, RLS flag
  // and comment equal, except what the report leaves out.
  const tables = await describeApp(target);
  assertSameTables(tables, withoutLeftOut(sourceTables, dry.leftOut), 'the target as the source, minus what is left out');
  assert.deepEqual(await describePublicTypes(target), await describePublicTypes(source), 'the enum, the domain (its CHECK on citext), the composite type and its comment');
  const collations = await describeCollations(source);
  assert.equal(collations.length, 1, 'the fixture has its own collation');
  assert.deepEqual(await describeCollations(target), collations, 'the case-insensitive collation as on the source, with its comment');
  assert.deepEqual(await target.query(`SELECT 'Alice''s team' = 'ALICE''S TEAM' COLLATE public.case_insensitive AS same`), [{ same: true }], 'it ignores case on the target too');
  // The views and the materialized view as on the source (columns, security_invoker, comments),
  // the materialized view empty with its unique index; the view over auth.users listed as left
  // out, with its reason.
  const made = [...SUPABASE_VIEWS, SUPABASE_MATVIEW];
  assert.deepEqual(await describeViews(target), (await describeViews(source)).filter((v) => made.includes(v.name)), 'the views as on the source');
  assert.ok((await describeViews(source)).some((v) => v.options?.includes('security_invoker=true') && v.comment !== null), 'the fixture has an option and a comment to compare');
  const matviewState = `SELECT c.relispopulated AS populated, pg_get_indexdef(i.indexrelid) AS index
                         FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid WHERE c.oid = '${SUPABASE_MATVIEW}'::regclass`;
  const [built] = await target.query<{ populated: boolean; index: string }>(matviewState);
  const [onSource] = await source.query<{ populated: boolean; index: string }>(matviewState);
  assert.deepEqual(built, { populated: false, index: onSource?.index }, 'the materialized view made empty, with its unique index');
  const viewOut = dry.leftOut.find((l) => l.name === SUPABASE_VIEW_LEFT_OUT);
  assert.equal(viewOut?.kind, 'view', JSON.stringify(dry.leftOut));
  assert.match(viewOut?.reason ?? '', /auth\.users/);

  // Left out on the app's tables: exactly the foreign key to auth.users and the webhook, each
  // with its reason; and the trigger on auth.users (the table is the platform's).
  const touching = dry.leftOut.filter((l) => touches(sourceTables, l)).map((l) => `${l.kind} ${l.name}`);
  assert.deepEqual(touching.sort(), [`foreign-key ${SUPABASE_PLATFORM_DEPENDENT.profilesAuthFk}`, `trigger ${SUPABASE_PLATFORM_DEPENDENT.webhookTrigger}`].sort());
  const fk = dry.leftOut.find((l) => l.name === SUPABASE_PLATFORM_DEPENDENT.profilesAuthFk);
  assert.match(fk?.reason ?? '', /auth\.users/);
  const hook = dry.leftOut.find((l) => l.name === SUPABASE_PLATFORM_DEPENDENT.webhookTrigger);
  assert.match(hook?.reason ?? '', /supabase_functions/);
  assert.ok(
    dry.leftOut.some((l) => l.kind === 'trigger' && l.name === SUPABASE_PLATFORM_DEPENDENT.authUserTrigger),
    `${SUPABASE_PLATFORM_DEPENDENT.authUserTrigger} is left out: ${JSON.stringify(dry.leftOut)}`,
  );
  for (const l of dry.leftOut) assert.ok(l.reason.length > 0 && l.choice.length > 0, `reason and choice of ${l.kind} ${l.name}`);

  await target.withClient(async (c) => {
    const one = async <T>(sql: string, params: unknown[] = []) => (await c.query(sql, params)).rows as T[];
    assert.deepEqual(await one(`SELECT to_regprocedure('public.handle_new_user()') AS f`), [{ f: null }], 'handle_new_user() is not needed without its trigger');

    // Nothing of Supabase's platform.
    assert.deepEqual(await one(`SELECT pubname FROM pg_publication`), [], 'no publication');
    assert.deepEqual(await one(`SELECT evtname FROM pg_event_trigger`), [], 'no event trigger');
    assert.deepEqual(await one(`SELECT nspname FROM pg_namespace WHERE nspname = ANY($1)`, [PLATFORM_SCHEMAS]), [], 'no platform schema');
    assert.deepEqual(await one(`SELECT rolname FROM pg_roles WHERE rolname = ANY($1)`, [SUPABASE_PLATFORM_ROLES]), [], 'no platform role');
    assert.deepEqual(await one(`SELECT defaclrole::regrole::text AS role, defaclacl::text AS acl FROM pg_default_acl`), [], 'no default privileges');
    assert.deepEqual(
      await one(
        `SELECT table_schema || '.' || table_name AS t, grantee, privilege_type FROM information_schema.role_table_grants WHERE grantee = ANY($1)`,
        [SUPABASE_API_ROLES],
      ),
      [],
      'no grants to the API roles on the tables',
    );
    for (const role of SUPABASE_API_ROLES) {
      for (const t of APP_AND_PARTITIONS) {
        const [p] = await one<{ any: boolean }>(`SELECT has_table_privilege($1, $2, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS any`, [role, t]);
        assert.equal(p?.any, false, `${role} has no privilege on ${t}`);
      }
    }
    assert.deepEqual(
      await one(
        `SELECT c.oid::regclass::text AS rel FROM pg_class c
          WHERE c.relnamespace = 'public'::regnamespace
            AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee WHERE r.rolname = ANY($1))
         UNION ALL
         SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.pronamespace IN ('public'::regnamespace, to_regnamespace('auth'))
            AND EXISTS (SELECT 1 FROM aclexplode(p.proacl) a JOIN pg_roles r ON r.oid = a.grantee WHERE r.rolname = ANY($1))`,
        [SUPABASE_API_ROLES],
      ),
      [],
      'no grant to the API roles on sequences or functions either',
    );

    // --policies keep (the default): the roles the policies name, NOLOGIN; auth with the
    // functions the app calls (uid in policies and a default, jwt in a policy), as GoTrue
    // defines them, and no table; the extensions in `extensions`.
    assert.deepEqual(
      await one(`SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1`, [SUPABASE_API_ROLES]),
      SUPABASE_API_ROLES.map((rolname) => ({ rolname, rolcanlogin: false, rolsuper: false })).sort((a, b) => a.rolname.localeCompare(b.rolname)),
    );
    assert.deepEqual(await one(`SELECT proname FROM pg_proc WHERE pronamespace = 'auth'::regnamespace ORDER BY 1`), [{ proname: 'jwt' }, { proname: 'uid' }]);
    assert.deepEqual(await one(`SELECT relname FROM pg_class WHERE relnamespace = 'auth'::regnamespace`), [], 'no table (nor anything else) in auth');
    assert.deepEqual(
      await one(`SELECT extname, extnamespace::regnamespace::text AS schema FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1`),
      [
        { extname: 'citext', schema: 'extensions' },
        { extname: 'pgcrypto', schema: 'extensions' },
        { extname: 'uuid-ossp', schema: 'extensions' },
      ],
    );
  });
  const authFunctions = (c: Cluster) =>
    c.query(
      `SELECT proname, prosrc, provolatile, proconfig, prorettype::regtype::text AS returns, prosecdef, l.lanname
         FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE pronamespace = 'auth'::regnamespace AND proname IN ('uid', 'jwt') ORDER BY 1`,
    );
  assert.deepEqual(await authFunctions(target), await authFunctions(source), "auth.uid() and auth.jwt() as GoTrue's");
  targetTables = tables;
  targetAfterRun = await fingerprint(target);
});

test('a second run has nothing to do and changes nothing', { timeout: 60_000 }, async () => {
  assert.ok(targetTables && targetAfterRun, 'the real run (the previous test) passed');
  const r = await runCli(['schema', '--json'], env(target.url()));
  assert.equal(r.code, 0, r.out);
  const rep = reportOf(r);
  assert.equal(rep.ok, true, r.stdout);
  assert.deepEqual(rep.steps, []);
  assert.deepEqual(rep.problems, []);
  for (const t of [...APP_AND_PARTITIONS, ...SUPABASE_VIEWS, SUPABASE_MATVIEW]) assert.ok(rep.present.some((p) => p.name === t), `${t} reported present: ${JSON.stringify(rep.present)}`);
  assertSameTables(await describeApp(target), targetTables, 'the target as after the first run');
  assert.deepEqual(await fingerprint(target), targetAfterRun);
});

// ---------------------------------------------------------------------------------------------
// Fresh targets on the spare cluster (the source stays as built: the migration comes last)
// ---------------------------------------------------------------------------------------------

test('--policies drop: no policy that needs the API roles or auth, no role, no auth schema; each is listed as left out', { timeout: 120_000 }, async () => {
  const r = await runCli(['schema', '--json', '--policies', 'drop'], env(spare.url()));
  assert.equal(r.code, 0, r.out);
  const rep = reportOf(r);
  assert.equal(rep.ok, true, r.stdout);
  assert.equal(rep.applied, true, r.stdout);

  const needing = platformPolicies(sourceTables);
  assert.equal(needing.length, 6, `the fixture's policies that need the platform: ${needing.join(', ')}`);
  for (const p of needing) assert.ok(rep.leftOut.some((l) => l.kind === 'policy' && l.name === p), `policy ${p} left out: ${JSON.stringify(rep.leftOut)}`);
  // DEFAULT auth.uid() cannot stay without auth: the column is listed as left out, its default gone.
  assert.ok(rep.leftOut.some((l) => l.name === 'public.notes.user_id'), `the default auth.uid() of public.notes.user_id left out: ${JSON.stringify(rep.leftOut)}`);

  const tables = await describeApp(spare);
  assert.deepEqual(platformPolicies(tables), [], 'no policy naming the API roles or calling auth.*');
  assertSameTables(tables, withoutLeftOut(sourceTables, rep.leftOut), 'everything else as on the source');
  assert.deepEqual(await spare.query(`SELECT rolname FROM pg_roles WHERE rolname = ANY($1)`, [[...SUPABASE_API_ROLES, ...SUPABASE_PLATFORM_ROLES]]), [], 'no role created');
  assert.deepEqual(await spare.query(`SELECT nspname FROM pg_namespace WHERE nspname = ANY($1)`, [['auth', ...PLATFORM_SCHEMAS]]), [], 'no auth schema');
  // The view calling auth.uid() is left out too; the others are made.
  const myNotes = rep.leftOut.find((l) => l.name === 'public.my_notes');
  assert.match(myNotes?.reason ?? '', /auth\.uid\(\)/, JSON.stringify(rep.leftOut));
  assert.deepEqual(
    (await describeViews(spare)).map((v) => v.name),
    [...SUPABASE_VIEWS.filter((v) => v !== 'public.my_notes'), SUPABASE_MATVIEW].sort(),
  );
});

test('a schema of views only, selected with the tables\' schema: its schema and views are made, and nothing in it is copied', { timeout: 60_000 }, async () => {
  await spare.query('CREATE DATABASE with_api', [], 'postgres');
  const r = await runCli(['schema', '--json'], env(spare.url('with_api'), { WALBRIDGE_SCHEMAS: 'public,api' }));
  assert.equal(r.code, 0, r.out);
  const rep = reportOf(r);
  const steps = rep.steps.map((s) => `${s.kind} ${s.name}`);
  assert.ok(steps.includes('schema api') && steps.indexOf('schema api') < steps.indexOf('view api.products'), steps.join(', '));
  assert.deepEqual(
    (await spare.query<{ name: string }>(`SELECT relname AS name FROM pg_class WHERE relnamespace = 'api'::regnamespace ORDER BY 1`, [], 'with_api')).map((x) => x.name),
    ['products'],
  );
  // The selection is the tables of public; api adds none (preflight and the daemon copy tables only).
  const p = await runCli(['preflight', '--json', '--sample-seconds', '1'], env(spare.url('with_api'), { WALBRIDGE_SCHEMAS: 'public,api' }));
  const report = JSON.parse(p.stdout) as { tables: { table: string }[]; checks: { id: string; status: string; message: string }[] };
  assert.deepEqual(report.tables.map((t) => t.table).sort(), [...SUPABASE_APP_TABLES].sort(), p.out);
  const schemaCheck = report.checks.find((c) => c.id === 'target-schema');
  assert.equal(schemaCheck?.status, 'pass', JSON.stringify(schemaCheck));
});

test('a table on the target with a column of another type: exit 1, the problem names both, nothing is written', { timeout: 60_000 }, async () => {
  await spare.query('CREATE DATABASE differs', [], 'postgres');
  // public.products as the app has it, but sku an integer.
  await spare.query(
    `CREATE TABLE public.products (
       id serial PRIMARY KEY, sku integer NOT NULL UNIQUE, name text NOT NULL,
       price_cents integer NOT NULL CHECK (price_cents >= 0), active boolean NOT NULL DEFAULT true,
       created_at timestamptz NOT NULL DEFAULT now())`,
    [],
    'differs',
  );
  const before = await fingerprint(spare, 'differs');
  const r = await runCli(['schema', '--json'], env(spare.url('differs')));
  assert.equal(r.code, 1, r.out);
  const rep = reportOf(r);
  assert.equal(rep.ok, false, r.stdout);
  assert.equal(rep.applied, false, r.stdout);
  assert.ok(
    rep.problems.some((p) => p.message.includes('public.products') && /\bsku\b/.test(p.message)),
    `a problem naming public.products and sku: ${JSON.stringify(rep.problems)}`,
  );
  assert.deepEqual(await fingerprint(spare, 'differs'), before, 'nothing half-written: no other table, type, schema, role, extension');
});

test('a table whose default needs an extension the target lacks: exit 1, the problem names it and the choices, nothing is written', { timeout: 60_000 }, async () => {
  // PostgreSQL 15's binaries ship adminpack, 17's do not (it was removed in 17). Its functions
  // live in pg_catalog and all have side effects, so the only way a table can depend on it is an
  // odd default: pg_file_sync() returns void, and "IS NULL" makes it a boolean. It is never
  // evaluated (no row is inserted without the column); what counts is the dependency
  // default → pg_file_sync → extension adminpack, which the target cannot satisfy.
  await source.query(`CREATE DATABASE noext_src OWNER ${SUPABASE_MIG.user}`, [], 'postgres');
  await source.query('CREATE EXTENSION adminpack', [], 'noext_src');
  const c = new pg.Client({ connectionString: source.url('noext_src', mig) });
  c.on('error', () => undefined);
  await c.connect();
  try {
    await c.query(`CREATE TABLE public.file_jobs (
                     id integer PRIMARY KEY, path text NOT NULL,
                     synced boolean NOT NULL DEFAULT (pg_catalog.pg_file_sync('walbridge-never-called') IS NULL))`);
    await c.query('CREATE TABLE public.plain_notes (id integer PRIMARY KEY, body text)');
  } finally {
    await c.end();
  }
  await spare.query('CREATE DATABASE noext', [], 'postgres');
  const before = await fingerprint(spare, 'noext');
  const noextEnv = { SOURCE_DATABASE_URL: source.url('noext_src', mig), TARGET_DATABASE_URL: spare.url('noext') };

  const text = await runCli(['schema'], noextEnv);
  assert.equal(text.code, 1, text.out);
  assert.match(text.out, /adminpack/);
  assert.match(text.out, /file_jobs/);
  assert.match(text.out, /exclud/i, 'the choice of excluding the table');

  const json = await runCli(['schema', '--json'], noextEnv);
  assert.equal(json.code, 1, json.out);
  const rep = reportOf(json);
  assert.equal(rep.ok, false);
  assert.equal(rep.applied, false);
  const problem = rep.problems.find((p) => `${p.message} ${p.fix}`.includes('adminpack'));
  assert.ok(problem, `a problem naming adminpack: ${JSON.stringify(rep.problems)}`);
  assert.match(`${problem.message} ${problem.fix}`, /file_jobs/);
  assert.match(`${problem.message} ${problem.fix}`, /exclud/i);

  assert.deepEqual(await fingerprint(spare, 'noext'), before, 'nothing written, not even public.plain_notes');
});

// ---------------------------------------------------------------------------------------------
// The migration over the schema it created, and the app on the new database
// ---------------------------------------------------------------------------------------------

test('walbridge migrates into the schema it created and cuts over', { timeout: 240_000 }, async () => {
  assert.ok(targetTables, 'the real run created the schema (an earlier test)');
  const migrateEnv = { SOURCE_DATABASE_URL: source.url('app', mig), TARGET_DATABASE_URL: target.url() };
  const d = await startDaemon(migrateEnv);
  daemons.push(d);
  await waitForPhase(target, 'streaming', { daemon: d });

  // The app goes on meanwhile: someone signs up (GoTrue inserts, on_auth_user_created makes the
  // profile), writes a note, gets an invoice (its webhook fires on the source).
  const dave = { id: 'da7e0000-0000-4000-8000-00000000000d', email: 'dave@example.com', username: 'dave', fullName: 'Dave Lister' };
  await signUp(source, dave);
  const c = new pg.Client({ connectionString: source.url('app', mig) });
  c.on('error', () => undefined);
  await c.connect();
  try {
    await c.query(`INSERT INTO public.notes (user_id, title) VALUES ($1, 'written while streaming')`, [dave.id]);
    await c.query(`INSERT INTO public.invoices (user_id, net, total_due) VALUES ($1, 19.99, ROW(23.99, 'EUR'))`, [dave.id]);
    await c.query(`INSERT INTO public.events (occurred_on, user_id, kind) VALUES ('2026-06-01', $1, 'signup')`, [dave.id]);
  } finally {
    await c.end();
  }
  await waitForCatchUp(source, target);

  const v = await runCli(['verify'], migrateEnv);
  assert.equal(v.code, 0, v.out);
  const cut = await runCli(['cutover', '--timeout', '60'], migrateEnv);
  assert.equal(cut.code, 0, cut.out);
  assert.match(cut.out, /filling 1 materialized view\(s\) on the target/);
  assert.equal((await d.exited).code, 0, d.output.slice(-20).join('\n'));
  await assertSameContent(source.url(), target.url(), SUPABASE_APP_TABLES);
  // The views show the same rows on both sides (my_notes depends on who asks: the next test).
  for (const view of ['public.team_directory', 'public.pinned_by_team']) assert.deepEqual(await viewRows(target, view), await viewRows(source, view), view);
  assert.ok((await viewRows(target, 'public.pinned_by_team')).length > 0, 'pinned_by_team shows rows');
  // The materialized view, filled by cutover: what its query gives on the source now (the
  // source's own was last refreshed before the app's invoices, dave's included).
  const totals = `SELECT to_jsonb(t)::text AS r FROM (SELECT user_id, count(*) AS invoices, sum(gross) AS gross FROM public.invoices GROUP BY user_id) t`;
  const expected = (await source.query<{ r: string }>(totals)).map((x) => x.r).sort();
  assert.ok(expected.some((r) => r.includes(dave.id)), 'dave\'s invoice, written while streaming, is counted');
  assert.deepEqual(await viewRows(target, SUPABASE_MATVIEW), expected, `${SUPABASE_MATVIEW} filled at cutover`);
  cutOver = true;
});

test('on the new database, a query under RLS as PostgREST makes it sees only the user\'s rows', { timeout: 60_000 }, async () => {
  assert.ok(cutOver, 'the migration (the previous test) cut over');
  const [counts] = await source.query<{ mine: number; total: number }>(
    `SELECT count(*) FILTER (WHERE user_id = $1)::int AS mine, count(*)::int AS total FROM public.notes`,
    [alice],
  );
  assert.ok(counts && counts.mine > 0 && counts.mine < counts.total, JSON.stringify(counts));
  await target.withClient(async (c) => {
    // Grants are not carried over (on Supabase the platform's default privileges gave them):
    // serving the API from the new database, the user grants what PostgREST's roles need.
    await c.query('GRANT SELECT, INSERT ON public.notes TO authenticated');
    await c.query('GRANT SELECT ON public.my_notes TO authenticated');
    await c.query('BEGIN');
    try {
      // What PostgREST does for a request with alice's JWT.
      await c.query('SET LOCAL ROLE authenticated');
      await c.query(`SELECT set_config('request.jwt.claims', json_build_object('sub', $1::text, 'role', 'authenticated')::text, true)`, [alice]);
      const { rows } = await c.query<{ user_id: string }>('SELECT user_id::text FROM public.notes');
      assert.equal(rows.length, counts.mine, 'exactly alice\'s notes, as many as on the source');
      assert.ok(rows.every((r) => r.user_id === alice));
      // The view over her notes (auth.uid() in its WHERE) shows the same ones.
      const mine = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM public.my_notes');
      assert.equal(mine.rows[0]?.n, counts.mine, 'public.my_notes shows alice\'s notes');
      // Her insert takes user_id from DEFAULT auth.uid(); one for bob is refused by the policy.
      const ins = await c.query<{ user_id: string }>(`INSERT INTO public.notes (title) VALUES ('through the API') RETURNING user_id::text`);
      assert.equal(ins.rows[0]?.user_id, alice);
      await c.query('SAVEPOINT s');
      await assert.rejects(c.query(`INSERT INTO public.notes (user_id, title) VALUES ($1, 'not mine')`, [bob]), (err: pg.DatabaseError) => {
        assert.equal(err.code, '42501', err.message);
        return true;
      });
    } finally {
      await c.query('ROLLBACK');
    }
  });
});

test("on the new database, the app's inserts and updates get their defaults, identities, sequences and triggers", { timeout: 60_000 }, async () => {
  assert.ok(cutOver, 'the migration (an earlier test) cut over');
  const max = async (sql: string) => BigInt((await source.query<{ m: string }>(sql))[0]?.m ?? '0');
  const [notesMax, invoiceIdMax, invoiceNoMax, eventsMax, productsMax] = await Promise.all([
    max('SELECT max(id)::text AS m FROM public.notes'),
    max('SELECT max(id)::text AS m FROM public.invoices'),
    max('SELECT max(number)::text AS m FROM public.invoices'),
    max('SELECT max(id)::text AS m FROM public.events'),
    max('SELECT max(id)::text AS m FROM public.products'),
  ]);

  const [team] = await target.query<{ id: string; api_key: string }>(
    `INSERT INTO public.teams (slug, name, owner_id) VALUES ('New_Team', 'New team', $1) RETURNING id::text, api_key`,
    [bob],
  );
  assert.match(team?.id ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'extensions.uuid_generate_v4()');
  assert.match(team?.api_key ?? '', /^[0-9a-f]{16}$/, "encode(extensions.gen_random_bytes(8), 'hex')");

  const [note] = await target.query<{ id: string }>(`INSERT INTO public.notes (user_id, title) VALUES ($1, 'first note on the new database') RETURNING id::text`, [bob]);
  assert.ok(BigInt(note?.id ?? '0') > notesMax, 'GENERATED ALWAYS AS IDENTITY goes on after the copied rows');

  const [inv] = await target.query<{ id: string; number: string; gross: string }>(
    `INSERT INTO public.invoices (user_id, net) VALUES ($1, 10.00) RETURNING id::text, number::text, gross::text`,
    [bob],
  );
  assert.ok(BigInt(inv?.id ?? '0') > invoiceIdMax, 'the bigserial goes on after the copied rows');
  assert.ok(BigInt(inv?.number ?? '0') > invoiceNoMax && BigInt(inv?.number ?? '0') >= 1000n, `nextval('public.invoice_no') goes on: ${inv?.number}`);
  assert.equal(inv?.gross, '12.00', 'the STORED generated column is computed');

  const [ev] = await target.query<{ id: string; part: string }>(
    `INSERT INTO public.events (occurred_on, user_id, kind) VALUES ('2026-03-01', $1, 'login') RETURNING id::text, tableoid::regclass::text AS part`,
    [bob],
  );
  assert.ok(BigInt(ev?.id ?? '0') > eventsMax);
  assert.match(ev?.part ?? '', /events_2026$/);

  const [prod] = await target.query<{ id: string }>(`INSERT INTO public.products (sku, name, price_cents) VALUES ('SKU-NEW', 'Mug', 900) RETURNING id::text`);
  assert.ok(BigInt(prod?.id ?? '0') > productsMax, 'the serial goes on after the copied rows');

  // set_updated_at() fires on a plain UPDATE (the seeded notes carry 2025 timestamps).
  const [upd] = await target.query<{ fresh: boolean }>(
    `UPDATE public.notes SET title = title || ' (edited)' WHERE id = (SELECT min(id) FROM public.notes) RETURNING updated_at = now() AS fresh`,
  );
  assert.equal(upd?.fresh, true, 'the BEFORE UPDATE trigger set updated_at');
  const [prof] = await target.query<{ fresh: boolean }>(`UPDATE public.profiles SET full_name = 'Alice L.' WHERE id = $1 RETURNING updated_at = now() AS fresh`, [alice]);
  assert.equal(prof?.fresh, true);
});

// ---------------------------------------------------------------------------------------------
// A source of PostgreSQL 18
// ---------------------------------------------------------------------------------------------

test('a source of PostgreSQL 18 (NOT NULL recorded as constraints, virtual generated columns): the same tables on the target', { timeout: 120_000 }, async () => {
  // 18 records every NOT NULL as a constraint of its own and adds virtual generated columns; the
  // statements walbridge schema makes from them must still give the source's catalogs.
  const pair = await startPair({ sourceMajor: 18, targetMajor: 18, namePrefix: 'schema18' });
  clusters.push(pair.source, pair.target);
  const login = await createSupabaseSource(pair.source);
  await pair.source.query(`SET ROLE ${login.user}; CREATE TABLE public.shapes (id int PRIMARY KEY, w int NOT NULL, h int NOT NULL, area int GENERATED ALWAYS AS (w * h) VIRTUAL, CONSTRAINT positive CHECK (w > 0))`);
  const tables = [...SUPABASE_APP_TABLES, 'public.shapes'];
  const r = await runCli(['schema', '--json'], { SOURCE_DATABASE_URL: pair.source.url('app', login), TARGET_DATABASE_URL: pair.target.url() });
  assert.equal(r.code, 0, r.out);
  const rep = reportOf(r);
  assert.equal(rep.applied, true);
  const [src, tgt] = await Promise.all([pair.source, pair.target].map((c) => c.withClient((k) => describeTables(k, tables))));
  assertSameTables(tgt ?? [], withoutLeftOut(src ?? [], rep.leftOut), 'source 18 → target 18');
  const [srcTypes, tgtTypes] = await Promise.all([describePublicTypes(pair.source), describePublicTypes(pair.target)]);
  assert.deepEqual(tgtTypes, srcTypes);
  // The views too; on the same major, their queries print the same text on both sides.
  const made = [...SUPABASE_VIEWS, SUPABASE_MATVIEW];
  assert.deepEqual(await describeViews(pair.target), (await describeViews(pair.source)).filter((v) => made.includes(v.name)));
  const queries = async (c: Cluster) =>
    (await c.query<{ name: string; query: string }>(`SELECT 'public.' || relname AS name, pg_get_viewdef(oid) AS query FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('v', 'm') ORDER BY 1`)).filter((v) => made.includes(v.name));
  assert.deepEqual(await queries(pair.target), await queries(pair.source));
  await pair.target.query(`INSERT INTO public.shapes (id, w, h) VALUES (1, 3, 4)`);
  assert.deepEqual(await pair.target.query(`SELECT area FROM public.shapes`), [{ area: 12 }], 'the virtual column computes on the target');
});
