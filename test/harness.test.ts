/**
 * Tests of the test harness itself: throwaway clusters, the app fixture, the write load and the
 * content comparison. If these fail, every daemon test built on them is meaningless.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Cluster } from './harness/cluster.js';
import { startPair } from './harness/cluster.js';
import { assertSameContent, compareTables } from './harness/compare.js';
import { APP_TABLES, createAppSchema, seedAppData, startWriteLoad } from './harness/fixture.js';
import { waitFor } from './harness/lsn.js';

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Run a child process that starts a cluster, prints where it lives, then ends the way `ending`
 * says, without calling destroy(): the harness's exit hook must clean up after it.
 */
async function childThatLeavesACluster(ending: 'exit' | 'SIGTERM'): Promise<{ rootDir: string; port: number; code: number | null }> {
  const clusterModule = new URL('./harness/cluster.ts', import.meta.url).href;
  const script = `
    import { startCluster } from ${JSON.stringify(clusterModule)};
    const c = await startCluster({ major: 15, name: 'exit-hook' });
    console.log(JSON.stringify({ rootDir: c.rootDir, port: c.port }));
    if (${JSON.stringify(ending)} === 'exit') process.exit(0);
    setInterval(() => undefined, 1000); // stay alive until signalled
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const info = await new Promise<{ rootDir: string; port: number }>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line) as { rootDir: string; port: number });
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before reporting: ${err}`)));
  });
  // While the child lives, its cluster must be up.
  assert.ok(fs.existsSync(info.rootDir), 'cluster dir exists while the child runs');
  if (ending === 'SIGTERM') child.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (c) => resolve(c));
  });
  return { ...info, code };
}

