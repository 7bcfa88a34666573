/**
 * Preflight: everything that would make the migration fail or hurt the source, found before
 * anything is written. Each check says pass, warn or fail, and for warn and fail what to do.
 * `walbridge preflight` prints them; the daemon runs the same checks at every start and
 * stops on a failure.
 */
import type pg from 'pg';
import {
  compareWithTarget,
  replicaIdentityProblem,
  resolveSelection,
  type SourceTable,
  type TablePlan,
} from '../catalog/tables.js';
import type { Config } from '../config.js';
import { WalbridgeError, describeError, type ErrorKind } from '../errors.js';
import { lsnDistance, parseLsn } from '../lsn.js';
import { displayTable, quoteTable } from '../pg/ident.js';
import type { SystemIdentity } from '../pg/replication.js';
import { SERVER_INFO, SYSTEM_IDENTIFIER, tableHasRows } from '../sql/catalog.js';
import { EXTENSIONS_USED, SELECT_PUBLICATION, SELECT_SLOT, SOURCE_CAPACITY, TABLES_NOT_OWNED } from '../sql/source.js';
import { loadTables, type PipelineState } from '../state/store.js';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface CheckResult {
  id: string;
  status: CheckStatus;
  message: string;
  fix?: string;
  /** What kind of error a failure is, for the daemon. */
  kind?: ErrorKind;
}

export interface TableEstimate {
  table: string;
  estimatedRows: number;
  bytes: number;
  expectedCopySeconds: number;
}

export interface PreflightReport {
  ok: boolean;
  checks: CheckResult[];
  tables: TableEstimate[];
  /** Filled when the selection resolved and the target matched: what the pipeline runs on. */
  plans: TablePlan[];
}

export interface PreflightInput {
  config: Config;
  source: pg.ClientBase;
  target: pg.ClientBase;
  /** From IDENTIFY_SYSTEM over a replication connection; null if that failed (reported as a check). */
  identity: SystemIdentity | null;
  identityError?: unknown;
  /** walbridge's recorded state on the target, if any. */
  state: PipelineState | null;
  /** How long to watch the source's WAL position to estimate its write rate. */
  walSampleMs?: number;
  /** The way back after cutover: the target already holds the data, the slot exists already. */
  reverse?: boolean;
}

/** A conservative copy rate for estimates, per copy job (COPY text, loopback measured ~85 MB/s). */
const ESTIMATED_COPY_BYTES_PER_SECOND = 30 * 1024 * 1024;

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;

