/**
 * Which tables a migration carries. Before its first start, the configuration's selection
 * (WALBRIDGE_SCHEMAS, WALBRIDGE_TABLES, WALBRIDGE_EXCLUDE_TABLES); from then on, the tables
 * recorded on the target, which the commands change (requests.ts). A start with a selection
 * other than the one recorded does what the commands would: it asks for the tables it adds
 * and removes.
 */
import type pg from 'pg';
import { tablePattern } from '../catalog/select.js';
import { listSourceTables, resolveSelection, type SourceTable } from '../catalog/tables.js';
import type { Config } from '../config.js';
import { WalbridgeError } from '../errors.js';
import type { Logger } from '../log.js';
import { displayTable, type TableName } from '../pg/ident.js';
import { stateSql, type StateSql } from '../sql/state.js';
import { loadPipeline, loadTables, type PipelineState, type RecordedSelection, type TableState } from '../state/store.js';
import { otherStates, tablesOfOtherGroups } from './groups.js';
import { isSelected, isStreaming, requestAdd, requestChange } from './requests.js';

const selectionOf = (c: Config): RecordedSelection => ({ schemas: c.schemas, includeTables: c.includeTables, excludeTables: c.excludeTables });

/** Field by field: jsonb does not keep the order of an object's keys. */
const sameSelection = (a: RecordedSelection, b: RecordedSelection) =>
  JSON.stringify(a.schemas) === JSON.stringify(b.schemas) &&
  JSON.stringify(a.includeTables) === JSON.stringify(b.includeTables) &&
  JSON.stringify(a.excludeTables) === JSON.stringify(b.excludeTables);

/** The source tables of `names`, in their order; a name missing on the source is an error. */
export async function resolveNamed(source: pg.ClientBase, names: TableName[]): Promise<SourceTable[]> {
  const all = await listSourceTables(source, [...new Set(names.map((n) => n.schema))]);
  const byName = new Map(all.map((t) => [displayTable(t), t]));
  const missing = names.map(displayTable).filter((n) => !byName.has(n));
  if (missing.length > 0) {
    throw new WalbridgeError('source', `table(s) of this migration no longer exist on the source: ${missing.join(', ')}`, {
      hint: `If they were dropped on purpose, take them out: walbridge tables remove ${missing.join(' ')}`,
    });
  }
  return names.map((n) => byName.get(displayTable(n)) as SourceTable);
}

/** A start's table set, and what it changes against the one recorded. */
export interface StartSelection {
  /** What preflight checks and the pipeline runs on (tables asked to be added included). */
  tables: TableName[];
  /** Asked for by this start's selection, recorded once preflight passes (recordStartSelection). */
  add: SourceTable[];
  remove: TableState[];
  /** The configuration's selection, recorded with them. */
  record: RecordedSelection | null;
}

/**
 * The table set of a start that resumes a recorded migration; null for a first start (the
 * configuration's selection, as resolved by preflight).
 */
export async function startSelection(source: pg.ClientBase, target: pg.ClientBase, config: Config, state: PipelineState | null): Promise<StartSelection | null> {
  if (!state || state.phase === 'init' || state.phase === 'done') return null;
  const recorded = await loadTables(target, stateSql(config.stateSchema));
  const selected = recorded.filter(isSelected);
  const current = selectionOf(config);
  if (state.selection === null || sameSelection(state.selection, current)) {
    // Unchanged (or recorded by a walbridge that did not record it): the recorded set stands.
    return { tables: selected, add: [], remove: [], record: state.selection === null ? current : null };
  }
  if (state.cutoverRequestedAt !== null) {
    throw new WalbridgeError('config', 'the table selection (WALBRIDGE_SCHEMAS / WALBRIDGE_TABLES / WALBRIDGE_EXCLUDE_TABLES) changed while a cutover is under way', {
      hint: 'Restore the values it started with, or cancel the cutover first ("walbridge cutover --cancel").',
    });
  }
  const desired = await resolveSelection(source, config);
  const wanted = new Set(desired.map(displayTable));
  const have = new Set(selected.map((t) => `${t.schema}.${t.name}`));
  const add = desired.filter((t) => !have.has(displayTable(t)));
  const remove = selected.filter((t) => !wanted.has(`${t.schema}.${t.name}`));
  return { tables: [...selected.filter((t) => wanted.has(`${t.schema}.${t.name}`)), ...add], add, remove, record: current };
}

/** A first start records the selection it ran with: a later start with another one changes the set. */
export async function recordFirstSelection(target: pg.ClientBase, config: Config): Promise<void> {
  await target.query(stateSql(config.stateSchema).RECORD_SELECTION, [JSON.stringify(selectionOf(config))]);
}

