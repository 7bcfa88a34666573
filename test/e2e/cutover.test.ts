/**
 * Cutover and the way back, with writers that never stop: the app's load, a worker session as
 * the tables' owner and a superuser session go on writing through `walbridge cutover`. Every
 * write they were told committed is on the new database afterwards, every one after the fence
 * was refused with the message, and every table is equal. Then the app writes to the new
 * database, `walbridge run --reverse` carries those writes back to the old one through its
 * fence, and `walbridge cutover --reverse` moves the app back, the same way.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import type { Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { APP_TABLES, LLM_TRACES_PARTITIONS, startWriteLoad } from '../harness/fixture.js';
import { CLI, runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { waitFor } from '../harness/lsn.js';
import { pipelineRow, sourceObjects, waitForCatchUp, waitForPhase } from '../helpers/state.js';
import { startWitness, startWitnessPair, type Witness } from '../helpers/witness.js';
import { readFences } from '../../src/state/fences.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
const daemons: DaemonProcess[] = [];
/** Writers still running when a test fails: stopped in after(), or the process never ends. */
const writers: { stop(): Promise<unknown> }[] = [];

before(async () => {
  ({ source, target, destroy } = await startWitnessPair());
  // The table forgotten workers write to, owned on the source by a role that is not a superuser.
  await source.query(`CREATE ROLE app_owner LOGIN PASSWORD '${OWNER.password}'; ALTER TABLE public.worker_log OWNER TO app_owner`);
  // A sequence no column owns, drawn by the app's own code (an invoice number): cutover moves it too.
  await target.query('CREATE SEQUENCE public.invoice_number_seq');
  await source.query(`CREATE SEQUENCE public.invoice_number_seq; SELECT setval('public.invoice_number_seq', 41999)`);
});

after(async () => {
  await Promise.all(writers.map((w) => w.stop().catch(() => undefined)));
  for (const d of daemons) d.kill('SIGKILL');
  await destroy?.();
});

const OWNER = { user: 'app_owner', password: 'owner-pw-9' };

const env = () => ({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SCHEMAS: 'public,auth' });

/** Every sequence of the app's schemas, with the next value it would hand out. */
async function nextValues(c: Cluster): Promise<Map<string, bigint>> {
  return c.withClient(async (k) => {
    const seqs = await k.query<{ s: string; n: string; inc: string }>(
      `SELECT schemaname AS s, sequencename AS n, increment_by::text AS inc FROM pg_sequences WHERE schemaname IN ('public', 'auth')`,
    );
    const out = new Map<string, bigint>();
    for (const q of seqs.rows) {
      const { rows } = await k.query<{ last: string; called: boolean }>(`SELECT last_value::text AS last, is_called AS called FROM "${q.s}"."${q.n}"`);
      const r = rows[0];
      if (r) out.set(`${q.s}.${q.n}`, r.called ? BigInt(r.last) + BigInt(q.inc) : BigInt(r.last));
    }
    return out;
  });
}

/** The partitions carrying walbridge's TRUNCATE trigger of `migration` (pipeline/partition-truncates.ts). */
async function truncateTriggers(c: Cluster, migration: string): Promise<string[]> {
  const rows = await c.query<{ t: string }>(`SELECT 'public.' || tgrelid::regclass::text AS t FROM pg_trigger WHERE tgname = $1 ORDER BY 1`, [`walbridge_truncate_${migration}`]);
  return rows.map((r) => r.t);
}

const FENCE_MESSAGE = /^public\.worker_log no longer takes writes on this database: walbridge moved it to the new database \(cutover of migration "walbridge", \d{4}-\d\d-\d\dT[\d:]+Z\)$/;

/**
 * A row the app changes many times a second (a product's stock): while cutover checks the content
 * with the app writing, it is never the same twice in a row. Returns how many of its updates
 * committed and were refused.
 */