void describe('test harness', { timeout: 120_000 }, () => {
  let source: Cluster;
  let target: Cluster;
  let destroyPair: () => Promise<void>;

  before(async () => {
    const pair = await startPair({ sourceMajor: 15, targetMajor: 17 });
    source = pair.source;
    target = pair.target;
    destroyPair = pair.destroy;
  });

  after(async () => {
    await destroyPair?.();
  });

  void it('starts a 15 → 17 pair with logical WAL on the source, on 127.0.0.1, not 5432', async () => {
    const [s] = await source.query<{ v: string; wal_level: string; fsync: string; slots: string }>(
      `SELECT current_setting('server_version_num') AS v, current_setting('wal_level') AS wal_level,
              current_setting('fsync') AS fsync, current_setting('max_replication_slots') AS slots`,
    );
    const [t] = await target.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
    assert.match(s?.v ?? '', /^15\d{4}$/);
    assert.match(t?.v ?? '', /^17\d{4}$/);
    assert.equal(s?.wal_level, 'logical');
    assert.equal(s?.fsync, 'on');
    assert.equal(s?.slots, '10');
    assert.equal(source.host, '127.0.0.1');
    assert.notEqual(source.port, 5432);
    assert.notEqual(target.port, 5432);
    assert.notEqual(source.port, target.port);
    assert.ok(source.dataDir.startsWith(source.rootDir));
    // url() percent-encodes: a role whose name and password need escaping can log in through it.
    const user = 'weird user@x';
    const password = "p@ss:w/o?rd#%'";
    await source.query(`CREATE ROLE "weird user@x" LOGIN PASSWORD 'p@ss:w/o?rd#%'''`);
    const c = new pg.Client({ connectionString: source.url('app', { user, password }) });
    await c.connect();
    const r = await c.query<{ u: string }>('SELECT current_user AS u');
    await c.end();
    assert.equal(r.rows[0]?.u, user);
  });

  void it('creates the app schema on both sides and seeds the awkward values', async () => {
    await source.withClient((c) => createAppSchema(c));
    await target.withClient((c) => createAppSchema(c, { target: true }));
    const t0 = Date.now();
    await source.withClient((c) => seedAppData(c));
    const seedMs = Date.now() - t0;
    assert.ok(seedMs < 5000, `seeding took ${seedMs} ms`);

    const [facts] = await source.query<Record<string, boolean | string>>(`
      SELECT
        (SELECT count(*) FROM public.agent_sessions WHERE pg_column_size(state) > 8000 AND pg_column_size(state) >= octet_length(state::text) / 2) > 0 AS toasted_uncompressible,
        (SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'public.agent_sessions'::regclass) > 0 AS toast_table_used,
        (SELECT bool_or(telegram_message_id = 9223372036854775807) AND bool_or(telegram_message_id = 9007199254740993) FROM public.messages) AS int8_edges,
        (SELECT bool_or(username IS NULL) AND bool_or(username = '') FROM public.users) AS null_and_empty,
        (SELECT bool_or(content ~ '[\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f]') AND bool_or(content LIKE E'%\\t%\\n%\\r%') FROM public.messages) AS control_chars,
        (SELECT bool_or(position('\\x00'::bytea IN embedding) > 0) AND bool_or(position('\\xff'::bytea IN embedding) > 0) FROM public.mirt_memories) AS bytea_00_ff,
        (SELECT bool_or(length(split_part(cost_exact::text, '.', 1) || split_part(cost_exact::text, '.', 2)) >= 40) FROM public.llm_usage) AS numeric_40_digits,
        (SELECT bool_or(cost_exact = 'NaN') FROM public.products) AS numeric_nan,
        (SELECT bool_or(banned_until = 'infinity') FROM auth.users) AS ts_infinity,
        (SELECT count(DISTINCT tableoid) FROM public.llm_traces) >= 4 AS partitions_used,
        (SELECT count(*) FROM (SELECT 1 FROM public.webhook_dedupe GROUP BY webhook_dedupe.* HAVING count(*) > 1) d) > 0 AS duplicate_rows,
        (SELECT relreplident FROM pg_class WHERE oid = 'public.webhook_dedupe'::regclass) AS replident,
        (SELECT count(*) FROM public."Kundenbewertungen Ü") > 0 AS non_ascii_table,
        (SELECT bool_or(array_position(tags, NULL) IS NOT NULL) AND bool_or('NULL' = ANY (tags)) FROM public.users) AS array_null_vs_string,
        (SELECT bool_or(attributes::text LIKE '%"a": [1, 2.50, 1e3],%') FROM public.products) AS json_verbatim
    `);
    assert.ok(facts);
    for (const [k, v] of Object.entries(facts)) {
      if (k === 'replident') assert.equal(v, 'f', 'webhook_dedupe has REPLICA IDENTITY FULL');
      else assert.equal(v, true, `fixture carries ${k}`);
    }
    const [counts] = await source.query<{ n: string }>(
      `SELECT (${APP_TABLES.map((t) => {
        const dot = t.indexOf('.');
        return `(SELECT count(*) FROM "${t.slice(0, dot)}"."${t.slice(dot + 1)}")`;
      }).join(' + ')})::text AS n`,
    );
    const total = Number(counts?.n);
    assert.ok(total >= 2000 && total <= 5000, `scale 1 seeds ${total} rows`);
  });

  void it('compareTables: target empty ⇒ differs; same seed on 15 and 17 ⇒ equal; one changed row ⇒ pinpointed', async () => {
    const empty = await compareTables(source.url(), target.url(), APP_TABLES);
    assert.equal(empty.length, APP_TABLES.length);
    for (const d of empty) {
      assert.equal(d.equal, false, `${d.table} differs from the empty target`);
      assert.ok(d.sourceRows > 0, `${d.table} has rows on the source`);
      assert.equal(d.targetRows, 0);
      assert.match(d.firstDifference ?? '', /fewer rows/);
    }

    const self = await compareTables(source.url(), source.url(), APP_TABLES);
    assert.ok(self.every((d) => d.equal && d.sourceRows === d.targetRows && d.sourceRows > 0), JSON.stringify(self.filter((d) => !d.equal)));

    // The seed is deterministic and both majors print values identically under the pinned
    // session settings: seeding the target the same way gives equal content.
    await target.withClient((c) => seedAppData(c));
    await assertSameContent(source.url(), target.url(), APP_TABLES);

    // A one-character change deep inside a TOASTed jsonb is found and located.
    await target.query(
      `UPDATE public.agent_sessions SET state = jsonb_set(state, '{channel_values,stage}', '"tampered"')
        WHERE id = (SELECT id FROM public.agent_sessions ORDER BY id OFFSET 7 LIMIT 1)`,
    );
    await target.query(`DELETE FROM public."Kundenbewertungen Ü" WHERE "Bewertungs-ID" = 3`);
    await assert.rejects(assertSameContent(source.url(), target.url(), APP_TABLES), (err: Error) => {
      assert.match(err.message, /2 of 16 tables differ/);
      assert.match(err.message, /public\.agent_sessions: source 150 rows, target 150 rows; row #8 /);
      assert.match(err.message, /tampered/);
      assert.match(err.message, /public\.Kundenbewertungen Ü: source 80 rows, target 79 rows/);
      return true;
    });
  });

  void it('write load: app-like transactions, including unchanged-TOAST updates and TRUNCATE', async () => {
    // A test_decoding slot shows what a logical consumer will receive from this load.
    await source.query(`SELECT pg_create_logical_replication_slot('harness_check', 'test_decoding')`);
    const load = startWriteLoad(source.url(), { ratePerSec: 250, clients: 2, truncateEvery: 40, seed: 7 });
    try {
      await load.waitFor((s) => s.transactions >= 200, 30_000);
    } finally {
      await load.stop();
    }
    const stats = load.stats;
    assert.ok(stats.transactions >= 200, JSON.stringify(stats));
    assert.ok(stats.inserts > 0 && stats.updates > 0 && stats.deletes > 0, JSON.stringify(stats));
    assert.ok(stats.truncates >= 1, JSON.stringify(stats));
    assert.equal(stats.errors, 0, `no errors without faults: ${load.recentErrors.join(' | ')}`);
    // stop() really stops: its connections are gone (backends exit just after Terminate).
    await waitFor(
      async () => {
        const [r] = await source.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name = 'walbridge-test-load'`);
        return r?.n === '0';
      },
      { timeoutMs: 5000, what: 'write load connections to close' },
    );

    const [changes] = await source.query<Record<string, string>>(`
      SELECT count(*) FILTER (WHERE data LIKE 'table public.agent_sessions: UPDATE:%unchanged-toast-datum%')::text AS unchanged_toast,
             count(*) FILTER (WHERE data LIKE 'table public.agent_sessions: UPDATE:%' AND data NOT LIKE '%unchanged-toast-datum%')::text AS full_rewrite,
             count(*) FILTER (WHERE data LIKE 'table public.webhook_dedupe: TRUNCATE%')::text AS truncates,
             count(*) FILTER (WHERE data LIKE 'table public.llm_traces_2%: INSERT:%')::text AS partition_inserts,
             count(*) FILTER (WHERE data LIKE 'table public.order_items: DELETE:%')::text AS cascade_deletes
        FROM pg_logical_slot_get_changes('harness_check', NULL, NULL)`);
    await source.query(`SELECT pg_drop_replication_slot('harness_check')`);
    assert.ok(changes);
    for (const [k, v] of Object.entries(changes)) assert.ok(Number(v) > 0, `the load produces ${k} (${JSON.stringify(changes)})`);

    const diffs = await compareTables(source.url(), target.url(), APP_TABLES);
    assert.ok(diffs.some((d) => !d.equal), 'the load made the source differ from the target');
  });

  void it('write load survives an immediate restart of the source', async () => {
    const load = startWriteLoad(source.url(), { ratePerSec: 150, clients: 2, seed: 8 });
    try {
      await load.waitFor((s) => s.transactions >= 30, 20_000);
      assert.equal(load.stats.errors, 0, load.recentErrors.join(' | '));
      await source.restart('immediate');
      const atRestart = load.stats.transactions;
      await load.waitFor((s) => s.errors > 0 && s.transactions >= atRestart + 50, 30_000);
    } finally {
      await load.stop();
    }
    assert.ok(load.stats.errors > 0);
    // The source is consistent after crash recovery and the load kept committing.
    const [r] = await source.query<{ ok: boolean }>(
      `SELECT NOT EXISTS (SELECT 1 FROM public.order_items i LEFT JOIN public.orders o ON o.id = i.order_id WHERE o.id IS NULL) AS ok`,
    );
    assert.equal(r?.ok, true);
    assert.match(await source.logTail(200), /database system was interrupted|redo done|not properly shut down/);
  });

  void it('destroy stops the servers and removes their directories', async () => {
    const dirs = [source.rootDir, target.rootDir];
    const ports = [source.port, target.port];
    await destroyPair();
    await destroyPair(); // idempotent
    for (const d of dirs) assert.equal(fs.existsSync(d), false, `${d} removed`);
    for (const p of ports) assert.equal(await portOpen(p), false, `port ${p} closed`);
  });

  void it('a test process that exits or is killed without destroy() leaves no server or directory', async () => {
    const [exited, killed] = await Promise.all([childThatLeavesACluster('exit'), childThatLeavesACluster('SIGTERM')]);
    assert.equal(exited.code, 0);
    assert.equal(killed.code, 128 + 15);
    for (const c of [exited, killed]) {
      await waitFor(async () => !fs.existsSync(c.rootDir) && !(await portOpen(c.port)), { timeoutMs: 10_000, what: `cleanup of ${c.rootDir}` });
    }
  });
});