/** Record what a start's changed selection asks for, after its preflight passed. */
export async function recordStartSelection(target: pg.ClientBase, state: StateSql, sel: StartSelection, log: Logger): Promise<void> {
  if (sel.add.length > 0 || sel.remove.length > 0) {
    log.info(
      { add: sel.add.map(displayTable), remove: sel.remove.map((t) => `${t.schema}.${t.name}`) },
      'the table selection changed since the last start: adding and removing tables as "walbridge tables add/remove" would',
    );
    if (sel.add.length > 0) await requestAdd(target, state, sel.add);
    if (sel.remove.length > 0) await requestChange(target, state, sel.remove, 'remove');
  }
  if (sel.record) await target.query(state.RECORD_SELECTION, [JSON.stringify(sel.record)]);
}

/**
 * The tables that verify and cutover compare: streaming ones of a recorded migration (the
 * others are listed in `notStreaming`), or the configuration's selection when none is recorded.
 */
export async function migrationTables(source: pg.ClientBase, target: pg.ClientBase, config: Config): Promise<{ tables: SourceTable[]; notStreaming: TableState[] }> {
  const sql = stateSql(config.stateSchema);
  // A target whose state cannot be read stops verify and cutover: falling back to the
  // configuration's selection would check or cut over another set of tables than the one migrated.
  const state = await loadPipeline(target, sql).catch((err: unknown) => {
    throw new WalbridgeError('state', `could not read walbridge's state (${config.stateSchema}) on the target: ${(err as Error).message}`, {
      cause: err,
      hint: "connect as the role the daemon uses (it owns that schema); if the daemon is older than this command, start the new version once so it upgrades its state",
    });
  });
  if (!state || state.phase === 'init') return { tables: await resolveSelection(source, config), notStreaming: [] };
  const recorded = await loadTables(target, sql);
  const notStreaming = recorded.filter((t) => !isStreaming(t) && (t.state !== 'removed' || t.request !== null));
  return { tables: await resolveNamed(source, recorded.filter(isStreaming)), notStreaming };
}

/**
 * Tables of the selected schemas on the source that the migration does not know (`recorded`:
 * its tables, removed ones included), that no other group here carries and that
 * WALBRIDGE_EXCLUDE_TABLES does not leave out: created since the migration began. On the way
 * back, the tables the migration itself recorded on the new database were there before the
 * cutover: only those created since count.
 */
export async function unknownTables(source: pg.ClientBase, target: pg.ClientBase, config: Config, recorded: TableName[]): Promise<SourceTable[]> {
  const known = new Set([...recorded.map(displayTable), ...(await tablesOfOtherGroups(target, config.stateSchema)).keys()]);
  if (config.reverse) {
    for (const schema of await otherStates(source, '')) for (const t of await loadTables(source, stateSql(schema), false)) known.add(displayTable(t));
  }
  const excluded = config.excludeTables.map(tablePattern);
  return (await listSourceTables(source, config.schemas)).filter((t) => !known.has(displayTable(t)) && !excluded.some((x) => x(t)));
}

/**
 * Before a cutover (either way): tables a cutover would leave behind, their rows and the app's
 * later writes to them, stop it. WALBRIDGE_TABLES leaves the tables it does not name out on
 * purpose, as WALBRIDGE_EXCLUDE_TABLES does.
 */
export async function assertNoneLeftBehind(source: pg.ClientBase, target: pg.ClientBase, config: Config): Promise<void> {
  const included = config.includeTables?.map(tablePattern) ?? null;
  const left = (await unknownTables(source, target, config, await loadTables(target, stateSql(config.stateSchema), false))).filter(
    (t) => included === null || included.some((x) => x(t)),
  );
  if (left.length === 0) return;
  const names = left.map(displayTable);
  const back = config.reverse;
  throw new WalbridgeError(
    'state',
    `${names.length} table(s) of WALBRIDGE_SCHEMAS on the ${back ? 'new' : 'old'} database ${back ? 'are not carried back' : 'are not migrated'}: ${names.join(', ')}. ` +
      `${back ? 'Created there after the cutover' : 'Created after the migration began'}, ${back ? 'a rollback' : 'a cutover'} now would leave their rows, and the app's later writes to them, behind`,
    {
      hint:
        `Carry them: ${commandFor(config, 'schema')} (makes them on the ${back ? 'old' : 'new'} database), then ${commandFor(config, 'tables add')} ${names.join(' ')} --wait, then run ${commandFor(config, 'cutover')} again. ` +
        `Or leave them behind on purpose: add them to WALBRIDGE_EXCLUDE_TABLES.`,
    },
  );
}

/** Where this direction's tables go, as its user names it. */
export const targetName = (config: Config): string => (config.reverse ? 'the old database' : 'the target');

/** A walbridge command as a user of this direction types it. */
export const commandFor = (config: Config, command: string): string => `walbridge ${command}${config.reverse ? ' --reverse' : ''}`;
