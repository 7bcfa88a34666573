/**
 * What an operator wants to know about a migration, in one shape for the status page, its
 * JSON, and `walbridge status`. Built from the state recorded on the target, the slot as the
 * source reports it, and (inside the daemon) live progress. Holds no connection details and
 * no data rows.
 */
import type { Phase } from './phase.js';
import { formatLsn, lsnDistance, type Lsn } from '../lsn.js';
import type { CopyState, PipelineState, RecordedError, TableState } from '../state/store.js';
import { describeTableState } from '../tables/requests.js';

export interface SlotReport {
  name: string;
  exists: boolean;
  active: boolean;
  /** WAL the slot makes the source keep. */
  retainedWalBytes: number | null;
  /** reserved, extended, unreserved or lost (invalidated). */
  walStatus: string | null;
  /** The source's current WAL position. */
  sourceLsn: string | null;
}

/** A fence standing on one of the two databases (cutover/fence.ts). */
export interface FenceReport {
  /** Which database of this migration's configuration it stands on. */
  database: 'source' | 'target';
  migration: string;
  /** forward: set by the migration's cutover; reverse: by the cutover of the way back. */
  direction: 'forward' | 'reverse';
  since: string;
  lsn: string | null;
  tables: number;
}

export interface TableReport {
  table: string;
  state: CopyState;
  /** Where it stands in words: streaming, copying (changes held meanwhile), to be added, removed… */
  stage: string;
  /** Changes held for it while it is copied again (tables/). */
  held: number;
  rowsCopied: number;
  rowsEstimated: number | null;
  bytesCopied: number;
  percent: number | null;
  rowsPerSecond: number | null;
  etaSeconds: number | null;
  copyLsn: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  /** Columns carried across a type change (WALBRIDGE_CONVERT): column → conversion. */
  conversions: Record<string, string>;
}

export interface StatusReport {
  phase: Phase;
  /** The phase recorded on the target (init, backfill, catchup, streaming, done), or null before the first start. */
  recordedPhase: string | null;
  slot: SlotReport | null;
  appliedLsn: string | null;
  appliedCommitTime: string | null;
  lagBytes: number | null;
  lagSeconds: number | null;
  tables: TableReport[];
  totals: { tables: number; pending: number; copying: number; copied: number; removed: number; rowsCopied: number; rowsEstimated: number };
  /** Tables created on the source in a selected schema that the migration does not carry, and why (only inside the daemon). */
  newTables: { table: string; reason: string }[];
  lastError: RecordedError | null;
  /** Changes applied by this daemon since it started (for rates); null outside the daemon. */
  applied: { transactions: number; changes: number } | null;
  /** The daemon as it last reported itself on the target (for `walbridge status` from elsewhere). */
  daemon: { phase: string; seenAt: string; secondsAgo: number } | null;
  /** Fences standing on either database: writes to those tables are refused there. */
  fences: FenceReport[];
  /** This migration's cutover stopped after fencing the source and before recording, or after recording and before removing the slot: what to do. */
  interruptedCutover: string | null;
  generatedAt: string;
}

/** Progress of a copy running in this process (the recorded one lags a few seconds). */
export interface LiveCopy {
  rows: number;
  bytes: number;
  startedAt: number;
}

export interface StatusInputs {
  phase?: Phase;
  pipeline: PipelineState | null;
  tables: TableState[];
  slot: SlotReport | null;
  liveCopies?: Map<string, LiveCopy>;
  liveAppliedLsn?: Lsn | null;
  liveAppliedCommitTimeMs?: number | null;
  liveError?: RecordedError | null;
  applied?: { transactions: number; changes: number } | null;
  fences?: FenceReport[];
  /** This migration's own name (its slot), to tell its fence from another's. */
  migration?: string;
  /** Declared conversions, by `schema.table.column`. */
  conversions?: Map<string, { spec: string }>;
  newTables?: { table: string; reason: string }[];
  now?: number;
}

const PHASE_OF_RECORD: Record<string, Phase> = {
  init: 'preflight',
  backfill: 'backfill',
  catchup: 'streaming',
  streaming: 'streaming',
  done: 'done',
};

