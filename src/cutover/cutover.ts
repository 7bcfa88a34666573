/**
 * Cutover: the moment the app moves to the target. walbridge waits until the app has
 * stopped writing and the target has applied everything, moves every sequence past the
 * source's live value, verifies the content one last time, records the cutover, prepares
 * the way back (a slot on the target at this very point), and removes its slot and
 * publication from the source. The running daemon sees the record and stops by itself.
 */
import type pg from 'pg';
import { resolveSelection } from '../catalog/tables.js';
import { reverseConfig, type Config } from '../config.js';
import { WalbridgeError } from '../errors.js';
import { formatLsn, lsnDistance, parseLsn, type Lsn } from '../lsn.js';
import { connect } from '../pg/connect.js';
import { findPublication, findSlot } from '../pipeline/source-objects.js';
import { CREATE_SLOT_SQL, createPublication, CURRENT_WAL_LSN, DROP_SLOT, dropPublication } from '../sql/source.js';
import { CANCEL_CUTOVER, RECORD_CUTOVER, REQUEST_CUTOVER, SET_PHASE } from '../sql/state.js';
import { checkStateVersion } from '../state/migrate.js';
import { loadPipeline, withTransaction, type PipelineState } from '../state/store.js';
import { verifyTables, type VerifyReport } from '../verify/verify.js';
import { syncSequences, type SequenceSync } from './sequences.js';

export interface CutoverOptions {
  /** Proceed once the target is at most this many bytes behind, even if the app still writes. */
  maxLagBytes: number | null;
  /** The app counts as stopped when nothing was applied for this long. */
  quietSeconds: number;
  timeoutSeconds: number;
  sequenceMargin: bigint;
  keepSourceSlot: boolean;
  verify: boolean;
  prepareReverse: boolean;
  /** This cutover is the way back (nothing to prepare for a way back of the way back). */
  rollingBack?: boolean;
  say: (line: string) => void;
}

export interface CutoverResult {
  lsn: string;
  sequences: SequenceSync[];
  verify: VerifyReport | null;
  tables: Record<string, number>;
  reverse: { slot: string; lsn: string } | { problem: string } | null;
  sourceCleaned: boolean;
}

const PG_SECONDS = (d: Date | null) => (d === null ? null : (Date.now() - d.getTime()) / 1000);

async function currentLsn(c: pg.ClientBase): Promise<Lsn> {
  const { rows } = await c.query<{ lsn: string }>(CURRENT_WAL_LSN);
  return parseLsn(rows[0]?.lsn ?? '0/0');
}

