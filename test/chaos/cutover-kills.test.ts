/**
 * Cutover killed at each of its steps. What it proves, with an app-like load and two witness
 * writers (the table's owner, and a superuser) writing to the source throughout:
 *
 * - SIGKILL of `walbridge cutover`, of the daemon, or of both, as soon as the cutover prints
 *   step k/7 (k = 1 to 7), or as its fence's record shows (the fence being raised), or step 7's
 *   line after its record, never leaves the source fenced
 *   without `walbridge status` saying so: a source that refuses writes has its fence recorded,
 *   status shows it ("fence:"), and while the target may be behind it (nothing recorded as cut
 *   over) status says the cutover did not finish and what to run ("cutover:"). A cutover recorded
 *   before the kill had the fence's marker applied: the target is not behind.
 * - Then, the daemon started again if it was killed, `walbridge cutover` completes (the one that
 *   was running, when only the daemon was killed; run again otherwise: it goes on from the fence,
 *   or starts over if none stood, or finishes what a recorded cutover left). Had it failed
 *   instead, the source would have to take writes again and walbridge stream (asserted), and the
 *   next run complete.
 * - After it, every row the witnesses were told committed on the source is on the target, every
 *   write refused was refused with the fence's message (SQLSTATE 25006), the app's too, every
 *   table is equal row by row, the daemon stopped by itself, and the slot and publication left
 *   the source.
 *
 * One source/target pair for all of it, the writers never stopped: each round is a migration of
 * its own, into a new database on the target cluster with its own slot, publication and fence,
 * copied and streaming before its cutover is started and killed. Its fence is lifted after
 * (`walbridge teardown --target --lift-fence`), so the next round starts from a source that takes
 * writes. Each kill is kept in the chaos report: where, which process, what it left, what status
 * said, how it ended, how long writes were refused.
 *
 *   npm test / npm run test:chaos               the fence's window and the record: 3/7 as the
 *                                               fence is recorded, 4/7, 7/7 and 7/7 after its
 *                                               record, one kind of kill each (which one turns
 *                                               with the seed): about a minute
 *   WALBRIDGE_CHAOS=long npm run test:chaos     each of the 9 points (1/7 to 7/7, as the fence is
 *                                               recorded, after the record) with each kind: 27
 *                                               rounds
 *   WALBRIDGE_CUTOVER_KILLS=fence:cutover,recorded:both   those rounds alone (point:victim)
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { readFences } from '../../src/state/fences.js';
import { checkContent, describeContent } from '../harness/diff.js';
import { APP_TABLES, createAppSchema } from '../harness/fixture.js';
import { runSeed } from '../harness/rng.js';
import { CLI, type CliResult, type DaemonProcess } from '../helpers/daemon.js';
import { Exposure, secretForms } from '../helpers/observe.js';
import { startWitness, WORKER_LOG, type Witness } from '../helpers/witness.js';
import { cutoverKills, cutoverKillTable, results, summaryTable, writeDocSection, writesDocs, type CutoverKill, type Fault, type ScenarioResult } from './report.js';
import { World, type Migration } from './world.js';

const LONG = process.env.WALBRIDGE_CHAOS === 'long';
const SEED = runSeed();

type Victim = 'cutover' | 'daemon' | 'both';
const VICTIMS: readonly Victim[] = ['cutover', 'daemon', 'both'];
const VICTIM_NAME: Record<Victim, CutoverKill['killed']> = { cutover: 'the cutover command', daemon: 'the daemon', both: 'both' };

/**
 * Where a kill lands: as soon as the cutover prints step k/7; 'fence', once it printed 3/7, as
 * soon as its fence's record shows on the source (recorded before the switch goes up: the kill
 * lands while the fence is being raised, before its marker, or just after); 'recorded', as soon
 * as it prints how long writes were refused, the line after step 7's record and the way back's
 * slot, before the slot and publication leave the source.
 */
type KillPoint = 1 | 2 | 3 | 'fence' | 4 | 5 | 6 | 7 | 'recorded';
const POINTS: readonly KillPoint[] = [1, 2, 3, 'fence', 4, 5, 6, 7, 'recorded'];

