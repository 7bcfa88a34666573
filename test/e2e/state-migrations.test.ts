/**
 * walbridge's state on the target has a version: a state written by an older release is
 * brought up to date in place, keeping what it records; one written by a newer release is
 * refused, by the daemon and by cutover, with the message saying what to run instead.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { formatLsn } from '../../src/lsn.js';
import { LATEST_STATE_VERSION } from '../../src/sql/migrations.js';
import { DEFAULT_STATE_SCHEMA, stateSql } from '../../src/sql/state.js';
import { checkStateVersion, migrateState } from '../../src/state/migrate.js';
import { loadPipeline, loadTables } from '../../src/state/store.js';
import { startPair, type Cluster } from '../harness/cluster.js';
import { runCli, startDaemon } from '../helpers/daemon.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
/** The state these tests read and write: the default schema, as the daemon they start uses. */
const state = stateSql(DEFAULT_STATE_SCHEMA);

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  for (const db of ['old', 'fresh', 'racing', 'newer']) await target.query(`CREATE DATABASE ${db}`, [], 'postgres');
});

after(async () => {
  await destroy?.();
});

async function withDb<T>(db: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: target.url(db) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Every column, default and constraint of schema walbridge but the version table, as text. */
async function stateSchema(db: string): Promise<string[]> {
  return withDb(db, async (c) => {
    const columns = await c.query<{ d: string }>(
      `SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') AS d
         FROM information_schema.columns WHERE table_schema = 'walbridge' AND table_name <> 'migrations'`,
    );
    const constraints = await c.query<{ d: string }>(
      `SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) AS d
         FROM pg_constraint WHERE connamespace = 'walbridge'::regnamespace AND conrelid <> 'walbridge.migrations'::regclass`,
    );
    return [...columns.rows, ...constraints.rows].map((r) => r.d).sort();
  });
}

const versions = (db: string) => withDb(db, async (c) => (await c.query<{ version: number }>('SELECT version FROM walbridge.migrations ORDER BY version')).rows.map((r) => r.version));

test('a state written by walbridge 0.1.0, before versions, is upgraded in place and keeps what it records', async () => {
  assert.equal(await withDb('old', (c) => checkStateVersion(c, state)), null, 'an empty target has no state');
  await withDb('old', async (c) => {
    await c.query(readFileSync('test/fixtures/state-0.1.0.sql', 'utf8'));
  });
  assert.equal(await withDb('old', (c) => checkStateVersion(c, state)), 0, 'a state made before versions is version 0');
  // What the old release recorded, read as it wrote it (today's reader expects the newer columns).
  const recorded = (db: string) =>
    withDb(db, async (c) => ({
      pipeline: (await c.query('SELECT phase, consistent_lsn::text, applied_lsn::text, spooled_lsn::text, spool_committed_id, applied_commit_time, daemon_phase FROM walbridge.pipeline')).rows,
      tables: (await c.query('SELECT * FROM walbridge.tables ORDER BY schema_name, table_name')).rows,
    }));
  const before = await recorded('old');
  assert.equal(before.pipeline[0]?.phase, 'streaming');

  const upgraded = await withDb('old', (c) => migrateState(c, state));
  assert.deepEqual(upgraded, { from: 0, to: LATEST_STATE_VERSION });
  assert.deepEqual(await versions('old'), Array.from({ length: LATEST_STATE_VERSION }, (_, i) => i + 1), 'every step recorded once');
  assert.equal(await withDb('old', (c) => checkStateVersion(c, state)), LATEST_STATE_VERSION);

  // Read again, the columns the old release wrote (later steps add columns of their own).
  const after = await recorded('old');
  const asBefore = (rows: Record<string, unknown>[], like: Record<string, unknown>[]) =>
    rows.map((r) => Object.fromEntries(Object.keys(like[0] ?? {}).map((k) => [k, r[k]])));
  assert.deepEqual({ pipeline: after.pipeline, tables: asBefore(after.tables, before.tables) }, before, 'the pipeline and every table keep their phase, positions and progress');
  const afterUpgrade = await withDb('old', async (c) => ({ pipeline: await loadPipeline(c, state), tables: await loadTables(c, state) }));
  assert.equal(afterUpgrade.pipeline?.phase, 'streaming', "and today's reader reads them");
  assert.equal(formatLsn(afterUpgrade.pipeline?.appliedLsn ?? 0n), '0/1F3B930');
  assert.equal(afterUpgrade.tables.length, 16);
  assert.equal(afterUpgrade.tables.filter((t) => t.state === 'copied').length, 16);

  // The upgraded state is the very schema a new migration starts with.
  assert.deepEqual(await withDb('fresh', (c) => migrateState(c, state)), { from: 0, to: LATEST_STATE_VERSION });
  assert.deepEqual(await stateSchema('old'), await stateSchema('fresh'));

  assert.deepEqual(await withDb('old', (c) => migrateState(c, state)), { from: LATEST_STATE_VERSION, to: LATEST_STATE_VERSION }, 'a second start changes nothing');
});

test('two instances starting at once migrate the state once', async () => {
  const results = await Promise.all([withDb('racing', (c) => migrateState(c, state)), withDb('racing', (c) => migrateState(c, state))]);
  assert.deepEqual(results.map((r) => r.to), [LATEST_STATE_VERSION, LATEST_STATE_VERSION]);
  assert.deepEqual(results.map((r) => r.from).sort(), [0, LATEST_STATE_VERSION], 'one of them found the work done');
  assert.equal((await versions('racing')).length, LATEST_STATE_VERSION);
});

test('a state written by a newer walbridge is refused, by the daemon and by cutover, and left as it is', async () => {
  const newer = LATEST_STATE_VERSION + 1;
  await withDb('newer', async (c) => {
    await migrateState(c, state);
    await c.query(`INSERT INTO walbridge.pipeline (source_system_id, source_database, slot_name, publication_name, phase) VALUES ('1', 'app', 'walbridge', 'walbridge', 'streaming')`);
    await c.query('INSERT INTO walbridge.migrations (version, name) VALUES ($1, $2)', [newer, 'from the future']);
  });
  await assert.rejects(
    withDb('newer', (c) => migrateState(c, state)),
    (err: Error & { hint?: string }) => {
      assert.match(err.message, new RegExp(`version ${newer}, written by a newer walbridge; this one knows versions up to ${LATEST_STATE_VERSION}`));
      assert.match(err.hint ?? '', /redeploy the newer image/);
      return true;
    },
  );

  const env = { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url('newer'), WALBRIDGE_EXIT_ON_ERROR: 'true' };
  const daemon = await startDaemon(env);
  const { code } = await daemon.exited;
  assert.equal(code, 1, 'the daemon stops instead of running on a state it does not know');
  const refused = daemon.logs().find((l) => l.level === 'error');
  assert.match(String(refused?.msg), /written by a newer walbridge/);
  assert.match(String(refused?.msg), /redeploy the newer image/);

  const cut = await runCli(['cutover', '--quiet-seconds', '1', '--timeout', '5'], env);
  assert.equal(cut.code, 1);
  assert.match(cut.stderr, /written by a newer walbridge/);

  assert.deepEqual(await versions('newer'), [...Array.from({ length: LATEST_STATE_VERSION }, (_, i) => i + 1), newer], 'nothing was changed');
  const phase = await withDb('newer', async (c) => (await c.query<{ phase: string; cut: boolean }>('SELECT phase, cutover_requested_at IS NOT NULL AS cut FROM walbridge.pipeline')).rows[0]);
  assert.deepEqual(phase, { phase: 'streaming', cut: false });
});
