/**
 * Preflight checks of the source as a replication source: the replication connection, version
 * and encoding, wal_level, the role, free slots and WAL senders, the slot and publication names,
 * and how long the slot survives if walbridge stops.
 */
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../errors.js';
import { lsnDistance, parseLsn } from '../lsn.js';
import { CURRENT_WAL_LSN } from '../sql/source.js';
import { mb, type CheckResult, type PreflightContext } from './context.js';

export function replicationConnection({ identity, identityError }: PreflightContext): CheckResult {
  if (identity) {
    return { id: 'replication-connection', status: 'pass', message: 'the source accepts a replication connection (IDENTIFY_SYSTEM works: not a pooler)' };
  }
  const d = describeError(identityError);
  return { id: 'replication-connection', status: 'fail', message: d.message, fix: d.hint, kind: d.kind };
}

export function sourceVersion({ sourceInfo: info }: PreflightContext): CheckResult {
  if (info.version_num < 140000) {
    return { id: 'source-version', status: 'fail', message: `the source runs PostgreSQL ${Math.floor(info.version_num / 10000)}; walbridge needs 14 or later`, fix: 'Upgrade the source, or use pg_dump for this migration.', kind: 'source' };
  }
  if (info.encoding !== 'UTF8') {
    return { id: 'source-version', status: 'fail', message: `the source database is encoded in ${info.encoding}; walbridge moves UTF8 text only`, fix: 'Use pg_dump/pg_restore for a database in another encoding.', kind: 'source' };
  }
  return { id: 'source-version', status: 'pass', message: `source: PostgreSQL ${Math.floor(info.version_num / 10000)}, UTF8` };
}

export function walLevel({ sourceInfo: info }: PreflightContext): CheckResult {
  return info.wal_level === 'logical'
    ? { id: 'wal-level', status: 'pass', message: 'wal_level = logical on the source' }
    : {
        id: 'wal-level',
        status: 'fail',
        message: `the source has wal_level = ${info.wal_level}; logical replication needs wal_level = logical`,
        fix: 'Run ALTER SYSTEM SET wal_level = logical; on the source and restart it (Supabase has it on already).',
        kind: 'source',
      };
}

export function replicationRole({ capacity: cap }: PreflightContext): CheckResult {
  return cap.superuser || cap.replication
    ? { id: 'replication-role', status: 'pass', message: `role ${cap.role} may use replication` }
    : {
        id: 'replication-role',
        status: 'fail',
        message: `role ${cap.role} has neither REPLICATION nor superuser on the source`,
        fix: `Run ALTER ROLE ${cap.role} WITH REPLICATION; as a superuser, or connect as a role that has it (on Supabase: postgres).`,
        kind: 'privilege',
      };
}

export function replicationSlots({ capacity: cap, slot }: PreflightContext): CheckResult {
  const freeSlots = cap.max_slots - cap.used_slots + (slot ? 1 : 0);
  if (freeSlots >= 2) {
    return { id: 'replication-slots', status: 'pass', message: `${cap.max_slots - cap.used_slots} of ${cap.max_slots} replication slots free` };
  }
  return {
    id: 'replication-slots',
    status: freeSlots === 1 ? 'warn' : 'fail',
    message:
      freeSlots === 1
        ? `only one replication slot free (${cap.used_slots} of ${cap.max_slots} in use): enough to start, but resuming an interrupted copy needs a second, temporary one`
        : `no replication slot free (${cap.used_slots} of ${cap.max_slots} in use)`,
    fix: 'Drop slots nobody uses (SELECT slot_name, active FROM pg_replication_slots;) or raise max_replication_slots. On Supabase, Realtime may hold one.',
    kind: 'source',
  };
}

export function walSenders({ capacity: cap }: PreflightContext): CheckResult {
  const freeSenders = cap.max_senders - cap.used_senders;
  return freeSenders >= 2
    ? { id: 'wal-senders', status: 'pass', message: `${freeSenders} of ${cap.max_senders} WAL senders free` }
    : {
        id: 'wal-senders',
        status: freeSenders === 1 ? 'warn' : 'fail',
        message: `${freeSenders} of ${cap.max_senders} WAL senders free; walbridge uses two while it starts`,
        fix: 'Raise max_wal_senders on the source, or stop other replication clients.',
        kind: 'source',
      };
}

