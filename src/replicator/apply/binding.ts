/**
 * Binding a pgoutput Relation message to its target table: which target column each relation
 * column writes (with the target's type, for the casts), which columns find a row, and what
 * the target allows (identity columns, folding updates). A Relation message comes before the
 * first change of a table in each session and again after its definition changed on the
 * source, so a binding always describes the column layout of the changes that follow it.
 */
import type { AddedColumnDdl } from '../../catalog/added-column.js';
import type { TablePlan } from '../../catalog/tables.js';
import { WalbridgeError } from '../../errors.js';
import type { Lsn } from '../../lsn.js';
import { displayTable, quoteIdent, quoteTable } from '../../pg/ident.js';
import type { RelationMessage } from '../pgoutput.js';
import type { ColumnRef } from './statements.js';

export interface TableRuntime {
  plan: TablePlan;
  /** Null while the table is not copied yet: its changes cannot be applied. */
  copyLsn: Lsn | null;
  /**
   * Its changes are held on the target (walbridge.held_changes) instead of applied: it is being
   * copied again while the others stream (tables/). Absent: false.
   */
  hold?: boolean;
}

export interface Binding {
  relation: RelationMessage;
  table: TableRuntime;
  /** `schema.table`, for logs and metrics. */
  display: string;
  /** Per relation column, the target column it writes. */
  columns: ColumnRef[];
  /** Indexes (into relation columns) that identify a row; empty: match on all old values. */
  keyIdx: number[];
  /** keyIdx as a signature (the columns a DELETE by key sends). */
  keySignature: string;
  /** Every relation column written (all but those declared `drop`), and that list as a signature (a row with every value sent). */
  allIdx: number[];
  allSignature: string;
  hasIdentityAlways: boolean;
  /** Relation columns that are GENERATED ALWAYS AS IDENTITY on the target. */
  identityAlwaysIdx: Set<number>;
  /**
   * The columns an UPDATE sets and their signature, by which of `allIdx` it left out (bit k:
   * allIdx[k] was an unchanged TOAST value). An app updating a row beside its TOASTed document
   * sends the same gap every time: worked out once, not per change.
   */
  setShapes: Map<number, SetShape>;
  /** Relation columns that lead a btree index on the target (to find rows of a keyless table). */
  indexedIdx: number[];
  /** UPDATEs that keep the key may be folded into the row's queued change (queue.ts foldTarget). */
  foldUpdates: boolean;
  /**
   * The key as verify names rows (the source's primary key) when it is the key changes arrive
   * with, so a changed row can be recorded by its key for cutover's check; null: the table is
   * recorded as a whole.
   */
  verifyKeyIdx: number[] | null;
}

/** The columns an UPDATE sets, and that list as a signature (rows of one signature share a statement). */
export interface SetShape {
  cols: number[];
  signature: string;
}

/** The DDL that adds a column the source has and the target lacks (see catalog/added-column.ts). */
export type DescribeAddedColumn = (quotedTable: string, column: string) => Promise<AddedColumnDdl>;

/**
 * The binding of `msg` to `table`. A column the source has and the target lacks stops the
 * apply with the DDL to run: its changes are held back (the source sends them again once
 * the column exists), never applied without it.
 */
export async function bindRelation(msg: RelationMessage, table: TableRuntime, describeAddedColumn?: DescribeAddedColumn): Promise<Binding> {
  const display = displayTable(msg);
  const target = table.plan.targetColumns;
  const conversions = table.plan.conversions;
  // Columns declared `drop` (WALBRIDGE_CONVERT) exist on the source only: never written.
  const dropped = (name: string) => conversions.get(name)?.kind === 'drop';
  const missing = msg.columns.filter((c) => !dropped(c.name) && !target.some((t) => t.name === c.name));
  if (missing.length > 0) {
    const ddl = await Promise.all(
      missing.map(async (c): Promise<AddedColumnDdl> =>
        describeAddedColumn
          ? await describeAddedColumn(quoteTable(msg), c.name)
          : { statements: [`ALTER TABLE ${quoteTable(msg)} ADD COLUMN ${quoteIdent(c.name)} <type oid ${c.typeOid}>;`], caveat: null },
      ),
    );
    const caveats = ddl.flatMap((d) => (d.caveat ? [d.caveat] : []));
    throw new WalbridgeError(
      'schema',
      `the source's table ${display} has new column(s) ${missing.map((c) => c.name).join(', ')} that the target lacks; ` +
        'changes to it are held back (nothing is lost: they are applied once the column exists)',
      {
        hint:
          `Run on the target: ${ddl.flatMap((d) => d.statements).join(' ')} walbridge continues by itself after the next retry.` +
          (caveats.length > 0 ? ` Note: ${caveats.join('; ')}.` : ''),
        transient: false,
      },
    );
  }
  const targetOf = (name: string) => target.find((t) => t.name === name);
  const columns: ColumnRef[] = msg.columns.map((c) => {
    const conversion = conversions.get(c.name);
    const type = targetOf(c.name)?.type ?? 'text'; // a dropped column's is never used
    return conversion && conversion.kind !== 'drop' ? { name: c.name, type, convert: conversion.toTarget } : { name: c.name, type };
  });
  const identityAlwaysIdx = new Set<number>();
  msg.columns.forEach((c, i) => {
    if (targetOf(c.name)?.identity === 'a') identityAlwaysIdx.add(i);
  });
  let keyIdx: number[];
  const pk = table.plan.targetKey;
  const pkIdx = pk.map((k) => msg.columns.findIndex((c) => c.name === k));
  if (msg.replicaIdentity === 'f') {
    // Whole old rows arrive; use the primary key when there is one, else all columns.
    keyIdx = pk.length > 0 && pkIdx.every((i) => i >= 0) ? pkIdx : [];
  } else {
    keyIdx = msg.columns.flatMap((c, i) => (c.isKey ? [i] : []));
  }
  const allIdx = msg.columns.flatMap((c, i) => (dropped(c.name) ? [] : [i]));
  return {
    relation: msg,
    table,
    display,
    columns,
    keyIdx,
    keySignature: keyIdx.join(','),
    allIdx,
    allSignature: allIdx.join(','),
    hasIdentityAlways: identityAlwaysIdx.size > 0,
    identityAlwaysIdx,
    setShapes: new Map(),
    indexedIdx: msg.columns.flatMap((c, i) => (table.plan.indexedColumns.includes(c.name) ? [i] : [])),
    foldUpdates: keyIdx.length > 0 && !table.plan.hasSecondaryUnique,
    verifyKeyIdx: sameColumns(keyIdx.map((i) => msg.columns[i]?.name), table.plan.source.primaryKey) ? keyIdx : null,
  };
}

function sameColumns(a: (string | undefined)[], b: string[]): boolean {
  return a.length > 0 && a.length === b.length && a.every((name, i) => name === b[i]);
}
