/**
 * Cutover and the way back. The app writes to the source until it is stopped; cutover waits
 * for that, moves the sequences, verifies, records, and cleans the source; the daemon stops
 * by itself. Then the app writes to the new database, `walbridge run --reverse` carries those
 * writes back to the old one, and `walbridge cutover --reverse` would move the app back.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPair, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { APP_TABLES, createAppSchema, seedAppData, startWriteLoad } from '../harness/fixture.js';
import { waitFor } from '../harness/lsn.js';
import { CLI, runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { pipelineRow, sourceObjects, waitForCatchUp, waitForPhase } from '../helpers/state.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
const daemons: DaemonProcess[] = [];

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale: 1 });
  });
  await target.withClient((c) => createAppSchema(c, { target: true }));
});

after(async () => {
  for (const d of daemons) d.kill('SIGKILL');
  await destroy?.();
});

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

test('cutover waits for the app to stop, moves sequences, verifies, records, cleans the source; the daemon stops by itself', { timeout: 240_000 }, async () => {
  const d = await startDaemon(env());
  daemons.push(d);
  await waitForPhase(target, 'streaming', { daemon: d });
  const load = startWriteLoad(source.url(), { ratePerSec: 60, seed: 21 });
  await load.waitFor((s) => s.transactions >= 100, 30_000);

  // Cutover starts while the app still writes: it must wait for it.
  const cut = runCli(['cutover', '--quiet-seconds', '2', '--timeout', '120', '--sequence-margin', '100'], env());
  await waitFor(async () => (await target.query<{ r: boolean }>(`SELECT cutover_requested_at IS NOT NULL AS r FROM walbridge.pipeline`))[0]?.r === true, {
    what: 'cutover to be requested',
  });
  await waitFor(async () => (await fetch(`http://127.0.0.1:${d.port}/status.json`).then((r) => r.json() as Promise<{ phase: string }>)).phase === 'cutover', {
    what: 'the daemon to show phase cutover',
    timeoutMs: 10_000,
  });
  const seen = load.stats.transactions;
  await load.waitFor((s) => s.transactions >= seen + 60, 30_000);
  assert.equal((await pipelineRow(target))?.phase, 'streaming', 'no cutover while the app writes');
  const stats = await load.stop(); // the app stops writing
  assert.equal(stats.errors, 0);
  const sourceNext = await nextValues(source);

  const r = await cut;
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /3\/6 verifying every table one last time…\n\s+16 table\(s\) equal/);
  assert.match(r.stdout, /Cutover done at \d+\/[0-9A-F]+/);
  assert.match(r.stdout, /Point the app's DATABASE_URL at the database of TARGET_DATABASE_URL/);
  assert.match(r.stdout, /walbridge run --reverse/);

  // The daemon saw the record and stopped on its own, cleanly.
  const { code } = await d.exited;
  assert.equal(code, 0);
  assert.ok(d.logs().some((l) => l.msg === 'the cutover is recorded on the target: this migration is done; stopping'));
  assert.equal((await pipelineRow(target))?.phase, 'done');
  assert.deepEqual(await sourceObjects(source), { slots: [], publications: [] }, 'slot and publication removed from the source');
  const [rec] = await target.query<{ reverse_slot: string; n: string }>(`SELECT reverse_slot, jsonb_object_keys(tables) AS n FROM walbridge.cutover LIMIT 1`);
  assert.equal(rec?.reverse_slot, 'walbridge_reverse');
  await assertSameContent(source.url(), target.url(), APP_TABLES);

  // Every sequence on the target hands out the source's next value plus the margin, and
  // pg_sequences shows it moved: a NULL last_value there reads as "never used".
  const shown = await target.query<{ seq: string; quoted: string; last: string | null }>(
    `SELECT schemaname || '.' || sequencename AS seq, format('%I.%I', schemaname, sequencename) AS quoted, last_value::text AS last
       FROM pg_sequences WHERE schemaname IN ('public', 'auth')`,
  );
  let checked = 0;
  for (const [seq, next] of sourceNext) {
    const row = shown.find((r) => r.seq === seq);
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

test('the way back: writes on the new database reach the old one, from the cutover point', { timeout: 240_000 }, async () => {
  const rev = await startDaemon(env(), { script: CLI, args: ['run', '--reverse'] });
  daemons.push(rev);
  await waitForPhase(source, 'streaming', { daemon: rev });
  // The app now runs on the new database.
  const load = startWriteLoad(target.url(), { ratePerSec: 60, seed: 22, truncateEvery: 80 });
  await load.waitFor((s) => s.transactions >= 150, 60_000);
  const stats = await load.stop();
  assert.equal(stats.errors, 0, 'no collision with copied rows: the sequences were moved at cutover');
  await waitForCatchUp(target, source);
  await assertSameContent(target.url(), source.url(), APP_TABLES);

  // Rolling back is a cutover of the way back.
  const r = await runCli(['cutover', '--reverse', '--quiet-seconds', '1', '--timeout', '60'], env());
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /Point the app's DATABASE_URL at the database of SOURCE_DATABASE_URL/);
  assert.equal((await rev.exited).code, 0);
  const objects = await sourceObjects(target);
  assert.deepEqual(objects, { slots: [], publications: [] }, 'the reverse slot and publication are removed from the new database');
});