export function buildStatus(i: StatusInputs): StatusReport {
  const now = i.now ?? Date.now();
  const tables: TableReport[] = i.tables.map((t) => {
    const name = `${t.schema}.${t.name}`;
    const live = t.state === 'copying' ? i.liveCopies?.get(name) : undefined;
    const rows = live ? Math.max(live.rows, t.rowsCopied) : t.rowsCopied;
    const bytes = live ? Math.max(live.bytes, t.bytesCopied) : t.bytesCopied;
    const startedMs = live?.startedAt ?? t.copyStartedAt?.getTime() ?? null;
    const finishedMs = t.copyFinishedAt?.getTime() ?? null;
    const seconds = startedMs === null ? null : ((t.state === 'copied' && finishedMs !== null ? finishedMs : now) - startedMs) / 1000;
    const rate = seconds !== null && seconds > 0 && rows > 0 ? rows / seconds : null;
    const estimated = t.rowsEstimated === null ? null : t.state === 'copied' ? rows : Math.max(t.rowsEstimated, rows);
    const percent = t.state === 'copied' ? 100 : t.state === 'pending' ? 0 : estimated && estimated > 0 ? Math.min(99.9, (100 * rows) / estimated) : null;
    const eta = t.state === 'copying' && rate && estimated !== null && estimated > rows ? Math.round((estimated - rows) / rate) : null;
    return {
      table: name,
      state: t.state,
      stage: describeTableState(t),
      held: t.held,
      rowsCopied: rows,
      rowsEstimated: estimated,
      bytesCopied: bytes,
      percent: percent === null ? null : Math.round(percent * 10) / 10,
      rowsPerSecond: rate === null ? null : Math.round(rate),
      etaSeconds: eta,
      copyLsn: t.copyLsn === null ? null : formatLsn(t.copyLsn),
      startedAt: startedMs === null ? null : new Date(startedMs).toISOString(),
      finishedAt: finishedMs === null ? null : new Date(finishedMs).toISOString(),
      conversions: Object.fromEntries([...(i.conversions ?? [])].filter(([k]) => k.startsWith(`${name}.`)).map(([k, c]) => [k.slice(name.length + 1), c.spec])),
    };
  });
  const applied = i.liveAppliedLsn ?? i.pipeline?.appliedLsn ?? null;
  const appliedTimeMs = i.liveAppliedCommitTimeMs ?? i.pipeline?.appliedCommitTime?.getTime() ?? null;
  const sourceLsn = i.slot?.sourceLsn ?? null;
  const streaming = i.pipeline?.phase === 'streaming' || i.pipeline?.phase === 'catchup';
  let lagBytes: number | null = null;
  let lagSeconds: number | null = null;
  if (streaming && applied !== null && sourceLsn !== null) {
    lagBytes = Number(lsnDistance(applied, parseLsnSafe(sourceLsn)));
    lagSeconds = lagBytes === 0 || appliedTimeMs === null ? 0 : Math.max(0, (now - appliedTimeMs) / 1000);
  }
  const count = (s: TableReport['state']) => tables.filter((t) => t.state === s).length;
  const removed = count('removed');
  return {
    phase: i.phase ?? (i.pipeline ? (PHASE_OF_RECORD[i.pipeline.phase] ?? 'preflight') : 'preflight'),
    recordedPhase: i.pipeline?.phase ?? null,
    slot: i.slot,
    appliedLsn: applied === null ? null : formatLsn(applied),
    appliedCommitTime: appliedTimeMs === null ? null : new Date(appliedTimeMs).toISOString(),
    lagBytes,
    lagSeconds: lagSeconds === null ? null : Math.round(lagSeconds * 10) / 10,
    tables,
    totals: {
      tables: tables.length - removed,
      pending: count('pending'),
      copying: count('copying'),
      copied: count('copied'),
      removed,
      rowsCopied: tables.reduce((a, t) => a + t.rowsCopied, 0),
      rowsEstimated: tables.reduce((a, t) => a + (t.rowsEstimated ?? 0), 0),
    },
    lastError: i.liveError ?? i.pipeline?.lastError ?? null,
    applied: i.applied ?? null,
    daemon:
      i.pipeline?.daemonPhase && i.pipeline.daemonSeenAt
        ? {
            phase: i.pipeline.daemonPhase,
            seenAt: i.pipeline.daemonSeenAt.toISOString(),
            secondsAgo: Math.max(0, Math.round((now - i.pipeline.daemonSeenAt.getTime()) / 1000)),
          }
        : null,
    fences: i.fences ?? [],
    newTables: i.newTables ?? [],
    interruptedCutover: interrupted(i),
    generatedAt: new Date(now).toISOString(),
  };
}

/**
 * A cutover stopped halfway: a fence of this migration on its source while nothing is recorded
 * as cut over; or a cutover recorded with walbridge's slot still on the source (it stopped
 * before removing it, or was told to keep it), where nobody reads the slot any more.
 */