interface Round {
  at: KillPoint;
  victim: Victim;
}

const pointName = (p: KillPoint) => (p === 'recorded' ? '7/7, after its record' : p === 'fence' ? '3/7, as its fence is recorded' : `${p}/7`);

/** WALBRIDGE_CUTOVER_KILLS=fence:cutover,recorded:both runs those rounds alone (to repeat one). */
function chosenRounds(spec: string): Round[] {
  return spec.split(',').map((x) => {
    const m = /^([1-7]|fence|recorded):(cutover|daemon|both)$/.exec(x.trim());
    if (!m) throw new Error(`WALBRIDGE_CUTOVER_KILLS: "${x}" is not point:victim (1-7, fence or recorded; cutover, daemon or both)`);
    const at = m[1] === 'fence' || m[1] === 'recorded' ? m[1] : (Number(m[1]) as KillPoint);
    return { at, victim: m[2] as Victim };
  });
}

/**
 * Every point with every kind of kill (long run); in the short slice the fence's window (3/7 as
 * the fence is recorded, 4/7) and step 7 before and after its record, one kind of kill each,
 * turned by the seed.
 */
const ROUNDS: Round[] = process.env.WALBRIDGE_CUTOVER_KILLS
  ? chosenRounds(process.env.WALBRIDGE_CUTOVER_KILLS)
  : LONG
    ? POINTS.flatMap((at) => VICTIMS.map((victim) => ({ at, victim })))
    : (['fence', 4, 7, 'recorded'] as const).map((at, i) => ({ at, victim: VICTIMS[(i + SEED) % VICTIMS.length] as Victim }));

const stepOf = (line: string): number | null => {
  const m = /^([1-7])\/7 /.exec(line);
  return m ? Number(m[1]) : null;
};

/** Whether `line` of the cutover's output is the one to kill at (for 'fence': to start watching for the fence's record). */
function killLine(at: KillPoint, line: string): boolean {
  if (at === 'recorded') return /^ {4}writes to the migrated tables were refused for /.test(line);
  return stepOf(line) === (at === 'fence' ? 3 : at);
}

