/**
 * Copy one table: `COPY ... TO STDOUT` on the source, under the exported snapshot, streamed
 * byte for byte into `COPY ... FROM STDIN` on the target (relay.ts). No row is decoded in JavaScript.
 * The format is binary where every column's type allows it (TablePlan.binaryCopy): neither
 * server formats or parses values as text then, and bytea travels as itself, not as hex; it
 * took about 30% off the copy's time and CPU on the benchmark's data.
 * The target side is one transaction that also marks the table copied, so a copy that is
 * cut off leaves nothing behind and is simply started again.
 */
import type pg from 'pg';
import type { TablePlan } from '../catalog/tables.js';
import { valueOf } from '../convert/value.js';
import { WalbridgeError } from '../errors.js';
import { displayTable, quoteIdent, quoteLiteral, quoteTable } from '../pg/ident.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { tableHasRows } from '../sql/catalog.js';
import { TABLE_REWRITTEN_SINCE_SNAPSHOT } from '../sql/source.js';
import type { StateSql } from '../sql/state.js';
import { buildIndexesAgain } from './indexes.js';
import { relayCopy } from './relay.js';

export interface CopyProgress {
  rows: number;
  bytes: number;
}

export interface CopyOptions {
  onProgress: (delta: CopyProgress) => void;
  /** COPY data bytes a second, per session; null: as fast as the servers go. */
  maxBytesPerSecond: number | null;
  /** Use COPY's binary format for tables whose types allow it (WALBRIDGE_COPY_BINARY). */
  binary: boolean;
}

export type CopyFormat = 'text' | 'binary';

export function copyFormat(plan: TablePlan, opts: Pick<CopyOptions, 'binary'>): CopyFormat {
  return opts.binary && plan.binaryCopy ? 'binary' : 'text';
}

const formatOption = (format: CopyFormat) => (format === 'binary' ? ' WITH (FORMAT binary)' : '');

/** A finished copy: what it moved, and the indexes it built again (see indexes.ts). */
export interface CopyDone extends CopyProgress {
  indexesBuilt: string[];
  indexSeconds: number;
}

/** The table was truncated or rewritten on the source after the copy's snapshot was taken. */
export class TableRewrittenError extends WalbridgeError {
  constructor(plan: TablePlan) {
    super(
      'slot',
      `${displayTable(plan)} was truncated or rewritten on the source (TRUNCATE, or an ALTER TABLE that rewrites it) after the copy's snapshot was taken; ` +
        'under that snapshot it reads as empty',
      { transient: true, hint: 'walbridge copies it under a new snapshot; nothing to do.' },
    );
  }
}

/**
 * A part of a table copied on its own: heap blocks [from, to) of an ordinary table (`to`
 * null: to the end, wherever the end is by then), or one leaf partition of a partitioned one.
 */
export type CopyPart = { kind: 'blocks'; from: number; to: number | null } | { kind: 'leaf'; quotedName: string };

export function copyOutSql(plan: TablePlan, part: CopyPart | null = null, format: CopyFormat = 'text'): string {
  return copyOutStatement(plan, part) + formatOption(format);
}

function copyOutStatement(plan: TablePlan, part: CopyPart | null): string {
  const cols = plan.copyColumns.map((c) => quoteIdent(c.name)).join(', ');
  if (part?.kind === 'blocks') {
    // A TID range scan (PostgreSQL 14+) reads only these blocks. Every row version a snapshot
    // sees sits in exactly one block, so the ranges split the table exactly.
    const upper = part.to === null ? '' : ` AND ctid < '(${part.to},0)'::tid`;
    return `COPY (SELECT ${cols} FROM ${quoteTable(plan)} WHERE ctid >= '(${part.from},0)'::tid${upper}) TO STDOUT`;
  }
  // A leaf is read by itself (by column name: its column order may differ from the root's)
  // and written through the target's root, which routes each row.
  if (part?.kind === 'leaf') return `COPY (SELECT ${cols} FROM ONLY ${part.quotedName}) TO STDOUT`;
  // A partitioned table cannot be COPY'd directly; its rows are read through the root.
  return plan.source.kind === 'p'
    ? `COPY (SELECT ${cols} FROM ${quoteTable(plan)}) TO STDOUT`
    : `COPY ${quoteTable(plan)} (${cols}) TO STDOUT`;
}

