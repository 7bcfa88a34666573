/**
 * walbridge's own objects on the source, as the source reports them.
 */
import type pg from 'pg';
import { SELECT_PUBLICATION, SELECT_SLOT } from '../sql/source.js';

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