export async function runPreflight(input: PreflightInput): Promise<PreflightReport> {
  const { config, source, target, state } = input;
  const checks: CheckResult[] = [];
  const add = (c: CheckResult) => checks.push(c);
  const resuming = state !== null && state.phase !== 'init';
  const initInterrupted = state !== null && state.phase === 'init';

  // --- the source as a replication source ---------------------------------------------------
  if (input.identity) {
    add({ id: 'replication-connection', status: 'pass', message: 'the source accepts a replication connection (IDENTIFY_SYSTEM works: not a pooler)' });
  } else {
    const d = describeError(input.identityError);
    add({ id: 'replication-connection', status: 'fail', message: d.message, fix: d.hint, kind: d.kind });
  }

  const info = (await source.query<{ version_num: number; wal_level: string; encoding: string; database: string }>(SERVER_INFO)).rows[0];
  if (!info) throw new Error('server info query returned no row');
  if (info.version_num < 140000) {
    add({ id: 'source-version', status: 'fail', message: `the source runs PostgreSQL ${Math.floor(info.version_num / 10000)}; walbridge needs 14 or later`, fix: 'Upgrade the source, or use pg_dump for this migration.', kind: 'source' });
  } else if (info.encoding !== 'UTF8') {
    add({ id: 'source-version', status: 'fail', message: `the source database is encoded in ${info.encoding}; walbridge moves UTF8 text only`, fix: 'Use pg_dump/pg_restore for a database in another encoding.', kind: 'source' });
  } else {
    add({ id: 'source-version', status: 'pass', message: `source: PostgreSQL ${Math.floor(info.version_num / 10000)}, UTF8` });
  }
  add(
    info.wal_level === 'logical'
      ? { id: 'wal-level', status: 'pass', message: 'wal_level = logical on the source' }
      : {
          id: 'wal-level',
          status: 'fail',
          message: `the source has wal_level = ${info.wal_level}; logical replication needs wal_level = logical`,
          fix: 'Run ALTER SYSTEM SET wal_level = logical; on the source and restart it (Supabase has it on already).',
          kind: 'source',
        },
  );

  const cap = (await source.query<{
    superuser: boolean;
    replication: boolean;
    can_create: boolean;
    role: string;
    max_slots: number;
    used_slots: number;
    max_senders: number;
    used_senders: number;
    keep_size_mb: string;
    lsn: string;
  }>(SOURCE_CAPACITY)).rows[0];
  if (!cap) throw new Error('source capacity query returned no row');
  add(
    cap.superuser || cap.replication
      ? { id: 'replication-role', status: 'pass', message: `role ${cap.role} may use replication` }
      : {
          id: 'replication-role',
          status: 'fail',
          message: `role ${cap.role} has neither REPLICATION nor superuser on the source`,
          fix: `Run ALTER ROLE ${cap.role} WITH REPLICATION; as a superuser, or connect as a role that has it (on Supabase: postgres).`,
          kind: 'privilege',
        },
  );

  const ownSlot = await source.query<{ active: boolean }>(SELECT_SLOT, [config.slotName]);
  const ownPub = await source.query(SELECT_PUBLICATION, [config.publicationName]);
  const slotExists = ownSlot.rows.length > 0;
  const freeSlots = cap.max_slots - cap.used_slots + (slotExists ? 1 : 0);
  if (freeSlots >= 2) {
    add({ id: 'replication-slots', status: 'pass', message: `${cap.max_slots - cap.used_slots} of ${cap.max_slots} replication slots free` });
  } else {
    add({
      id: 'replication-slots',
      status: freeSlots === 1 ? 'warn' : 'fail',
      message:
        freeSlots === 1
          ? `only one replication slot free (${cap.used_slots} of ${cap.max_slots} in use): enough to start, but resuming an interrupted copy needs a second, temporary one`
          : `no replication slot free (${cap.used_slots} of ${cap.max_slots} in use)`,
      fix: 'Drop slots nobody uses (SELECT slot_name, active FROM pg_replication_slots;) or raise max_replication_slots. On Supabase, Realtime may hold one.',
      kind: 'source',
    });
  }
  const freeSenders = cap.max_senders - cap.used_senders;
  add(
    freeSenders >= 2
      ? { id: 'wal-senders', status: 'pass', message: `${freeSenders} of ${cap.max_senders} WAL senders free` }
      : {
          id: 'wal-senders',
          status: freeSenders === 1 ? 'warn' : 'fail',
          message: `${freeSenders} of ${cap.max_senders} WAL senders free; walbridge uses two while it starts`,
          fix: 'Raise max_wal_senders on the source, or stop other replication clients.',
          kind: 'source',
        },
  );

  // Who owns this slot and publication: walbridge (recorded on the target), or someone else.
  // (On the way back, cutover created them, and the rollback start checks that.)
  if (state === null && !input.reverse) {
    if (slotExists) {
      add({
        id: 'slot-name',
        status: 'fail',
        message: `a replication slot named "${config.slotName}" already exists on the source, and the target holds no walbridge state that created it`,
        fix: `Set WALBRIDGE_SLOT to another name. If it is a leftover of an abandoned walbridge run, remove it with "walbridge teardown" (an idle slot makes the source keep WAL).`,
        kind: 'slot',
      });
    } else if (ownPub.rows.length > 0) {
      add({
        id: 'slot-name',
        status: 'fail',
        message: `a publication named "${config.publicationName}" already exists on the source and walbridge did not create it`,
        fix: 'Set WALBRIDGE_PUBLICATION to another name (walbridge never alters publications it does not own).',
        kind: 'source',
      });
    } else {
      add({ id: 'slot-name', status: 'pass', message: `slot "${config.slotName}" and publication "${config.publicationName}" are free to create` });
    }
  }

  // WAL the source may keep for the slot, against how fast the app writes it.
  const keepMb = Number(cap.keep_size_mb);
  const sampleMs = input.walSampleMs ?? 1000;
  let walPerSecond = 0;
  if (sampleMs > 0) {
    const start = parseLsn(cap.lsn);
    await new Promise((r) => setTimeout(r, sampleMs));
    const { rows } = await source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    walPerSecond = Number(lsnDistance(start, parseLsn(rows[0]?.lsn ?? cap.lsn))) / (sampleMs / 1000);
  }
  const rate = `the source writes ${mb(walPerSecond * 60)} of WAL per minute`;
  if (keepMb < 0) {
    add({
      id: 'wal-retention',
      status: 'warn',
      message: `max_slot_wal_keep_size is unlimited: ${rate}, and a slot nobody reads keeps all of it, until the disk is full`,
      fix: 'walbridge reads the slot continuously (also while copying); keep it running, and run "walbridge teardown" if you abandon the migration.',
    });
  } else {
    const minutes = walPerSecond > 0 ? (keepMb * 1024 * 1024) / walPerSecond / 60 : Infinity;
    const held = Number.isFinite(minutes) ? `about ${Math.round(minutes)} minutes` : 'indefinitely at the current rate';
    add({
      id: 'wal-retention',
      status: minutes < 15 ? 'warn' : 'pass',
      message: `max_slot_wal_keep_size = ${keepMb} MB and ${rate}: if walbridge stops, the slot survives ${held} before the source invalidates it (walbridge drains it during the copy, so the copy's length does not count)`,
      ...(minutes < 15 ? { fix: 'Keep walbridge running without long pauses; on Supabase a larger disk raises the limit.' } : {}),
    });
  }

  // --- the target -------------------------------------------------------------------------
  try {
    await target.query('BEGIN');
    await target.query('SET LOCAL session_replication_role = replica');
    add({ id: 'target-role', status: 'pass', message: 'the target role may disable triggers and foreign-key checks for replicated rows' });
  } catch (err) {
    add({
      id: 'target-role',
      status: 'fail',
      message: `the target role may not SET session_replication_role (${describeError(err).message})`,
      fix: "Connect to the target as a superuser (Railway's postgres user is one): the target's triggers and foreign-key checks must not fire on replicated rows, as with native replication.",
      kind: 'privilege',
    });
  } finally {
    await target.query('ROLLBACK').catch(() => {});
  }

  const targetInfo = (await target.query<{ database: string; wal_level: string }>(SERVER_INFO)).rows[0];
  if (!input.reverse) {
    add(
      targetInfo?.wal_level === 'logical'
        ? { id: 'rollback-window', status: 'pass', message: 'the target allows logical replication: cutover keeps a way back (walbridge run --reverse)' }
        : {
            id: 'rollback-window',
            status: 'warn',
            message: `the target has wal_level = ${targetInfo?.wal_level}: after cutover, writes made on it cannot be replicated back to the source (no rollback window)`,
            fix: 'To keep the source as a warm fallback, set wal_level = logical on the target before cutover (ALTER SYSTEM SET wal_level = logical; then restart it).',
          },
    );
  }
  let sameCluster = false;
  try {
    const sid = (await target.query<{ system_id: string }>(SYSTEM_IDENTIFIER)).rows[0]?.system_id;
    sameCluster = sid !== undefined && sid === input.identity?.systemId && targetInfo?.database === info.database;
  } catch {
    // not allowed to read the system identifier: the URL comparison at start has to do
  }
  add(
    sameCluster
      ? { id: 'distinct-databases', status: 'fail', message: 'SOURCE_DATABASE_URL and TARGET_DATABASE_URL reach the same database', fix: 'Point TARGET_DATABASE_URL at the new database.', kind: 'config' }
      : { id: 'distinct-databases', status: 'pass', message: 'source and target are different databases' },
  );

  // --- the tables -------------------------------------------------------------------------
  let selected: SourceTable[] = [];
  try {
    selected = await resolveSelection(source, config);
    add({ id: 'tables-selected', status: 'pass', message: `${selected.length} table(s) selected in ${config.schemas.join(', ')}` });
  } catch (err) {
    const d = describeError(err);
    add({ id: 'tables-selected', status: 'fail', message: d.message, fix: d.hint, kind: d.kind });
  }
  let plans: TablePlan[] = [];
  if (selected.length > 0) {
    const identity = replicaIdentityProblem(selected);
    add(
      identity
        ? { id: 'replica-identity', status: 'fail', message: identity.message, fix: identity.fix, kind: 'source' }
        : { id: 'replica-identity', status: 'pass', message: 'every selected table has a primary key or a replica identity' },
    );

    const partitioned = selected.filter((t) => t.kind === 'p').map(displayTable);
    if (partitioned.length > 0) {
      add({
        id: 'partitions',
        status: 'warn',
        message: `partitioned table(s) ${partitioned.join(', ')} are published through their root: changes to any partition arrive, but a TRUNCATE of a single partition is not sent by PostgreSQL`,
        fix: 'Until cutover, empty a partition with DELETE (or TRUNCATE the whole table), or verify and re-copy it afterwards.',
      });
    }

    if (!cap.superuser) {
      const { rows } = await source.query<{ table: string; owner: string }>(TABLES_NOT_OWNED, [selected.map((t) => t.schema), selected.map((t) => t.name)]);
      add(
        rows.length > 0
          ? {
              id: 'publication-privilege',
              status: 'fail',
              message: `role ${cap.role} does not own ${rows.map((r) => `${r.table} (owner ${r.owner})`).join(', ')}; CREATE PUBLICATION needs the tables' owner`,
              fix: `Connect as the owner, GRANT ${[...new Set(rows.map((r) => r.owner))].join(', ')} TO ${cap.role}, or exclude those tables.`,
              kind: 'privilege',
            }
          : cap.can_create
            ? { id: 'publication-privilege', status: 'pass', message: `role ${cap.role} may create a publication for the selected tables` }
            : {
                id: 'publication-privilege',
                status: 'fail',
                message: `role ${cap.role} lacks CREATE on the source database, which CREATE PUBLICATION needs`,
                fix: `Run GRANT CREATE ON DATABASE ${info.database} TO ${cap.role}; as the database owner.`,
                kind: 'privilege',
              },
      );
    } else {
      add({ id: 'publication-privilege', status: 'pass', message: `role ${cap.role} is a superuser on the source` });
    }

    const cmp = await compareWithTarget(source, target, selected);
    plans = cmp.plans;
    if (cmp.problems.length > 0) {
      add({
        id: 'target-tables',
        status: 'fail',
        message: `the target's tables do not match the source:\n  - ${cmp.problems.join('\n  - ')}`,
        fix: 'Run the statements above on the target (or exclude the tables with WALBRIDGE_EXCLUDE_TABLES), then start again.',
        kind: 'schema',
      });
    } else if (cmp.warnings.length > 0) {
      add({ id: 'target-tables', status: 'warn', message: `the target's tables match, with remarks:\n  - ${cmp.warnings.join('\n  - ')}`, fix: 'Check these columns on the target.' });
    } else {
      add({ id: 'target-tables', status: 'pass', message: `all ${selected.length} table(s) exist on the target with the same columns and types` });
    }

    const used = (await source.query<{ extension: string; columns: string }>(EXTENSIONS_USED, [selected.map((t) => t.schema), selected.map((t) => t.name)])).rows;
    const installed = new Set((await target.query<{ extname: string }>('SELECT extname FROM pg_extension')).rows.map((r) => r.extname));
    const missing = used.filter((u) => !installed.has(u.extension));
    add(
      missing.length > 0
        ? {
            id: 'extensions',
            status: 'fail',
            message: `extension(s) used by selected columns are not installed on the target: ${missing.map((m) => `${m.extension} (${m.columns})`).join('; ')}`,
            fix: `Install them on the target (${missing.map((m) => `CREATE EXTENSION ${m.extension};`).join(' ')}) or exclude those tables.`,
            kind: 'schema',
          }
        : { id: 'extensions', status: 'pass', message: used.length > 0 ? `extensions used by the tables exist on the target: ${used.map((u) => u.extension).join(', ')}` : 'the selected tables use no extension types' },
    );

    // A first copy needs empty target tables; a recorded migration resumes instead.
    if (initInterrupted) {
      add(recordedOwnerCheck(input) ?? { id: 'recorded-state', status: 'pass', message: 'an interrupted start is recorded on the target; walbridge starts it again' });
    }
    if (resuming) {
      add(await recordedStateCheck(input, plans, slotExists, ownSlot.rows[0]?.active ?? false));
    } else if (input.reverse) {
      add({ id: 'target-empty', status: 'pass', message: 'the way back: the tables hold the data as of the cutover, nothing is copied' });
    } else {
      const full: string[] = [];
      const unreadable: string[] = [];
      for (const p of plans) {
        try {
          const { rows } = await target.query<{ has_rows: boolean }>(tableHasRows(quoteTable(p)));
          if (rows[0]?.has_rows) full.push(displayTable(p));
        } catch (err) {
          unreadable.push(`${displayTable(p)} (${describeError(err).message})`);
        }
      }
      add(
        unreadable.length > 0
          ? {
              id: 'target-empty',
              status: 'fail',
              message: `the target role cannot read these target tables: ${unreadable.join('; ')}`,
              fix: "Connect to the target as the tables' owner or a superuser (Railway's postgres user is one).",
              kind: 'privilege',
            }
          : full.length > 0
          ? {
              id: 'target-empty',
              status: 'fail',
              message: `these target tables already hold rows and walbridge has no record of copying them:\n  - ${full.join('\n  - ')}`,
              fix: `Empty them on the target (TRUNCATE ${full.join(', ')};) or exclude them with WALBRIDGE_EXCLUDE_TABLES, then start again.`,
              kind: 'state',
            }
          : { id: 'target-empty', status: 'pass', message: 'the selected target tables are empty (first copy)' },
      );
    }
  }

  const tables = estimates(selected);
  const total = tables.reduce((a, t) => a + t.bytes, 0);
  add({
    id: 'copy-estimate',
    status: 'pass',
    message: `${tables.length} table(s), ${mb(total)}, about ${tables.reduce((a, t) => a + t.estimatedRows, 0)} rows; the copy should take about ${Math.ceil(copySeconds(tables, config.copyJobs))} s with ${config.copyJobs} job(s)`,
  });
  return { ok: !checks.some((c) => c.status === 'fail'), checks, tables, plans };
}

