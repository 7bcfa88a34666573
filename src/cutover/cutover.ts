/**
 * Cutover: the moment the app moves to the target, with no write lost and writes refused for
 * a moment (well under a second here), whatever the size of the data. The app keeps running on
 * the source until then.
 *
 *   1. the daemon starts recording the rows it changes;
 *   2. the content is checked while the app writes: every table, then the rows changed meanwhile
 *      (cutover/check.ts); the target's materialized views are filled (cutover/materialized.ts);
 *   3. the fence: from here on no write to a migrated table commits on the source (cutover/fence.ts);
 *   4. the target applies everything committed before the fence: the fence's marker arrives;
 *   5. sequences move from their live values;
 *   6. the rows changed since the last check are compared, the source now still;
 *   7. the cutover is recorded (with the fence's position and how long writes were refused), the
 *      way back prepared; the running daemon sees the record and stops by itself; then
 *      walbridge's slot, publication and partitions' TRUNCATE triggers leave the source. The
 *      fence stays.
 * A failure between 3 and 7 lifts the fence: the source takes writes again and nothing switched.
 * A cutover killed in that window leaves the fence standing (status shows it): run again, it
 * goes on from step 4; or cancel it.
 *
 * Without a fence (--no-fence) it waits for the app to stop writing instead, as walbridge did
 * before fences, and verifies every table inside the pause.
 */
import type pg from 'pg';
import type { SourceTable } from '../catalog/tables.js';
import { assertNoneLeftBehind, migrationTables } from '../tables/selection.js';
import { groupOf, otherStates } from '../tables/groups.js';
import { describeTableState } from '../tables/requests.js';
import { groupOfStateSchema, reverseConfig, type Config } from '../config.js';
import { sqlState, WalbridgeError } from '../errors.js';
import { formatLsn, lsnDistance, parseLsn, type Lsn } from '../lsn.js';
import { connect } from '../pg/connect.js';
import { installPartitionTruncates, removePartitionTruncates } from '../pipeline/partition-truncates.js';
import { findPublication, findSlot } from '../pipeline/source-objects.js';
import { CREATE_SLOT_SQL, createPublication, CURRENT_WAL_LSN, DROP_SLOT, dropPublication } from '../sql/source.js';
import { stateSql, type StateSql } from '../sql/state.js';
import { checkStateVersion } from '../state/migrate.js';
import { withTransaction } from '../pg/transaction.js';
import { loadPipeline, type PipelineState } from '../state/store.js';
import { Verifier, verifyTables, type VerifyReport } from '../verify/verify.js';
import { changedRowsSince, checkChangedRows, checkWhileLive, differencesError } from './check.js';
import { readFences, type Fence, type FenceDirection } from '../state/fences.js';
import { installFence, liftFence, raiseFence, type FenceSpec, type RaisedFence } from './fence.js';
import { refreshMaterializedViews } from './materialized.js';
import { syncSequences, type SequenceSync } from './sequences.js';

export interface CutoverOptions {
  /** Fence the source (the default); false: wait for the app to stop writing instead. */
  fence: boolean;
  /** Only check the content while the app writes, and stop there: the cutover itself reuses that check. */
  prepare: boolean;
  /** Lift the fence of a cutover that was interrupted, and stop recording changed rows. */
  cancel: boolean;
  /** A check of the content recorded less than this long ago is reused. */
  maxCheckAgeSeconds: number;
  /** Without a fence: proceed once the target is at most this many bytes behind, even if the app still writes. */
  maxLagBytes: number | null;
  /** Without a fence: the app counts as stopped when nothing was applied for this long. */
  quietSeconds: number;
  /** Longest wait for the app to stop (without a fence), or for the fence's marker to be applied. */
  timeoutSeconds: number;
  sequenceMargin: bigint;
  keepSourceSlot: boolean;
  verify: boolean;
  prepareReverse: boolean;
  /** This cutover is the way back (nothing to prepare for a way back of the way back). */
  rollingBack?: boolean;
  /** Every table group on the target, together (WALBRIDGE_GROUP): every fence raised before any cutover is recorded. */
  allGroups?: boolean;
  say: (line: string) => void;
}

export interface CutoverResult {
  lsn: string;
  sequences: SequenceSync[];
  verify: VerifyReport | null;
  tables: Record<string, number>;
  reverse: { slot: string; lsn: string } | { problem: string } | null;
  sourceCleaned: boolean;
  /** The fence (null with --no-fence), and how long writes to the migrated tables were refused before the cutover was recorded. */
  fence: { lsn: string | null; setAt: string; writesPausedSeconds: number; pause: PauseSplit | null } | null;
  /** With several table groups (the first one's is the result above): where each was cut over, and its pause. */
  groups?: { group: string; lsn: string; writesPausedSeconds: number }[];
}

/** Where the write pause went, in seconds (resumed after an interruption: from the fence raised again; not known when only what followed a recorded cutover is finished). */
export interface PauseSplit {
  /** From the switch to the marker: the writes under way when it went up ending. */
  writers: number;
  /** Until the target applied the marker. */
  marker: number;
  sequences: number;
  /** Comparing the rows changed since the last check. */
  check: number;
  record: number;
}

