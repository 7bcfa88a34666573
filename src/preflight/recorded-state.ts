/**
 * A first copy needs empty target tables; a recorded migration resumes instead. These checks
 * decide which of the two this start is, and whether it can go on.
 */
import type { TableComparison } from '../catalog/tables.js';
import { describeError, type ErrorKind } from '../errors.js';
import { displayTable, quoteTable } from '../pg/ident.js';
import { tableHasRows } from '../sql/catalog.js';
import { stateSql } from '../sql/state.js';
import { loadTables } from '../state/store.js';
import type { CheckResult, PreflightContext } from './context.js';

const stateFail = (message: string, fix: string, kind: ErrorKind): CheckResult => ({ id: 'recorded-state', status: 'fail', message, fix, kind });

export async function recordedState(ctx: PreflightContext, comparison: TableComparison): Promise<CheckResult | null> {
  if (ctx.initInterrupted) {
    return recordedOwnerCheck(ctx) ?? { id: 'recorded-state', status: 'pass', message: 'an interrupted start is recorded on the target; walbridge starts it again' };
  }
  if (ctx.resuming) return resumeCheck(ctx, comparison);
  return null;
}

export async function targetEmpty({ config, target, resuming, reverse }: PreflightContext, { plans }: TableComparison): Promise<CheckResult | null> {
  if (reverse) return { id: 'target-empty', status: 'pass', message: 'the way back: the tables hold the data as of the cutover, nothing is copied' };
  // A migration that resumes checks only the tables it adds and has never copied.
  const recorded = resuming ? new Set((await loadTables(target, stateSql(config.stateSchema))).map((t) => `${t.schema}.${t.name}`)) : new Set<string>();
  const adding = plans.filter((p) => !recorded.has(displayTable(p)));
  if (resuming && adding.length === 0) return null;
  const full: string[] = [];
  const unreadable: string[] = [];
  for (const p of adding) {
    try {
      const { rows } = await target.query<{ has_rows: boolean }>(tableHasRows(quoteTable(p)));
      if (rows[0]?.has_rows) full.push(displayTable(p));
    } catch (err) {
      unreadable.push(`${displayTable(p)} (${describeError(err).message})`);
    }
  }
  if (unreadable.length > 0) {
    return {
      id: 'target-empty',
      status: 'fail',
      message: `the target role cannot read these target tables: ${unreadable.join('; ')}`,
      fix: "Connect to the target as the tables' owner or a superuser (Railway's postgres user is one).",
      kind: 'privilege',
    };
  }
  if (full.length > 0) {
    return {
      id: 'target-empty',
      status: 'fail',
      message: `these target tables already hold rows and walbridge has no record of copying them:\n  - ${full.join('\n  - ')}`,
      fix: `Empty them on the target (TRUNCATE ${full.join(', ')};) or leave them out of WALBRIDGE_TABLES / add them to WALBRIDGE_EXCLUDE_TABLES, then start again.`,
      kind: 'state',
    };
  }
  return { id: 'target-empty', status: 'pass', message: 'the selected target tables are empty (first copy)' };
}

/** The recorded state must belong to this source and these slot and publication names. */
function recordedOwnerCheck({ config, state, identity }: PreflightContext): CheckResult | null {
  if (!state) return null;
  if (identity && (state.sourceSystemId !== identity.systemId || state.sourceDatabase !== identity.database)) {
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

/** A migration past its start: its slot, publication and table selection must still be there as recorded. */
async function resumeCheck(ctx: PreflightContext, { plans }: TableComparison): Promise<CheckResult> {
  const { config, state, slot } = ctx;
  if (!state) throw new Error('no recorded state');
  const owner = recordedOwnerCheck(ctx);
  if (owner) return owner;
  if (state.phase === 'done') return { id: 'recorded-state', status: 'pass', message: 'this migration was cut over already' };
  if (!slot) {
    return stateFail(
      `the replication slot "${config.slotName}" no longer exists on the source; changes made since it was dropped cannot be streamed`,
      'Resynchronise: run "walbridge teardown --target", empty the target tables, and start walbridge again for a fresh copy.',
      'slot',
    );
  }
  if (slot.wal_status === 'lost') {
    return stateFail(
      `the replication slot "${config.slotName}" was invalidated by the source (max_slot_wal_keep_size exceeded): WAL it needed is gone`,
      'Resynchronise: run "walbridge teardown --target", empty the target tables, and start walbridge again. Keep walbridge running so the slot is read continuously.',
      'slot',
    );
  }
  if (!ctx.publicationExists) {
    return stateFail(
      `the publication "${config.publicationName}" no longer exists on the source`,
      'Resynchronise: run "walbridge teardown --target", empty the target tables, and start again.',
      'source',
    );
  }
  const recorded = new Set((await loadTables(ctx.target, stateSql(ctx.config.stateSchema))).map((t) => `${t.schema}.${t.name}`));
  const added = plans.map(displayTable).filter((t) => !recorded.has(t));
  return {
    id: 'recorded-state',
    status: 'pass',
    message:
      `a migration is recorded on the target (phase ${state.phase}); walbridge resumes it` +
      (added.length > 0 ? `, adding ${added.join(', ')} while the others stream` : '') +
      (slot.active ? ' (the slot is in use right now: another instance may be running)' : ''),
  };
}
