/**
 * A TRUNCATE of one partition, as walbridge's trigger on the source reports it in a logical
 * message (sql/partition-truncate.ts): its content read, and the target's partition of the same
 * name looked up, once, before the applier empties it (ChangeBatch.truncatePartition).
 */
import type pg from 'pg';
import { WalbridgeError } from '../../errors.js';
import { displayTable, quoteTable, tableKey, type TableName } from '../../pg/ident.js';
import { IS_TARGET_PARTITION, type PartitionTruncateMessage } from '../../sql/partition-truncate.js';

const isTableName = (v: unknown): v is TableName =>
  typeof v === 'object' && v !== null && typeof (v as TableName).schema === 'string' && typeof (v as TableName).name === 'string';

/**
 * The message's content. Only walbridge's trigger writes this prefix: content it cannot read
 * stops the apply rather than leave a partition full on the target that the source emptied.
 */
export function readPartitionTruncate(content: Buffer): PartitionTruncateMessage {
  let v: unknown = null;
  try {
    v = JSON.parse(content.toString('utf8'));
  } catch {
    // reported below
  }
  const m = v as Partial<PartitionTruncateMessage> | null;
  if (m === null || typeof m.migration !== 'string' || !isTableName(m.partition) || !Array.isArray(m.ancestors) || !m.ancestors.every(isTableName)) {
    throw new WalbridgeError('internal', `a TRUNCATE of a partition was reported in a form walbridge cannot read: ${content.toString('utf8').slice(0, 200)}`, {
      hint: 'Was the source\'s trigger function (schema walbridge_fence) written by another walbridge version? Run this migration with one version; restart walbridge to retry.',
    });
  }
  return { migration: m.migration, partition: { schema: m.partition.schema, name: m.partition.name }, ancestors: m.ancestors.map((a) => ({ schema: a.schema, name: a.name })) };
}

/** A read on the target's apply session (TargetTransaction.read). */
export type TargetRead = <R extends pg.QueryResultRow>(text: string, params: unknown[]) => Promise<R[]>;

/** The target's partitions found so far: each is looked up the first time the source truncates it. */
export class TargetPartitions {
  private readonly found = new Set<string>();

  has(partition: TableName): boolean {
    return this.found.has(tableKey(partition));
  }

  /**
   * Is `partition` a partition of `root` on the target (`walbridge schema` makes the source's
   * partitions there)? If not, the apply stops, the way it stops for a column the target lacks:
   * the transaction is held back, and applied once the partition exists.
   */
  async check(root: TableName, partition: TableName, read: TargetRead): Promise<void> {
    const [row] = await read<{ ok: boolean }>(IS_TARGET_PARTITION, [quoteTable(root), quoteTable(partition)]);
    if (row?.ok) {
      this.found.add(tableKey(partition));
      return;
    }
    throw new WalbridgeError(
      'schema',
      `the source truncated ${displayTable(partition)}, a partition of ${displayTable(root)}, but the target has no partition ${displayTable(partition)} of ${displayTable(root)}; ` +
        'changes from that transaction on are held back (nothing is lost: they are applied once it exists)',
      {
        hint: `Create ${displayTable(partition)} on the target as a partition of ${displayTable(root)}, as on the source ("walbridge schema --dry-run" prints the CREATE TABLE … PARTITION OF … to run). walbridge continues by itself after the next retry.`,
      },
    );
  }
}