const PASSWORDS = { source: 'cut-src-Fähre:3b@q/Ü#x', target: 'cut-tgt-Sch1ff%5a?=&+z', owner: 'cut-owner-Hafen@7/y' };
const OWNER = { user: 'app_owner', password: PASSWORDS.owner };
const TABLES = [...APP_TABLES, 'public.worker_log'];
/** What a write refused by the fence of any migration of this file says. */
const FENCE_MESSAGE = /^[\w."Ü ]+ no longer takes writes on this database: walbridge moved it to the new database \(cutover of migration "ck\d+", \d{4}-\d\d-\d\dT[\d:]+Z\)$/;
/** The copy at full speed (the world holds it back for kills meant for the copy: none here). */
const DAEMON_ENV = { WALBRIDGE_COPY_MAX_MBPS: '' };
const CUTOVER = ['cutover', '--timeout', '120'];

const exposure = new Exposure();
exposure.addSecrets(...secretForms('owner password', PASSWORDS.owner));
let world: World | null = null;
const witnesses: Witness[] = [];
const runStarted = Date.now();

before(async () => {
  console.log(`# cutover kills: ${LONG ? 'long run' : 'short slice'}, seed ${SEED} (repeat with WALBRIDGE_TEST_SEED=${SEED}): ${ROUNDS.map((r) => `${pointName(r.at)} ${r.victim}`).join(', ')}`);
  world = await World.create({ name: 'cutover', sourcePassword: PASSWORDS.source, targetPassword: PASSWORDS.target, exposure });
  const w = world;
  await w.source.query(WORKER_LOG);
  await w.source.query(`CREATE ROLE ${OWNER.user} LOGIN PASSWORD '${OWNER.password}'; ALTER TABLE public.worker_log OWNER TO ${OWNER.user}`);
  witnesses.push(
    startWitness(w.source.url('app', OWNER), { table: 'public.worker_log', who: 'owner', firstId: 1, everyMs: 150 }),
    startWitness(w.source.url(), { table: 'public.worker_log', who: 'superuser', firstId: 10_000_000, everyMs: 200 }),
  );
});

after(async () => {
  await Promise.all(witnesses.map((x) => x.stop().catch(() => undefined)));
  await world?.destroy().catch(() => undefined);
  const minutes = ((Date.now() - runStarted) / 60_000).toFixed(1);
  const table = summaryTable(results);
  const kills = cutoverKillTable(cutoverKills);
  console.log(`\n# walbridge cutover kills (${LONG ? 'long run' : 'short slice'}, seed ${SEED}, ${minutes} min)\n\n${table}\n\n${kills}\n`);
  if (writesDocs() && cutoverKills.length > 0) {
    writeDocSection(
      'cutover-kills',
      [
        `Run on ${new Date().toISOString().slice(0, 10)} with \`${LONG ? 'WALBRIDGE_CHAOS=long ' : ''}npm run test:chaos\` (seed ${SEED}, ${minutes} minutes, ` +
          'source PostgreSQL 15, target PostgreSQL 17, 2 cores): one round per kill, each a migration of its own, with the load and both witnesses writing.',
        '',
        kills,
      ].join('\n'),
    );
  }
});

function mainWorld(): World {
  assert.ok(world, 'the source/target pair was not set up');
  return world;
}

// --- reading what a kill left ------------------------------------------------------------------

interface Pipeline {
  phase: string;
  fence_marker: string | null;
  /** The phase the daemon last reported itself in (cutover checks that it runs). */
  daemon_phase: string | null;
}

async function pipelineOf(w: World, m: Migration): Promise<Pipeline | null> {
  const rows = await w.target.query<Pipeline>('SELECT phase, fence_marker, daemon_phase FROM walbridge.pipeline', [], m.database).catch(() => []);
  return rows[0] ?? null;
}

/** Whether a write to the source goes through now (in a transaction rolled back) or is refused by a fence. */
async function sourceTakesWrites(w: World): Promise<boolean> {
  return w.source.withClient(async (c) => {
    await c.query('BEGIN');
    try {
      await c.query(`INSERT INTO public.worker_log (id, who) VALUES (-1, 'probe')`);
      return true;
    } catch (err) {
      const e = err as pg.DatabaseError;
      assert.equal(e.code, '25006', `the probe write failed otherwise than by a fence: ${e.message}`);
      assert.match(e.message, FENCE_MESSAGE);
      return false;
    } finally {
      await c.query('ROLLBACK');
    }
  });
}

interface AfterKill {
  left: string;
  status: string;
}

/**
 * What a kill left, and what `walbridge status` said about it. When the cutover command still
 * runs (only the daemon was killed) the fence may go up or down meanwhile: status must show it
 * when the source refused writes just before and just after status read it.
 */
async function readAfterKill(w: World, m: Migration, cutoverRunning: boolean): Promise<AfterKill> {
  const refusedBefore = !(await sourceTakesWrites(w));
  const s = await w.cli(['status'], m);
  const refusedAfter = !(await sourceTakesWrites(w));
  assert.equal(s.code, 0, s.out);
  const fence = (await w.source.withClient((c) => readFences(c))).find((f) => f.migration === m.slot) ?? null;
  const p = await pipelineOf(w, m);
  const [triggers] = await w.source.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = $1', [`walbridge_fence_${m.slot}`]);
  const fenceLine = new RegExp(`^fence: {8}the source refuses writes to ${TABLES.length} table\\(s\\) since \\S+ \\(set by the cutover of migration ${m.slot}\\)$`, 'm');
  const unfinished = /^cutover: {6}a cutover fenced the source at \S+ and did not finish: the app's writes to the migrated tables are refused there\. Run "walbridge cutover" to finish it, or "walbridge cutover --cancel" to lift the fence\.$/m;
  const slotLeft = new RegExp(`^cutover: {6}the cutover is recorded, but walbridge's slot ${m.slot} is still on the source, which keeps WAL for it with nobody reading it\\. If the cutover was interrupted, run "walbridge cutover" again to finish it`, 'm');
  const saysFence = fenceLine.test(s.stdout);
  const saysUnfinished = unfinished.test(s.stdout);
  const saysSlotLeft = slotLeft.test(s.stdout);
  const [slot] = await w.source.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1', [m.slot]);
  const saysDone = /^phase: {8}done/m.test(s.stdout);
  const ctx = `walbridge status said:\n${s.out}`;
  if (refusedBefore && refusedAfter) {
    assert.ok(saysFence, `the source refuses writes; status must show its fence. ${ctx}`);
    assert.ok(saysUnfinished || saysDone, `the source refuses writes and the cutover is not recorded: status must say it did not finish. ${ctx}`);
  }
  if (!cutoverRunning) {
    // Nothing moves the fence now: what status said holds for what the kill left.
    assert.equal(refusedBefore, refusedAfter, 'nothing lifts or raises the fence while no cutover runs');
    if (refusedBefore) assert.ok(fence, 'a source that refuses writes has its fence recorded');
    if (fence) {
      assert.ok(saysFence, `a fence is recorded on the source: status must show it. ${ctx}`);
      if (p?.phase === 'done') assert.equal(p.fence_marker, fence.marker, 'a cutover recorded before the kill had the fence\'s marker applied: the target is not behind');
      else assert.ok(saysUnfinished, `a fence is recorded and no cutover is: status must say the cutover did not finish. ${ctx}`);
      if (p?.phase === 'done' && (slot?.n ?? 0) > 0) assert.ok(saysSlotLeft, `a cutover recorded with its slot left on the source: status must say what to run. ${ctx}`);
    } else {
      assert.ok(!saysFence && !saysUnfinished, `no fence stands: status must not show one. ${ctx}`);
    }
  }
  let left: string;
  if (p?.phase === 'done') left = `fence up, cutover recorded${(slot?.n ?? 0) > 0 ? ', its slot still on the source' : ''}`;
  else if (fence && refusedAfter) left = p?.fence_marker === fence.marker ? "fence up, its marker applied" : 'fence up, the target behind it';
  else if (fence) left = 'fence recorded, not raised';
  else if ((triggers?.n ?? 0) > 0) left = 'fence installed, dormant (refuses nothing)';
  else left = 'nothing';
  if (cutoverRunning) left = `the cutover went on; at that moment: ${left}`;
  const status = [
    saysFence ? 'fence' : 'no fence',
    saysDone ? 'phase done' : null,
    saysUnfinished ? 'the cutover did not finish, what to run' : null,
    saysSlotLeft ? 'the slot left on the source, what to run' : null,
  ]
    .filter((x) => x !== null)
    .join('; ');
  return { left, status };
}

/** A cutover that failed must leave the source taking writes and walbridge streaming. */
async function assertBackToStreaming(w: World, m: Migration, failed: CliResult): Promise<void> {
  const ctx = `after: ${failed.out}`;
  assert.ok(await sourceTakesWrites(w), `a failed cutover lifts its fence: the source takes writes again; ${ctx}`);
  const fences = (await w.source.withClient((c) => readFences(c))).filter((f) => f.migration === m.slot);
  assert.deepEqual(fences, [], `no fence recorded after a failed cutover; ${ctx}`);
  await w.until(async () => (await pipelineOf(w, m))?.phase === 'streaming', `${m.slot}: phase streaming after the failed cutover`, 60_000);
  const s = await w.cli(['status'], m);
  assert.match(s.stdout, /^phase: {8}streaming/m, ctx);
  assert.doesNotMatch(s.stdout, /^(fence|cutover):/m, ctx);
}

// --- one round ------------------------------------------------------------------------------------

interface RunningCutover {
  child: ChildProcess;
  done: Promise<CliResult>;
}

/** `walbridge cutover` in the background; `onLine` sees each stdout line as it comes. */
function startCutover(w: World, m: Migration, onLine: (line: string) => void): RunningCutover {
  const child = spawn(process.execPath, [CLI, ...CUTOVER], { env: { PATH: process.env.PATH ?? '', ...w.cliEnv(m) } });
  let stdout = '';
  let stderr = '';
  let rest = '';
  child.stdout.on('data', (b: Buffer) => {
    stdout += b.toString();
    rest += b.toString();
    const parts = rest.split('\n');
    rest = parts.pop() ?? '';
    for (const line of parts) onLine(line);
  });
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<CliResult>((resolve) =>
    child.on('exit', (code) => resolve(exposure.cli(`${m.slot}: walbridge ${CUTOVER.join(' ')} (the one killed)`, { code, stdout, stderr, out: stdout + stderr }))),
  );
  return { child, done };
}

interface FenceWatcher {
  /** Poll from now on; `onFence` is called once the migration's fence is recorded on the source. */
  start(): void;
  stop(): Promise<void>;
  /** Why it stopped watching before the fence showed, if it did. */
  failure(): string | null;
}

/**
 * Watches the source for the migration's fence record, on a session opened ahead, every few
 * milliseconds once started: raising the fence (the switch, the wait for writers, the marker)
 * takes some tens of milliseconds after its record, so a kill from here lands in it.
 */
async function fenceWatcher(w: World, m: Migration, onFence: () => void): Promise<FenceWatcher> {
  const c = new pg.Client({ connectionString: w.source.url(), application_name: 'walbridge-test fence watch' });
  c.on('error', () => undefined);
  await c.connect();
  let stopped = false;
  let failed: string | null = null;
  let loop: Promise<void> = Promise.resolve();
  return {
    failure: () => failed,
    start() {
      loop = (async () => {
        while (!stopped) {
          // The record's table exists from step 1 on (the fence installed, dormant).
          const { rows } = await c.query<{ ok: boolean }>('SELECT EXISTS (SELECT 1 FROM walbridge_fence.fences WHERE migration = $1) AS ok', [m.slot]);
          if (rows[0]?.ok) {
            onFence();
            return;
          }
          await new Promise((r) => setTimeout(r, 2));
        }
      })().catch((err: unknown) => {
        failed = err instanceof Error ? err.message : String(err);
      });
    },
    async stop() {
      stopped = true;
      await loop.catch(() => undefined);
      await c.end().catch(() => undefined);
    },
  };
}

async function createMigration(w: World, m: Migration): Promise<void> {
  await w.target.query(`CREATE DATABASE ${m.database}`);
  await w.target.withClient(async (c) => {
    await createAppSchema(c, { target: true });
    await c.query(WORKER_LOG);
  }, m.database);
}

/** After a round, whatever happened: its daemons gone, its fence lifted, its slot, state and database removed. */
async function removeMigration(w: World, m: Migration, daemons: DaemonProcess[]): Promise<void> {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) await w.sigkill(d);
  const t = await w.cli(['teardown', '--target', '--lift-fence', '--force'], m);
  assert.equal(t.code, 0, t.out);
  await w.target.query(`DROP DATABASE IF EXISTS ${m.database} WITH (FORCE)`);
}

