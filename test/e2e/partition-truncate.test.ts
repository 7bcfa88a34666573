/**
 * A TRUNCATE of a single partition reaches the target, end to end on real clusters (source
 * PostgreSQL 15, target 17, the target's schema made by `walbridge schema`). pgoutput does not
 * send it through the partition root; walbridge's trigger on each partition reports it. The app
 * truncates a leaf, a partition partitioned again, one of its leaves, a partition together with
 * another table, and the root, while the copy runs (the changes go through the spool) and while
 * streaming; the other partitions keep their rows, and both sides end equal row for row. Then
 * the source gains partitions: one made ahead of its rows (made on the target while streaming),
 * one whose rows had gone to the DEFAULT partition and an empty one (made at the next start, the
 * rows moved).
 * Teardown leaves no trigger behind; preflight says which partitions a role cannot cover.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPair, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { waitFor } from '../harness/lsn.js';
import { errorsOf, runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { pipelineRow, sourceObjects, tableRows, waitForCatchUp, waitForPhase } from '../helpers/state.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
let daemon: DaemonProcess | null = null;

const TABLES = ['public.events', 'public.notes', 'public.bulk'];
/** Every partition of public.events, at every level. */
const PARTITIONS = ['public.events_2025', 'public.events_2026', 'public.events_2026_h1', 'public.events_2026_h2', 'public.events_default'];
/** The partitions the source gains in the first test. */
const GAINED = ['public.events_2027', 'public.events_2028', 'public.events_2029'];

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  await source.query(`
    CREATE TABLE public.events (id bigint, at date NOT NULL, payload text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY RANGE (at);
    CREATE TABLE public.events_2026_h1 PARTITION OF public.events_2026 FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
    CREATE TABLE public.events_2026_h2 PARTITION OF public.events_2026 FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
    CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
    CREATE TABLE public.notes (id bigint PRIMARY KEY, body text);
    -- Large enough that its copy, held to 1 MB/s, lasts several seconds after the others'.
    CREATE TABLE public.bulk (id bigint PRIMARY KEY, filler text);
    INSERT INTO public.bulk SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 8000) g;
    INSERT INTO public.notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;`);
  await fillEvents(0);
  const made = await runCli(['schema'], env());
  assert.equal(made.code, 0, made.out);
});

after(async () => {
  daemon?.kill('SIGKILL');
  await destroy?.();
});

function env(): Record<string, string> {
  return {
    SOURCE_DATABASE_URL: source.url(),
    TARGET_DATABASE_URL: target.url(),
    WALBRIDGE_COPY_JOBS: '2',
    WALBRIDGE_COPY_MAX_MBPS: '1',
  };
}

/** 40 rows in every leaf, ids from `from`. */
async function fillEvents(from: number): Promise<void> {
  await source.query(
    `INSERT INTO public.events
     SELECT $1::bigint + g * 10 + k, d::date, 'event ' || g || ' on ' || d
       FROM generate_series(1, 40) g, unnest(ARRAY['2025-03-01', '2026-02-01', '2026-09-01', '2031-01-01']) WITH ORDINALITY AS x(d, k)`,
    [from],
  );
}

/** Rows per leaf partition, as a server sees them. */
async function leafCounts(c: Cluster): Promise<Record<string, number>> {
  const rows = await c.query<{ p: string; n: number }>('SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM public.events GROUP BY 1 ORDER BY 1');
  return Object.fromEntries(rows.map((r) => [r.p, r.n]));
}

async function assertSameOnBothSides(when: string): Promise<Record<string, number>> {
  await waitForCatchUp(source, target);
  await assertSameContent(source.url(), target.url(), TABLES);
  const counts = await leafCounts(source);
  assert.deepEqual(await leafCounts(target), counts, `${when}: every partition holds the same rows`);
  return counts;
}

