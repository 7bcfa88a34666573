/**
 * `walbridge preflight`: one situation per check, each failing (or warning) with its message
 * and its fix; and `walbridge teardown`, which leaves nothing behind and can run twice.
 */
import assert from 'node:assert/strict';
import pg from 'pg';
import { after, before, describe, test } from 'node:test';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { startProxy } from '../harness/proxy.js';
import { runCli, startDaemon } from '../helpers/daemon.js';
import { pipelineRow, sourceObjects, waitForPhase } from '../helpers/state.js';

interface Check {
  id: string;
  status: 'pass' | 'warn' | 'fail';
  message: string;
  fix?: string;
}
interface Report {
  ok: boolean;
  checks: Check[];
  tables: { table: string; estimatedRows: number; bytes: number; expectedCopySeconds: number }[];
}

let source: Cluster;
let target: Cluster;
/** Few slots and WAL senders, and a tiny max_slot_wal_keep_size. */
let small: Cluster;
/** wal_level = replica. */
let physical: Cluster;

const SCHEMA = `
CREATE TABLE public.users (id bigint PRIMARY KEY, email text, name text);
CREATE TABLE public.orders (id bigint PRIMARY KEY, user_id bigint, total numeric(20,6), note text,
                            total_x2 numeric GENERATED ALWAYS AS (total * 2) STORED);
`;

before(async () => {
  [source, target, small, physical] = await Promise.all([
    startCluster({ major: 15, name: 'source' }),
    startCluster({ major: 17, name: 'target' }),
    startCluster({ major: 15, name: 'small', settings: { max_replication_slots: '2', max_wal_senders: '2', max_slot_wal_keep_size: '1MB' } }),
    startCluster({ major: 15, name: 'physical', logical: false }),
  ]);
  for (const c of [source, target, small, physical]) await c.query(SCHEMA);
  await source.query(`INSERT INTO public.users SELECT g, 'u' || g || '@x.io', 'user ' || g FROM generate_series(1, 5000) g`);
  await source.query('ANALYZE');
});

after(async () => {
  await Promise.all([source, target, small, physical].map((c) => c?.destroy()));
});

async function preflight(env: Record<string, string> = {}, urls: { source?: string; target?: string } = {}) {
  const r = await runCli(['preflight', '--json', '--sample-seconds', '1'], {
    SOURCE_DATABASE_URL: urls.source ?? source.url(),
    TARGET_DATABASE_URL: urls.target ?? target.url(),
    ...env,
  });
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    throw new Error(`preflight printed no JSON (exit ${r.code}):\n${r.out}`);
  }
  const check = (id: string): Check => {
    const c = report.checks.find((x) => x.id === id);
    assert.ok(c, `no check ${id} in ${report.checks.map((x) => x.id).join(', ')}`);
    return c;
  };
  return { code: r.code, report, check };
}

function assertFails(c: Check, message: RegExp, fix?: RegExp): void {
  assert.equal(c.status, 'fail', `${c.id}: ${c.message}`);
  assert.match(c.message, message);
  if (fix) assert.match(c.fix ?? '', fix);
}

