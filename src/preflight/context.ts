/**
 * What every preflight check is given and what it returns. The facts several checks need (the
 * source's server info and capacity, walbridge's slot, the selected tables and their plans) are
 * read once by `runPreflight` and handed to each check in a `PreflightContext`.
 */
import type pg from 'pg';
import type { SourceTable, TableComparison, TablePlan } from '../catalog/tables.js';
import type { Config } from '../config.js';
import type { ErrorKind } from '../errors.js';
import type { TableName } from '../pg/ident.js';
import type { SystemIdentity } from '../pg/replication.js';
import type { PipelineState } from '../state/store.js';

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
  /** The tables of a recorded migration (tables/selection.ts), instead of the configuration's selection. */
  migrationTables?: TableName[];
}

/** A row of SERVER_INFO. */
export interface ServerInfo {
  version_num: number;
  wal_level: string;
  encoding: string;
  database: string;
}

/** The row of SOURCE_CAPACITY. */
export interface SourceCapacity {
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
}

/** The columns of SELECT_SLOT that preflight reads. */
export interface SlotRow {
  active: boolean;
  wal_status: string | null;
}

export interface PreflightContext extends PreflightInput {
  sourceInfo: ServerInfo;
  targetInfo: ServerInfo | undefined;
  capacity: SourceCapacity;
  /** walbridge's slot on the source (config.slotName), if it exists. */
  slot: SlotRow | undefined;
  /** walbridge's publication (config.publicationName) exists on the source. */
  publicationExists: boolean;
  /** Bytes of WAL per second the source wrote while preflight watched it; null when it did not watch (the daemon's own preflight at every start). */
  walPerSecond: number | null;
  /** The tables the configuration selects, or why they could not be resolved (then none). */
  selection: { tables: SourceTable[] } | { tables: []; error: unknown };
  /** The selected tables against the target's; null when no table was selected. */
  comparison: TableComparison | null;
  /** The selected tables' sizes, largest first. */
  tables: TableEstimate[];
  /** A migration past its start (phase init) is recorded on the target: walbridge resumes it. */
  resuming: boolean;
  /** A start is recorded on the target (phase init) but did not finish: walbridge redoes it. */
  initInterrupted: boolean;
}

/** One check: its result, or null when it does not apply to this situation. */
export type PreflightCheck = (ctx: PreflightContext) => CheckResult | null | Promise<CheckResult | null>;

export const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;
