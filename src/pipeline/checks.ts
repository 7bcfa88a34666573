/**
 * Checks made before walbridge writes anything on either side, so bad input stops the
 * start with nothing half-written.
 */
import type pg from 'pg';
import type { TablePlan } from '../catalog/tables.js';
import { WalbridgeError } from '../errors.js';
import { displayTable, quoteTable } from '../pg/ident.js';
import type { SystemIdentity } from '../pg/replication.js';
import { SERVER_INFO, SYSTEM_IDENTIFIER, tableHasRows } from '../sql/catalog.js';
import { SELECT_PUBLICATION, SELECT_SLOT } from '../sql/source.js';

export interface ServerInfo {
  versionNum: number;
  database: string;
  walLevel: string;
  encoding: string;
}

export async function serverInfo(client: pg.ClientBase): Promise<ServerInfo> {
  const { rows } = await client.query<{ version_num: number; database: string; wal_level: string; encoding: string }>(SERVER_INFO);
  const r = rows[0];
  if (!r) throw new Error('server info query returned no row');
  return { versionNum: r.version_num, database: r.database, walLevel: r.wal_level, encoding: r.encoding };
}

export function checkSourceServer(info: ServerInfo): void {
  if (info.walLevel !== 'logical') {
    throw new WalbridgeError('source', `the source has wal_level = ${info.walLevel}; logical replication needs wal_level = logical`, {
      hint: 'Run ALTER SYSTEM SET wal_level = logical; on the source and restart it (Supabase has it on already).',
    });
  }
  if (info.versionNum < 140000) {
    throw new WalbridgeError('source', `the source runs PostgreSQL ${Math.floor(info.versionNum / 10000)}; walbridge needs 14 or later`, {
      hint: 'Upgrade the source, or use pg_dump for this migration.',
    });
  }
  if (info.encoding !== 'UTF8') {
    throw new WalbridgeError('source', `the source database is encoded in ${info.encoding}; walbridge moves UTF8 text only`, {
      hint: 'Use pg_dump/pg_restore for a database in another encoding.',
    });
  }
}

/** The same cluster as source and target would replicate into itself. */
export async function checkDistinctClusters(identity: SystemIdentity, sourceDb: string, target: pg.ClientBase, targetDb: string): Promise<void> {
  let targetSystemId: string | null = null;
  try {
    const { rows } = await target.query<{ system_id: string }>(SYSTEM_IDENTIFIER);
    targetSystemId = rows[0]?.system_id ?? null;
  } catch {
    return; // not allowed to read it: the URL comparison made at config time has to do
  }
  if (targetSystemId === identity.systemId && sourceDb === targetDb) {
    throw new WalbridgeError('config', 'SOURCE_DATABASE_URL and TARGET_DATABASE_URL reach the same database', {
      hint: 'Point TARGET_DATABASE_URL at the new database.',
    });
  }
}

/** A first start copies into empty tables only: rows already there would be duplicated or lost. */
export async function checkTargetTablesEmpty(target: pg.ClientBase, plans: TablePlan[]): Promise<void> {
  const full: string[] = [];
  for (const p of plans) {
    const { rows } = await target.query<{ has_rows: boolean }>(tableHasRows(quoteTable(p)));
    if (rows[0]?.has_rows) full.push(displayTable(p));
  }
  if (full.length > 0) {
    throw new WalbridgeError('state', `these target tables already hold rows and walbridge has no record of copying them:\n  - ${full.join('\n  - ')}`, {
      hint: `Empty them on the target (TRUNCATE ${full.map((f) => f).join(', ')};) or exclude them with WALBRIDGE_EXCLUDE_TABLES, then start again.`,
    });
  }
}

export interface SlotInfo {
  slot_name: string;
  plugin: string | null;
  slot_type: string;
  database: string | null;
  active: boolean;
  active_pid: number | null;
  temporary: boolean;
  restart_lsn: string | null;
  confirmed_flush_lsn: string | null;
  wal_status: string | null;
}

export async function findSlot(source: pg.ClientBase, name: string): Promise<SlotInfo | null> {
  const { rows } = await source.query<SlotInfo>(SELECT_SLOT, [name]);
  return rows[0] ?? null;
}

export interface PublicationInfo {
  name: string;
  all_tables: boolean;
  via_root: boolean;
  tables: string[];
}

export async function findPublication(source: pg.ClientBase, name: string): Promise<PublicationInfo | null> {
  const { rows } = await source.query<PublicationInfo>(SELECT_PUBLICATION, [name]);
  return rows[0] ?? null;
}

/** Before a first start: a slot or publication of that name belongs to someone else. */
export async function checkNamesFree(source: pg.ClientBase, slotName: string, publicationName: string): Promise<void> {
  const slot = await findSlot(source, slotName);
  if (slot) {
    throw new WalbridgeError(
      'slot',
      `a replication slot named "${slotName}" already exists on the source (plugin ${slot.plugin ?? 'physical'}, ${slot.active ? 'in use' : 'idle'}), ` +
        'and the target holds no walbridge state that created it',
      {
        hint:
          `Set WALBRIDGE_SLOT to another name. If it is a leftover of an abandoned walbridge run, remove it with ` +
          `"walbridge teardown" or SELECT pg_drop_replication_slot('${slotName}'); on the source (an idle slot makes the source keep WAL).`,
      },
    );
  }
  const pub = await findPublication(source, publicationName);
  if (pub) {
    throw new WalbridgeError('source', `a publication named "${publicationName}" already exists on the source and walbridge did not create it`, {
      hint: `Set WALBRIDGE_PUBLICATION to another name (walbridge never alters publications it does not own).`,
    });
  }
}
