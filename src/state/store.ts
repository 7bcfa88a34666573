/**
 * Reading and writing walbridge's recorded state on the target (schema `walbridge`, or
 * config.stateSchema: each function is given the statements of the state it reads).
 */
import type pg from 'pg';
import { parseLsnOrNull, type Lsn } from '../lsn.js';
import type { StateSql } from '../sql/state.js';

export type PipelinePhase = 'init' | 'backfill' | 'catchup' | 'streaming' | 'done';
/** 'removed': taken out of a running migration (its rows stay on the target). */
export type CopyState = 'pending' | 'copying' | 'copied' | 'removed';
/** What a command asked of a table, until the daemon takes it up (tables/). */
export type TableRequest = 'add' | 'remove' | 'resync';

/** The selection a start ran with (config: schemas, includeTables, excludeTables). */
export interface RecordedSelection {
  schemas: string[];
  includeTables: string[] | null;
  excludeTables: string[];
}

export interface PipelineState {
  sourceSystemId: string;
  sourceDatabase: string;
  slotName: string;
  publicationName: string;
  phase: PipelinePhase;
  consistentLsn: Lsn | null;
  appliedLsn: Lsn | null;
  appliedCommitTime: Date | null;
  spooledLsn: Lsn | null;
  spoolCommittedId: bigint;
  lastError: RecordedError | null;
  updatedAt: Date;
  /** The running daemon's phase and when it last said so (null if none ever ran this version). */
  daemonPhase: string | null;
  daemonSeenAt: Date | null;
  /** Set while "walbridge cutover" runs (the daemon shows phase cutover, and records the rows it changes). */
  cutoverRequestedAt: Date | null;
  /** Where the record of changed rows (walbridge.changed_rows) starts, once the applier keeps it. */
  changesTrackedFrom: Lsn | null;
  /** The last fence marker applied (cutover/fence.ts). */
  fenceMarker: string | null;
  /** The content was checked equal then, for rows changed in transactions committed before contentCheckedFrom. */
  contentCheckedAt: Date | null;
  contentCheckedFrom: Lsn | null;
  /** Null until a release that records it starts. */
  selection: RecordedSelection | null;
}

export interface RecordedError {
  kind: string;
  message: string;
  hint?: string | undefined;
  at: string;
  /** Set once walbridge got back to copying or streaming after it. */
  resolvedAt?: string;
}

export interface TableState {
  schema: string;
  name: string;
  state: CopyState;
  copyLsn: Lsn | null;
  rowsEstimated: number | null;
  bytesEstimated: number | null;
  rowsCopied: number;
  bytesCopied: number;
  copyStartedAt: Date | null;
  copyFinishedAt: Date | null;
  request: TableRequest | null;
  requestedAt: Date | null;
  /** Its changes are held (walbridge.held_changes) until its copy is in. */
  holding: boolean;
  removedAt: Date | null;
  /** Changes held for it now. */
  held: number;
}

export async function stateExists(client: pg.ClientBase, q: StateSql): Promise<boolean> {
  const { rows } = await client.query<{ exists: boolean }>(q.STATE_EXISTS);
  return rows[0]?.exists === true;
}

export async function loadPipeline(client: pg.ClientBase, q: StateSql): Promise<PipelineState | null> {
  if (!(await stateExists(client, q))) return null;
  const { rows } = await client.query<{
    source_system_id: string;
    source_database: string;
    slot_name: string;
    publication_name: string;
    phase: PipelinePhase;
    consistent_lsn: string | null;
    applied_lsn: string | null;
    spooled_lsn: string | null;
    spool_committed_id: string;
    applied_commit_time: Date | null;
    last_error: RecordedError | null;
    updated_at: Date;
    daemon_phase: string | null;
    daemon_seen_at: Date | null;
    cutover_requested_at: Date | null;
    changes_tracked_from: string | null;
    fence_marker: string | null;
    content_checked_at: Date | null;
    content_checked_from: string | null;
    selection: RecordedSelection | null;
  }>(q.SELECT_PIPELINE);
  const r = rows[0];
  if (!r) return null;
  return {
    sourceSystemId: r.source_system_id,
    sourceDatabase: r.source_database,
    slotName: r.slot_name,
    publicationName: r.publication_name,
    phase: r.phase,
    consistentLsn: parseLsnOrNull(r.consistent_lsn),
    appliedLsn: parseLsnOrNull(r.applied_lsn),
    appliedCommitTime: r.applied_commit_time,
    spooledLsn: parseLsnOrNull(r.spooled_lsn),
    spoolCommittedId: BigInt(r.spool_committed_id),
    lastError: r.last_error,
    updatedAt: r.updated_at,
    daemonPhase: r.daemon_phase,
    daemonSeenAt: r.daemon_seen_at,
    cutoverRequestedAt: r.cutover_requested_at,
    changesTrackedFrom: parseLsnOrNull(r.changes_tracked_from),
    fenceMarker: r.fence_marker,
    contentCheckedAt: r.content_checked_at,
    contentCheckedFrom: parseLsnOrNull(r.content_checked_from),
    selection: r.selection,
  };
}

/** `countHeld`: count each holding table's held changes (false: `held` is 0; for a frequent poll). */
export async function loadTables(client: pg.ClientBase, q: StateSql, countHeld = true): Promise<TableState[]> {
  if (!(await stateExists(client, q))) return [];
  const { rows } = await client.query<{
    schema_name: string;
    table_name: string;
    state: CopyState;
    copy_lsn: string | null;
    rows_estimated: string | null;
    bytes_estimated: string | null;
    rows_copied: string;
    bytes_copied: string;
    copy_started_at: Date | null;
    copy_finished_at: Date | null;
    request: TableRequest | null;
    requested_at: Date | null;
    holding: boolean;
    removed_at: Date | null;
    held: string | null;
  }>(q.SELECT_TABLES, [countHeld]);
  return rows.map((r) => ({
    schema: r.schema_name,
    name: r.table_name,
    state: r.state,
    copyLsn: parseLsnOrNull(r.copy_lsn),
    rowsEstimated: r.rows_estimated === null ? null : Number(r.rows_estimated),
    bytesEstimated: r.bytes_estimated === null ? null : Number(r.bytes_estimated),
    rowsCopied: Number(r.rows_copied),
    bytesCopied: Number(r.bytes_copied),
    copyStartedAt: r.copy_started_at,
    copyFinishedAt: r.copy_finished_at,
    request: r.request,
    requestedAt: r.requested_at,
    holding: r.holding,
    removedAt: r.removed_at,
    held: r.held === null ? 0 : Number(r.held),
  }));
}

export async function setPhase(client: pg.ClientBase, q: StateSql, phase: PipelinePhase): Promise<void> {
  await client.query(q.SET_PHASE, [phase]);
}

