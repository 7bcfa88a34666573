/**
 * Every bad input an operator can give walbridge, each run through the daemon itself
 * (`node dist/daemon.js`, as on Railway, with WALBRIDGE_EXIT_ON_ERROR=1 so it exits instead of
 * waiting in phase error): a non-zero exit, a message that names the problem and the fix, no
 * password in the output, and nothing written on either side (no slot, no publication on the
 * source, no walbridge schema on the target).
 *
 * Some of these are also covered, with more detail, by test/e2e/refusals.test.ts and
 * preflight.test.ts; here they are all run the same way, so that the list in
 * docs/reliability.md (written by the long run, or with WALBRIDGE_CHAOS_DOCS=1) holds the
 * messages of a real run.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { startProxy, type TcpProxy } from '../harness/proxy.js';
import { DAEMON, freePort } from '../helpers/daemon.js';
import { cell, writeDocSection, writesDocs } from './report.js';
import { supabasePoolerUrl, urlWithLogin } from '../harness/urls.js';

const PASSWORDS = { source: 'bad-input-src-Wälder:42@x/y', target: 'bad-input-tgt-Nacht#77%z', physical: 'bad-input-phys-Kiefer?31&q' };

let source: Cluster;
let target: Cluster;
/** wal_level = replica. */
let physical: Cluster;
let sameDbProxy: TcpProxy;

const SCHEMA = `
CREATE TABLE public.users (id bigint PRIMARY KEY, name text);
CREATE TABLE public.memories (id bigint PRIMARY KEY, embedding real[]);
`;

interface Outcome {
  input: string;
  code: number | null;
  message: string;
}
const outcomes: Outcome[] = [];

before(async () => {
  [source, target, physical] = await Promise.all([
    startCluster({ major: 15, name: 'bad-source', password: PASSWORDS.source }),
    startCluster({ major: 17, name: 'bad-target', password: PASSWORDS.target }),
    startCluster({ major: 15, name: 'bad-physical', logical: false, password: PASSWORDS.physical }),
  ]);
  for (const c of [source, target, physical]) await c.query(SCHEMA);
  await source.query(`INSERT INTO public.users VALUES (1, 'a'), (2, 'b')`);
  await physical.query(`INSERT INTO public.users VALUES (1, 'a')`);
  sameDbProxy = await startProxy(source.port);
});

after(async () => {
  await sameDbProxy?.close();
  await Promise.all([source, target, physical].map((c) => c?.destroy()));
  if (outcomes.length === 0) return;
  const table = [
    '| bad input | exit | what walbridge says (message and fix, as printed) |',
    '|---|---:|---|',
    ...outcomes.map((o) => `| ${cell(o.input)} | ${o.code ?? 'none'} | ${cell(normalise(o.message))} |`),
  ].join('\n');
  console.log(`\n# bad input, as refused in this run\n\n${table}\n`);
  if (writesDocs()) {
    writeDocSection(
      'bad-input',
      `Taken from a run of \`test/chaos/bad-input.test.ts\` on ${new Date().toISOString().slice(0, 10)} (\`npm run test:chaos\`): ` +
        'each input given to the daemon (`node dist/daemon.js`, `WALBRIDGE_EXIT_ON_ERROR=1`). Exit 2 is a configuration walbridge ' +
        'refuses before connecting anywhere; exit 1 a problem found on the servers (the same checks as `walbridge preflight`). ' +
        'In every case nothing was written: no slot and no publication on the source, no `walbridge` schema on the target. ' +
        'Without `WALBRIDGE_EXIT_ON_ERROR` the daemon keeps running in phase `error` with this message on its status page and retries every minute.\n\n' +
        table,
    );
  }
});

/** Ports of the throwaway servers are random; the docs show a placeholder. */
function normalise(message: string): string {
  return message.replace(/:\d{4,5}\//g, ':<port>/').replace(/PORT \d{4,5}\b/g, 'PORT <port>');
}

/** Run the daemon with exactly this environment until it exits. */
function runDaemon(env: Record<string, string>, timeoutMs = 20_000): Promise<{ code: number | null; lines: string[]; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [DAEMON], { env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', WALBRIDGE_EXIT_ON_ERROR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (b: Buffer) => (text += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (text += b.toString('utf8')));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, lines: text.split('\n').filter((l) => l.length > 0), timedOut });
    });
  });
}