function startHotRow(url: string): { stop(): Promise<{ committed: number; refused: number }> } {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  let running = true;
  const counts = { committed: 0, refused: 0 };
  const loop = (async () => {
    await c.connect();
    while (running) {
      try {
        await c.query('UPDATE public.products SET stock = stock + 1 WHERE id = (SELECT min(id) FROM public.products)');
        counts.committed++;
      } catch {
        counts.refused++;
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await c.end();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return counts;
    },
  };
}

/** What every witness must show after a cutover: refusals, all the fence's, and every committed id on `db`. */
async function assertWitnessed(w: Witness, db: Cluster, message: RegExp): Promise<void> {
  assert.ok(w.refused.length > 0, 'the writer kept writing after the fence and was refused');
  for (const r of w.refused) {
    assert.equal(r.code, '25006', r.message);
    assert.match(r.message, message);
  }
  const ids = new Set((await db.query<{ id: string }>('SELECT id::text FROM public.worker_log')).map((r) => Number(r.id)));
  const lost = w.committed.filter((id) => !ids.has(id));
  assert.deepEqual(lost, [], `rows the writer was told committed, missing on the new database (of ${w.committed.length})`);
}

test('cutover while every writer goes on writing: nothing committed is lost, later writes are refused, writes pause briefly', { timeout: 240_000 }, async () => {
  const d = await startDaemon(env());
  daemons.push(d);
  await waitForPhase(target, 'streaming', { daemon: d });
  const app = startWriteLoad(source.url(), { ratePerSec: 60, seed: 21 });
  const owner = startWitness(source.url('app', OWNER), { table: 'public.worker_log', who: 'owner', firstId: 1, everyMs: 250 });
  const superuser = startWitness(source.url(), { table: 'public.worker_log', who: 'superuser', firstId: 1_000_000, everyMs: 300 });
  const hot = startHotRow(source.url());
  writers.push(app, owner, superuser, hot);
  await app.waitFor((s) => s.transactions >= 100, 30_000);

  // A materialized view on the target that cannot be filled (walbridge schema makes them empty):
  // cutover stops before its fence, names it and the fix, and the app goes on writing.
  await target.query(`CREATE MATERIALIZED VIEW public.broken_totals AS SELECT 1 / (count(*) - count(*)) AS x FROM public.products WITH NO DATA`);
  const refused = await runCli(['cutover', '--timeout', '120'], env());
  assert.notEqual(refused.code, 0, refused.out);
  assert.match(refused.out, /could not fill materialized view public\.broken_totals on the target: division by zero/);
  assert.match(refused.out, /Nothing is switched/);
  assert.doesNotMatch(refused.out, /3\/7 fencing/);
  const seen = app.stats.transactions;
  await app.waitFor((s) => s.transactions >= seen + 20, 30_000);
  assert.equal(app.stats.errors, 0, app.recentErrors.join(' | '));
  await target.query('DROP MATERIALIZED VIEW public.broken_totals');
  // It had checked the content already; --cancel forgets that, so the cutover below runs whole.
  const cancelled = await runCli(['cutover', '--cancel'], env());
  assert.equal(cancelled.code, 0, cancelled.out);

  const r = await runCli(['cutover', '--timeout', '120', '--sequence-margin', '100'], env());
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /2\/7 checking the content while the app writes…\n\s+17 table\(s\) equal/);
  assert.match(r.stdout, /public\.invoice_number_seq\s+next value 1 → 42100 \(source's next: 42000\)/, 'a sequence no column owns is moved too');
  assert.match(r.stdout, /3\/7 fencing the source/);
  assert.match(r.stdout, /6\/7 checking the rows changed since the last check…\n\s+\d+ row\(s\) changed since, equal/);
  const paused = Number(/writes to the migrated tables were refused for (\d+\.\d) s/.exec(r.stdout)?.[1]);
  assert.ok(paused > 0, r.stdout);
  assert.match(r.stdout, /Cutover done at \d+\/[0-9A-F]+/);
  assert.match(r.stdout, /Point the app's DATABASE_URL at the database of TARGET_DATABASE_URL/);

  // The writers go on, refused now; then they stop.
  await Promise.all([owner, superuser].map((w) => w.until((x) => x.refused.length >= 2)));
  await Promise.all([owner.stop(), superuser.stop()]);
  const hotRow = await hot.stop();
  assert.ok(hotRow.committed > 100 && hotRow.refused > 0, `the hot row was updated ${hotRow.committed} times, refused ${hotRow.refused} times`);
  const stats = await app.stop();
  for (const e of app.recentErrors) assert.match(e, /no longer takes writes on this database: walbridge moved it to the new database/);
  assert.ok(stats.errors > 0, 'the app was refused too, after the fence');
  await assertWitnessed(owner, target, FENCE_MESSAGE);
  await assertWitnessed(superuser, target, FENCE_MESSAGE);
  await assertSameContent(source.url(), target.url(), [...APP_TABLES, 'public.worker_log']);
  console.log(`writes refused for ${paused} s; the owner's worker committed ${owner.committed.length} rows, the superuser's ${superuser.committed.length}`);

  // The daemon saw the record and stopped on its own, cleanly; the source stays fenced.
  const { code } = await d.exited;
  assert.equal(code, 0);
  assert.ok(d.logs().some((l) => l.msg === 'the cutover is recorded on the target: this migration is done; stopping'));
  assert.equal((await pipelineRow(target))?.phase, 'done');
  assert.deepEqual(await sourceObjects(source), { slots: [], publications: [] }, 'slot and publication removed from the source');
  assert.deepEqual(await truncateTriggers(source, 'walbridge'), [], "the partitions' TRUNCATE triggers too");
  assert.deepEqual(await truncateTriggers(target, 'walbridge_reverse'), LLM_TRACES_PARTITIONS, 'the way back has its own on the new database');
  assert.deepEqual((await source.withClient((c) => readFences(c))).map((f) => f.migration), ['walbridge'], 'the fence stays');
  const [rec] = await target.query<{ reverse_slot: string; fence_lsn: string | null; paused: string }>(
    `SELECT reverse_slot, fence_lsn::text, writes_paused_seconds::text AS paused FROM walbridge.cutover`,
  );
  assert.equal(rec?.reverse_slot, 'walbridge_reverse');
  assert.notEqual(rec?.fence_lsn, null);
  assert.equal(Number(rec?.paused).toFixed(1), paused.toFixed(1));

  // Every sequence on the target hands out the source's next value plus the margin, and
  // pg_sequences shows it moved: a NULL last_value there reads as "never used".
  const sourceNext = await nextValues(source);
  const shown = await target.query<{ seq: string; quoted: string; last: string | null }>(
    `SELECT schemaname || '.' || sequencename AS seq, format('%I.%I', schemaname, sequencename) AS quoted, last_value::text AS last
       FROM pg_sequences WHERE schemaname IN ('public', 'auth')`,
  );
  let checked = 0;
  for (const [seq, next] of sourceNext) {
    const row = shown.find((x) => x.seq === seq);
    assert.ok(row, `${seq} exists on the target`);
    assert.notEqual(row.last, null, `${seq}: pg_sequences.last_value is NULL on the target after cutover`);
    const [v] = await target.query<{ v: string }>('SELECT nextval($1::regclass)::text AS v', [row.quoted]);
    assert.equal(BigInt(v?.v ?? '0'), next + 100n, `${seq}: nextval() on the target vs the source's next value ${next} plus the margin`);
    checked++;
  }
  assert.ok(checked >= 6, `${checked} sequences checked`);
  // An insert on the target right after cutover does not collide with a copied row.
  const [row] = await target.query<{ id: string }>(
    `INSERT INTO public.messages (user_id, role, content) VALUES ((SELECT min(id) FROM public.users), 'user', 'first message on the new database') RETURNING id::text`,
  );
  const [max] = await source.query<{ m: string }>('SELECT max(id)::text AS m FROM public.messages');
  assert.ok(BigInt(row?.id ?? '0') > BigInt(max?.m ?? '0'));
});

test('the way back: writes on the new database reach the old one through its fence; rolling back fences the new one, unfences the old', { timeout: 240_000 }, async () => {
  const rev = await startDaemon(env(), { script: CLI, args: ['run', '--reverse'] });
  daemons.push(rev);
  await waitForPhase(source, 'streaming', { daemon: rev });
  // The app now runs on the new database; a worker too.
  const load = startWriteLoad(target.url(), { ratePerSec: 60, seed: 22, truncateEvery: 80 });
  const worker = startWitness(target.url(), { table: 'public.worker_log', who: 'worker on the new database', firstId: 2_000_000, everyMs: 250 });
  writers.push(load, worker);
  await load.waitFor((s) => s.transactions >= 150, 60_000);
  assert.equal(load.stats.errors, 0, 'no collision with copied rows: the sequences were moved at cutover');
  // A TRUNCATE of one partition on the new database goes back too (pgoutput alone would not send it);
  // one of past years, where the app's new rows (created now) never go.
  const [{ n: before } = { n: 0 }] = await source.query<{ n: number }>('SELECT count(*)::int AS n FROM public.llm_traces_2024');
  assert.ok(before > 0, 'the old database holds rows in that partition');
  await target.query('TRUNCATE public.llm_traces_2024');
  await waitForCatchUp(target, source);
  assert.deepEqual(await source.query('SELECT count(*)::int AS n FROM public.llm_traces_2024'), [{ n: 0 }]);

  // A deploy in the rollback window adds a table on the new database. Rolling back now would leave
  // its rows behind: the way back names it, the rollback is refused, until the way back carries it.
  await target.query('CREATE TABLE public.feature_votes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id bigint NOT NULL, up boolean NOT NULL)');
  await target.query('INSERT INTO public.feature_votes (user_id, up) SELECT g, g % 2 = 0 FROM generate_series(1, 300) g');
  await waitFor(
    async () => {
      const s = (await (await fetch(`http://127.0.0.1:${rev.port}/status.json`)).json()) as { newTables: { table: string; reason: string }[] };
      return s.newTables.some((t) => t.table === 'public.feature_votes' && /^not carried back: .*walbridge schema --reverse.*walbridge tables add --reverse public\.feature_votes/.test(t.reason));
    },
    { what: 'the way back to report the new table', timeoutMs: 30_000, intervalMs: 250 },
  );
  const refused = await runCli(['cutover', '--reverse', '--timeout', '60'], env());
  assert.equal(refused.code, 1, refused.out);
  assert.match(refused.out, /1 table\(s\) of WALBRIDGE_SCHEMAS on the new database are not carried back: public\.feature_votes\. Created there after the cutover/);
  assert.match(refused.out, /walbridge schema --reverse .*then walbridge tables add --reverse public\.feature_votes --wait/);
  assert.deepEqual(await target.withClient((c) => readFences(c)), [], 'nothing was fenced on the new database');
  const made = await runCli(['schema', '--reverse'], env());
  assert.equal(made.code, 0, made.out);
  assert.deepEqual(await source.query('SELECT count(*)::int AS n FROM public.feature_votes'), [{ n: 0 }], 'made on the old database, empty');
  assert.match(made.stdout, /applied on the old database in one transaction; next: walbridge tables add --reverse <table> --wait/);
  const added = await runCli(['tables', 'add', '--reverse', '--wait', 'public.feature_votes'], env());
  assert.equal(added.code, 0, added.out);
  // Written after the copy: streamed back like the rest.
  await target.query('INSERT INTO public.feature_votes (user_id, up) SELECT g, true FROM generate_series(301, 350) g');
  await target.query('UPDATE public.feature_votes SET up = NOT up WHERE id <= 20');

  // Rolling back is a cutover of the way back, with the app still writing to the new database.
  const r = await runCli(['cutover', '--reverse', '--timeout', '60'], env());
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /3\/7 fencing the source/);
  assert.match(r.stdout, /the old database's fence is lifted: it takes writes to \d+ table\(s\) again/);
  assert.match(r.stdout, /Point the app's DATABASE_URL at the database of SOURCE_DATABASE_URL/);
  await worker.until((w) => w.refused.length >= 2);
  await worker.stop();
  await load.stop();
  await assertWitnessed(worker, source, /^public\.worker_log no longer takes writes on this database: walbridge moved it back to the old database \(rollback of migration "walbridge", [\dT:Z-]+\)$/);
  await assertSameContent(target.url(), source.url(), [...APP_TABLES, 'public.worker_log', 'public.feature_votes']);
  assert.equal((await rev.exited).code, 0);
  assert.deepEqual(await sourceObjects(target), { slots: [], publications: [] }, 'the reverse slot and publication are removed from the new database');

  // The old database takes writes again, as its tables' owner; the new one is fenced now.
  await source.withClient(async (c) => {
    await c.query('INSERT INTO public.worker_log (id, who) VALUES (3000000, $1)', ['back on the old database']);
  }, 'app');
  // The carried table's identity moved back with the other sequences: no collision.
  const [vote] = await source.query<{ id: string }>('INSERT INTO public.feature_votes (user_id, up) VALUES (1, true) RETURNING id::text');
  assert.ok(Number(vote?.id) > 350, `a new vote on the old database gets id ${vote?.id}, past the new database's`);
  assert.deepEqual((await source.withClient((c) => readFences(c))), []);
  assert.deepEqual((await target.withClient((c) => readFences(c))).map((f) => [f.migration, f.direction]), [['walbridge_reverse', 'reverse']]);

  // Teardown names the rollback's fence on the new database too, and keeps it.
  const teardown = await runCli(['teardown', '--target'], env());
  assert.equal(teardown.code, 0, teardown.out);
  assert.match(teardown.stdout, /^target \S+: the fence of the rollback stays: writes to 18 migrated table\(s\) are refused there since \S+, so the app cannot write to the database it left by mistake\./m);
  assert.equal((await target.withClient((c) => readFences(c))).length, 1);
});
