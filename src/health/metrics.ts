/**
 * Prometheus metrics. Names are fixed (dashboards and alerts use them) and live here only.
 * Labels carry table names and phases, never connection details.
 */
import client from 'prom-client';
import { ERROR_KINDS } from '../errors.js';
import { PHASES, type Phase } from '../status/phase.js';

/**
 * The kinds walbridge_errors_total counts: each error kind, and 'divergence', which apply
 * counts without stopping (an UPDATE or DELETE found fewer rows on the target than it changed).
 */
const ERROR_COUNTER_KINDS = [...ERROR_KINDS, 'divergence'] as const;

export class Metrics {
  readonly registry = new client.Registry();

  readonly phase = new client.Gauge({
    name: 'walbridge_phase',
    help: 'Current phase of the pipeline: 1 for the current one, 0 for the others.',
    labelNames: ['phase'],
    registers: [this.registry],
  });
  readonly backfillRows = new client.Counter({
    name: 'walbridge_backfill_rows_total',
    help: 'Rows copied by the backfill, per table.',
    labelNames: ['table'],
    registers: [this.registry],
  });
  readonly backfillBytes = new client.Counter({
    name: 'walbridge_backfill_bytes_total',
    help: 'Bytes of COPY data copied by the backfill, per table.',
    labelNames: ['table'],
    registers: [this.registry],
  });
  readonly backfillRowsEstimated = new client.Gauge({
    name: 'walbridge_backfill_rows_estimated',
    help: "Rows the source's statistics estimate per table (the backfill's denominator).",
    labelNames: ['table'],
    registers: [this.registry],
  });
  readonly backfillTables = new client.Gauge({
    name: 'walbridge_backfill_tables',
    help: 'Tables per copy state (pending, copying, copied).',
    labelNames: ['state'],
    registers: [this.registry],
  });
  readonly tableStates = new client.Gauge({
    name: 'walbridge_tables',
    help: 'Tables of the migration per state: streaming, holding (copied again while the others stream), requested (asked, not taken up yet), removed; new: created on the source, not migrated.',
    labelNames: ['state'],
    registers: [this.registry],
  });
  readonly heldChanges = new client.Gauge({
    name: 'walbridge_held_changes',
    help: 'Changes held for a table being copied while the others stream, applied once its copy is in.',
    labelNames: ['table'],
    registers: [this.registry],
  });
  readonly applyTransactions = new client.Counter({
    name: 'walbridge_apply_transactions_total',
    help: 'Source transactions applied to the target.',
    registers: [this.registry],
  });
  readonly applyChanges = new client.Counter({
    name: 'walbridge_apply_changes_total',
    help: 'Row changes applied to the target, per table and operation.',
    labelNames: ['table', 'op'],
    registers: [this.registry],
  });
  readonly spooledBytes = new client.Counter({
    name: 'walbridge_spool_bytes_total',
    help: 'Bytes of change stream written to the spool on the target while the backfill ran.',
    registers: [this.registry],
  });
  readonly lagBytes = new client.Gauge({
    name: 'walbridge_replication_lag_bytes',
    help: "Source's current WAL position minus the last position applied on the target.",
    registers: [this.registry],
  });
  readonly lagSeconds = new client.Gauge({
    name: 'walbridge_replication_lag_seconds',
    help: "Now minus the last applied commit's time; 0 when caught up.",
    registers: [this.registry],
  });
  readonly retainedWalBytes = new client.Gauge({
    name: 'walbridge_source_retained_wal_bytes',
    help: 'WAL the replication slot holds back on the source.',
    registers: [this.registry],
  });
  readonly slotActive = new client.Gauge({
    name: 'walbridge_slot_active',
    help: '1 while a walsender streams from the slot.',
    registers: [this.registry],
  });
  readonly fencedTables = new client.Gauge({
    name: 'walbridge_fenced_tables',
    help: 'Tables a cutover fence stands on (writes to them are refused there), on the source and on the target.',
    labelNames: ['database'],
    registers: [this.registry],
  });
  readonly errors = new client.Counter({
    name: 'walbridge_errors_total',
    help: 'Errors by kind (transient ones are retried).',
    labelNames: ['kind'],
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics ?? true) client.collectDefaultMetrics({ register: this.registry });
    this.setPhase('preflight');
    // A series from the start, so rate() and increase() show 0 rather than nothing before the first error.
    for (const kind of ERROR_COUNTER_KINDS) this.errors.inc({ kind }, 0);
    for (const database of ['source', 'target']) this.fencedTables.set({ database }, 0);
  }

  setPhase(current: Phase): void {
    for (const p of PHASES) this.phase.set({ phase: p }, p === current ? 1 : 0);
  }
}