/**
 * Who owns this slot and publication: walbridge (recorded on the target), or someone else.
 * (On the way back, cutover created them, and the rollback start checks that.)
 */
export function slotName({ config, state, reverse, slot, publicationExists }: PreflightContext): CheckResult | null {
  if (state !== null || reverse) return null;
  if (slot) {
    return {
      id: 'slot-name',
      status: 'fail',
      message: `a replication slot named "${config.slotName}" already exists on the source, and the target holds no walbridge state that created it`,
      fix: `Set WALBRIDGE_SLOT to another name. If it is a leftover of an abandoned walbridge run, remove it with "walbridge teardown" (an idle slot makes the source keep WAL).`,
      kind: 'slot',
    };
  }
  if (publicationExists) {
    return {
      id: 'slot-name',
      status: 'fail',
      message: `a publication named "${config.publicationName}" already exists on the source and walbridge did not create it`,
      fix: 'Set WALBRIDGE_PUBLICATION to another name (walbridge never alters publications it does not own).',
      kind: 'source',
    };
  }
  return { id: 'slot-name', status: 'pass', message: `slot "${config.slotName}" and publication "${config.publicationName}" are free to create` };
}

export function walRetention({ capacity, walPerSecond }: PreflightContext): CheckResult {
  return walRetentionResult(Number(capacity.keep_size_mb), walPerSecond);
}

/** WAL the source may keep for the slot (max_slot_wal_keep_size as read, -1 unlimited), against how fast the app writes it. */
export function walRetentionResult(keepMb: number, walPerSecond: number | null): CheckResult {
  if (walPerSecond === null) {
    return {
      id: 'wal-retention',
      status: keepMb < 0 ? 'warn' : 'pass',
      message: `max_slot_wal_keep_size = ${keepMb < 0 ? 'unlimited' : `${keepMb} MB`} (the source's write rate was not sampled: "walbridge preflight" measures it)`,
    };
  }
  const rate = `the source writes ${mb(walPerSecond * 60)} of WAL per minute`;
  if (keepMb < 0) {
    return {
      id: 'wal-retention',
      status: 'warn',
      message: `max_slot_wal_keep_size is unlimited: ${rate}, and a slot nobody reads keeps all of it, until the disk is full`,
      fix: 'walbridge reads the slot continuously (also while copying); keep it running, and run "walbridge teardown" if you abandon the migration.',
    };
  }
  const minutes = walPerSecond > 0 ? (keepMb * 1024 * 1024) / walPerSecond / 60 : Infinity;
  return {
    id: 'wal-retention',
    status: minutes < 15 ? 'warn' : 'pass',
    message: `max_slot_wal_keep_size = ${keepMb} MB and ${rate}: if walbridge stops, the slot survives ${slotSurvival(minutes)} before the source invalidates it (walbridge drains it during the copy, so the copy's length does not count)`,
    ...(minutes < 15 ? { fix: 'Keep walbridge running without long pauses; on Supabase a larger disk raises the limit.' } : {}),
  };
}

/**
 * How long a slot nobody reads survives, in words. The rate comes from a sample of a second or
 * so: good for minutes and hours, while "2556528 minutes" would promise a precision it lacks.
 */
export function slotSurvival(minutes: number): string {
  if (!Number.isFinite(minutes)) return 'indefinitely at the current rate';
  if (minutes < 1) return 'less than a minute';
  if (minutes < 90) {
    const n = Math.round(minutes);
    return `about ${n} ${n === 1 ? 'minute' : 'minutes'}`;
  }
  if (minutes < 24 * 60) return `about ${Math.round(minutes / 60)} hours`;
  return 'more than a day at the current rate';
}

/** Bytes of WAL per second the source writes, watched for `sampleMs` from `startLsn` (read just before). */
export async function sampleWalRate(source: pg.ClientBase, startLsn: string, sampleMs: number): Promise<number | null> {
  if (sampleMs <= 0) return null;
  const start = parseLsn(startLsn);
  await sleep(sampleMs);
  const { rows } = await source.query<{ lsn: string }>(CURRENT_WAL_LSN);
  return Number(lsnDistance(start, parseLsn(rows[0]?.lsn ?? startLsn))) / (sampleMs / 1000);
}