/** The message an operator reads: the reason it stopped (and its fix), or what it printed on stderr. */
function messageOf(lines: string[], code: number | null): string {
  const parsed = lines.flatMap((l) => {
    if (!l.startsWith('{')) return [];
    try {
      return [JSON.parse(l) as { level?: string; msg?: string }];
    } catch {
      return [];
    }
  });
  const stop = parsed.find((l) => l.level === 'error' && l.msg?.startsWith('walbridge cannot continue: '));
  if (stop?.msg) return stop.msg.replace('walbridge cannot continue: ', '');
  const plain = lines.filter((l) => !l.startsWith('{'));
  if (plain.length > 0) return plain.join('\n');
  return parsed
    .filter((l) => l.level === 'fatal' || l.level === 'error')
    .map((l) => l.msg ?? '')
    .join('\n') || `(nothing printed; exit ${code})`;
}

async function nothingWritten(on: Cluster, expect: { slots?: string[]; publications?: string[] } = {}): Promise<void> {
  const slots = (await on.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots ORDER BY 1')).map((r) => r.slot_name);
  const pubs = (await on.query<{ pubname: string }>('SELECT pubname FROM pg_publication ORDER BY 1')).map((r) => r.pubname);
  assert.deepEqual(slots, expect.slots ?? [], 'no slot created on the source');
  assert.deepEqual(pubs, expect.publications ?? [], 'no publication created on the source');
  const [t] = await target.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_namespace WHERE nspname = 'walbridge'`);
  assert.equal(t?.n, '0', 'no walbridge schema on the target');
}

interface Case {
  /** The bad input, as the docs list it. */
  input: string;
  env?: () => Record<string, string>;
  /** Exit code expected: 2 for configuration refused before connecting, 1 for problems found on the servers. */
  exit: 1 | 2;
  /** The problem, then the fix. */
  says: RegExp[];
  setup?: () => Promise<void>;
  cleanup?: () => Promise<void>;
  /** What legitimately exists on the source (someone else's slot or publication). */
  existing?: { slots?: string[]; publications?: string[] };
  /** Which cluster is the source, for the "nothing written" check. */
  sourceCluster?: () => Cluster;
  /** A secret in this case's URL that must not be printed. */
  secret?: string;
}

const urls = () => ({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url() });
const withHost = (url: string, host: string) => {
  const u = new URL(url);
  u.hostname = host;
  return u.toString();
};

const CASES: Case[] = [
  {
    input: 'SOURCE_DATABASE_URL missing',
    env: () => ({ TARGET_DATABASE_URL: target.url() }),
    exit: 2,
    says: [/SOURCE_DATABASE_URL is required/, /direct connection URL/],
  },
  {
    input: 'TARGET_DATABASE_URL (and DATABASE_URL) missing',
    env: () => ({ SOURCE_DATABASE_URL: source.url() }),
    exit: 2,
    says: [/TARGET_DATABASE_URL \(or DATABASE_URL\) is required/, /the URL of the database to migrate to/],
  },
  {
    input: 'malformed URL: `SOURCE_DATABASE_URL=postgresql://postgres@db example.com:5432/app` (a space in the host)',
    env: () => ({ SOURCE_DATABASE_URL: 'postgresql://postgres@db example.com:5432/app', TARGET_DATABASE_URL: target.url() }),
    exit: 2,
    says: [/SOURCE_DATABASE_URL is not a URL/, /postgresql:\/\/USER:PASSWORD@HOST:5432\/DATABASE/],
  },
  {
    input: 'malformed URL: `SOURCE_DATABASE_URL=db.example.com:5432/app` (no scheme)',
    env: () => ({ SOURCE_DATABASE_URL: 'db.example.com:5432/app', TARGET_DATABASE_URL: target.url() }),
    exit: 2,
    says: [/SOURCE_DATABASE_URL must start with postgresql:\/\//],
  },
  {
    input: 'malformed URL: `TARGET_DATABASE_URL=mysql://…` (another scheme)',
    env: () => ({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: urlWithLogin('mysql://localhost:3306/app', 'root', 'mysql-secret-1') }),
    exit: 2,
    says: [/TARGET_DATABASE_URL must start with postgresql:\/\//],
    secret: 'mysql-secret-1',
  },
  {
    input: 'wrong password',
    env: () => ({ ...urls(), SOURCE_DATABASE_URL: source.url('app', { password: 'not-the-password-9' }) }),
    exit: 1,
    says: [/cannot log in to the source database 127\.0\.0\.1:\d+\/app/, /Check the user name and password in SOURCE_DATABASE_URL/],
    secret: 'not-the-password-9',
  },
  {
    input: 'unknown host (`db.walbridge-test.invalid`)',
    env: () => ({ ...urls(), SOURCE_DATABASE_URL: withHost(source.url(), 'db.walbridge-test.invalid') }),
    exit: 1,
    says: [/cannot resolve the host of the source database db\.walbridge-test\.invalid/, /Check the host name in SOURCE_DATABASE_URL/],
  },
  {
    input: 'database name that does not exist',
    env: () => ({ ...urls(), TARGET_DATABASE_URL: target.url('no_such_db') }),
    exit: 1,
    says: [/target database 127\.0\.0\.1:\d+\/no_such_db does not exist/, /Fix the database name at the end of TARGET_DATABASE_URL/],
  },
  {
    input: 'Supabase pooler URL (transaction pooler, port 6543)',
    env: () => ({ ...urls(), SOURCE_DATABASE_URL: supabasePoolerUrl(6543, 'pooler-pw-77') }),
    exit: 2,
    says: [/pooler/, /does not carry logical replication/, /db\.<project-ref>\.supabase\.co, port 5432/],
    secret: 'pooler-pw-77',
  },
  {
    input: 'Supabase pooler URL (session pooler, port 5432)',
    env: () => ({ ...urls(), SOURCE_DATABASE_URL: supabasePoolerUrl(5432, 'pooler-pw-78') }),
    exit: 2,
    says: [/pooler/, /Direct connection/],
    secret: 'pooler-pw-78',
  },
  {
    input: 'source role without REPLICATION (and not owning the tables)',
    setup: async () => {
      await source.query(`CREATE ROLE app_reader LOGIN PASSWORD 'reader-pw-5'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_reader`);
    },
    cleanup: async () => {
      await source.query('DROP OWNED BY app_reader; DROP ROLE app_reader');
    },
    env: () => ({ ...urls(), SOURCE_DATABASE_URL: source.url('app', { user: 'app_reader', password: 'reader-pw-5' }) }),
    exit: 1,
    says: [/app_reader/, /REPLICATION/, /ALTER ROLE app_reader WITH REPLICATION/],
    secret: 'reader-pw-5',
  },
  {
    input: 'source with `wal_level = replica`',
    env: () => ({ ...urls(), SOURCE_DATABASE_URL: physical.url() }),
    exit: 1,
    says: [/wal_level = replica/, /ALTER SYSTEM SET wal_level = logical/],
    sourceCluster: () => physical,
  },
  {
    input: 'no free replication slot (10 of 10 taken by other clients)',
    setup: async () => {
      await source.query(`SELECT pg_create_physical_replication_slot('other_client_' || g) FROM generate_series(1, 10) g`);
    },
    cleanup: async () => {
      await source.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'other_client_%'`);
    },
    existing: { slots: Array.from({ length: 10 }, (_, i) => `other_client_${i + 1}`).sort() },
    exit: 1,
    says: [/no replication slot free \(10 of 10 in use\)/, /Drop slots nobody uses/, /max_replication_slots/],
  },
  {
    input: 'slot name taken by another tool (a slot "walbridge" walbridge did not create)',
    setup: async () => {
      await source.query(`SELECT pg_create_logical_replication_slot('walbridge', 'pgoutput')`);
    },
    cleanup: async () => {
      await source.query(`SELECT pg_drop_replication_slot('walbridge')`);
    },
    existing: { slots: ['walbridge'] },
    exit: 1,
    says: [/a replication slot named "walbridge" already exists on the source/, /Set WALBRIDGE_SLOT to another name/],
  },
  {
    input: 'publication name taken by another tool',
    setup: async () => {
      await source.query(`CREATE PUBLICATION walbridge FOR TABLE public.users`);
    },
    cleanup: async () => {
      await source.query(`DROP PUBLICATION walbridge`);
    },
    existing: { publications: ['walbridge'] },
    exit: 1,
    says: [/a publication named "walbridge" already exists on the source and walbridge did not create it/, /Set WALBRIDGE_PUBLICATION to another name/],
  },
  {
    input: 'a selected table missing on the target',
    setup: async () => {
      await source.query(`CREATE TABLE public.orders (id bigint PRIMARY KEY, total numeric)`);
    },
    cleanup: async () => {
      await source.query('DROP TABLE public.orders');
    },
    exit: 1,
    says: [/table public\.orders does not exist on the target: walbridge schema makes it/, /Run walbridge schema for missing tables/],
  },
  {
    input: 'a column missing on the target',
    setup: async () => {
      await source.query(`ALTER TABLE public.users ADD COLUMN "Nick Name" varchar(40)`);
    },
    cleanup: async () => {
      await source.query(`ALTER TABLE public.users DROP COLUMN "Nick Name"`);
    },
    exit: 1,
    says: [/ALTER TABLE "public"\."users" ADD COLUMN "Nick Name" character varying\(40\);/, /the statements above for the others/],
  },
  {
    input: 'a column of another type on the target (`real[]` on the source, `bytea` on the target)',
    setup: async () => {
      await target.query(`ALTER TABLE public.memories ALTER COLUMN embedding TYPE bytea USING NULL`);
    },
    cleanup: async () => {
      await target.query(`ALTER TABLE public.memories ALTER COLUMN embedding TYPE real[] USING NULL`);
    },
    exit: 1,
    says: [/column public\.memories\.embedding is real\[\] on the source but bytea on the target/, /on the target|WALBRIDGE_EXCLUDE_TABLES/],
  },
  {
    input: 'a table without a primary key or replica identity',
    setup: async () => {
      await source.query(`CREATE TABLE public.audit_log (at timestamptz, what text)`);
      await target.query(`CREATE TABLE public.audit_log (at timestamptz, what text)`);
    },
    cleanup: async () => {
      const [ident] = await source.query<{ relreplident: string }>(`SELECT relreplident FROM pg_class WHERE oid = 'public.audit_log'::regclass`);
      assert.equal(ident?.relreplident, 'd', 'the source table was not altered');
      await source.query('DROP TABLE public.audit_log');
      await target.query('DROP TABLE public.audit_log');
    },
    exit: 1,
    says: [/public\.audit_log/, /neither a primary key nor a replica identity/, /REPLICA IDENTITY FULL/, /WALBRIDGE_EXCLUDE_TABLES=public\.audit_log/],
  },
  {
    input: 'a target table not empty at the first start',
    setup: async () => {
      await target.query(`INSERT INTO public.users VALUES (99, 'already here')`);
    },
    cleanup: async () => {
      const rows = await target.query<{ id: string }>('SELECT id::text FROM public.users');
      assert.deepEqual(rows, [{ id: '99' }], 'the target rows were left alone');
      await target.query('TRUNCATE public.users');
    },
    exit: 1,
    says: [/target tables already hold rows[\s\S]*public\.users/, /TRUNCATE public\.users/],
  },
  {
    input: 'unknown schema in `WALBRIDGE_SCHEMAS=public,nope`',
    env: () => ({ ...urls(), WALBRIDGE_SCHEMAS: 'public,nope' }),
    exit: 1,
    says: [/schema "nope" does not exist on the source/, /WALBRIDGE_SCHEMAS/],
  },
  {
    input: 'unknown table in `WALBRIDGE_TABLES=public.user` (the table is `users`)',
    env: () => ({ ...urls(), WALBRIDGE_TABLES: 'public.user' }),
    exit: 1,
    says: [/WALBRIDGE_TABLES: public\.user/, /case-sensitive/],
  },
  {
    input: 'unknown table in `WALBRIDGE_EXCLUDE_TABLES=public.usres`',
    env: () => ({ ...urls(), WALBRIDGE_EXCLUDE_TABLES: 'public.usres' }),
    exit: 1,
    says: [/WALBRIDGE_EXCLUDE_TABLES/, /public\.usres/],
  },
  {
    input: 'a filter that is not `schema.table` (`WALBRIDGE_TABLES=users`)',
    env: () => ({ ...urls(), WALBRIDGE_TABLES: 'users' }),
    exit: 2,
    says: [/WALBRIDGE_TABLES: "users" is not schema\.table/, /public\.mirt_\*/],
  },
  {
    input: 'the same database as source and target (same URL)',
    env: () => ({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: source.url() }),
    exit: 2,
    says: [/SOURCE_DATABASE_URL and TARGET_DATABASE_URL name the same database/, /Point TARGET_DATABASE_URL at the new database/],
  },
  {
    input: 'the same database as source and target (behind another address)',
    env: () => {
      const u = new URL(source.url());
      u.port = String(sameDbProxy.port);
      return { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: u.toString() };
    },
    exit: 1,
    says: [/SOURCE_DATABASE_URL and TARGET_DATABASE_URL reach the same database/, /Point TARGET_DATABASE_URL at the new database/],
  },
  {
    input: 'target role that may not disable triggers (not a superuser)',
    setup: async () => {
      await target.query(`CREATE ROLE plain_writer LOGIN PASSWORD 'plain-pw-3'; GRANT ALL ON ALL TABLES IN SCHEMA public TO plain_writer; GRANT CREATE ON DATABASE app TO plain_writer`);
    },
    cleanup: async () => {
      await target.query('DROP OWNED BY plain_writer; DROP ROLE plain_writer');
    },
    env: () => ({ ...urls(), TARGET_DATABASE_URL: target.url('app', { user: 'plain_writer', password: 'plain-pw-3' }) }),
    exit: 1,
    says: [/may not set session_replication_role/i, /superuser/],
    secret: 'plain-pw-3',
  },
  {
    input: 'invalid `PORT=http`',
    env: () => ({ ...urls(), PORT: 'http' }),
    exit: 2,
    says: [/PORT must be a whole number from 1 to 65535/],
  },
  {
    input: 'invalid `PORT=70000`',
    env: () => ({ ...urls(), PORT: '70000' }),
    exit: 2,
    says: [/PORT must be a whole number from 1 to 65535/],
  },
];

for (const c of CASES) {
  test(`bad input: ${c.input}`, { timeout: 90_000 }, async () => {
    await c.setup?.();
    try {
      const env: Record<string, string> = c.env ? c.env() : urls();
      if (!env.PORT) env.PORT = String(await freePort());
      const { code, lines, timedOut } = await runDaemon(env);
      const text = lines.join('\n');
      if (timedOut) {
        const last = lines.filter((l) => l.includes('"level":"warn"')).pop();
        const msg = last ? ((JSON.parse(last) as { msg?: string }).msg ?? '') : lines.slice(-1).join('');
        outcomes.push({ input: c.input, code: null, message: `(did not exit: still retrying after 20 s) ${msg}` });
      }
      assert.equal(timedOut, false, `walbridge did not exit within 20 s; it printed:\n${text.slice(-3000)}`);
      const message = messageOf(lines, code);
      outcomes.push({ input: c.input, code, message });
      assert.equal(code, c.exit, `exit code; it printed:\n${text.slice(-3000)}`);
      for (const re of c.says) assert.match(message, re);
      for (const pw of [...Object.values(PASSWORDS), ...(c.secret ? [c.secret] : [])]) {
        assert.equal(text.includes(pw) || text.includes(encodeURIComponent(pw)), false, 'a password was printed');
      }
      await nothingWritten(c.sourceCluster?.() ?? source, c.existing);
    } finally {
      await c.cleanup?.();
    }
  });
}

test('bad input: PORT already in use', { timeout: 90_000 }, async () => {
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '0.0.0.0', resolve));
  const port = (busy.address() as net.AddressInfo).port;
  try {
    const { code, lines, timedOut } = await runDaemon({ ...urls(), PORT: String(port) });
    assert.equal(timedOut, false);
    const message = messageOf(lines, code);
    outcomes.push({ input: 'PORT already in use', code, message });
    assert.equal(code, 2, lines.join('\n'));
    assert.match(message, new RegExp(`cannot listen on PORT ${port}`));
    assert.match(message, /set PORT to a free port/);
    await nothingWritten(source);
  } finally {
    await new Promise<void>((resolve) => busy.close(() => resolve()));
  }
});

test('after all of it, the same databases start cleanly', { timeout: 90_000 }, async () => {
  const port = await freePort();
  const child = spawn(process.execPath, [DAEMON], { env: { PATH: process.env.PATH ?? '', ...urls(), PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 60_000;
    while (!out.includes('spool applied; streaming')) {
      assert.ok(Date.now() < deadline, `not streaming after 60 s:\n${out.slice(-3000)}`);
      assert.equal(child.exitCode, null, `exited:\n${out.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const rows = await target.query<{ id: string }>('SELECT id::text FROM public.users ORDER BY id');
    assert.deepEqual(rows, [{ id: '1' }, { id: '2' }]);
  } finally {
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  }
});
