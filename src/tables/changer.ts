/**
 * The daemon's side of a changing table set, while streaming: it reads the requests recorded on
 * the target (requests.ts) every second and carries each out, the other tables streaming all
 * along.
 *
 *   add / resync — between source transactions, the table starts holding: its changes are kept
 *                  (replicator/apply/held.ts), none applied. Then (add) it joins the publication,
 *                  a fresh snapshot is taken and the table copied under it (emptied first for a
 *                  resync), with that snapshot's LSN as its copy LSN. Once the copy is in, between
 *                  source transactions again, the held changes are applied (held.ts) under the
 *                  copy's rule and the table streams as any other.
 *   remove       — between source transactions, the table is no longer applied; then it leaves
 *                  the publication. Its rows stay on the target.
 *
 * Each step is recorded on the target before the next starts, so a restart (kill -9 included)
 * picks up where it stopped: a copy cut off starts over under a new snapshot, held changes stay
 * held until applied. Requests wait while a cutover runs.
 *
 * It also notices tables created on the source in a selected schema, reports them, and with
 * WALBRIDGE_FOLLOW_NEW_TABLES adds them once they exist on the target.
 */
import type pg from 'pg';
import { compareWithTarget, listSourceTables, type SourceTable, type TablePlan } from '../catalog/tables.js';
import { tablePattern } from '../catalog/select.js';
import type { Config } from '../config.js';
import { describeError, isTransient, WalbridgeError } from '../errors.js';
import type { LiveStatus } from '../health/live-status.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn } from '../lsn.js';
import type { BatchStatement } from '../pg/batch.js';
import { connect } from '../pg/connect.js';
import { displayTable, type TableName } from '../pg/ident.js';
import { withTransaction } from '../pg/transaction.js';
import { installPartitionTruncates } from '../pipeline/partition-truncates.js';
import { copyUnder, temporarySnapshot } from '../pipeline/snapshot.js';
import type { Applier } from '../replicator/apply/applier.js';
import type { DescribeAddedColumn } from '../replicator/apply/binding.js';
import { addPublicationTable, dropPublicationTable, PUBLICATION_TABLES } from '../sql/source.js';
import { stateSql, type StateSql } from '../sql/state.js';
import { loadPipeline, loadTables, type TableState } from '../state/store.js';
import { applyHeldChanges } from './held.js';
import { checkAdditions, isMigrated, requestAdd } from './requests.js';
import { commandFor, targetName, unknownTables } from './selection.js';
import { HeldMessages } from '../replicator/apply/held.js';
import { makeMissingPartitions, missingPartitions } from '../schema/partitions.js';

export interface ChangerContext {
  config: Config;
  /** The apply connection: used only between source transactions, with the applier drained. */
  control: pg.Client;
  applier: Applier;
  /** Plans known at start (preflight's), by `schema.table`; others are made when needed. */
  plans: Map<string, TablePlan>;
  describeAddedColumn?: DescribeAddedColumn;
  log: Logger;
  metrics: Metrics;
  status: LiveStatus;
  signal: AbortSignal;
  pollMs?: number;
}

/** How often the source is searched for tables created since (every this many polls). */
const NEW_TABLES_EVERY = 5;
/** The boundary job that makes the partitions the source gained (one at a time). */
const NEW_PARTITIONS = 'partitions created on the source';
/** How often partitions attached since get walbridge's TRUNCATE trigger (every this many polls). */
const PARTITIONS_EVERY = 30;

export class TableSetChanger {
  /** Work waiting for the next boundary between source transactions. */
  private readonly boundary: { table: string; run: () => Promise<void> }[] = [];
  /** Tables with work queued or a copy running: not looked at again until it is done. */
  private readonly busy = new Set<string>();
  private copying: Promise<void> | null = null;
  private failure: unknown = null;
  private source: pg.Client | null = null;
  private target: pg.Client | null = null;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;
  private polls = 0;
  private readonly copyAbort = new AbortController();
  /** New tables already reported (and why they were not followed). */
  private readonly reported = new Map<string, string>();
  private readonly log: Logger;
  /** walbridge's state on the target (config.stateSchema). */
  private readonly state: StateSql;

  constructor(private readonly ctx: ChangerContext) {
    this.log = ctx.log.child({ component: 'tables' });
    this.state = stateSql(ctx.config.stateSchema);
    ctx.signal.addEventListener('abort', () => this.copyAbort.abort(), { once: true });
  }

