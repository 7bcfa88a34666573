/**
 * A target table's plain secondary indexes are dropped while the table is copied and built
 * again once its rows are in: one sort per index instead of an index insertion per row, which
 * is most of the target's work for a copy into indexed tables (pg_restore and pgcopydb build
 * indexes after the data for the same reason).
 *
 * Crash safety: an index is dropped in the same transaction that records its definition in
 * walbridge.deferred_indexes, and built again in the transaction that marks the table copied
 * (which also forgets the record). So at any moment an index either exists or is recorded, and
 * a copy cut off and started again finds the record and builds it at its end. Only indexes
 * that can be rebuilt exactly are touched (see DEFERRABLE_INDEXES): never a key, a unique or
 * exclusion index, nor one that anything depends on. `walbridge teardown --target` builds
 * whatever is still recorded before it removes walbridge's state.
 */
import type pg from 'pg';
import type { TablePlan } from '../catalog/tables.js';
import { quoteIdent, quoteLiteral, quoteTable, type TableName } from '../pg/ident.js';
import { DEFERRABLE_INDEXES, type StateSql } from '../sql/state.js';

interface DeferredIndex {
  index_name: string;
  definition: string;
  comment: string | null;
}

/**
 * Drop the table's deferrable indexes, recording them, in a transaction of its own. Returns
 * the names of the indexes now set aside (with any recorded by an earlier, cut-off copy).
 */
export async function setIndexesAside(target: pg.ClientBase, state: StateSql, plan: TablePlan): Promise<string[]> {
  await target.query('BEGIN');
  try {
    // Qualified names everywhere in the definitions, whatever the session's search_path.
    await target.query('SET LOCAL search_path = pg_catalog');
    const { rows } = await target.query<DeferredIndex>(DEFERRABLE_INDEXES, [quoteTable(plan)]);
    for (const ix of rows) {
      await target.query(state.RECORD_DEFERRED_INDEX, [plan.schema, plan.name, ix.index_name, ix.definition, ix.comment]);
      await target.query(`DROP INDEX ${quoteIdent(plan.schema)}.${quoteIdent(ix.index_name)}`);
    }
    const all = await target.query<DeferredIndex>(state.DEFERRED_INDEXES_OF, [plan.schema, plan.name]);
    await target.query('COMMIT');
    return all.rows.map((r) => r.index_name);
  } catch (err) {
    await target.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Build again, inside the caller's transaction, every index recorded for the table; returns their names. */
export async function buildIndexesAgain(target: pg.ClientBase, state: StateSql, table: TableName): Promise<string[]> {
  const { rows } = await target.query<DeferredIndex>(state.DEFERRED_INDEXES_OF, [table.schema, table.name]);
  if (rows.length === 0) return [];
  for (const ix of rows) await buildOne(target, table, ix);
  await target.query(state.FORGET_DEFERRED_INDEXES, [table.schema, table.name]);
  return rows.map((r) => r.index_name);
}

async function buildOne(target: pg.ClientBase, table: TableName, ix: DeferredIndex): Promise<void> {
  // The definition is pg_get_indexdef()'s, made under search_path = pg_catalog.
  await target.query(ix.definition);
  if (ix.comment !== null) await target.query(`COMMENT ON INDEX ${quoteIdent(table.schema)}.${quoteIdent(ix.index_name)} IS ${quoteLiteral(ix.comment)}`);
}

/** Build every index still recorded (a migration abandoned during its copy); returns how many. */
export async function buildAllIndexesAgain(target: pg.ClientBase, state: StateSql): Promise<number> {
  const { rows } = await target.query<DeferredIndex & { schema_name: string; table_name: string }>(state.ALL_DEFERRED_INDEXES);
  const tables = new Map<string, TableName>();
  for (const r of rows) tables.set(JSON.stringify([r.schema_name, r.table_name]), { schema: r.schema_name, name: r.table_name });
  let n = 0;
  for (const t of tables.values()) {
    await target.query('BEGIN');
    try {
      n += (await buildIndexesAgain(target, state, t)).length;
      await target.query('COMMIT');
    } catch (err) {
      await target.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }
  return n;
}
