/**
 * A cutover that dies after fencing the source never leaves a fenced source with a target that
 * is behind without saying so: `walbridge status`, the page's JSON and /metrics show the fence
 * and what to run. `walbridge cutover --cancel` lifts it (the source takes writes again, the
 * migration streams on); `walbridge cutover` run again goes on from the fence and completes,
 * waiting for a daemon that was killed meanwhile. Teardown keeps the fence unless told. A
 * cutover that stopped after its record (the way back not prepared, the slot and publication
 * still on the source, where nobody reads the slot any more) is shown by status, and cutover
 * run again does what was left.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { readFences } from '../../src/state/fences.js';
import type { Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { APP_TABLES, createAppSchema } from '../harness/fixture.js';
import { waitFor } from '../harness/lsn.js';
import { CLI, runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { pipelineRow, sourceObjects, waitForPhase } from '../helpers/state.js';
import { startWitness, startWitnessPair, WORKER_LOG, type Witness } from '../helpers/witness.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
let daemon: DaemonProcess | null = null;
const writers: Witness[] = [];

const env = () => ({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SCHEMAS: 'public,auth' });

before(async () => {
  ({ source, target, destroy } = await startWitnessPair());
  daemon = await startDaemon(env());
  await waitForPhase(target, 'streaming', { daemon });
});

after(async () => {
  await Promise.all(writers.map((w) => w.stop().catch(() => undefined)));
  daemon?.kill('SIGKILL');
  await destroy?.();
});

/** Start `walbridge cutover` and SIGKILL it as soon as its fence stands on the source. */
async function cutoverKilledAfterFence(): Promise<void> {
  const child = spawn(process.execPath, [CLI, 'cutover', '--timeout', '120'], { env: { PATH: process.env.PATH ?? '', ...env() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  let code: number | null = null;
  const exited = new Promise((resolve) => child.on('exit', (c) => resolve((code = c))));
  await waitFor(
    async () => {
      if (code !== null) throw new Error(`cutover exited (${code}) before its fence stood:\n${out}`);
      return (await source.withClient((c) => readFences(c))).length > 0;
    },
    { what: 'the fence to stand', timeoutMs: 60_000, intervalMs: 10 },
  );
  child.kill('SIGKILL');
  await exited;
}

test('killed after its fence: status, the page and /metrics say so; --cancel lifts the fence and the migration streams on', { timeout: 180_000 }, async () => {
  const w = startWitness(source.url(), { table: 'public.worker_log', who: 'worker', firstId: 1, everyMs: 200 });
  writers.push(w);
  await w.until((x) => x.committed.length >= 5);
  await cutoverKilledAfterFence();
  await w.until((x) => x.refused.length >= 2);

  const status = await runCli(['status'], env());
  assert.equal(status.code, 0, status.out);
  assert.match(status.stdout, /^fence: {8}the source refuses writes to 17 table\(s\) since \S+ \(set by the cutover of migration walbridge\)$/m);
  assert.match(status.stdout, /^cutover: {6}a cutover fenced the source at \S+ and did not finish: .*Run "walbridge cutover" to finish it, or "walbridge cutover --cancel" to lift the fence\.$/m);
  const d = daemon as DaemonProcess;
  await waitFor(
    async () => {
      const s = (await (await fetch(`http://127.0.0.1:${d.port}/status.json`)).json()) as { fences: { database: string; tables: number }[]; interruptedCutover: string | null };
      return s.fences.some((f) => f.database === 'source' && f.tables === 17) && s.interruptedCutover !== null;
    },
    { what: 'the page to show the fence', timeoutMs: 15_000 },
  );
  assert.match(await (await fetch(`http://127.0.0.1:${d.port}/metrics`)).text(), /^walbridge_fenced_tables\{database="source"\} 17$/m);

  const noFence = await runCli(['cutover', '--no-fence', '--timeout', '5'], env());
  assert.equal(noFence.code, 1, 'the old way does not run over a fence that stands');
  assert.match(noFence.stderr, /the source is fenced by an interrupted cutover .*\nfix: Run "walbridge cutover" \(with the fence\) to finish it, or "walbridge cutover --cancel"/);

  const cancel = await runCli(['cutover', '--cancel'], env());
  assert.equal(cancel.code, 0, cancel.out);
  assert.match(cancel.stdout, /the fence of the interrupted cutover is lifted: the source takes writes to \d+ table\(s\) again/);
  const before = w.committed.length;
  await w.until((x) => x.committed.length >= before + 3);
  assert.equal((await pipelineRow(target))?.phase, 'streaming', 'the migration goes on');
  assert.deepEqual(await source.withClient((c) => readFences(c)), []);
  await waitFor(async () => /^walbridge_fenced_tables\{database="source"\} 0$/m.test(await (await fetch(`http://127.0.0.1:${d.port}/metrics`)).text()), {
    what: 'the metric to drop to 0',
    timeoutMs: 15_000,
  });
});

test('a row that differs on the target is found inside the pause: the cutover names it, lifts the fence, and switches nothing', { timeout: 180_000 }, async () => {
  const w = writers[0] as Witness;
  const prepare = await runCli(['cutover', '--prepare'], env());
  assert.equal(prepare.code, 0, prepare.out);
  assert.match(prepare.stdout, /prepared: walbridge keeps recording the rows it changes/);
  // A row the worker writes after the check is in the record of changed rows; on the target it
  // is made to differ (what a wrong apply would leave), after walbridge applied it.
  const committed = w.committed.length;
  await w.until((x) => x.committed.length >= committed + 1);
  const id = w.committed[committed] as number;
  await waitFor(async () => (await target.query(`SELECT 1 FROM public.worker_log WHERE id = ${id}`)).length === 1, { what: `row ${id} on the target`, timeoutMs: 30_000 });
  await target.query(`UPDATE public.worker_log SET who = 'tampered' WHERE id = ${id}`);

  const r = await runCli(['cutover', '--timeout', '60'], env());
  assert.equal(r.code, 1, r.out);
  assert.match(r.stdout, /the content was checked \d+ s ago, while the app wrote; only the rows changed since are checked again/);
  assert.match(r.stdout, /6\/7 checking the rows changed since the last check/);
  assert.match(r.stderr, new RegExp(`the check inside the pause found differences: public\\.worker_log \\(different, e\\.g\\. key ${id} changed\\) — the fence is lifted: the source takes writes again, nothing was switched`));
  assert.deepEqual(await source.withClient((c) => readFences(c)), []);
  const after = w.committed.length;
  await w.until((x) => x.committed.length >= after + 3);
  assert.equal((await pipelineRow(target))?.phase, 'streaming', 'nothing switched: the migration goes on');

  // Put the row right again, for the next test's cutover.
  const [row] = await source.query<{ who: string }>(`SELECT who FROM public.worker_log WHERE id = ${id}`);
  await target.query(`UPDATE public.worker_log SET who = $1 WHERE id = ${id}`, [row?.who]);
});

test('killed after its fence, the daemon killed too: cutover run again goes on from the fence, waits for the daemon, and completes', { timeout: 240_000 }, async () => {
  const w = writers[0] as Witness;
  await cutoverKilledAfterFence();
  daemon?.kill('SIGKILL');
  await daemon?.exited;

  const again = runCli(['cutover', '--timeout', '120'], env());
  // The cutover waits for the fence's marker; walbridge comes back and applies up to it.
  daemon = await startDaemon(env());
  const r = await again;
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /resuming the cutover interrupted after its fence/);
  assert.match(r.stdout, /Cutover done at/);
  await w.until((x) => x.refused.length >= 3);
  await w.stop();

  const ids = new Set((await target.query<{ id: string }>('SELECT id::text FROM public.worker_log')).map((x) => Number(x.id)));
  assert.deepEqual(
    w.committed.filter((id) => !ids.has(id)),
    [],
    'every row the worker was told committed is on the new database',
  );
  await assertSameContent(source.url(), target.url(), [...APP_TABLES, 'public.worker_log']);
  assert.equal((await pipelineRow(target))?.phase, 'done');
  assert.equal((await daemon.exited).code, 0, 'the daemon saw the record and stopped');
  daemon = null;

  // Teardown keeps the fence, saying why; it lifts it only when asked, with a warning.
  const keep = await runCli(['teardown'], env());
  assert.equal(keep.code, 0, keep.out);
  assert.match(keep.stdout, /the fence of the cutover stays: writes to 17 migrated table\(s\) are refused there since \S+, so the app cannot write to the database it left by mistake/);
  assert.equal((await source.withClient((c) => readFences(c))).length, 1);
  const lift = await runCli(['teardown', '--lift-fence'], env());
  assert.equal(lift.code, 0, lift.out);
  assert.match(lift.stdout, /fence lifted: \d+ table\(s\) take writes again\. WARNING: nothing carries writes made there/);
  await source.query(`INSERT INTO public.worker_log (id, who) VALUES (9999999, 'after the fence was lifted')`);
});

test('stopped after its record: status says the slot is left on the source; cutover run again prepares the way back and removes it', { timeout: 180_000 }, async () => {
  // Another migration of the same source, into a database of its own.
  const db = 'after_record';
  await target.query(`CREATE DATABASE ${db}`);
  await target.withClient(async (c) => {
    await createAppSchema(c, { target: true });
    await c.query(WORKER_LOG);
  }, db);
  const env2 = { ...env(), TARGET_DATABASE_URL: target.url(db), WALBRIDGE_SLOT: db, WALBRIDGE_PUBLICATION: db };
  const d = await startDaemon(env2);
  await waitFor(async () => (await target.query<{ p: string | null }>('SELECT daemon_phase AS p FROM walbridge.pipeline', [], db).catch(() => []))[0]?.p === 'streaming', {
    what: 'the second migration to stream',
    timeoutMs: 120_000,
  });

  // What a cutover killed right after its record leaves: the record, no way back yet, walbridge's
  // slot and publication on the source (here kept on purpose, so the moment is not a race).
  const first = await runCli(['cutover', '--timeout', '120', '--keep-source-slot', '--no-reverse-slot'], env2);
  assert.equal(first.code, 0, first.out);
  assert.equal((await d.exited).code, 0, 'the daemon saw the record and stopped');
  assert.ok((await sourceObjects(source)).slots.includes(db));
  const status = await runCli(['status'], env2);
  assert.equal(status.code, 0, status.out);
  assert.match(status.stdout, /^phase: {8}done/m);
  assert.match(
    status.stdout,
    /^cutover: {6}the cutover is recorded, but walbridge's slot after_record is still on the source, which keeps WAL for it with nobody reading it\. If the cutover was interrupted, run "walbridge cutover" again to finish it; otherwise remove the slot with "walbridge teardown"\.$/m,
  );

  const again = await runCli(['cutover', '--timeout', '60'], env2);
  assert.equal(again.code, 0, again.out);
  assert.match(again.stdout, /^this cutover was recorded already \(at \d+\/[0-9A-F]+, \S+\), but stopped before it finished: doing what was left…$/m);
  assert.match(again.stdout, /the way back starts here, not at the cutover's record/);
  assert.match(again.stdout, /way back: slot after_record_reverse at \d+\/[0-9A-F]+/);
  assert.match(again.stdout, /^then: removing walbridge's slot and publication from the source…$/m);
  assert.match(again.stdout, /Cutover done at \d+\/[0-9A-F]+\./);
  assert.doesNotMatch(again.stdout, /Remove walbridge's slot and publication from the source when done/);
  const objects = await sourceObjects(source);
  assert.ok(!objects.slots.includes(db) && !objects.publications.includes(db), `the slot and publication left the source: ${JSON.stringify(objects)}`);
  const [rec] = await target.query<{ reverse_slot: string | null }>('SELECT reverse_slot FROM walbridge.cutover', [], db);
  assert.equal(rec?.reverse_slot, `${db}_reverse`);
  assert.doesNotMatch((await runCli(['status'], env2)).stdout, /^cutover:/m, 'nothing left to say');

  // Nothing left: the cutover is over.
  const third = await runCli(['cutover', '--timeout', '60'], env2);
  assert.equal(third.code, 1, third.out);
  assert.match(third.stderr, /this migration was cut over already\nfix: Nothing to do/);

  const down = await runCli(['teardown', '--target', '--lift-fence'], env2);
  assert.equal(down.code, 0, down.out);
  await target.query(`DROP DATABASE ${db}`);
});