test('a TRUNCATE of one partition, of a sub-partitioned one, of a leaf below it, with another table, and of the root: the same on the target, during the copy and streaming', { timeout: 240_000 }, async () => {
  daemon = await startDaemon(env());

  // 1. During the copy: public.events is copied, public.bulk still copying; changes go to the spool.
  await waitFor(
    async () => {
      const t = await tableRows(target);
      return t.find((r) => r.table === 'public.events')?.state === 'copied' && t.find((r) => r.table === 'public.bulk')?.state === 'copying';
    },
    { what: 'public.events copied while public.bulk is copying', timeoutMs: 90_000, intervalMs: 20 },
  );
  await source.query(`
    BEGIN;
    INSERT INTO public.events VALUES (900001, '2025-05-05', 'written before the truncate');
    TRUNCATE public.events_2025;
    INSERT INTO public.events VALUES (900002, '2025-06-06', 'written after the truncate');
    COMMIT;
    TRUNCATE public.events_2026_h1;`);
  assert.equal((await pipelineRow(target))?.phase, 'backfill', 'the truncates were spooled, while the copy ran');
  await waitForPhase(target, 'streaming', { daemon });
  let counts = await assertSameOnBothSides('after the spool');
  assert.deepEqual(counts, { events_2025: 1, events_2026_h2: 40, events_default: 40 }, 'only the truncated partitions were emptied');

  // 2. Streaming: a partition partitioned again (both its leaves), then new rows in it.
  await source.query('TRUNCATE public.events_2026');
  await source.query(`INSERT INTO public.events VALUES (900003, '2026-08-08', 'after the sub-partitioned truncate')`);
  // A partition and another table in one statement, between writes to both, in one transaction.
  await source.query(`
    BEGIN;
    INSERT INTO public.events VALUES (900004, '2030-01-01', 'before');
    INSERT INTO public.notes VALUES (900004, 'before');
    TRUNCATE public.events_default, public.notes;
    INSERT INTO public.events VALUES (900005, '2030-01-02', 'after');
    INSERT INTO public.notes VALUES (900005, 'after');
    COMMIT;`);
  counts = await assertSameOnBothSides('after truncating a sub-partitioned partition, and a partition with another table');
  assert.deepEqual(counts, { events_2025: 1, events_2026_h2: 1, events_default: 1 });

  // 3. The root (pgoutput sends it; every partition's trigger fires too), refilled; then a leaf of the sub-partitioned one.
  await source.query('BEGIN; TRUNCATE public.events; COMMIT');
  await fillEvents(1_000_000);
  await source.query('TRUNCATE public.events_2026_h2');
  counts = await assertSameOnBothSides('after truncating the root, then a leaf two levels down');
  assert.deepEqual(counts, { events_2025: 40, events_2026_h1: 40, events_default: 40 });
  assert.equal(errorsOf(daemon).includes('error:'), false, errorsOf(daemon));

  // 4. Partitions the source gains. One made ahead of its rows, as pg_partman premakes them: the
  // target has it before a row needs it.
  await source.query(`CREATE TABLE public.events_2027 PARTITION OF public.events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')`);
  await waitFor(async () => (await target.query<{ r: string | null }>(`SELECT to_regclass('public.events_2027')::text AS r`))[0]?.r != null, {
    what: 'public.events_2027 made on the target',
    timeoutMs: 30_000,
    intervalMs: 200,
  });
  await source.query(`INSERT INTO public.events SELECT 2000000 + g, '2027-04-04', 'in the new partition' FROM generate_series(1, 25) g`);
  // One made after its rows went to the DEFAULT partition, on both sides, and moved there as
  // pg_partman moves them, while walbridge is stopped: at its start it moves the target's too.
  await source.query(`INSERT INTO public.events SELECT 3000000 + g, '2029-05-05', 'first in the default' FROM generate_series(1, 30) g`);
  await waitForCatchUp(source, target);
  assert.equal((await leafCounts(target)).events_default, 70, "the target's DEFAULT partition holds them");
  assert.equal((await daemon.stop()).code, 0);
  await source.query(`
    BEGIN;
    CREATE TEMP TABLE moving ON COMMIT DROP AS SELECT * FROM public.events_default WHERE at >= '2029-01-01' AND at < '2030-01-01';
    DELETE FROM public.events_default WHERE at >= '2029-01-01' AND at < '2030-01-01';
    CREATE TABLE public.events_2029 PARTITION OF public.events FOR VALUES FROM ('2029-01-01') TO ('2030-01-01');
    INSERT INTO public.events SELECT * FROM moving;
    COMMIT;
    CREATE TABLE public.events_2028 PARTITION OF public.events FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');`);
  daemon = await startDaemon(env());
  await waitForPhase(target, 'streaming', { daemon });
  counts = await assertSameOnBothSides('after two partitions created on the source');
  assert.deepEqual(counts, { events_2025: 40, events_2026_h1: 40, events_2027: 25, events_2029: 30, events_default: 40 });
  assert.ok(daemon.logs().some((l) => /made 2 partition\(s\) the source has and the target lacked/.test(l.msg ?? '')), 'the start says what it made');
  assert.deepEqual(await target.query(`SELECT count(*)::int AS n FROM public.events_2028`), [{ n: 0 }], 'the empty one made too');
  assert.equal(errorsOf(daemon).includes('error:'), false, errorsOf(daemon));

  // The triggers stand on every partition, at every level; teardown removes them and their schema.
  const triggers = async () =>
    (await source.query<{ t: string }>(`SELECT tgrelid::regclass::text AS t FROM pg_trigger WHERE tgname = 'walbridge_truncate_walbridge' ORDER BY 1`)).map((r) => `public.${r.t}`);
  assert.deepEqual(await triggers(), [...PARTITIONS, ...GAINED].sort());
  const { code } = await daemon.stop();
  daemon = null;
  assert.equal(code, 0);
  const down = await runCli(['teardown'], env());
  assert.equal(down.code, 0, down.out);
  assert.match(down.stdout, /removed walbridge's TRUNCATE trigger from 8 partition\(s\)/);
  assert.deepEqual(await triggers(), []);
  assert.deepEqual(await source.query(`SELECT nspname FROM pg_namespace WHERE nspname = 'walbridge_fence'`), [], 'nothing left of walbridge on the source');
  assert.deepEqual(await sourceObjects(source), { slots: [], publications: [] });
});

test('preflight: a role that may not put a trigger on a partition is told which, and the fix', { timeout: 60_000 }, async () => {
  await source.query(`CREATE ROLE mover LOGIN REPLICATION PASSWORD 'mover-pw-3'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO mover`);
  const partitions = async () => {
    const r = await runCli(['preflight', '--json', '--sample-seconds', '1'], { ...env(), SOURCE_DATABASE_URL: source.url('app', { user: 'mover', password: 'mover-pw-3' }) });
    const check = (JSON.parse(r.stdout) as { checks: { id: string; status: string; message: string; fix?: string }[] }).checks.find((c) => c.id === 'partitions');
    assert.ok(check, r.out);
    return check;
  };
  let check = await partitions();
  assert.equal(check.status, 'warn');
  assert.match(check.message, /role mover may not create a trigger on partition\(s\) public\.events_2025 \(owner postgres\), .*public\.events_default \(owner postgres\): a TRUNCATE of one of them alone would not reach the target/);
  assert.match(check.fix ?? '', /GRANT TRIGGER ON public\.events_2025, .* TO mover/);

  await source.query(`GRANT TRIGGER ON ${[...PARTITIONS, ...GAINED].filter((p) => p !== 'public.events_2026_h2').join(', ')} TO mover`);
  check = await partitions();
  assert.equal(check.status, 'warn');
  assert.match(check.message, /^role mover may not create a trigger on partition\(s\) public\.events_2026_h2 \(owner postgres\):/);

  await source.query('GRANT TRIGGER ON public.events_2026_h2 TO mover');
  check = await partitions();
  assert.equal(check.status, 'pass', check.message);
  assert.match(check.message, /a TRUNCATE of a single partition, which PostgreSQL does not send that way, reaches the target/);
});