export function copyInSql(plan: TablePlan, format: CopyFormat = 'text'): string {
  // COPY FROM writes identity columns as given, like OVERRIDING SYSTEM VALUE, and leaves
  // generated columns to the target.
  const cols = plan.copyColumns.map((c) => quoteIdent(c.name)).join(', ');
  return `COPY ${quoteTable(plan)} (${cols}) FROM STDIN${formatOption(format)}`;
}

/**
 * Start reading `plan` on `source` (a fresh session) under `snapshotName`, in a transaction
 * that copyTable() goes on with. Throws TableRewrittenError (after rolling back) when the
 * table was truncated or rewritten since the snapshot was taken.
 */
export async function openSnapshotRead(source: pg.ClientBase, plan: TablePlan, snapshotName: string): Promise<void> {
  await importSnapshot(source, snapshotName);
  await lockForCopy(source, plan);
}

/** Begin a read-only transaction on `source` under the exported snapshot. */
export async function importSnapshot(source: pg.ClientBase, snapshotName: string): Promise<void> {
  await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await source.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotName)}`);
  } catch (err) {
    await source.query('ROLLBACK').catch(() => {});
    throw new WalbridgeError('slot', `the copy snapshot is gone (${err instanceof Error ? err.message : String(err)})`, {
      cause: err,
      transient: true,
      hint: 'walbridge takes a new snapshot for the tables not copied yet; nothing to do.',
    });
  }
}

/**
 * Inside importSnapshot's transaction, take the lock COPY would take anyway, first: from here
 * on no TRUNCATE or rewrite of the table can commit, and one that committed since the snapshot
 * was taken shows (TableRewrittenError, after rolling back).
 */
export async function lockForCopy(source: pg.ClientBase, plan: TablePlan): Promise<void> {
  await source.query(`LOCK TABLE ${quoteTable(plan)} IN ACCESS SHARE MODE`);
  const check = await source.query<{ rewritten: boolean }>(TABLE_REWRITTEN_SINCE_SNAPSHOT, [quoteTable(plan)]);
  if (check.rows[0]?.rewritten) {
    await source.query('ROLLBACK');
    throw new TableRewrittenError(plan);
  }
}

/** The target table must be empty before walbridge's first row goes in. */
export async function assertTargetEmpty(target: pg.ClientBase, plan: TablePlan): Promise<void> {
  const { rows } = await target.query<{ has_rows: boolean }>(tableHasRows(quoteTable(plan)));
  if (rows[0]?.has_rows) {
    throw new WalbridgeError('state', `target table ${displayTable(plan)} already holds rows, but walbridge has not copied it`, {
      hint: `Empty it on the target (TRUNCATE ${quoteTable(plan)};) if those rows are not needed, then start again.`,
    });
  }
}

/** COPY out of `source` straight into `target`, inside the transactions both are in. */
async function streamRows(
  source: pg.ClientBase,
  target: pg.ClientBase,
  plan: TablePlan,
  part: CopyPart | null,
  opts: CopyOptions,
): Promise<CopyProgress> {
  const format = copyFormat(plan, opts);
  if (plan.conversions.size === 0) return relayCopy(source, target, copyOutSql(plan, part, format), copyInSql(plan, format), { ...opts, format });
  // A table with converted columns (WALBRIDGE_CONVERT) is converted where it costs least: on
  // the target, which does nothing else during the copy, not on the source the app runs on. Its
  // rows go, as the source's text, into a temporary table of text columns, and from there into
  // the table through the conversions, the same statement text the stream applies them with.
  const stage = stageSql(plan);
  await target.query(`${stage.create}; ${stage.uncompressed}`);
  const done = await relayCopy(source, target, copyOutSql(plan, part, 'text'), stage.copyIn, { ...opts, format: 'text' });
  await target.query(stage.insert);
  await target.query(stage.drop);
  return done;
}

/** The statements that stage a converted table's rows on the target (see streamRows). */
function stageSql(plan: TablePlan): { create: string; uncompressed: string; copyIn: string; insert: string; drop: string } {
  const stage = 'pg_temp.walbridge_stage';
  const cols = plan.copyColumns.map((c, i) => {
    const type = plan.targetColumns.find((t) => t.name === c.name)?.type ?? c.type;
    const conversion = plan.conversions.get(c.name);
    return { name: c.name, ref: `s.c${i}`, column: conversion ? { name: c.name, type, convert: conversion.toTarget } : { name: c.name, type } };
  });
  return {
    // ON COMMIT DROP: a copy that fails leaves nothing behind in the session either.
    create: `CREATE TEMPORARY TABLE walbridge_stage (${cols.map((_, i) => `c${i} text`).join(', ')}) ON COMMIT DROP`,
    // Each staged value is read once, right away: compressing it on the way in (a 1536-dimension
    // vector is 19 kB of text) cost almost half the converted copy's time (npm run bench -- --only convert).
    uncompressed: `ALTER TABLE ${stage} ${cols.map((_, i) => `ALTER COLUMN c${i} SET STORAGE EXTERNAL`).join(', ')}`,
    copyIn: `COPY ${stage} FROM STDIN`,
    // OVERRIDING SYSTEM VALUE: identity values are the source's, as COPY would write them.
    insert:
      `INSERT INTO ${quoteTable(plan)} (${cols.map((c) => quoteIdent(c.name)).join(', ')}) OVERRIDING SYSTEM VALUE ` +
      `SELECT ${cols.map((c) => valueOf(c.column, c.ref)).join(', ')} FROM ${stage} AS s`,
    // The next part of the table may come in the same session, in a transaction of its own.
    drop: `DROP TABLE ${stage}`,
  };
}

/**
 * Copy `plan` from `source` (inside openSnapshotRead's transaction) to `target` (a fresh
 * session with session_replication_role = replica); mark it copied at `copyLsn` in `state`.
 */
export async function copyTable(
  source: pg.ClientBase,
  target: pg.ClientBase,
  state: StateSql,
  plan: TablePlan,
  copyLsn: Lsn,
  opts: CopyOptions,
): Promise<CopyDone> {
  // On any failure below, no ROLLBACK is sent: a COPY cut off halfway leaves its connection
  // mid-protocol, and a command sent now would wait forever behind it (keeping the source's
  // snapshot open). The caller closes both connections instead; each server rolls back.
  await target.query('BEGIN');
  await assertTargetEmpty(target, plan);
  const done = await streamRows(source, target, plan, null, opts);
  const t0 = Date.now();
  const indexesBuilt = await buildIndexesAgain(target, state, plan);
  const indexSeconds = (Date.now() - t0) / 1000;
  const marked = await target.query(state.MARK_COPIED, [plan.schema, plan.name, formatLsn(copyLsn), done.rows, done.bytes]);
  if (marked.rowCount !== 1) {
    // Another instance took this table over (this one lost the writer lock): keep nothing.
    throw new WalbridgeError('state', `the copy of ${displayTable(plan)} is no longer this instance's to finish`, { transient: true });
  }
  await target.query('COMMIT');
  await source.query('COMMIT');
  return { ...done, indexesBuilt, indexSeconds };
}

/**
 * Copy one part of `plan` in a target transaction of its own (the caller marks the table
 * copied once every part is in). `source` is inside openSnapshotRead's transaction
 * and stays in it.
 */
export async function copyPart(
  source: pg.ClientBase,
  target: pg.ClientBase,
  plan: TablePlan,
  part: CopyPart,
  opts: CopyOptions,
): Promise<CopyProgress> {
  await target.query('BEGIN');
  const done = await streamRows(source, target, plan, part, opts);
  await target.query('COMMIT');
  return done;
}