/** How long cutover waits for a report of a daemon that has none recent. */
const DAEMON_REPORT_WAIT_SECONDS = 10;

/** Rows left to compare inside the pause at most, before the fence goes up. */
const SETTLE_ROWS = 2_000;

const secondsSince = (d: Date | null) => (d === null ? null : (Date.now() - d.getTime()) / 1000);

async function currentLsn(c: pg.ClientBase): Promise<Lsn> {
  const { rows } = await c.query<{ lsn: string }>(CURRENT_WAL_LSN);
  return parseLsn(rows[0]?.lsn ?? '0/0');
}

/** Poll `read` until it gives a value, or fail after `timeoutSeconds` with `stuck()`'s error. */
async function waitUntil<T>(read: () => Promise<T | null>, timeoutSeconds: number, stuck: () => Promise<WalbridgeError>, progress?: () => Promise<void>): Promise<T> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let lastSay = Date.now();
  for (;;) {
    const v = await read();
    if (v !== null) return v;
    if (Date.now() > deadline) throw await stuck();
    if (progress && Date.now() - lastSay > 2000) {
      await progress();
      lastSay = Date.now();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function loadState(target: pg.ClientBase, sql: StateSql): Promise<PipelineState> {
  const p = await loadPipeline(target, sql);
  if (!p) throw new WalbridgeError('state', 'walbridge state disappeared from the target');
  return p;
}

/** The daemon must be running: it is what applies up to the fence, and records the rows it changes. */
function notRunning(p: PipelineState): WalbridgeError | null {
  const ago = secondsSince(p.daemonSeenAt);
  if (ago !== null && ago <= 30) return null;
  return new WalbridgeError('state', `walbridge is not running (its last report on the target: ${ago === null ? 'never' : `${Math.round(ago)} s ago`})`, {
    hint: 'Start walbridge (walbridge run) and wait for phase streaming; cutover needs it to apply every change up to the fence.',
  });
}

/**
 * The daemon reports every 2 s; a report missing or old may only mean it started a moment ago
 * (or was just restarted): wait for a fresh one a little before saying it is not running.
 */
async function waitForDaemon(target: pg.Client, sql: StateSql): Promise<void> {
  await waitUntil(
    async () => (notRunning(await loadState(target, sql)) === null ? true : null),
    DAEMON_REPORT_WAIT_SECONDS,
    async () => notRunning(await loadState(target, sql)) ?? new WalbridgeError('state', 'walbridge stopped reporting'),
  );
}

/** Without a fence: wait until the app has stopped writing and the target has applied everything. */
async function waitForQuiet(source: pg.Client, target: pg.Client, sql: StateSql, opts: CutoverOptions): Promise<PipelineState> {
  const lagOf = async () => {
    const p = await loadState(target, sql);
    return { p, lag: Number(lsnDistance(p.appliedLsn ?? 0n, await currentLsn(source))), quietFor: secondsSince(p.appliedCommitTime) };
  };
  return waitUntil(
    async () => {
      const { p, lag, quietFor } = await lagOf();
      if (opts.maxLagBytes !== null) return lag <= opts.maxLagBytes ? p : null;
      return lag === 0 && (quietFor === null || quietFor >= opts.quietSeconds) ? p : null;
    },
    opts.timeoutSeconds,
    async () => {
      const { p, lag, quietFor } = await lagOf();
      const stopped = lag > 0 ? notRunning(p) : null;
      return (
        stopped ??
        new WalbridgeError('apply', `the app is still writing (last change applied ${quietFor === null ? '?' : quietFor.toFixed(1)} s ago, ${lag} bytes behind)`, {
          hint: "Stop the app's writes (or scale it to zero) and run cutover again; or cut over with the fence (without --no-fence), which does not need the app stopped.",
        })
      );
    },
    async () => {
      const { lag, quietFor } = await lagOf();
      opts.say(`  waiting for the app to stop writing: ${lag} bytes behind, last change applied ${quietFor === null ? '–' : `${quietFor.toFixed(1)} s`} ago`);
    },
  );
}

/**
 * Before the fence: the target close behind the app, so that inside the pause the wait for the
 * marker is short. Twice: up to where the source was when asked, then where it was once that was
 * reached (what the app wrote meanwhile, little when walbridge applies faster than the app writes).
 */
async function catchUpBeforeFence(source: pg.Client, target: pg.Client, sql: StateSql, opts: CutoverOptions): Promise<void> {
  for (let round = 0; round < 2; round++) {
    const goal = await currentLsn(source);
    const behind = async () => {
      const p = await loadState(target, sql);
      return { p, bytes: lsnDistance(p.appliedLsn ?? 0n, goal) };
    };
    await waitUntil(
      async () => ((await behind()).bytes <= 0n ? true : null),
      opts.timeoutSeconds,
      async () => {
        const { p, bytes } = await behind();
        return (
          notRunning(p) ??
          new WalbridgeError('apply', `the target did not catch up with the app's writes within ${opts.timeoutSeconds} s (${bytes} bytes behind); nothing was fenced`, {
            hint: 'The app writes faster than walbridge applies: run cutover at a quieter time, or with a longer --timeout.',
          })
        );
      },
      async () => opts.say(`    catching up with the app's writes before the fence: ${(await behind()).bytes} bytes behind`),
    );
  }
}

/** A slot and publication on the target at this point, for `walbridge run --reverse`, recorded with the cutover. */
async function prepareReverse(config: Config, target: pg.Client, tables: SourceTable[]): Promise<{ slot: string; lsn: string } | { problem: string }> {
  const rev = reverseConfig(config);
  const sql = stateSql(config.stateSchema);
  const { rows } = await target.query<{ wal_level: string }>(`SELECT current_setting('wal_level') AS wal_level`);
  if (rows[0]?.wal_level !== 'logical') {
    return {
      problem:
        `the target has wal_level = ${rows[0]?.wal_level}, so no slot could be kept for replicating back to the source. ` +
        'To keep the source as a warm fallback next time, set wal_level = logical on the target (ALTER SYSTEM SET wal_level = logical; then restart it) before cutover.',
    };
  }
  if (await findSlot(target, rev.slotName)) await target.query(DROP_SLOT, [rev.slotName]);
  if (await findPublication(target, rev.publicationName)) await target.query(dropPublication(rev.publicationName));
  // Before the slot, as the forward run does (pipeline/run.ts): a TRUNCATE of one partition on
  // the new database goes back too. The app does not write there yet: no lock to wait for. Should
  // it fail, `walbridge run --reverse` puts them on at its start, and says why if it cannot.
  await installPartitionTruncates(target, rev.slotName, tables).catch(() => {});
  // Publication first: pgoutput reads it through the slot's snapshot.
  await target.query(createPublication(rev.publicationName, tables));
  const slot = await target.query<{ lsn: string }>(CREATE_SLOT_SQL, [rev.slotName]);
  const lsn = slot.rows[0]?.lsn ?? '0/0';
  await target.query(sql.RECORD_REVERSE_SLOT, [rev.slotName, lsn]);
  return { slot: rev.slotName, lsn };
}

/** The migration the fence on the way back's target belongs to: the forward one (reverseConfig's names without "_reverse"). */
const forwardMigration = (config: Config) => config.slotName.replace(/_reverse$/, '');

/** What a refused write says, after the table's name, and its hint. */
function fenceWords(config: Config, rollingBack: boolean): { message: string; hint: string } {
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return rollingBack
    ? {
        message: `no longer takes writes on this database: walbridge moved it back to the old database (rollback of migration "${forwardMigration(config)}", ${when})`,
        hint: "Point the app's DATABASE_URL back at the old database; \"walbridge status --reverse\" shows this fence.",
      }
    : {
        message: `no longer takes writes on this database: walbridge moved it to the new database (cutover of migration "${config.slotName}", ${when})`,
        hint: "Point the app's DATABASE_URL at the new database; \"walbridge status\" shows this fence.",
      };
}

export async function runCutover(config: Config, opts: CutoverOptions): Promise<CutoverResult> {
  const say = opts.say;
  const source = await connect(config.sourceUrl, { side: 'source', applicationName: 'walbridge cutover' });
  let target: pg.Client | null = null;
  try {
    target = await connect(config.targetUrl, { side: 'target', applicationName: 'walbridge cutover' });
    const sql = stateSql(config.stateSchema);
    await checkStateVersion(target, sql);
    const state = await loadPipeline(target, sql);
    if (!state) {
      throw new WalbridgeError('state', 'no migration is recorded on the target', { hint: 'Start walbridge (walbridge run) first, and cut over once it is streaming.' });
    }
    if (state.phase === 'done') {
      if (opts.cancel || opts.prepare) throw cutOverAlready();
      return await finishRecordedCutover(source, target, config, opts);
    }
    if (state.phase !== 'streaming') {
      throw new WalbridgeError('state', `the copy is not finished yet (phase ${state.phase})`, { hint: 'Wait until "walbridge status" shows phase streaming, then run cutover.' });
    }
    const fences = await readFences(source);
    const standingOf = (c: Config) => fences.find((f) => f.migration === c.slotName) ?? null;
    const standing = standingOf(config);
    // The other table groups on this target not cut over yet (the way back's state lives beside
    // the migration's on the old database: only forward groups are others).
    const groups = opts.rollingBack ? [] : await otherGroups(target, config);
    if (opts.cancel) {
      for (const g of [{ config, state }, ...(opts.allGroups ? groups : [])]) await cancelCutover(source, target, g.config, standingOf(g.config), say);
      return { lsn: '', sequences: [], verify: null, tables: {}, reverse: null, sourceCleaned: false, fence: null };
    }
    // One group cut over alone would refuse the app's writes to its tables while the app still
    // runs on the source for the rest.
    if (groups.length > 0 && !opts.prepare && !opts.allGroups) {
      throw new WalbridgeError('state', `this target holds other table groups (${groups.map((g) => groupOf(g.config.stateSchema)).join(', ')}): cutting over ${config.group === null ? 'this migration' : `group ${config.group}`} alone would refuse the app's writes to its tables while the app still runs on the source`, {
        hint: 'Cut every group over together: walbridge cutover --all-groups (with the variables of any group).',
      });
    }
    // Before anything is installed: tables the cutover would leave behind stop it. Not once an
    // interrupted cutover's fence stands: that one is finished or cancelled first.
    if (!standing) await assertNoneLeftBehind(source, target, config);
    const { tables } = await streamingTables(source, target, config);
    if (!opts.fence) {
      if (opts.allGroups && groups.length > 0) throw new WalbridgeError('config', 'table groups are cut over with the fence only', { hint: 'Run walbridge cutover --all-groups without --no-fence.' });
      if (standing) {
        throw new WalbridgeError('state', `the source is fenced by an interrupted cutover (since ${standing.setAt.toISOString()})`, {
          hint: 'Run "walbridge cutover" (with the fence) to finish it, or "walbridge cutover --cancel" to lift the fence first.',
        });
      }
      return await cutoverWithoutFence(source, target, config, tables, opts);
    }
    const notReady = groups.filter((g) => g.state.phase !== 'streaming');
    if (opts.allGroups && notReady.length > 0) {
      throw new WalbridgeError('state', `the copy of ${notReady.map((g) => `${groupOf(g.config.stateSchema)} (phase ${g.state.phase})`).join(', ')} is not finished yet`, {
        hint: 'Wait until every group streams ("walbridge status" with each group\'s variables), then run cutover again.',
      });
    }
    const members: Member[] = [];
    try {
      for (const g of [{ config, state }, ...(opts.allGroups ? groups : [])]) {
        const own = g.config === config ? tables : (await streamingTables(source, target, g.config)).tables;
        const verifier = new Verifier(g.config.sourceUrl, g.config.targetUrl, stateSql(g.config.stateSchema), undefined, g.config.conversions);
        members.push({ config: g.config, sql: stateSql(g.config.stateSchema), tables: own, state: g.state, standing: standingOf(g.config), verifier });
      }
      return await cutoverWithFence(source, target, members, opts);
    } finally {
      for (const m of members) await m.verifier.end().catch(() => {});
    }
  } finally {
    await source.end().catch(() => {});
    await target?.end().catch(() => {});
  }
}

/** The migration's tables, every one streaming (none being added, copied again or removed). */
async function streamingTables(source: pg.Client, target: pg.Client, config: Config): Promise<{ tables: SourceTable[] }> {
  const { tables, notStreaming } = await migrationTables(source, target, config);
  if (notStreaming.length > 0) {
    throw new WalbridgeError('state', `the table set ${config.group === null ? '' : `of group ${config.group} `}is changing: ${notStreaming.map((t) => `${t.schema}.${t.name} (${describeTableState(t)})`).join(', ')}`, {
      hint: 'Wait until "walbridge tables" shows every table streaming (or removed), then run cutover again.',
    });
  }
  return { tables };
}

/** The other table groups on the target not cut over yet, each with its configuration (its names as recorded) and state. */
async function otherGroups(target: pg.Client, config: Config): Promise<{ config: Config; state: PipelineState }[]> {
  const out: { config: Config; state: PipelineState }[] = [];
  for (const schema of await otherStates(target, config.stateSchema)) {
    const sql = stateSql(schema);
    await checkStateVersion(target, sql);
    const state = await loadPipeline(target, sql);
    if (!state || state.phase === 'done') continue;
    out.push({ config: { ...config, group: groupOfStateSchema(schema), stateSchema: schema, slotName: state.slotName, publicationName: state.publicationName }, state });
  }
  return out;
}

const cutOverAlready = () => new WalbridgeError('state', 'this migration was cut over already', { hint: 'Nothing to do. "walbridge status" shows the record.' });

interface CutoverRecord {
  lsn: string;
  at: Date;
  sequences: SequenceSync[];
  reverse_slot: string | null;
  reverse_lsn: string | null;
  fence_lsn: string | null;
  writes_paused_seconds: number | null;
}

/**
 * A cutover stopped after its record (killed, or the machine it ran on went away): the daemon
 * saw the record and stopped, but what comes after it in step 7 may not have happened: the way
 * back not prepared, the old database's fence not lifted (rolling back), walbridge's slot and
 * publication still on the source, where the slot keeps WAL with nobody reading it. Run again,
 * cutover does what was left, and says that the cutover itself happened at the recorded point.
 * Nothing left: the cutover is over, as before.
 */
async function finishRecordedCutover(source: pg.Client, target: pg.Client, config: Config, opts: CutoverOptions): Promise<CutoverResult> {
  const say = opts.say;
  const rec = (await target.query<CutoverRecord>(stateSql(config.stateSchema).SELECT_CUTOVER)).rows[0];
  if (!rec) throw cutOverAlready();
  const sourceLeft = !opts.keepSourceSlot && ((await findSlot(source, config.slotName)) !== null || (await findPublication(source, config.publicationName)) !== null);
  const reverseLeft = opts.prepareReverse && rec.reverse_slot === null;
  const oldFenceLeft = opts.rollingBack === true && (await readFences(target)).some((f) => f.migration === forwardMigration(config));
  if (!sourceLeft && !reverseLeft && !oldFenceLeft) throw cutOverAlready();
  say(`this cutover was recorded already (at ${rec.lsn}, ${rec.at.toISOString()}), but stopped before it finished: doing what was left…`);
  const fence = (await readFences(source)).find((f) => f.migration === config.slotName) ?? null;
  let reverse: CutoverResult['reverse'] = rec.reverse_slot === null ? null : { slot: rec.reverse_slot, lsn: rec.reverse_lsn ?? rec.lsn };
  if (reverseLeft) {
    // Made now, not at the cutover's record: until the app is pointed at the new database
    // (after "Cutover done"), nothing but walbridge wrote there since, and it has stopped.
    reverse = await prepareReverse(config, target, (await migrationTables(source, target, config)).tables);
    if ('slot' in reverse) say(`    the way back starts here, not at the cutover's record: writes made on the new database before ${reverse.lsn} (if the app was pointed there already) would not go back`);
  }
  if (oldFenceLeft) {
    const lifted = await liftFence(target, forwardMigration(config));
    say(`    the old database's fence is lifted: it takes writes to ${lifted.length} table(s) again`);
  }
  if (rec.writes_paused_seconds !== null) say(`    writes to the migrated tables were refused for ${rec.writes_paused_seconds.toFixed(1)} s (from the fence to the record)`);
  if (reverseLeft) reportReverse(reverse, opts, say);
  const sourceCleaned = opts.keepSourceSlot ? false : sourceLeft ? await cleanSource(source, config, opts, say) : true;
  return {
    lsn: rec.lsn,
    sequences: rec.sequences,
    verify: null,
    tables: {},
    reverse,
    sourceCleaned,
    fence: rec.fence_lsn === null ? null : { lsn: rec.fence_lsn, setAt: (fence?.setAt ?? rec.at).toISOString(), writesPausedSeconds: rec.writes_paused_seconds ?? 0, pause: null },
  };
}

async function cancelCutover(source: pg.Client, target: pg.Client, config: Config, standing: Fence | null, say: (line: string) => void): Promise<void> {
  if (standing) {
    const lifted = await liftFence(source, config.slotName);
    say(`the fence of the interrupted cutover is lifted: the source takes writes to ${lifted.length} table(s) again`);
  } else {
    say('no fence stands on the source');
  }
  const sql = stateSql(config.stateSchema);
  await forgetChecks(target, sql, sql.CANCEL_CUTOVER);
  say('cutover cancelled: walbridge keeps streaming; run "walbridge cutover" again when you are ready');
}

/**
 * One migration's part of a cutover: the migration itself, or one table group of several on
 * this target (all of them are cut over together, the app moving once).
 */
interface Member {
  config: Config;
  sql: StateSql;
  tables: SourceTable[];
  state: PipelineState;
  /** This member's fence, raised by an interrupted cutover. */
  standing: Fence | null;
  verifier: Verifier;
}

/** What one member goes through once its fence is raised. */
interface Fenced {
  member: Member;
  say: (line: string) => void;
  spec: FenceSpec;
  checkCtx: Parameters<typeof checkWhileLive>[0];
  checkedFrom: Lsn;
  fence: RaisedFence;
  fencedAt: number;
  marks: number[];
  lsn?: string;
  sequences?: SequenceSync[];
  report?: VerifyReport;
  /** Seconds writes were refused, from the fence to the record. */
  paused?: number;
}

async function cutoverWithFence(source: pg.Client, target: pg.Client, members: Member[], opts: CutoverOptions): Promise<CutoverResult> {
  const direction: FenceDirection = opts.rollingBack ? 'reverse' : 'forward';
  // With several groups every line names its group.
  const sayFor = (m: Member) => (members.length === 1 || m.config.group === null ? opts.say : (line: string) => opts.say(`[${m.config.group}] ${line}`));
  const retrying = (m: Member) => (why: string) => sayFor(m)(`    retrying: ${why}`);
  const specOf = (m: Member): FenceSpec => ({ migration: m.config.slotName, direction, tables: m.tables, ...fenceWords(m.config, opts.rollingBack === true) });
  const checkCtxOf = (m: Member) => ({ verifier: m.verifier, target, stateSql: m.sql, tables: m.tables, say: sayFor(m) });
  for (const m of members) if (notRunning(m.state)) await waitForDaemon(target, m.sql);

  /** Anything failing before a record lifts every fence: the app keeps its database, nothing switched. */
  async function failAndLift(why: string | Error): Promise<never> {
    const err = typeof why === 'string' ? new WalbridgeError('apply', why) : why;
    for (const m of members) {
      await liftFence(source, m.config.slotName).catch(() => {});
      await target.query(m.sql.CANCEL_CUTOVER).catch(() => {});
    }
    throw new WalbridgeError(err instanceof WalbridgeError ? err.kind : 'apply', `${err.message} — the fence is lifted: the source takes writes again, nothing was switched`, {
      cause: err,
      ...(err instanceof WalbridgeError && err.hint ? { hint: err.hint } : {}),
    });
  }

  // 1-2 for every member not fenced yet: the fence installed dormant, the content checked live.
  const checked = new Map<Member, Lsn>();
  for (const m of members.filter((x) => x.standing === null)) {
    const say = sayFor(m);
    say('1/7 installing the fence (dormant) and recording the rows walbridge changes from now on…');
    await installFence(source, specOf(m), retrying(m));
    if (!m.state.cutoverRequestedAt || !m.state.changesTrackedFrom) await forgetChecks(target, m.sql, m.sql.START_CUTOVER_CHECKS);
    try {
      await waitUntil(
        async () => (await loadState(target, m.sql)).changesTrackedFrom,
        30,
        async () => notRunning(await loadState(target, m.sql)) ?? new WalbridgeError('apply', 'walbridge did not start recording the rows it changes within 30 s', { hint: 'Check its log and "walbridge status"; run cutover again.' }),
      );
      say('2/7 checking the content while the app writes…');
      checked.set(m, await checkWhileLive(checkCtxOf(m), { maxAgeSeconds: opts.maxCheckAgeSeconds, settleRows: SETTLE_ROWS }));
    } catch (err) {
      if (!opts.prepare) for (const x of members) await target.query(x.sql.CANCEL_CUTOVER).catch(() => {});
      throw err;
    }
  }
  if (opts.prepare) {
    opts.say('prepared: walbridge keeps recording the rows it changes; "walbridge cutover" now checks only those inside the pause');
    return { lsn: '', sequences: [], verify: null, tables: {}, reverse: null, sourceCleaned: false, fence: null };
  }

  // Sessions and catalogs the check inside the pause needs, ready before the pause begins; and
  // the target close behind for every member, so that the pause does not wait for a backlog.
  for (const m of members.filter((x) => x.standing === null)) {
    await m.verifier.prepare(m.tables);
    await catchUpBeforeFence(source, target, m.sql, opts);
  }
  // Materialized views filled from the copied rows, outside the pause. Not on the way back: the
  // old database's were never emptied.
  if (!opts.rollingBack && members.some((m) => m.standing === null)) {
    await refreshMaterializedViews(target, [...new Set(members.flatMap((m) => m.config.schemas))], opts.say);
  }

  // 3: every fence raised (a member fenced by an interrupted cutover raises its fence again).
  const fenced: Fenced[] = [];
  try {
    for (const m of members) {
      const say = sayFor(m);
      const spec = specOf(m);
      if (m.standing) {
        say(`resuming the cutover interrupted after its fence (raised ${m.standing.setAt.toISOString()}): the source refuses writes to the migrated tables`);
        const checkedFrom = m.state.contentCheckedFrom ?? m.state.changesTrackedFrom ?? (await failAndLift('the record of the rows changed before the fence is missing'));
        // Its marker may never have been written: the writers are waited for again, and a new one written.
        const fence = await raiseFence(source, spec, { onRetry: retrying(m) });
        fenced.push({ member: m, say, spec, checkCtx: checkCtxOf(m), checkedFrom, fence, fencedAt: m.standing.setAt.getTime(), marks: [fence.switchedAtMs, Date.now()] });
        continue;
      }
      say(`3/7 fencing the source: from now on no write to the ${m.tables.length} migrated table(s) commits there…`);
      // Writes are refused from the moment the switch goes up (after raiseFence's look for long
      // writers): the pause counts from there, the wait for the writes under way included.
      const fence = await raiseFence(source, spec, { onRetry: retrying(m) });
      say(`    fenced at ${fence.lsn === null ? '?' : formatLsn(fence.lsn)}`);
      fenced.push({ member: m, say, spec, checkCtx: checkCtxOf(m), checkedFrom: checked.get(m) as Lsn, fence, fencedAt: fence.switchedAtMs, marks: [fence.switchedAtMs, Date.now()] });
    }

    // 4-6 for every member: its marker applied, its sequences moved, its changed rows compared.
    for (const f of fenced) {
      const { member: m, say } = f;
      say('4/7 waiting for the target to apply everything committed before the fence…');
      await waitUntil(
        async () => ((await loadState(target, m.sql)).fenceMarker === f.fence.marker ? true : null),
        opts.timeoutSeconds,
        async () => {
          const p = await loadState(target, m.sql);
          return (
            notRunning(p) ??
            new WalbridgeError('apply', `the target did not apply the fence's marker within ${opts.timeoutSeconds} s (applied up to ${p.appliedLsn === null ? '?' : formatLsn(p.appliedLsn)})`, {
              hint: 'Check "walbridge status" and the daemon\'s log, then run cutover again.',
            })
          );
        },
      );
      f.marks.push(Date.now());
      f.lsn = formatLsn((await loadState(target, m.sql)).appliedLsn ?? 0n);
      say(`    applied up to ${f.lsn}`);

      say("5/7 moving sequences past the source's values…");
      f.sequences = await syncSequences(source, target, m.tables, opts.sequenceMargin);
      f.marks.push(Date.now());
      reportSequences(f.sequences, say);

      say('6/7 checking the rows changed since the last check…');
      const changed = await changedRowsSince(target, m.sql, f.checkedFrom);
      f.report = await checkChangedRows(f.checkCtx, changed, true);
      const err = differencesError(f.report, 'the check inside the pause');
      if (err) throw err;
      f.marks.push(Date.now());
      say(`    ${changed.count} row(s) changed since, equal`);
    }
  } catch (err) {
    return failAndLift(err instanceof Error ? err : new Error(String(err)));
  }

  // 7: every member recorded, one after the other: each daemon sees its record and stops.
  const recorded: Fenced[] = [];
  for (const f of fenced) {
    f.say('7/7 recording the cutover (the daemon stops by itself)…');
    f.paused = (Date.now() - f.fencedAt) / 1000;
    try {
      await recordCutover(target, f.member.sql, f.lsn as string, f.report as VerifyReport, f.sequences as SequenceSync[], f.fence.lsn, f.paused);
    } catch (err) {
      // Recorded already (a lost reply), or not: nothing to undo for those recorded before it.
      if ((await loadState(target, f.member.sql).catch(() => null))?.phase === 'done') {
        recorded.push(f);
        continue;
      }
      if (recorded.length === 0) return failAndLift(err instanceof Error ? err : new Error(String(err)));
      const left = fenced.filter((x) => !recorded.includes(x)).map((x) => x.member.config.group ?? x.member.config.slotName);
      throw new WalbridgeError('state', `the cutover is recorded for ${recorded.map((x) => x.member.config.group).join(', ')} but not for ${left.join(', ')}: every fence stays up`, {
        cause: err,
        hint: 'Run "walbridge cutover --all-groups" again: it goes on from the fences for the groups left. Until then the app keeps its database, and writes to the fenced tables are refused.',
      });
    }
    f.marks.push(Date.now());
    recorded.push(f);
  }

  // After the records, outside the pause: the way back, the old database's fence, the source's objects.
  let result: CutoverResult | null = null;
  for (const f of fenced) {
    const { member: m, say } = f;
    const paused = f.paused ?? 0;
    const pause = pauseSplit(f.marks);
    const reverse = opts.prepareReverse ? await prepareReverse(m.config, target, m.tables) : null;
    if (opts.rollingBack) {
      const lifted = await liftFence(target, forwardMigration(m.config));
      if (lifted.length > 0) say(`    the old database's fence is lifted: it takes writes to ${lifted.length} table(s) again`);
    }
    say(
      `    writes to the migrated tables were refused for ${paused.toFixed(1)} s (from the fence to this record${m.standing ? ', the interruption included' : ''}: ` +
        `writes under way ${pause.writers.toFixed(2)} s, marker applied ${pause.marker.toFixed(2)} s, sequences ${pause.sequences.toFixed(2)} s, ` +
        `changed rows checked ${pause.check.toFixed(2)} s, recorded ${pause.record.toFixed(2)} s)`,
    );
    reportReverse(reverse, opts, say);
    const sourceCleaned = await cleanSource(source, m.config, opts, say);
    const fence = { lsn: f.fence.lsn === null ? null : formatLsn(f.fence.lsn), setAt: f.fence.setAt.toISOString(), writesPausedSeconds: paused, pause };
    const own: CutoverResult = { lsn: f.lsn as string, sequences: f.sequences as SequenceSync[], verify: f.report as VerifyReport, tables: {}, reverse, sourceCleaned, fence };
    if (result === null) result = own;
    if (members.length > 1) (result.groups ??= []).push({ group: m.config.group ?? m.config.slotName, lsn: own.lsn, writesPausedSeconds: paused });
  }
  return result as CutoverResult;
}

async function cutoverWithoutFence(source: pg.Client, target: pg.Client, config: Config, tables: SourceTable[], opts: CutoverOptions): Promise<CutoverResult> {
  const say = opts.say;
  const sql = stateSql(config.stateSchema);
  let requested = false;
  try {
    say('1/6 waiting until the app has stopped writing and the target has applied everything…');
    await target.query(sql.REQUEST_CUTOVER);
    requested = true;
    const caughtUp = await waitForQuiet(source, target, sql, opts);
    const lsn = formatLsn(caughtUp.appliedLsn ?? 0n);
    say(`    caught up at ${lsn}`);
    if (!opts.rollingBack) await refreshMaterializedViews(target, config.schemas, say);

    say("2/6 moving sequences past the source's values…");
    const sequences = await syncSequences(source, target, tables, opts.sequenceMargin);
    reportSequences(sequences, say);

    let verify: VerifyReport | null = null;
    if (opts.verify) {
      say('3/6 verifying every table one last time…');
      verify = await verifyTables({ sourceUrl: config.sourceUrl, targetUrl: config.targetUrl, stateSql: sql, tables, conversions: config.conversions });
      const err = differencesError(verify, 'the final verification');
      if (err) throw err;
      say(`    ${verify.tables.length} table(s) equal`);
    } else {
      say('3/6 final verification skipped (--skip-verify)');
    }

    say('4/6 recording the cutover on the target (the daemon stops by itself)…');
    await recordCutover(target, sql, lsn, verify, sequences, null, null);
    requested = false;

    say(opts.rollingBack ? '5/6 the way back of the way back: not needed' : '5/6 preparing the way back (a slot on the target at this point)…');
    const reverse = opts.prepareReverse ? await prepareReverse(config, target, tables) : null;
    reportReverse(reverse, opts, say);
    const sourceCleaned = await cleanSource(source, config, opts, say, '6/6');
    return { lsn, sequences, verify, tables: rowCounts(verify), reverse, sourceCleaned, fence: null };
  } finally {
    if (requested) await target.query(sql.CANCEL_CUTOVER).catch(() => {});
  }
}

function pauseSplit(marks: number[]): PauseSplit {
  const part = (i: number) => ((marks[i + 1] ?? 0) - (marks[i] ?? 0)) / 1000;
  return { writers: part(0), marker: part(1), sequences: part(2), check: part(3), record: part(4) };
}

function rowCounts(verify: VerifyReport | null): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const t of verify?.tables ?? []) counts[t.table] = t.rowsTarget;
  return counts;
}

