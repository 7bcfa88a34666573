/**
 * A large table is copied in block ranges side by side, each range committed on its own. A
 * SIGKILL once some ranges are in and others are not must not leave those rows behind to be
 * copied twice: the restart removes them and copies the table again (source 15, target 17).
 * Its plain secondary indexes are set aside during the copy and built again after it: across
 * the kill, and by `walbridge teardown --target` when the migration is abandoned mid-copy, the
 * target ends with exactly the indexes it had, comments included; key and unique indexes are
 * never touched.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPair, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { waitFor } from '../harness/lsn.js';
import { runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { waitForCatchUp, waitForPhase } from '../helpers/state.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
let daemon: DaemonProcess | null = null;

const TABLE = `
CREATE TABLE public.events (
  id      bigint PRIMARY KEY,
  kind    text NOT NULL,
  payload text
)`;

/** On the target: indexes of every kind walbridge may set aside, and some it must leave alone. */
const TARGET_INDEXES = `
CREATE INDEX events_kind_idx ON public.events (kind);
CREATE INDEX "events Payload Prefix" ON public.events (left(payload, 8)) WHERE kind <> 'big';
CREATE INDEX events_kind_id_desc_idx ON public.events USING btree (kind text_pattern_ops, id DESC) WITH (fillfactor = 70);
CREATE INDEX events_payload_hash_idx ON public.events USING hash (payload);
CREATE UNIQUE INDEX events_kind_id_key ON public.events (kind, id);
COMMENT ON INDEX public.events_kind_idx IS 'for the "kind" filter';`;

/** Every index of public.events on the target: name, definition, comment. */
async function targetIndexes(): Promise<string[]> {
  const rows = await target.query<{ x: string }>(`
    SELECT indexname || ': ' || indexdef || ' -- ' || coalesce(obj_description(format('%I.%I', schemaname, indexname)::regclass, 'pg_class'), '') AS x
      FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'events' ORDER BY indexname`);
  return rows.map((r) => r.x);
}

const SET_ASIDE = ['events Payload Prefix', 'events_kind_id_desc_idx', 'events_kind_idx', 'events_payload_hash_idx'];
let indexesBefore: string[] = [];

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  await source.withClient(async (c) => {
    await c.query(TABLE);
    // The first blocks hold rows with large TOASTed payloads: their range carries most of the
    // COPY bytes and, rate-limited, finishes long after the others.
    await c.query(`
      INSERT INTO public.events
      SELECT g, 'big', (SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 500) i)
        FROM generate_series(1, 300) g`);
    await c.query(`INSERT INTO public.events SELECT g, 'small', 'row ' || g FROM generate_series(301, 80000) g`);
    await c.query('ANALYZE public.events');
  });
  await target.query(TABLE);
  await target.withClient((c) => c.query(TARGET_INDEXES));
  indexesBefore = await targetIndexes();
});

/** While a cut-off copy waits: its plain indexes are gone from the target and recorded, the others are there. */
async function assertSetAside(): Promise<void> {
  const names = (await targetIndexes()).map((x) => x.slice(0, x.indexOf(':')));
  assert.deepEqual(names, ['events_kind_id_key', 'events_pkey'], 'only the key and unique indexes stay during the copy');
  const recorded = await target.query<{ index_name: string }>(`SELECT index_name FROM walbridge.deferred_indexes ORDER BY index_name`);
  assert.deepEqual(recorded.map((r) => r.index_name), SET_ASIDE);
}

after(async () => {
  daemon?.kill('SIGKILL');
  await destroy?.();
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    SOURCE_DATABASE_URL: source.url(),
    TARGET_DATABASE_URL: target.url(),
    WALBRIDGE_COPY_JOBS: '4',
    WALBRIDGE_COPY_SPLIT_MB: '0.5',
    ...extra,
  };
}

async function copyState(): Promise<{ state: string; inParts: boolean; targetRows: number } | null> {
  const [row] = await target.query<{ state: string; copy_in_parts: boolean }>(
    `SELECT state, copy_in_parts FROM walbridge.tables WHERE table_name = 'events'`,
  ).catch(() => []);
  if (!row) return null;
  const [{ n } = { n: '0' }] = await target.query<{ n: string }>('SELECT count(*)::text AS n FROM public.events');
  return { state: row.state, inParts: row.copy_in_parts, targetRows: Number(n) };
}