  start(): void {
    const tick = () => {
      if (this.polling || this.failure !== null) return;
      this.polling = this.poll()
        .catch(async (err: unknown) => {
          if (!isTransient(err)) {
            this.failure ??= err;
            return;
          }
          // A connection lost between two polls: the next poll connects again.
          this.log.warn({ err }, 'could not read the table set; trying again');
          await Promise.all([this.source?.end().catch(() => {}), this.target?.end().catch(() => {})]);
          this.source = null;
          this.target = null;
        })
        .finally(() => {
          this.polling = null;
        });
    };
    this.timer = setInterval(tick, this.ctx.pollMs ?? 1000);
    tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.copyAbort.abort();
    await this.polling;
    await this.copying?.catch(() => {});
    await Promise.all([this.source?.end().catch(() => {}), this.target?.end().catch(() => {})]);
  }

  /** For the consume loop (ConsumeOptions.atBoundary): the next piece of work, or a failure to stop on. */
  readonly atBoundary = (): (() => Promise<void>) | null => {
    if (this.failure !== null) throw this.failure;
    const job = this.boundary.shift();
    if (!job) return null;
    return async () => {
      try {
        await job.run();
      } finally {
        this.busy.delete(job.table);
      }
    };
  };

  private async poll(): Promise<void> {
    this.target ??= await connect(this.ctx.config.targetUrl, { side: 'target', applicationName: 'walbridge tables' });
    this.source ??= await connect(this.ctx.config.sourceUrl, { side: 'source', applicationName: 'walbridge tables' });
    const pipeline = await loadPipeline(this.target, this.state);
    // Held changes are counted on the slower tick: each count reads a holding table's held rows.
    const countHeld = this.polls % NEW_TABLES_EVERY === 0;
    const rows = await loadTables(this.target, this.state, countHeld);
    this.publishGauges(rows, countHeld);
    if (this.polls === 0) await this.unpublishRemoved(rows);
    if (this.polls % NEW_TABLES_EVERY === 0) await this.noticeNewTables(rows);
    const roots = () => [...this.ctx.plans.values()].filter((p) => p.source.kind === 'p' && rows.some((r) => isMigrated(r) && r.schema === p.schema && r.name === p.name));
    if (this.polls % PARTITIONS_EVERY === PARTITIONS_EVERY - 1) {
      const partitioned = roots();
      if (partitioned.length > 0) await this.withSource((source) => this.coverPartitions(source, partitioned));
    }
    if (this.polls % NEW_TABLES_EVERY === 0 && !this.busy.has(NEW_PARTITIONS)) await this.noticeNewPartitions(roots().map((p) => p.source));
    this.polls++;
    // A cutover checks a fixed set of tables: changes to the set wait until it is over.
    if (!pipeline || pipeline.cutoverRequestedAt !== null) return;
    const toCopy: TableState[] = [];
    for (const row of rows) {
      const name = `${row.schema}.${row.name}`;
      if (this.busy.has(name)) continue;
      if (row.request === 'add' || row.request === 'resync') {
        // Read again: a resync often follows a change of the table (ALTER ... TYPE) on either side.
        const plan = await this.planFor(row, true);
        this.queue(name, () => this.startHolding(row, plan));
      } else if (row.request === 'remove') {
        this.queue(name, () => this.remove(row));
      } else if (row.holding && row.state === 'copied') {
        const plan = await this.planFor(row);
        this.queue(name, () => this.release(row, plan));
      } else if (row.holding && row.state === 'pending') {
        toCopy.push(row);
      }
    }
    if (toCopy.length > 0 && !this.copying) await this.startCopy(toCopy);
  }

  /**
   * Partitions the source gained (schema/partitions.ts): made on the target between two source
   * transactions, before a row of theirs is applied if the app creates them ahead of use.
   */
  private async noticeNewPartitions(roots: SourceTable[]): Promise<void> {
    if (roots.length === 0) return;
    const missing = await missingPartitions(this.source as pg.Client, this.target as pg.Client, roots);
    if (missing.length === 0) return;
    this.queue(NEW_PARTITIONS, async () => {
      // A session of its own: the poll may be using the changer's meanwhile.
      const source = await connect(this.ctx.config.sourceUrl, { side: 'source', applicationName: 'walbridge tables' });
      try {
        const made = await makeMissingPartitions(source, this.ctx.control, this.ctx.config, roots);
        if (made.length > 0) this.log.info({ partitions: made }, `partition(s) created on the source made on the target: ${made.join(', ')}`);
      } finally {
        await source.end().catch(() => {});
      }
    });
  }

  private queue(table: string, run: () => Promise<void>): void {
    this.busy.add(table);
    this.boundary.push({ table, run });
  }

