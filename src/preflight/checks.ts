/**
 * Preflight: everything that would make the migration fail or hurt the source, found before
 * anything is written. Each check says pass, warn or fail, and for warn and fail what to do.
 * `walbridge preflight` prints them; the daemon runs the same checks at every start and
 * stops on a failure.
 */
import { compareWithTarget, resolveSelection } from '../catalog/tables.js';
import { WalbridgeError } from '../errors.js';
import { SERVER_INFO } from '../sql/catalog.js';
import { resolveNamed } from '../tables/selection.js';
import { SELECT_PUBLICATION, SELECT_SLOT, SOURCE_CAPACITY } from '../sql/source.js';
import type { CheckResult, PreflightCheck, PreflightContext, PreflightInput, PreflightReport, ServerInfo, SlotRow, SourceCapacity } from './context.js';
import { conversions } from './conversion-checks.js';
import { recordedState, targetEmpty } from './recorded-state.js';
import { replicationConnection, replicationRole, replicationSlots, sampleWalRate, slotName, sourceVersion, walLevel, walRetention, walSenders } from './source-checks.js';
import { copyEstimate, estimates, extensions, fenceable, forSelectedTables, partitions, publicationPrivilege, replicaIdentity, tableGroups, tablesSelected, targetSchema, targetTables } from './table-checks.js';
import { distinctDatabases, rollbackWindow, targetRole } from './target-checks.js';

export type { CheckResult, CheckStatus, PreflightInput, PreflightReport, TableEstimate } from './context.js';

/** In report order, which tests and docs quote; the daemon's error lists failures in this order too. */
const CHECKS: PreflightCheck[] = [
  // the source as a replication source
  replicationConnection,
  sourceVersion,
  walLevel,
  replicationRole,
  replicationSlots,
  walSenders,
  slotName,
  walRetention,
  // the target
  targetRole,
  rollbackWindow,
  distinctDatabases,
  // the tables
  tablesSelected,
  ...[replicaIdentity, partitions, publicationPrivilege, fenceable, tableGroups, targetTables, targetSchema, extensions, recordedState, targetEmpty].map(forSelectedTables),
  conversions,
  copyEstimate,
];

export async function runPreflight(input: PreflightInput): Promise<PreflightReport> {
  const ctx = await gatherFacts(input);
  const checks: CheckResult[] = [];
  for (const check of CHECKS) {
    const result = await check(ctx);
    if (result) checks.push(result);
  }
  return { ok: !checks.some((c) => c.status === 'fail'), checks, tables: ctx.tables, plans: ctx.comparison?.plans ?? [] };
}

/** What several checks read, read once. */
async function gatherFacts(input: PreflightInput): Promise<PreflightContext> {
  const { config, source, target, state } = input;
  const sourceInfo = (await source.query<ServerInfo>(SERVER_INFO)).rows[0];
  if (!sourceInfo) throw new Error('server info query returned no row');
  const capacity = (await source.query<SourceCapacity>(SOURCE_CAPACITY)).rows[0];
  if (!capacity) throw new Error('source capacity query returned no row');
  const slot = (await source.query<SlotRow>(SELECT_SLOT, [config.slotName])).rows[0];
  const publicationExists = (await source.query(SELECT_PUBLICATION, [config.publicationName])).rows.length > 0;
  // The WAL sample starts at the capacity row's LSN: taken now, before the slower catalog reads.
  const walPerSecond = await sampleWalRate(source, capacity.lsn, input.walSampleMs ?? 1000);
  const targetInfo = (await target.query<ServerInfo>(SERVER_INFO)).rows[0];
  const selection = await (input.migrationTables ? resolveNamed(source, input.migrationTables) : resolveSelection(source, config)).then(
    (tables) => ({ tables }),
    (error: unknown) => ({ tables: [] as [], error }),
  );
  const comparison = selection.tables.length > 0 ? await compareWithTarget(source, target, selection.tables, config.conversions) : null;
  return {
    ...input,
    sourceInfo,
    targetInfo,
    capacity,
    slot,
    publicationExists,
    walPerSecond,
    selection,
    comparison,
    tables: estimates(selection.tables),
    resuming: state !== null && state.phase !== 'init',
    initInterrupted: state !== null && state.phase === 'init',
  };
}

/** For the daemon: stop on any failed check, with every failure and its fix in one message. */
export function assertPreflight(report: PreflightReport): void {
  const failed = report.checks.filter((c) => c.status === 'fail');
  if (failed.length === 0) return;
  const first = failed[0] as CheckResult;
  const message = failed.length === 1 ? first.message : `preflight found ${failed.length} problems:\n- ${failed.map((f) => f.message).join('\n- ')}`;
  const hint = failed.map((f) => f.fix).filter(Boolean).join(' ');
  throw new WalbridgeError(first.kind ?? 'config', message, { hint });
}
