/**
 * Changing the table set of a running migration, as "walbridge tables add/remove", "walbridge
 * resync", a start with another WALBRIDGE_TABLES, or WALBRIDGE_FOLLOW_NEW_TABLES ask for it:
 * the request is checked (nothing is written when a table cannot be added) and recorded on the
 * target, in walbridge.tables; the daemon takes it up while streaming (changer.ts).
 */
import type pg from 'pg';
import { compareWithTarget, listSourceTables, replicaIdentityProblem, type SourceTable, type TablePlan } from '../catalog/tables.js';
import { tablePattern } from '../catalog/select.js';
import type { Config } from '../config.js';
import type { ColumnConversion } from '../convert/conversions.js';
import { WalbridgeError } from '../errors.js';
import { displayTable, quoteTable, type TableName } from '../pg/ident.js';
import { withTransaction } from '../pg/transaction.js';
import { carriedElsewhere } from './groups.js';
import { tableHasRows } from '../sql/catalog.js';
import type { StateSql } from '../sql/state.js';
import type { TableRequest, TableState } from '../state/store.js';

/** Applied by the daemon now (or until it takes a remove up): recorded, not removed, not an add waiting. */
export const isMigrated = (t: TableState): boolean => t.state !== 'removed' && t.request !== 'add';

/** Part of the migration's table set once every request is taken up. */
export const isSelected = (t: TableState): boolean => (isMigrated(t) && t.request !== 'remove') || t.request === 'add';

/** Streaming as any other table: copied, nothing held, nothing asked. */
export const isStreaming = (t: TableState): boolean => t.state === 'copied' && !t.holding && t.request === null;

/** Where a table stands, in words (walbridge tables, status, the page). */
export function describeTableState(t: TableState): string {
  if (t.request === 'add') return 'to be added';
  if (t.request === 'remove') return 'to be removed';
  if (t.request === 'resync') return 'to be copied again';
  if (t.state === 'removed') return 'removed';
  if (t.holding) {
    if (t.state === 'copied') return 'applying changes held during its copy';
    return t.state === 'copying' ? 'copying (changes held meanwhile)' : 'waiting for its copy (changes held meanwhile)';
  }
  return t.state === 'copied' ? 'streaming' : t.state;
}

/**
 * The source tables the globs name (`schema.table`, `*` allowed), in WALBRIDGE_SCHEMAS or in a
 * schema a glob names; a glob that matches nothing is an error.
 */
export async function resolveGlobs(source: pg.ClientBase, config: Config, globs: string[]): Promise<SourceTable[]> {
  const named = globs.flatMap((g) => {
    const dot = g.indexOf('.');
    return dot > 0 && !g.slice(0, dot).includes('*') ? [g.slice(0, dot)] : [];
  });
  const all = await listSourceTables(source, [...new Set([...config.schemas, ...named])]);
  const out = new Map<string, SourceTable>();
  const unmatched: string[] = [];
  for (const g of globs) {
    const test = tablePattern(g);
    const hits = all.filter(test);
    if (hits.length === 0) unmatched.push(g);
    for (const t of hits) out.set(displayTable(t), t);
  }
  if (unmatched.length > 0) {
    throw new WalbridgeError('config', `no table on the source matches ${unmatched.join(', ')}`, {
      hint: `Name tables as schema.table (globs with * allowed; names are case-sensitive). Schemas searched: ${[...new Set([...config.schemas, ...named])].join(', ')}.`,
    });
  }
  return [...out.values()];
}

/** The declared conversions of these tables only (the others' would be "no column of a selected table"). */
function conversionsOf(config: Config, tables: TableName[]): Map<string, ColumnConversion> {
  const names = new Set(tables.map(displayTable));
  return new Map([...config.conversions].filter(([column]) => names.has(column.slice(0, column.lastIndexOf('.')))));
}

/**
 * Whether `tables` can join the migration: a usable replica identity on the source, a matching
 * table on the target, empty there unless walbridge copied it before (a table removed earlier:
 * its rows are replaced). Returns their plans, or throws with every problem and its fix.
 */
export async function checkAdditions(source: pg.ClientBase, target: pg.ClientBase, config: Config, tables: SourceTable[], recorded: TableState[]): Promise<TablePlan[]> {
  const problems: string[] = [];
  const identity = replicaIdentityProblem(tables);
  if (identity) problems.push(`${identity.message} ${identity.fix}`);
  problems.push(...(await carriedElsewhere(target, config.stateSchema, tables)));
  const comparison = await compareWithTarget(source, target, tables, conversionsOf(config, tables));
  problems.push(...comparison.problems);
  const known = new Set(recorded.map((t) => `${t.schema}.${t.name}`));
  for (const p of comparison.plans) {
    if (known.has(displayTable(p))) continue;
    const { rows } = await target.query<{ has_rows: boolean }>(tableHasRows(quoteTable(p)));
    if (rows[0]?.has_rows) {
      problems.push(`target table ${displayTable(p)} already holds rows that walbridge did not copy: empty it (TRUNCATE ${quoteTable(p)};) if they are not needed, then add it again`);
    }
  }
  if (problems.length > 0) {
    throw new WalbridgeError('schema', `cannot add ${tables.map(displayTable).join(', ')}:\n  - ${problems.join('\n  - ')}`, {
      hint: 'Fix the problems above (walbridge schema makes missing target tables), then run the command again. Nothing was changed.',
    });
  }
  return comparison.plans;
}

/** Record that `tables` join the migration (checked by checkAdditions). */
export async function requestAdd(target: pg.ClientBase, state: StateSql, tables: SourceTable[]): Promise<void> {
  await withTransaction(target, async () => {
    for (const t of tables) await target.query(state.REQUEST_ADD, [t.schema, t.name, t.estimatedRows, t.bytes]);
  });
}

/** Record a remove or a resync of migrated tables; a remove of an add never taken up forgets it. */
export async function requestChange(target: pg.ClientBase, state: StateSql, tables: TableState[], request: Exclude<TableRequest, 'add'>): Promise<void> {
  await withTransaction(target, async () => {
    for (const t of tables) {
      if (request === 'remove' && t.request === 'add') {
        const forgot = await target.query(state.FORGET_UNTAKEN_ADD, [t.schema, t.name]);
        if ((forgot.rowCount ?? 0) > 0) continue;
      }
      await target.query(state.REQUEST_CHANGE, [t.schema, t.name, request]);
    }
  });
}