async function cutoverRound(w: World, round: Round, index: number): Promise<void> {
  const m: Migration = { database: `ck${index + 1}`, slot: `ck${index + 1}` };
  const name = `cutover killed at ${pointName(round.at)}: ${VICTIM_NAME[round.victim]}`;
  const r: ScenarioResult = { scenario: name, status: 'FAILED', faults: [], rowsCompared: null, lost: null, doubled: null, changed: null, seconds: 0 };
  const t0 = Date.now();
  const daemons: DaemonProcess[] = [];
  const launch = async () => {
    const d = await w.launch({ migration: m, stopsWhenDone: true, env: DAEMON_ENV });
    daemons.push(d);
    return d;
  };
  const refusedFrom = witnesses.map((x) => x.refused.length);
  let watcher: FenceWatcher | null = null;
  try {
    await createMigration(w, m);
    const load = w.startLoad({ ratePerSec: 40 });
    let daemon = await launch();
    await w.until(async () => (await pipelineOf(w, m))?.daemon_phase === 'streaming', `${m.slot}: phase streaming, reported by the daemon`, 120_000);
    await load.waitFor((s) => s.transactions >= 20, 30_000);

    // The cutover, killed as soon as it prints step k/7 (from its output handler: no delay), or
    // as soon as its fence's record shows (polled on a session opened ahead).
    let killedAt = 0;
    let daemonGone: Promise<void> = Promise.resolve();
    const kill = () => {
      if (killedAt !== 0) return;
      killedAt = Date.now();
      if (round.victim !== 'daemon') cut.child.kill('SIGKILL');
      if (round.victim !== 'cutover') daemonGone = w.sigkill(daemon);
    };
    watcher = round.at === 'fence' ? await fenceWatcher(w, m, kill) : null;
    let triggered = false;
    const cut = startCutover(w, m, (line) => {
      if (triggered || !killLine(round.at, line)) return;
      triggered = true;
      if (watcher) watcher.start();
      else kill();
    });
    let ended: CliResult | null = null;
    void cut.done.then((x) => (ended = x));
    await w.until(() => killedAt !== 0 || ended !== null, `${m.slot}: the cutover to get to ${pointName(round.at)}`, 180_000, 20);
    assert.ok(killedAt !== 0, `the cutover ended before ${pointName(round.at)}${watcher?.failure() ? ` (watching for the fence failed: ${watcher.failure()})` : ''}:\n${(ended as CliResult | null)?.out ?? ''}`);
    if (round.victim !== 'daemon') await cut.done;
    await daemonGone;
    await watcher?.stop();

    const seen = await readAfterKill(w, m, round.victim === 'daemon');
    if (round.victim !== 'cutover') daemon = await launch();

    let outcome: string;
    let final = round.victim === 'daemon' ? await cut.done : await w.cli(CUTOVER, m);
    if (final.code !== 0) {
      await assertBackToStreaming(w, m, final);
      const why = /^cutover stopped: (.*)$/m.exec(final.stderr)?.[1] ?? final.out.trim().split('\n').pop();
      outcome = `failed (${why}); the source took writes again, walbridge streamed; run again: completed`;
      final = await w.cli(CUTOVER, m);
    } else if (round.victim === 'daemon') {
      outcome = 'the cutover went on and completed (the daemon started again)';
    } else if (final.stdout.includes('resuming the cutover interrupted after its fence')) {
      outcome = 'run again: went on from the fence and completed';
    } else if (/recorded already/.test(final.stdout)) {
      outcome = 'run again: the cutover was recorded already; it finished what was left';
    } else {
      outcome = 'run again: started over and completed';
    }
    assert.equal(final.code, 0, `the cutover completes:\n${final.out}`);
    assert.match(final.stdout, /Cutover done at \d+\/[0-9A-F]+/);
    const doneAt = Date.now();

    // The daemon saw the record and stopped by itself; the source keeps only the fence.
    await w.until(() => daemon.child.exitCode !== null, `${m.slot}: the daemon to stop by itself`, 60_000);
    assert.equal(daemon.child.exitCode, 0);
    assert.equal((await pipelineOf(w, m))?.phase, 'done');
    const [paused] = await w.target.query<{ s: number | null }>('SELECT writes_paused_seconds::float8 AS s FROM walbridge.cutover', [], m.database);
    assert.deepEqual(await w.source.query('SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1', [m.slot]), [], 'the slot left the source');
    assert.deepEqual(await w.source.query('SELECT pubname FROM pg_publication WHERE pubname = $1', [m.slot]), [], 'the publication left the source');

    // Both witnesses were refused by this fence, every refusal was a fence's, and every row they
    // were told committed is on the new database.
    await Promise.all(witnesses.map((x, i) => x.until((y) => y.refused.slice(refusedFrom[i] ?? 0).some((e) => e.message.includes(`migration "${m.slot}"`)), 30_000)));
    const ids = new Set((await w.target.query<{ id: string }>('SELECT id::text FROM public.worker_log', [], m.database)).map((x) => Number(x.id)));
    for (const [i, x] of witnesses.entries()) {
      for (const e of x.refused.slice(refusedFrom[i] ?? 0)) {
        assert.equal(e.code, '25006', e.message);
        assert.match(e.message, FENCE_MESSAGE);
      }
      const committed = [...x.committed];
      assert.deepEqual(committed.filter((id) => !ids.has(id)), [], `rows the ${i === 0 ? 'owner' : 'superuser'} was told committed, missing on the new database (of ${committed.length})`);
    }
    const stats = await w.stopLoad();
    const otherErrors = load.recentErrors.filter((e) => !/no longer takes writes on this database: walbridge moved it to the new database/.test(e));
    if (otherErrors.length > 0) {
      // What the source said about them (a deadlock names both sessions and their statements).
      const log = (await w.source.logTail(1_000_000)).split('\n');
      const near = log.flatMap((l, i) => (/deadlock|ERROR/.test(l) && !/no longer takes writes/.test(l) ? log.slice(Math.max(0, i - 3), i + 12) : []));
      assert.fail(`the app got errors other than the fence's: ${otherErrors.join(' | ')}\n--- the source's log about them ---\n${near.slice(-200).join('\n')}`);
    }
    assert.ok((stats?.transactions ?? 0) > 0);

    const c = await checkContent(w.source.url(), w.target.url(m.database), TABLES);
    r.rowsCompared = c.rowsCompared;
    r.lost = c.lost;
    r.doubled = c.doubled;
    r.changed = c.changed;
    assert.equal(c.lost + c.doubled + c.changed, 0, `rows lost ${c.lost}, doubled ${c.doubled}, changed ${c.changed}:\n${describeContent(c)}`);
    assert.ok(c.diffs.every((d) => d.equal), `tables differ:\n${describeContent(c)}`);

    // The next round starts from a source that takes writes.
    const lift = await w.cli(['teardown', '--target', '--lift-fence'], m);
    assert.equal(lift.code, 0, lift.out);
    assert.match(lift.stdout, /fence lifted: \d+ table\(s\) take writes again/);
    assert.ok(await sourceTakesWrites(w), 'the fence is lifted');
    await w.target.query(`DROP DATABASE ${m.database} WITH (FORCE)`);

    const secondsToDone = Math.round((doneAt - killedAt) / 100) / 10;
    const faults: Fault[] = [];
    if (round.victim !== 'daemon') faults.push({ kind: 'SIGKILL of walbridge cutover', phase: `cutover ${pointName(round.at)}`, recoverySeconds: secondsToDone });
    if (round.victim !== 'cutover') faults.push({ kind: 'SIGKILL of the daemon', phase: `cutover ${pointName(round.at)}`, recoverySeconds: secondsToDone });
    r.faults.push(...faults);
    const refused = paused?.s ?? null;
    r.note = `${outcome}; writes refused ${refused === null ? '?' : refused.toFixed(1)} s`;
    cutoverKills.push({ at: pointName(round.at), killed: VICTIM_NAME[round.victim], left: seen.left, status: seen.status, outcome, writesRefusedSeconds: refused, secondsToDone });
    r.status = 'passed';
  } finally {
    await watcher?.stop();
    r.seconds = Math.round((Date.now() - t0) / 1000);
    results.push(r);
    if (r.status !== 'passed') {
      // Leave the pair usable for the next round: this migration's fence must not refuse its writes.
      await w.stopLoad().catch(() => undefined);
      await removeMigration(w, m, daemons).catch((err: unknown) => console.log(`# cleanup of ${m.slot} failed: ${String(err)}`));
    }
  }
}

for (const [i, round] of ROUNDS.entries()) {
  test(`cutover killed at ${pointName(round.at)}: ${VICTIM_NAME[round.victim]}; then it completes, nothing lost`, { timeout: 5 * 60_000 }, async () => {
    await cutoverRound(mainWorld(), round, i);
  });
}

test('every step was hit with every kind of kill', { skip: (!LONG || process.env.WALBRIDGE_CUTOVER_KILLS !== undefined) && 'the long run only (WALBRIDGE_CHAOS=long)' }, () => {
  const hit = new Set(cutoverKills.map((k) => `${k.at} ${k.killed}`));
  for (const p of POINTS) for (const v of VICTIMS) assert.ok(hit.has(`${pointName(p)} ${VICTIM_NAME[v]}`), `no kill of ${VICTIM_NAME[v]} at ${pointName(p)}`);
});

test('no password appears in any log line, page, metric or CLI output of these rounds', () => {
  const { leaks, daemons } = exposure.check();
  assert.ok(daemons > 0, 'daemons ran');
  assert.deepEqual(leaks, []);
});