/** Wait until the app has stopped writing and the target has applied everything. */
async function waitForQuiet(source: pg.Client, target: pg.Client, opts: CutoverOptions): Promise<PipelineState> {
  const deadline = Date.now() + opts.timeoutSeconds * 1000;
  let lastSay = 0;
  for (;;) {
    const src = await currentLsn(source);
    const p = await loadPipeline(target);
    if (!p) throw new WalbridgeError('state', 'walbridge state disappeared from the target');
    const applied = p.appliedLsn ?? 0n;
    const lag = Number(lsnDistance(applied, src));
    const quietFor = PG_SECONDS(p.appliedCommitTime);
    const daemonAgo = PG_SECONDS(p.daemonSeenAt);
    if (opts.maxLagBytes !== null && lag <= opts.maxLagBytes) return p;
    if (opts.maxLagBytes === null && lag === 0 && (quietFor === null || quietFor >= opts.quietSeconds)) return p;
    if (Date.now() > deadline) {
      throw new WalbridgeError(
        'apply',
        lag > 0 && (daemonAgo === null || daemonAgo > 30)
          ? `the target is ${lag} bytes behind and walbridge is not running (last report ${daemonAgo === null ? 'never' : `${Math.round(daemonAgo)} s ago`})`
          : `the app is still writing (last change applied ${quietFor === null ? '?' : quietFor.toFixed(1)} s ago, ${lag} bytes behind)`,
        {
          hint:
            lag > 0 && (daemonAgo === null || daemonAgo > 30)
              ? 'Start walbridge (walbridge run) so it applies the remaining changes, then run cutover again.'
              : "Stop the app's writes (or scale it to zero) and run cutover again; or accept a small loss window with --max-lag.",
        },
      );
    }
    if (Date.now() - lastSay > 2000) {
      opts.say(
        `  waiting for the app to stop writing: ${lag} bytes behind, last change applied ${quietFor === null ? '–' : `${quietFor.toFixed(1)} s`} ago`,
      );
      lastSay = Date.now();
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A slot and publication on the target at this point, for `walbridge run --reverse`. */
async function prepareReverse(config: Config, target: pg.Client, tables: { schema: string; name: string }[]): Promise<{ slot: string; lsn: string } | { problem: string }> {
  const rev = reverseConfig(config);
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
  // Publication first: pgoutput reads it through the slot's snapshot.
  await target.query(createPublication(rev.publicationName, tables));
  const slot = await target.query<{ lsn: string }>(CREATE_SLOT_SQL, [rev.slotName]);
  return { slot: rev.slotName, lsn: slot.rows[0]?.lsn ?? '0/0' };
}

export async function runCutover(config: Config, opts: CutoverOptions): Promise<CutoverResult> {
  const say = opts.say;
  const source = await connect(config.sourceUrl, { side: 'source', applicationName: 'walbridge cutover' });
  let target: pg.Client | null = null;
  let requested = false;
  try {
    target = await connect(config.targetUrl, { side: 'target', applicationName: 'walbridge cutover' });
    await checkStateVersion(target);
    const state = await loadPipeline(target);
    if (!state) {
      throw new WalbridgeError('state', 'no migration is recorded on the target', { hint: 'Start walbridge (walbridge run) first, and cut over once it is streaming.' });
    }
    if (state.phase === 'done') throw new WalbridgeError('state', 'this migration was cut over already', { hint: 'Nothing to do. "walbridge status" shows the record.' });
    if (state.phase !== 'streaming') {
      throw new WalbridgeError('state', `the copy is not finished yet (phase ${state.phase})`, { hint: 'Wait until "walbridge status" shows phase streaming, then run cutover.' });
    }
    const tables = await resolveSelection(source, config);

    say('1/6 waiting until the app has stopped writing and the target has applied everything…');
    await target.query(REQUEST_CUTOVER);
    requested = true;
    const caughtUp = await waitForQuiet(source, target, opts);
    const lsn = formatLsn(caughtUp.appliedLsn ?? 0n);
    say(`    caught up at ${lsn}`);

    say('2/6 moving sequences past the source\'s values…');
    const sequences = await syncSequences(source, target, tables, opts.sequenceMargin);
    for (const s of sequences) {
      say(`    ${s.sequence.padEnd(40)} ${s.result === 'set' ? `next value ${s.targetNextBefore} → ${s.targetNextAfter}` : s.result}${s.result === 'set' ? ` (source's next: ${s.sourceNext})` : ''}`);
    }
    const missing = sequences.filter((s) => s.result === 'missing on target');
    if (missing.length > 0) say(`    warning: ${missing.length} sequence(s) do not exist on the target: inserts there will not use them`);

    let verify: VerifyReport | null = null;
    if (opts.verify) {
      say('3/6 verifying every table one last time…');
      verify = await verifyTables({ sourceUrl: config.sourceUrl, targetUrl: config.targetUrl, tables });
      const bad = verify.tables.filter((t) => t.status !== 'equal');
      if (bad.length > 0) {
        throw new WalbridgeError(
          'apply',
          `the final verification found differences: ${bad.map((t) => `${t.table} (${t.status}${t.differences[0] ? `, e.g. key ${t.differences[0].key.join(',')} ${t.differences[0].kind}` : ''})`).join('; ')}`,
          { hint: 'Nothing was changed on the source and the app still points to it. Run "walbridge verify" for the full list.' },
        );
      }
      say(`    ${verify.tables.length} table(s) equal`);
    } else {
      say('3/6 final verification skipped (--skip-verify)');
    }

    const counts: Record<string, number> = {};
    for (const t of verify?.tables ?? []) counts[t.table] = t.rowsTarget;

    say(opts.rollingBack ? '4/6 the way back of the way back…' : '4/6 preparing the way back (a slot on the target at this point)…');
    const reverse = opts.prepareReverse ? await prepareReverse(config, target, tables) : null;
    if (reverse && 'slot' in reverse) say(`    slot ${reverse.slot} at ${reverse.lsn}`);
    else if (reverse) say(`    not possible: ${reverse.problem}`);
    else say(opts.rollingBack ? '    not needed: this is the way back' : '    skipped (--no-reverse-slot)');

    say('5/6 recording the cutover on the target (the daemon stops by itself)…');
    await withTransaction(target, async () => {
      await (target as pg.Client).query(RECORD_CUTOVER, [
        lsn,
        JSON.stringify(counts),
        JSON.stringify(sequences),
        reverse && 'slot' in reverse ? reverse.slot : null,
        reverse && 'slot' in reverse ? reverse.lsn : null,
      ]);
      await (target as pg.Client).query(SET_PHASE, ['done']);
    });
    requested = false;

    let sourceCleaned = false;
    if (opts.keepSourceSlot) {
      say('6/6 keeping the slot and publication on the source (--keep-source-slot): remove them with "walbridge teardown" when done');
    } else {
      say('6/6 removing walbridge\'s slot and publication from the source…');
      await dropSourceObjects(source, config);
      sourceCleaned = true;
    }
    return { lsn, sequences, verify, tables: counts, reverse, sourceCleaned };
  } finally {
    if (requested && target) await target.query(CANCEL_CUTOVER).catch(() => {});
    await source.end().catch(() => {});
    await target?.end().catch(() => {});
  }
}

/** The daemon stops on its own once the cutover is recorded; its walsender goes with it. */
async function dropSourceObjects(source: pg.Client, config: Config): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const slot = await findSlot(source, config.slotName);
    if (!slot) break;
    if (!slot.active) {
      await source.query(DROP_SLOT, [config.slotName]);
      break;
    }
    // After 15 s the daemon is not coming down by itself (an old version?): the migration is over.
    if (i === 150) await source.query('SELECT pg_terminate_backend($1)', [slot.active_pid]);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (await findSlot(source, config.slotName)) throw new WalbridgeError('slot', `the slot ${config.slotName} is still in use; run "walbridge teardown --force"`);
  if (await findPublication(source, config.publicationName)) await source.query(dropPublication(config.publicationName));
}