test('a table copied in ranges and killed with some ranges in is copied again, once, with its changes', { timeout: 240_000 }, async () => {
  daemon = await startDaemon(env({ WALBRIDGE_COPY_MAX_MBPS: '1' }));
  const split = await daemon.waitForLog((l) => l.msg === 'copying in parts side by side', 'the copy to split the table', 60_000);
  // More ranges than sessions, so that sessions freed elsewhere find work; its own session and
  // every spare one (WALBRIDGE_COPY_JOBS - 1) on it.
  assert.deepEqual([split.parts, split.helpers, split.by], [8, 3, 'block range'], JSON.stringify(split));
  // Writes while the copy runs: they reach the target through the spool, after the copy.
  await source.query(`UPDATE public.events SET kind = 'changed during the copy' WHERE id IN (1, 150, 5000, 79999)`);
  await source.query(`DELETE FROM public.events WHERE id IN (2, 6000)`);
  await source.query(`INSERT INTO public.events VALUES (90001, 'new during the copy', 'x')`);

  let seen: Awaited<ReturnType<typeof copyState>> = null;
  await waitFor(
    async () => {
      seen = await copyState();
      return seen !== null && seen.state === 'copying' && seen.inParts && seen.targetRows > 0;
    },
    { what: 'some ranges committed while another still copies', timeoutMs: 60_000, intervalMs: 20 },
  );
  daemon.kill('SIGKILL');
  await daemon.exited;
  const cut = await copyState();
  assert.ok(cut && cut.state === 'copying' && cut.targetRows > 0 && cut.targetRows < 80_000, `cut off with some ranges in: ${JSON.stringify(cut)}`);
  await assertSetAside();

  daemon = await startDaemon(env());
  await daemon.waitForLog((l) => /removing the rows of the target table/.test(String(l.msg)), 'the leftover ranges to be removed', 60_000);
  await waitForPhase(target, 'streaming', { daemon });
  await source.query(`UPDATE public.events SET payload = 'changed while streaming' WHERE id = 3`);
  await waitForCatchUp(source, target);
  await assertSameContent(source.url(), target.url(), ['public.events']);
  const [{ n } = { n: '' }] = await target.query<{ n: string }>('SELECT count(*)::text AS n FROM public.events');
  assert.equal(n, String(80_000 - 2 + 1), 'every row once');
  assert.deepEqual(await targetIndexes(), indexesBefore, 'the same indexes as before the copy, built again');
  assert.deepEqual(await target.query(`SELECT * FROM walbridge.deferred_indexes`), [], 'nothing left recorded');
  // The rebuilt indexes are used and hold every row.
  const viaIndex = await target.withClient(async (c) => {
    await c.query('SET enable_seqscan = off');
    return (await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM public.events WHERE kind = 'small'`)).rows[0]?.n;
  });
  const [{ n: expected } = { n: '' }] = await source.query<{ n: string }>(`SELECT count(*)::text AS n FROM public.events WHERE kind = 'small'`);
  assert.equal(viaIndex, expected);
  await daemon.stop();
});

test('a migration abandoned during the copy: teardown --target builds the indexes set aside again', { timeout: 240_000 }, async () => {
  // Start over: no state, an empty target table, the source's slot and publication removed.
  const off = await runCli(['teardown', '--target'], env());
  assert.equal(off.code, 0, off.out);
  await target.query('TRUNCATE public.events');
  daemon = await startDaemon(env({ WALBRIDGE_COPY_MAX_MBPS: '1' }));
  await daemon.waitForLog((l) => l.msg === 'copying in parts side by side', 'the copy to split the table', 60_000);
  await waitFor(
    async () => {
      const st = await copyState();
      return st !== null && st.state === 'copying' && st.targetRows > 0;
    },
    { what: 'a range committed', timeoutMs: 60_000, intervalMs: 20 },
  );
  daemon.kill('SIGKILL');
  await daemon.exited;
  daemon = null;
  await assertSetAside();
  const r = await runCli(['teardown', '--target'], env());
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /built again 4 index\(es\) walbridge had set aside during the copy/);
  assert.deepEqual(await targetIndexes(), indexesBefore, 'the same indexes as before the copy');
});