function interrupted(i: StatusInputs): string | null {
  if (i.pipeline?.phase === 'done') {
    if (!i.slot?.exists) return null;
    return (
      `the cutover is recorded, but walbridge's slot ${i.slot.name} is still on the source, which keeps WAL for it with nobody reading it. ` +
      'If the cutover was interrupted, run "walbridge cutover" again to finish it; otherwise remove the slot with "walbridge teardown".'
    );
  }
  const own = (i.fences ?? []).find((f) => f.database === 'source' && f.migration === i.migration);
  if (!own || !i.pipeline) return null;
  return `a cutover fenced the source at ${own.since} and did not finish: the app's writes to the migrated tables are refused there. Run "walbridge cutover" to finish it, or "walbridge cutover --cancel" to lift the fence.`;
}

function parseLsnSafe(text: string): Lsn {
  const [hi = '0', lo = '0'] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

const bytesText = (n: number | null): string => {
  if (n === null) return '?';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
};

const durationText = (s: number | null): string => {
  if (s === null) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
};

/** The report as a person reads it in a terminal. */
export function formatStatusText(r: StatusReport): string {
  const lines: string[] = [];
  lines.push(`phase:        ${r.phase}${r.recordedPhase && r.recordedPhase !== r.phase ? ` (recorded: ${r.recordedPhase})` : ''}`);
  if (r.daemon) {
    const stale = r.daemon.secondsAgo > 30;
    lines.push(`daemon:       ${stale ? 'not seen' : r.daemon.phase} (last report ${r.daemon.secondsAgo}s ago${stale ? ': is it running?' : ''})`);
  }
  if (r.slot) {
    lines.push(
      `slot:         ${r.slot.name} ${r.slot.exists ? `${r.slot.active ? 'active' : 'INACTIVE'}, retains ${bytesText(r.slot.retainedWalBytes)} of WAL on the source${r.slot.walStatus === 'lost' ? ' — INVALIDATED' : ''}` : 'does not exist on the source'}`,
    );
  }
  if (r.lagBytes !== null) lines.push(`lag:          ${bytesText(r.lagBytes)}, ${r.lagSeconds ?? '?'} s (applied up to ${r.appliedLsn})`);
  lines.push(`tables:       ${r.totals.copied}/${r.totals.tables} copied, ${r.totals.copying} copying, ${r.totals.pending} pending${r.totals.removed > 0 ? `, ${r.totals.removed} removed` : ''}`);
  const width = Math.max(10, ...r.tables.map((t) => t.table.length));
  for (const t of r.tables) {
    const pct = t.percent === null ? '   ?' : `${t.percent.toFixed(0).padStart(3)}%`;
    const extra =
      t.state === 'copying'
        ? `${t.rowsCopied} rows${t.rowsPerSecond ? `, ${t.rowsPerSecond} rows/s` : ''}${t.etaSeconds !== null ? `, ETA ${durationText(t.etaSeconds)}` : ''}`
        : t.state === 'copied'
          ? `${t.rowsCopied} rows`
          : '';
    const stage = t.stage === 'streaming' || t.stage === t.state ? '' : `  ${t.stage}${t.held > 0 ? `, ${t.held} change(s) held` : ''}`;
    lines.push(`  ${t.table.padEnd(width)}  ${t.state.padEnd(7)} ${t.state === 'removed' ? '    ' : pct}  ${extra}${stage}`);
    const converted = Object.entries(t.conversions).map(([column, spec]) => `${column} (${spec})`);
    if (converted.length > 0) lines.push(`  ${' '.repeat(width)}  converted: ${converted.join(', ')}`);
  }
  for (const f of r.fences) {
    const by = f.direction === 'forward' ? `the cutover of migration ${f.migration}` : `the rollback of migration ${f.migration.replace(/_reverse$/, '')}`;
    lines.push(`fence:        the ${f.database} refuses writes to ${f.tables} table(s) since ${f.since} (set by ${by})`);
  }
  for (const n of r.newTables) lines.push(`new table:    ${n.table} on the source, ${n.reason}`);
  if (r.interruptedCutover) lines.push(`cutover:      ${r.interruptedCutover}`);
  if (r.lastError) {
    const resolved = r.lastError.resolvedAt ? `, resolved ${r.lastError.resolvedAt}` : '';
    lines.push(`last error:   [${r.lastError.kind}] ${r.lastError.message} (${r.lastError.at}${resolved})`);
    if (r.lastError.hint && !r.lastError.resolvedAt) lines.push(`fix:          ${r.lastError.hint}`);
  }
  return lines.join('\n');
}
