/**
 * walbridge never sits on its slot: while a long copy runs, the change stream is drained
 * into the spool on the target, so the WAL the source must keep for the slot stays small
 * even when the app writes far more than that meanwhile (on Supabase a slot holding more
 * than max_slot_wal_keep_size, 512 MB, is invalidated).
 *
 * What remains held is bounded by PostgreSQL itself, not by the copy: a slot's restart point
 * moves only at the running-transactions records the server logs every 15 s, so about 15 s of
 * the app's WAL plus what is in flight (up to about 30 s). The test writes steadily for the whole of a
 * copy lasting well over a minute and a half, several times that bound.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPair, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { waitFor } from '../harness/lsn.js';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { tableRows, waitForCatchUp, waitForPhase } from '../helpers/state.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
let daemon: DaemonProcess | null = null;

const SCHEMA = `
CREATE TABLE archive (id bigint PRIMARY KEY, payload text NOT NULL);
CREATE TABLE churn (id bigserial PRIMARY KEY, payload text NOT NULL);
CREATE TABLE scratch (id bigserial PRIMARY KEY, payload text NOT NULL);
`;

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  await source.query(SCHEMA);
  await target.query(SCHEMA);
  await source.query(`INSERT INTO archive SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 80000) g`);
  await source.query('ANALYZE');
});

after(async () => {
  daemon?.kill('SIGKILL');
  await destroy?.();
});

const MB = 1024 * 1024;

test('retained WAL stays bounded while a long copy runs under a heavy write load', { timeout: 360_000 }, async () => {
  daemon = await startDaemon({
    SOURCE_DATABASE_URL: source.url(),
    TARGET_DATABASE_URL: target.url(),
    WALBRIDGE_TABLES: 'public.archive,public.churn',
    // The copy is held back so that it lasts about 100 s while the app writes.
    WALBRIDGE_COPY_MAX_MBPS: '0.25',
    WALBRIDGE_COPY_JOBS: '1',
  });
  await waitFor(async () => (await tableRows(target)).some((t) => t.table === 'public.archive' && t.state === 'copying'), {
    what: 'the copy of public.archive to start',
    timeoutMs: 30_000,
  });

  const [{ lsn: startLsn } = { lsn: '0/0' }] = await source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const startedAt = Date.now();
  let writing = true;
  let maxRetained = 0;
  let maxUnconfirmed = 0;
  const writer = source.withClient(async (c) => {
    while (writing) {
      // Replicated changes (they go to the spool) and other WAL the slot must not hold back.
      await c.query(`INSERT INTO churn (payload) SELECT repeat(md5(random()::text), 8) FROM generate_series(1, 200)`);
      await c.query(`INSERT INTO scratch (payload) SELECT repeat(md5(random()::text), 32) FROM generate_series(1, 1000)`);
      await c.query(`DELETE FROM scratch WHERE id < (SELECT max(id) - 4000 FROM scratch)`);
      await new Promise((r) => setTimeout(r, 300)); // a steady app, about 3 MB of WAL a second
    }
  });
  const sampler = (async () => {
    while (writing) {
      const [r] = await source.query<{ retained: string | null; unconfirmed: string | null }>(
        `SELECT (pg_current_wal_lsn() - restart_lsn)::int8::text AS retained, (pg_current_wal_lsn() - confirmed_flush_lsn)::int8::text AS unconfirmed
           FROM pg_replication_slots WHERE slot_name = 'walbridge'`,
      );
      maxRetained = Math.max(maxRetained, Number(r?.retained ?? 0));
      maxUnconfirmed = Math.max(maxUnconfirmed, Number(r?.unconfirmed ?? 0));
      await new Promise((res) => setTimeout(res, 250));
    }
  })();
  let written = 0;
  try {
    // Write while the copy runs, up to 250 MB of WAL.
    await waitFor(
      async () => {
        const [w] = await source.query<{ bytes: string }>(`SELECT (pg_current_wal_lsn() - $1::pg_lsn)::int8::text AS bytes`, [startLsn]);
        written = Number(w?.bytes ?? 0);
        const archive = (await tableRows(target)).find((t) => t.table === 'public.archive');
        return written > 250 * MB || archive?.state !== 'copying';
      },
      { what: 'the app to write while the copy runs', timeoutMs: 200_000, intervalMs: 250 },
    );
  } finally {
    writing = false;
    await writer;
    await sampler;
  }
  t_diag(
    `the app wrote ${(written / MB).toFixed(0)} MB of WAL during the copy; the slot held back at most ${(maxRetained / MB).toFixed(1)} MB ` +
      `(at most ${(maxUnconfirmed / MB).toFixed(1)} MB not yet confirmed)`,
  );
  const seconds = (Date.now() - startedAt) / 1000;
  assert.ok(written > 64 * MB, `the app wrote only ${(written / MB).toFixed(0)} MB during the copy`);
  // Bounded by time, not by the copy: at most ~45 s of the app's WAL, whatever the copy's length.
  assert.ok(maxRetained < (written / seconds) * 45, `retained WAL peaked at ${(maxRetained / MB).toFixed(1)} MB, more than 45 s of the app's WAL`);
  assert.ok(maxRetained < written / 2, `retained WAL peaked at ${(maxRetained / MB).toFixed(1)} MB while ${(written / MB).toFixed(0)} MB were written`);

  await waitForPhase(target, 'streaming', { daemon, timeoutMs: 180_000 });
  await waitForCatchUp(source, target);
  await assertSameContent(source.url(), target.url(), ['public.archive', 'public.churn']);
});

function t_diag(message: string): void {
  process.stdout.write(`# ${message}\n`);
}
