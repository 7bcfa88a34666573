/**
 * Table groups: several walbridge services migrating one source into one target, each with its
 * own slot, publication and state (WALBRIDGE_GROUP; state schema walbridge_<group>). A table
 * belongs to one group: the others' states say which tables they carry.
 */
import type pg from 'pg';
import { groupOfStateSchema } from '../config.js';
import { displayTable, type TableName } from '../pg/ident.js';
import { STATE_SCHEMAS, stateSql } from '../sql/state.js';

/** The group a state schema holds, as an operator names it. */
export function groupOf(stateSchema: string): string {
  const group = groupOfStateSchema(stateSchema);
  return group === null ? 'the migration without a group' : `group ${group}`;
}

/** The other walbridge states on this database (their schemas). */
export async function otherStates(target: pg.ClientBase, ownStateSchema: string): Promise<string[]> {
  const { rows } = await target.query<{ schema: string }>(STATE_SCHEMAS);
  return rows.map((r) => r.schema).filter((s) => s !== ownStateSchema);
}

/** Tables other states on this target carry: `schema.table` → the group that carries it. */
export async function tablesOfOtherGroups(target: pg.ClientBase, ownStateSchema: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const schema of await otherStates(target, ownStateSchema)) {
    const carried = await target.query<TableName>(stateSql(schema).CARRIED_TABLES);
    for (const t of carried.rows) out.set(displayTable(t), groupOf(schema));
  }
  return out;
}

/** Problems for `tables` that another group carries (empty when none does). */
export async function carriedElsewhere(target: pg.ClientBase, ownStateSchema: string, tables: TableName[]): Promise<string[]> {
  const others = await tablesOfOtherGroups(target, ownStateSchema);
  return tables.flatMap((t) => {
    const by = others.get(displayTable(t));
    return by === undefined ? [] : [`${displayTable(t)} is migrated by ${by} on this target: a table belongs to one group (leave it out here, or remove it there first)`];
  });
}