  /** Between source transactions: the table's changes are held from now on. */
  private async startHolding(row: TableState, plan: TablePlan): Promise<void> {
    const { applier, control } = this.ctx;
    const name = displayTable(plan);
    await applier.setTable(name, { plan, copyLsn: null, hold: true });
    // Its Relation message, if it came already in this session: the held changes need it.
    const relation = applier.relationBytes(name);
    const emptyFirst = row.request === 'resync' || row.copyLsn !== null;
    await withTransaction(control, async () => {
      await control.query(this.state.START_HOLDING, [plan.schema, plan.name, emptyFirst]);
      if (relation) {
        // Held as the applier holds every message (replicator/apply/held.ts).
        const held = new HeldMessages(this.state);
        held.add(plan, applier.durablePosition.lsn, relation);
        const statement = held.take() as BatchStatement;
        await control.query(statement.text, [...statement.params]);
      }
    });
    this.log.info({ table: name, request: row.request }, row.request === 'resync' ? 'resync: its changes are held while it is copied again' : 'adding a table: its changes are held while it is copied');
  }

  /** Copy the holding tables under one fresh snapshot, taken once they are all published. */
  private async startCopy(rows: TableState[]): Promise<void> {
    const plans = await Promise.all(rows.map((r) => this.planFor(r)));
    for (const p of plans) this.busy.add(displayTable(p));
    this.copying = (async () => {
      await this.withSource(async (source) => {
        // A partitioned table's TRUNCATE triggers go on before its snapshot (pipeline/partition-truncates.ts).
        await this.coverPartitions(source, plans);
        const published = new Set((await source.query<TableName>(PUBLICATION_TABLES, [this.ctx.config.publicationName])).rows.map(displayTable));
        for (const p of plans) {
          if (published.has(displayTable(p))) continue;
          await source.query(addPublicationTable(this.ctx.config.publicationName, p));
          this.log.info({ table: displayTable(p), publication: this.ctx.config.publicationName }, 'table added to the publication');
        }
      });
      const snap = await temporarySnapshot(this.ctx.config);
      try {
        this.log.info({ tables: plans.map(displayTable), lsn: formatLsn(snap.slot.consistentPoint) }, 'copying under a fresh snapshot while the others stream');
        const { config, metrics, status } = this.ctx;
        await copyUnder(snap, plans, { config, log: this.log, metrics, signal: this.copyAbort.signal, live: status.copies });
      } finally {
        await snap.conn.close();
      }
    })()
      .catch((err: unknown) => {
        if (!this.copyAbort.signal.aborted) this.failure ??= err;
      })
      .finally(() => {
        for (const p of plans) this.busy.delete(displayTable(p));
        this.copying = null;
      });
  }

  /** Between source transactions, once its copy is in: apply what was held, then stream it. */
  private async release(row: TableState, plan: TablePlan): Promise<void> {
    const { control, applier, config, log, metrics } = this.ctx;
    const name = displayTable(plan);
    const runtime = { plan, copyLsn: row.copyLsn };
    const t0 = Date.now();
    const held = await applyHeldChanges(control, runtime, { config, log: log.child({ component: 'apply', table: name }), metrics, ...(this.ctx.describeAddedColumn ? { describeAddedColumn: this.ctx.describeAddedColumn } : {}) });
    await withTransaction(control, async () => {
      await control.query(this.state.FORGET_HELD, [plan.schema, plan.name]);
      await control.query(this.state.STOP_HOLDING, [plan.schema, plan.name]);
    });
    await applier.setTable(name, runtime);
    metrics.heldChanges.set({ table: name }, 0);
    this.log.info({ table: name, heldMessages: held, seconds: (Date.now() - t0) / 1000, copyLsn: row.copyLsn === null ? null : formatLsn(row.copyLsn) }, 'copy in and held changes applied: the table streams');
  }

  /** Between source transactions: no longer applied; then out of the publication. Its rows stay. */
  private async remove(row: TableState): Promise<void> {
    const { control, applier } = this.ctx;
    const name = `${row.schema}.${row.name}`;
    await applier.setTable(name, null);
    await withTransaction(control, async () => {
      await control.query(this.state.MARK_REMOVED, [row.schema, row.name]);
      await control.query(this.state.FORGET_HELD, [row.schema, row.name]);
    });
    await this.unpublish([row]);
    this.log.info({ table: name }, 'table removed from the migration: no longer applied nor published; its rows stay on the target');
  }

  /** Tables recorded as removed leave the publication (a removal recorded just before a crash may not have). */
  private async unpublishRemoved(rows: TableState[]): Promise<void> {
    const removed = rows.filter((r) => r.state === 'removed' && r.request === null);
    if (removed.length > 0) await this.unpublish(removed);
  }

  /** Take tables out of the publication, those still in it (idempotent). */
  private async unpublish(tables: TableName[]): Promise<void> {
    const publication = this.ctx.config.publicationName;
    await this.withSource(async (source) => {
      const published = new Set((await source.query<TableName>(PUBLICATION_TABLES, [publication])).rows.map(displayTable));
      for (const t of tables) if (published.has(displayTable(t))) await source.query(dropPublicationTable(publication, t));
    });
  }