describe('preflight', () => {
  test('a ready pair: nothing fails, exit 0, and the text report lists every check and the tables', async () => {
    const { code, report } = await preflight();
    assert.equal(code, 0, JSON.stringify(report.checks.filter((c) => c.status === 'fail')));
    assert.equal(report.ok, true);
    for (const id of ['replication-connection', 'source-version', 'wal-level', 'replication-role', 'replication-slots', 'wal-senders', 'slot-name', 'wal-retention', 'target-role', 'distinct-databases', 'tables-selected', 'replica-identity', 'publication-privilege', 'fence', 'target-tables', 'target-schema', 'extensions', 'target-empty', 'copy-estimate']) {
      assert.ok(report.checks.some((c) => c.id === id), `check ${id} reported`);
    }
    // The same DDL on both sides: walbridge schema would make nothing.
    const schema = report.checks.find((c) => c.id === 'target-schema');
    assert.equal(schema?.status, 'pass', schema?.message);
    const users = report.tables.find((t) => t.table === 'public.users');
    assert.equal(users?.estimatedRows, 5000);
    assert.ok((users?.bytes ?? 0) > 0 && (users?.expectedCopySeconds ?? -1) >= 0);
    const text = await runCli(['preflight'], { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url() });
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^PASS {2}wal-level/m);
    assert.match(text.stdout, /public\.users\s+5000 rows/);
    assert.match(text.stdout, /result: ready to migrate/);
  });

  test('replication-connection: a pooler that does not carry replication', async () => {
    const pooler = await startProxy(source.port, { poolerLike: true });
    try {
      const url = new URL(source.url());
      url.port = String(pooler.port);
      const { code, check } = await preflight({}, { source: url.toString() });
      assert.equal(code, 1);
      assertFails(check('replication-connection'), /connection pooler/, /direct connection/);
    } finally {
      await pooler.close();
    }
  });

  test('wal-level: a source without logical decoding', async () => {
    const { check } = await preflight({}, { source: physical.url() });
    assertFails(check('wal-level'), /wal_level = replica/, /ALTER SYSTEM SET wal_level = logical/);
  });

  test('replication-role and publication-privilege: a role without REPLICATION that owns nothing', async () => {
    await source.query(`CREATE ROLE app_user LOGIN PASSWORD 'app-pw-1'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_user`);
    try {
      const { check } = await preflight({}, { source: source.url('app', { user: 'app_user', password: 'app-pw-1' }) });
      assertFails(check('replication-role'), /role app_user has neither REPLICATION nor superuser/, /ALTER ROLE app_user WITH REPLICATION/);
      assertFails(check('publication-privilege'), /does not own public\.orders \(owner postgres\)/, /GRANT postgres TO app_user/);
      const fence = check('fence');
      assert.equal(fence.status, 'warn', 'the migration can run; cutover could not fence these tables');
      assert.match(fence.message, /cutover cannot fence .*public\.orders \(owner postgres\).*role app_user may not create a trigger on them/);
      assert.match(fence.fix ?? '', /GRANT TRIGGER ON .*public\.orders.* TO app_user.*--no-fence/);
    } finally {
      await source.query('DROP OWNED BY app_user; DROP ROLE app_user');
    }
  });

  test('replication-slots: one free is a warning, none free is a failure', async () => {
    await small.query(`SELECT pg_create_logical_replication_slot('other_tool', 'pgoutput')`);
    try {
      const one = await preflight({}, { source: small.url() });
      assert.equal(one.check('replication-slots').status, 'warn');
      assert.match(one.check('replication-slots').message, /only one replication slot free/);
      await small.query(`SELECT pg_create_logical_replication_slot('realtime', 'pgoutput')`);
      const none = await preflight({}, { source: small.url() });
      assertFails(none.check('replication-slots'), /no replication slot free \(2 of 2 in use\)/, /Realtime may hold one/);
    } finally {
      await small.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots`);
    }
  });

  test('wal-senders: all WAL senders taken by other clients', async () => {
    const held: pg.Client[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = new pg.Client({ connectionString: small.url(), replication: 'database' } as pg.ClientConfig);
        c.on('error', () => {});
        await c.connect();
        held.push(c);
      }
      const { check } = await preflight({}, { source: small.url() });
      assertFails(check('wal-senders'), /0 of 2 WAL senders free/, /max_wal_senders/);
    } finally {
      for (const c of held) await c.end().catch(() => {});
    }
  });

  test('slot-name: a slot or a publication of that name that walbridge did not create', async () => {
    await source.query(`SELECT pg_create_logical_replication_slot('walbridge', 'pgoutput')`);
    try {
      assertFails((await preflight()).check('slot-name'), /a replication slot named "walbridge" already exists/, /WALBRIDGE_SLOT/);
    } finally {
      await source.query(`SELECT pg_drop_replication_slot('walbridge')`);
    }
    await source.query(`CREATE PUBLICATION walbridge FOR TABLE public.users`);
    try {
      assertFails((await preflight()).check('slot-name'), /a publication named "walbridge" already exists/, /WALBRIDGE_PUBLICATION/);
    } finally {
      await source.query(`DROP PUBLICATION walbridge`);
    }
  });

  test('wal-retention: a busy source with little room for the slot is a warning with the numbers', async () => {
    await small.query(`CREATE TABLE IF NOT EXISTS churn (x text)`);
    let writing = true;
    const writer = (async () => {
      while (writing) await small.query(`INSERT INTO churn SELECT repeat('x', 500) FROM generate_series(1, 2000)`);
    })();
    try {
      const { check } = await preflight({}, { source: small.url() });
      const c = check('wal-retention');
      assert.equal(c.status, 'warn', c.message);
      assert.match(c.message, /max_slot_wal_keep_size = 1 MB and the source writes [\d.]+ MB of WAL per minute/);
      assert.match(c.message, /the slot survives (less than a minute|about \d+ minutes?) before the source invalidates it/);
    } finally {
      writing = false;
      await writer;
    }
    const unlimited = await preflight();
    assert.equal(unlimited.check('wal-retention').status, 'warn');
    assert.match(unlimited.check('wal-retention').message, /unlimited/);
  });

  test('target-role: a target role that cannot disable triggers', async () => {
    await target.query(`CREATE ROLE plain LOGIN PASSWORD 'plain-pw-2'; GRANT ALL ON ALL TABLES IN SCHEMA public TO plain`);
    try {
      const { check } = await preflight({}, { target: target.url('app', { user: 'plain', password: 'plain-pw-2' }) });
      assertFails(check('target-role'), /may not SET session_replication_role/, /superuser/);
    } finally {
      await target.query('DROP OWNED BY plain; DROP ROLE plain');
    }
  });

  test('distinct-databases: the same database behind another address', async () => {
    const proxy = await startProxy(source.port);
    try {
      const url = new URL(source.url());
      url.port = String(proxy.port);
      const { check } = await preflight({}, { target: url.toString() });
      assertFails(check('distinct-databases'), /reach the same database/, /TARGET_DATABASE_URL/);
    } finally {
      await proxy.close();
    }
  });

  test('tables-selected: an unknown schema, and a filter that matches nothing', async () => {
    assertFails((await preflight({ WALBRIDGE_SCHEMAS: 'public,nope' })).check('tables-selected'), /schema "nope" does not exist on the source/, /WALBRIDGE_SCHEMAS/);
    assertFails((await preflight({ WALBRIDGE_TABLES: 'public.user' })).check('tables-selected'), /WALBRIDGE_TABLES: public\.user/, /case-sensitive/);
  });

  test('replica-identity: a table with neither a key nor a replica identity', async () => {
    await source.query('CREATE TABLE public.events (at timestamptz, what text)');
    await target.query('CREATE TABLE public.events (at timestamptz, what text)');
    try {
      assertFails((await preflight()).check('replica-identity'), /public\.events/, /REPLICA IDENTITY FULL/);
    } finally {
      await source.query('DROP TABLE public.events');
      await target.query('DROP TABLE public.events');
    }
  });

  test('target-tables: a type that differs, a generated column that is plain, and a nullability remark', async () => {
    await target.query(`ALTER TABLE public.users ALTER COLUMN email TYPE bytea USING NULL`);
    await target.query(`ALTER TABLE public.orders DROP COLUMN total_x2, ADD COLUMN total_x2 numeric`);
    try {
      const c = (await preflight()).check('target-tables');
      assertFails(c, /column public\.users\.email is text on the source but bytea on the target/);
      assert.match(c.message, /column public\.orders\.total_x2 is generated on the source but a plain column on the target/);
    } finally {
      await target.query(`ALTER TABLE public.users ALTER COLUMN email TYPE text USING NULL`);
      await target.query(`ALTER TABLE public.orders DROP COLUMN total_x2, ADD COLUMN total_x2 numeric GENERATED ALWAYS AS (total * 2) STORED`);
    }
    await target.query(`ALTER TABLE public.orders ALTER COLUMN note SET NOT NULL`);
    try {
      const c = (await preflight()).check('target-tables');
      assert.equal(c.status, 'warn');
      assert.match(c.message, /column public\.orders\.note is NOT NULL on the target but nullable on the source/);
    } finally {
      await target.query(`ALTER TABLE public.orders ALTER COLUMN note DROP NOT NULL`);
    }
  });

  test('target-schema: a table missing on the target shows as what walbridge schema --dry-run would make, statement for statement', async () => {
    await source.query(`CREATE TABLE public.notes (id int PRIMARY KEY, body text NOT NULL DEFAULT '', at timestamptz); CREATE INDEX notes_at ON public.notes (at)`);
    try {
      const { check } = await preflight();
      assertFails(check('target-tables'), /table public\.notes does not exist on the target: walbridge schema makes it/, /Run walbridge schema/);
      const c = check('target-schema');
      assert.equal(c.status, 'warn', c.message);
      const dry = await runCli(['schema', '--dry-run', '--json'], { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url() });
      assert.equal(dry.code, 0, dry.out);
      const plan = JSON.parse(dry.stdout) as { steps: Array<{ kind: string; name: string }> };
      assert.deepEqual(plan.steps.map((s) => `${s.kind} ${s.name}`), ['table public.notes', 'constraint public.notes.notes_pkey', 'index public.notes.notes_at']);
      for (const s of plan.steps) assert.ok(c.message.includes(`+ ${s.kind} ${s.name}`), `${s.kind} ${s.name} in: ${c.message}`);
      assert.equal(await target.query(`SELECT to_regclass('public.notes') AS t`).then((r) => r[0]?.t), null, '--dry-run wrote nothing');
    } finally {
      await source.query('DROP TABLE public.notes');
    }
  });

  test('extensions: a column type from an extension the target lacks', async () => {
    await source.query(`CREATE EXTENSION citext; CREATE TABLE public.tags (id int PRIMARY KEY, name citext)`);
    await target.query(`CREATE TABLE public.tags (id int PRIMARY KEY, name text)`);
    try {
      assertFails((await preflight()).check('extensions'), /citext \(public\.tags\.name\)/, /CREATE EXTENSION citext WITH SCHEMA public;/);
    } finally {
      await source.query('DROP TABLE public.tags; DROP EXTENSION citext');
      await target.query('DROP TABLE public.tags');
    }
  });

  test("extensions: an extension's type behind a domain, or behind an array of domains", async () => {
    await source.query(`CREATE EXTENSION citext; CREATE DOMAIN public.label AS citext;
      CREATE TABLE public.labels (id int PRIMARY KEY, name public.label, aliases public.label[])`);
    await target.query(`CREATE TABLE public.labels (id int PRIMARY KEY, name text, aliases text[])`);
    try {
      const c = (await preflight()).check('extensions');
      assertFails(c, /citext \(/, /CREATE EXTENSION citext WITH SCHEMA public;/);
      assert.match(c.message, /public\.labels\.name/);
      assert.match(c.message, /public\.labels\.aliases/);
    } finally {
      await source.query('DROP TABLE public.labels; DROP DOMAIN public.label; DROP EXTENSION citext');
      await target.query('DROP TABLE public.labels');
    }
  });

  test('target-empty: rows on the target before the first copy', async () => {
    await target.query(`INSERT INTO public.users VALUES (1, 'a@b.c', 'early')`);
    try {
      assertFails((await preflight()).check('target-empty'), /public\.users/, /TRUNCATE public\.users/);
    } finally {
      await target.query('TRUNCATE public.users');
    }
  });
});

describe('teardown, and preflight on a recorded migration', () => {
  test('recorded-state: the slot dropped behind walbridge\'s back is a failure with the way to resynchronise; teardown cleans up, twice', async () => {
    const env = { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url() };
    const d = await startDaemon(env);
    await waitForPhase(target, 'streaming', { daemon: d });
    const busy = await runCli(['teardown'], env);
    assert.equal(busy.code, 1, 'teardown refuses to pull the slot from a running daemon');
    assert.match(busy.stderr, /in use right now/);
    assert.match(busy.stderr, /--force/);
    assert.equal((await d.stop()).code, 0);

    const resumable = await preflight();
    assert.equal(resumable.code, 0);
    assert.match(resumable.check('recorded-state').message, /a migration is recorded on the target \(phase streaming\); walbridge resumes it/);

    await source.query(`SELECT pg_drop_replication_slot('walbridge')`);
    assertFails((await preflight()).check('recorded-state'), /no longer exists on the source/, /walbridge teardown --target/);

    for (let i = 0; i < 2; i++) {
      const r = await runCli(['teardown', '--target'], env);
      assert.equal(r.code, 0, r.out);
      assert.match(r.stdout, i === 0 ? /dropped publication "walbridge"/ : /no publication "walbridge" \(nothing to remove\)/);
      assert.match(r.stdout, i === 0 ? /dropped walbridge's state/ : /no walbridge state \(nothing to remove\)/);
    }
    assert.deepEqual(await sourceObjects(source), { slots: [], publications: [] });
    assert.equal(await pipelineRow(target), null);
    const [{ n } = { n: '0' }] = await target.query<{ n: string }>('SELECT count(*)::text AS n FROM public.users');
    assert.equal(n, '5000', "teardown leaves the target's tables and rows alone");
  });

  test("teardown --target removes the way back's slot and publication under the names cutover gives them, a long migration name cut to fit", async () => {
    // 60 characters: "<name>_reverse" would pass PostgreSQL's 63, so cutover cuts the name to 55 first.
    const name = `walbridge_${'long_migration_name_'.repeat(3)}`.slice(0, 60);
    const reverse = `${name.slice(0, 55)}_reverse`;
    await target.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [reverse]);
    await target.query(`CREATE PUBLICATION ${reverse} FOR TABLE public.users`);
    const env = { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SLOT: name, WALBRIDGE_PUBLICATION: name };
    const r = await runCli(['teardown', '--target'], env);
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, new RegExp(`dropped replication slot "${reverse}"`));
    assert.match(r.stdout, new RegExp(`dropped publication "${reverse}"`));
    const left = await sourceObjects(target);
    assert.ok(!left.slots.includes(reverse) && !left.publications.includes(reverse), `nothing of the way back is left on the target: ${JSON.stringify(left)}`);
  });

  test('teardown --force disconnects a running daemon and removes its slot', async () => {
    await target.query('TRUNCATE public.users, public.orders');
    const env = { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_EXIT_ON_ERROR: '1' };
    const d = await startDaemon(env);
    await waitForPhase(target, 'streaming', { daemon: d });
    const r = await runCli(['teardown', '--force'], env);
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /dropped replication slot "walbridge"/);
    assert.deepEqual(await sourceObjects(source), { slots: [], publications: [] });
    const { code } = await d.exited;
    assert.equal(code, 1, 'the daemon stops: its slot is gone');
    assert.match(d.output.join('\n'), /no longer exists on the source/);
    await runCli(['teardown', '--target'], env);
  });
});
