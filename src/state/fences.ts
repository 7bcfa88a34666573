/**
 * The fences recorded on a database (cutover/fence.ts sets and lifts them): read by cutover,
 * teardown, the daemon's monitor and `walbridge status`.
 */
import type pg from 'pg';
import { parseLsnOrNull, type Lsn } from '../lsn.js';
import { FENCES_EXIST, SELECT_FENCES } from '../sql/fence.js';

export type FenceDirection = 'forward' | 'reverse';

export interface Fence {
  migration: string;
  direction: FenceDirection;
  marker: string;
  setAt: Date;
  /** This database's WAL position once the fence committed (null if the fence's command died right after it). */
  lsn: Lsn | null;
  tables: string[];
}

interface FenceRow {
  migration: string;
  direction: FenceDirection;
  marker: string;
  set_at: Date;
  lsn: string | null;
  tables: string[];
}

const fenceOf = (r: FenceRow): Fence => ({ migration: r.migration, direction: r.direction, marker: r.marker, setAt: r.set_at, lsn: parseLsnOrNull(r.lsn), tables: r.tables });

/** The fences recorded on this database. */
export async function readFences(client: pg.ClientBase): Promise<Fence[]> {
  if (!(await client.query<{ ok: boolean }>(FENCES_EXIST)).rows[0]?.ok) return [];
  return (await client.query<FenceRow>(SELECT_FENCES)).rows.map(fenceOf);
}