const stateFail = (message: string, fix: string, kind: ErrorKind): CheckResult => ({ id: 'recorded-state', status: 'fail', message, fix, kind });

/** The recorded state must belong to this source and these slot and publication names. */
function recordedOwnerCheck(input: PreflightInput): CheckResult | null {
  const { config, state } = input;
  if (!state) return null;
  if (input.identity && (state.sourceSystemId !== input.identity.systemId || state.sourceDatabase !== input.identity.database)) {
    return stateFail(
      'the walbridge state on the target belongs to a migration from another source database',
      'Check SOURCE_DATABASE_URL. To start a new migration into this target, run "walbridge teardown --target" first.',
      'state',
    );
  }
  if (state.slotName !== config.slotName || state.publicationName !== config.publicationName) {
    return stateFail(
      `the target's walbridge state was created with slot "${state.slotName}" and publication "${state.publicationName}"`,
      `Set WALBRIDGE_SLOT=${state.slotName} and WALBRIDGE_PUBLICATION=${state.publicationName}, or run "walbridge teardown --target" to start over.`,
      'state',
    );
  }
  return null;
}

async function recordedStateCheck(input: PreflightInput, plans: TablePlan[], slotExists: boolean, slotActive: boolean): Promise<CheckResult> {
  const { config, state } = input;
  if (!state) throw new Error('no recorded state');
  const fail = stateFail;
  const owner = recordedOwnerCheck(input);
  if (owner) return owner;
  if (state.phase === 'done') return { id: 'recorded-state', status: 'pass', message: 'this migration was cut over already' };
  if (!slotExists) {
    return fail(
      `the replication slot "${config.slotName}" no longer exists on the source; changes made since it was dropped cannot be streamed`,
      'Resynchronise: run "walbridge teardown --target", empty the target tables, and start walbridge again for a fresh copy.',
      'slot',
    );
  }
  const slot = (await input.source.query<{ wal_status: string | null }>(SELECT_SLOT, [config.slotName])).rows[0];
  if (slot?.wal_status === 'lost') {
    return fail(
      `the replication slot "${config.slotName}" was invalidated by the source (max_slot_wal_keep_size exceeded): WAL it needed is gone`,
      'Resynchronise: run "walbridge teardown --target", empty the target tables, and start walbridge again. Keep walbridge running so the slot is read continuously.',
      'slot',
    );
  }
  const pub = await input.source.query(SELECT_PUBLICATION, [config.publicationName]);
  if (pub.rows.length === 0) {
    return fail(
      `the publication "${config.publicationName}" no longer exists on the source`,
      'Resynchronise: run "walbridge teardown --target", empty the target tables, and start again.',
      'source',
    );
  }
  const recorded = new Set((await loadTables(input.target)).map((t) => `${t.schema}.${t.name}`));
  const selected = new Set(plans.map(displayTable));
  const added = [...selected].filter((t) => !recorded.has(t));
  const removed = [...recorded].filter((t) => !selected.has(t));
  if (added.length > 0 || removed.length > 0) {
    return fail(
      `the table selection changed since this migration started (${[...added.map((t) => `+${t}`), ...removed.map((t) => `-${t}`)].join(', ')})`,
      'Restore WALBRIDGE_SCHEMAS / WALBRIDGE_TABLES / WALBRIDGE_EXCLUDE_TABLES to what they were, or start over with "walbridge teardown --target".',
      'config',
    );
  }
  return {
    id: 'recorded-state',
    status: 'pass',
    message: `a migration is recorded on the target (phase ${state.phase}); walbridge resumes it${slotActive ? ' (the slot is in use right now: another instance may be running)' : ''}`,
  };
}