  /** walbridge's TRUNCATE trigger on every partition of these tables that lacks one. */
  private async coverPartitions(source: pg.Client, plans: TablePlan[]): Promise<void> {
    const covered = await installPartitionTruncates(source, this.ctx.config.slotName, plans.map((p) => p.source));
    if (covered.added.length > 0) this.log.info({ partitions: covered.added }, `walbridge's TRUNCATE trigger put on ${covered.added.length} partition(s)`);
  }

  /** A source session of its own: the poll's may be busy meanwhile. */
  private async withSource<T>(fn: (source: pg.Client) => Promise<T>): Promise<T> {
    const source = await connect(this.ctx.config.sourceUrl, { side: 'source', applicationName: 'walbridge tables' });
    try {
      return await fn(source);
    } finally {
      await source.end().catch(() => {});
    }
  }

  /** The table's plan: the one known, or (`fresh`, or none known) read from both catalogs now. */
  private async planFor(row: TableName, fresh = false): Promise<TablePlan> {
    const name = displayTable(row);
    const known = this.ctx.plans.get(name);
    if (known && !fresh) return known;
    const source = this.source as pg.Client;
    const table = (await listSourceTables(source, [row.schema])).find((t) => t.name === row.name);
    if (!table) {
      throw new WalbridgeError('source', `table ${name} no longer exists on the source`, { hint: `Run "walbridge tables remove ${name}".` });
    }
    const conversions = new Map([...this.ctx.config.conversions].filter(([c]) => c.startsWith(`${name}.`)));
    const comparison = await compareWithTarget(source, this.target as pg.Client, [table], conversions);
    const plan = comparison.plans[0];
    if (!plan || comparison.problems.length > 0) {
      throw new WalbridgeError('schema', `table ${name} cannot be migrated as it is:\n  - ${comparison.problems.join('\n  - ')}`, {
        hint: `Fix it on the target (walbridge schema makes missing tables), or run "walbridge tables remove ${name}".`,
      });
    }
    this.ctx.plans.set(name, plan);
    return plan;
  }

  /**
   * Tables of a selected schema on the source that the migration does not know (not excluded):
   * reported once each; with WALBRIDGE_FOLLOW_NEW_TABLES, added once the target has them. On the
   * way back, tables the app created on the new database since the cutover: a rollback would
   * leave them behind (cutover --reverse refuses), so they are named the same way.
   */
  private async noticeNewTables(rows: TableState[]): Promise<void> {
    const { config } = this.ctx;
    const source = this.source as pg.Client;
    const included = config.includeTables?.map(tablePattern) ?? null;
    const fresh = await unknownTables(source, this.target as pg.Client, config, rows);
    const add = commandFor(config, 'tables add');
    const reasons = new Map<string, string>();
    for (const t of fresh) {
      const name = displayTable(t);
      let reason: string;
      if (!config.followNewTables) {
        reason = `${config.reverse ? 'not carried back' : 'not migrated'}: create it on ${targetName(config)} (${commandFor(config, 'schema')}) and run "${add} ${name}", or set WALBRIDGE_FOLLOW_NEW_TABLES=true`;
      } else if (included && !included.some((x) => x(t))) {
        reason = `not followed: WALBRIDGE_TABLES does not match it; run "${add} ${name}" to migrate it`;
      } else {
        try {
          await checkAdditions(source, this.target as pg.Client, config, [t], rows);
          await requestAdd(this.target as pg.Client, this.state, [t]);
          this.log.info({ table: name }, 'new table on the source followed (WALBRIDGE_FOLLOW_NEW_TABLES): adding it');
          continue;
        } catch (err) {
          reason = `waiting to be followed: ${describeError(err).message.replace(/\n\s*-\s*/g, ' ')}`;
        }
      }
      reasons.set(name, reason);
      if (this.reported.get(name) !== reason) this.log.warn({ table: name }, `new table on ${config.reverse ? 'the new database' : 'the source'} ${reason}`);
    }
    this.reported.clear();
    for (const [k, v] of reasons) this.reported.set(k, v);
    this.ctx.status.newTables = [...reasons].map(([table, reason]) => ({ table, reason }));
  }

  private publishGauges(rows: TableState[], heldCounted: boolean): void {
    const { metrics, status } = this.ctx;
    const count = (f: (t: TableState) => boolean) => rows.filter(f).length;
    metrics.tableStates.set({ state: 'streaming' }, count((t) => isMigrated(t) && t.state === 'copied' && !t.holding));
    metrics.tableStates.set({ state: 'holding' }, count((t) => t.holding));
    metrics.tableStates.set({ state: 'requested' }, count((t) => t.request !== null));
    metrics.tableStates.set({ state: 'removed' }, count((t) => t.state === 'removed' && t.request === null));
    metrics.tableStates.set({ state: 'new' }, status.newTables.length);
    if (heldCounted) for (const t of rows) if (t.holding) metrics.heldChanges.set({ table: `${t.schema}.${t.name}` }, t.held);
  }
}
