/**
 * The core promise, end to end on real clusters (source PostgreSQL 15, target 17): the
 * target becomes an exact copy of the source and stays one while the source takes writes,
 * through a SIGKILL during the copy and another during streaming.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPair, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { APP_TABLES, createAppSchema, seedAppData, startWriteLoad, type WriteLoad } from '../harness/fixture.js';
import { waitFor } from '../harness/lsn.js';
import { errorsOf, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { pipelineRow, sourceObjects, stopLoadCleanly, tableRows, waitForCatchUp, waitForPhase } from '../helpers/state.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
let load: WriteLoad | null = null;
let daemon: DaemonProcess | null = null;

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale: 1 });
    // Enough chat history that the copy takes a few seconds and can be interrupted.
    await c.query(`
      INSERT INTO public.messages (user_id, role, content, telegram_message_id, metadata, created_at)
      SELECT (SELECT min(id) FROM public.users), 'user', repeat('bulk message ' || g || ' ', 12), g,
             jsonb_build_object('bulk', g), now() - g * interval '1 second'
        FROM generate_series(1, 250000) AS g`);
    await c.query('ANALYZE');
  });
  await target.withClient((c) => createAppSchema(c, { target: true }));
});

after(async () => {
  daemon?.kill('SIGKILL');
  await load?.stop().catch(() => {});
  await destroy?.();
});

function env(): Record<string, string> {
  return {
    SOURCE_DATABASE_URL: source.url(),
    TARGET_DATABASE_URL: target.url(),
    WALBRIDGE_SCHEMAS: 'public,auth',
    WALBRIDGE_COPY_JOBS: '2',
    WALBRIDGE_COPY_SPLIT_MB: '4',
  };
}

test('copies and streams under writes, survives SIGKILL during the copy and during streaming, ends byte-equal', { timeout: 300_000 }, async () => {
  load = startWriteLoad(source.url(), { ratePerSec: 80, truncateEvery: 150, seed: 7 });

  // 1. Start, and kill -9 while some tables are copied and others are still copying.
  daemon = await startDaemon(env());
  await waitFor(
    async () => {
      const t = await tableRows(target);
      return t.some((r) => r.state === 'copied') && t.some((r) => r.state === 'copying');
    },
    { what: 'a moment with tables both copied and copying', timeoutMs: 90_000, intervalMs: 10 },
  );
  daemon.kill('SIGKILL');
  await daemon.exited;
  // Read after the kill, not before it: a table whose copy commits between a read and the
  // signal would otherwise count as copied after the restart.
  const copiedBeforeKill = (await tableRows(target)).filter((r) => r.state === 'copied');
  const first = await pipelineRow(target);
  assert.equal(first?.phase, 'backfill', 'killed during the backfill');

  // 2. Restart: tables already copied are not copied again; the rest get a later snapshot.
  daemon = await startDaemon(env());
  await waitForPhase(target, 'streaming', { daemon });
  const afterResume = await tableRows(target);
  for (const done of copiedBeforeKill) {
    const now = afterResume.find((r) => r.table === done.table);
    assert.ok(now, done.table);
    assert.equal(now.copy_lsn, done.copy_lsn, `${done.table} keeps its copy LSN`);
    assert.deepEqual(now.copy_finished_at, done.copy_finished_at, `${done.table} was not copied again`);
  }
  const recopied = afterResume.filter((r) => !copiedBeforeKill.some((d) => d.table === r.table));
  assert.ok(recopied.length > 0, 'some tables were copied after the restart');
  const [{ later } = { later: false }] = await target.query<{ later: boolean }>(
    `SELECT bool_and(t.copy_lsn > p.consistent_lsn) AS later
       FROM walbridge.tables t, walbridge.pipeline p
      WHERE t.schema_name || '.' || t.table_name = ANY($1::text[])`,
    [recopied.map((r) => r.table)],
  );
  assert.equal(later, true, 'tables copied after the restart have a copy LSN past the slot\'s consistent point');
  assert.ok(afterResume.every((r) => r.state === 'copied'), 'every table copied');

  // 3. Kill -9 while streaming, once the target has applied some of the live writes.
  const streamingFrom = (await pipelineRow(target))?.applied_lsn;
  const seen = load.stats.transactions;
  await load.waitFor((s) => s.transactions >= seen + 100, 60_000);
  await waitFor(
    async () => {
      const rows = await target.query<{ moved: boolean }>(`SELECT applied_lsn > $1::pg_lsn AS moved FROM walbridge.pipeline`, [streamingFrom]);
      return rows[0]?.moved === true;
    },
    { what: 'the target to apply live changes', timeoutMs: 60_000 },
  );
  daemon.kill('SIGKILL');
  await daemon.exited;

  // 4. Restart, let the app write some more, then stop the app and wait for the target.
  daemon = await startDaemon(env());
  const seen2 = load.stats.transactions;
  await load.waitFor((s) => s.transactions >= seen2 + 150, 60_000);
  const running = load;
  load = null;
  const stats = await stopLoadCleanly(running, source);
  assert.ok(stats.truncates > 0, 'the load truncated a table at least once');
  assert.ok(stats.updates > 0 && stats.deletes > 0 && stats.inserts > 0);
  await waitForCatchUp(source, target);

  // 5. Every selected table holds the same rows, compared in full, in key order.
  await assertSameContent(source.url(), target.url(), APP_TABLES);
  assert.equal(errorsOf(daemon).includes('error:'), false, errorsOf(daemon));

  const { code } = await daemon.stop();
  daemon = null;
  assert.equal(code, 0, 'SIGTERM stops the daemon cleanly');
  const objects = await sourceObjects(source);
  assert.deepEqual(objects.slots, ['walbridge'], 'only walbridge\'s own slot remains (no temporary slot leaked)');
  assert.deepEqual(objects.publications, ['walbridge']);
});