function estimates(tables: SourceTable[]): TableEstimate[] {
  return [...tables]
    .sort((a, b) => b.bytes - a.bytes)
    .map((t) => ({ table: displayTable(t), estimatedRows: t.estimatedRows, bytes: t.bytes, expectedCopySeconds: Math.round((10 * t.bytes) / ESTIMATED_COPY_BYTES_PER_SECOND) / 10 }));
}

/** Largest first over `jobs` workers: the longest table, or the total spread over the workers. */
function copySeconds(tables: TableEstimate[], jobs: number): number {
  const workers = new Array<number>(Math.max(1, jobs)).fill(0);
  for (const t of tables) {
    const i = workers.indexOf(Math.min(...workers));
    workers[i] = (workers[i] ?? 0) + t.expectedCopySeconds;
  }
  return Math.max(...workers);
}

/** For the daemon: stop on any failed check, with every failure and its fix in one message. */
export function assertPreflight(report: PreflightReport): void {
  const failed = report.checks.filter((c) => c.status === 'fail');
  if (failed.length === 0) return;
  const first = failed[0] as CheckResult;
  const message = failed.length === 1 ? first.message : `preflight found ${failed.length} problems:\n- ${failed.map((f) => f.message).join('\n- ')}`;
  const hint = failed.map((f) => f.fix).filter(Boolean).join(' ');
  throw new WalbridgeError(first.kind ?? 'config', message, { hint });
}