function reportSequences(sequences: SequenceSync[], say: (line: string) => void): void {
  for (const s of sequences) {
    say(`    ${s.sequence.padEnd(40)} ${s.result === 'set' ? `next value ${s.targetNextBefore} → ${s.targetNextAfter}` : s.result}${s.result === 'set' ? ` (source's next: ${s.sourceNext})` : ''}`);
  }
  const missing = sequences.filter((s) => s.result === 'missing on target');
  if (missing.length > 0) say(`    warning: ${missing.length} sequence(s) do not exist on the target: inserts there will not use them`);
}

function reportReverse(reverse: { slot: string; lsn: string } | { problem: string } | null, opts: CutoverOptions, say: (line: string) => void): void {
  if (reverse && 'slot' in reverse) say(`    way back: slot ${reverse.slot} at ${reverse.lsn}`);
  else if (reverse) say(`    no way back: ${reverse.problem}`);
  else if (!opts.rollingBack) say('    way back skipped (--no-reverse-slot)');
}

async function recordCutover(
  target: pg.Client,
  sql: StateSql,
  lsn: string,
  verify: VerifyReport | null,
  sequences: SequenceSync[],
  fenceLsn: Lsn | null,
  pausedSeconds: number | null,
): Promise<void> {
  await withTransaction(target, async () => {
    await target.query(sql.RECORD_CUTOVER, [
      lsn,
      JSON.stringify(rowCounts(verify)),
      JSON.stringify(sequences),
      fenceLsn === null ? null : formatLsn(fenceLsn),
      pausedSeconds === null ? null : pausedSeconds.toFixed(3),
    ]);
    await target.query(sql.SET_PHASE, ['done']);
    await target.query(sql.CANCEL_CUTOVER);
  });
  await target.query(sql.FORGET_CHANGED_ROWS).catch(() => {});
}

/**
 * Start or end the record of changed rows: emptied first, then the pipeline row updated, the
 * order the applier's batches take these locks in (an empty TRUNCATE after the row update
 * would wait for a batch that waits for the row: a deadlock).
 */
async function forgetChecks(target: pg.Client, sql: StateSql, update: string): Promise<void> {
  await withTransaction(target, async () => {
    await target.query(sql.FORGET_CHANGED_ROWS);
    await target.query(update);
  });
}

async function cleanSource(source: pg.Client, config: Config, opts: CutoverOptions, say: (line: string) => void, step = 'then'): Promise<boolean> {
  if (opts.keepSourceSlot) {
    say(`${step}: keeping the slot and publication on the source (--keep-source-slot): remove them with "walbridge teardown" when done`);
    return false;
  }
  say(`${step}: removing walbridge's slot and publication from the source…`);
  await dropSourceObjects(source, config);
  return true;
}

/** The daemon stops on its own once the cutover is recorded; its walsender goes with it. */
async function dropSourceObjects(source: pg.Client, config: Config): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const slot = await findSlot(source, config.slotName);
    if (!slot) break;
    if (!slot.active) {
      await source.query(DROP_SLOT, [config.slotName]).catch((err: unknown) => {
        // The walsender let go a moment ago and another took it (a restart): try again.
        if (sqlState(err) !== '55006') throw err;
      });
      continue;
    }
    // After 15 s the daemon is not coming down by itself (an old version?): the migration is over.
    if (i === 150) await source.query('SELECT pg_terminate_backend($1)', [slot.active_pid]);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (await findSlot(source, config.slotName)) throw new WalbridgeError('slot', `the slot ${config.slotName} is still in use; run "walbridge teardown --force"`);
  // Before the publication: a cutover stopped in between finds the publication left, and finishes this when run again.
  await removePartitionTruncates(source, config.slotName);
  if (await findPublication(source, config.publicationName)) await source.query(dropPublication(config.publicationName));
}
