/**
 * A TRUNCATE of one partition, carried in the change stream. walbridge's publication publishes
 * a partitioned table through its root (publish_via_partition_root, sql/source.ts), and then
 * pgoutput sends a TRUNCATE of one partition not at all: only a TRUNCATE of the root reaches
 * the stream. So each partition of a migrated partitioned table, at every level below the root,
 * gets a statement trigger AFTER TRUNCATE that writes a transactional logical message: decoded
 * in its transaction, in order, right after the TRUNCATE (pipeline/partition-truncates.ts puts
 * the triggers on; replicator/apply/partition-truncate.ts reads the message).
 *
 * The trigger function lives in the fence's schema (sql/fence.ts): walbridge's own on the
 * source, which removing walbridge's state (schema walbridge) never touches, left out of every
 * schema `walbridge schema` makes. Its objects are named after the migration, as the fence's are.
 */
import { quoteIdent, quoteLiteral, quoteTable, type TableName } from '../pg/ident.js';

/** The prefix of the logical message the trigger writes; the content is a PartitionTruncateMessage as JSON. */
export const PARTITION_TRUNCATE_PREFIX = 'walbridge.truncate';

/** What the message says, as the trigger writes it. */
export interface PartitionTruncateMessage {
  /** The migration (its slot name) whose trigger wrote it: another migration from the same source ignores it. */
  migration: string;
  partition: TableName;
  /** The partitioned tables above it, the nearest first, the root last, as they were when it was truncated. */
  ancestors: TableName[];
}

/** A migration's objects for TRUNCATE of a partition. */
export interface PartitionTruncateNames {
  /** The trigger function (quoted). */
  func: string;
  /** The trigger on each partition (its name, unquoted). */
  trigger: string;
}

export function partitionTruncateNames(migration: string): PartitionTruncateNames {
  return {
    func: `walbridge_fence.${quoteIdent(`truncate_${migration}`.slice(0, 63))}`,
    trigger: `walbridge_truncate_${migration}`.slice(0, 63),
  };
}

/**
 * The schema and the trigger function. SECURITY DEFINER: the app's roles that truncate need
 * no right on walbridge_fence, nor the right to write logical messages. The message names the
 * partition and its ancestors as they are when it fires (a partition attached or detached since
 * walbridge started is named as it is now), so the applier needs no catalog of the source.
 */
export function createPartitionTruncateFunction(n: PartitionTruncateNames): string {
  return `
CREATE SCHEMA IF NOT EXISTS walbridge_fence;
CREATE OR REPLACE FUNCTION ${n.func}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
BEGIN
  PERFORM pg_logical_emit_message(true, ${quoteLiteral(PARTITION_TRUNCATE_PREFIX)}, json_build_object(
    'migration', TG_ARGV[0],
    'partition', json_build_object('schema', TG_TABLE_SCHEMA, 'name', TG_TABLE_NAME),
    'ancestors', coalesce((
      SELECT json_agg(json_build_object('schema', n.nspname, 'name', c.relname) ORDER BY a.level)
        FROM pg_partition_ancestors(TG_RELID) WITH ORDINALITY AS a(relid, level)
        JOIN pg_class c ON c.oid = a.relid
        JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE a.relid <> TG_RELID), '[]'::json))::text);
  RETURN NULL;
END
$fn$`;
}

/**
 * AFTER, not BEFORE: the message follows the TRUNCATE's own record in the stream, so whatever
 * the statement wrote before emptying the partition (an app's BEFORE TRUNCATE trigger) is
 * applied before it is emptied on the target too. A TRUNCATE of the root or of a partition
 * above fires it as well: TRUNCATE fires the triggers of every table it empties.
 */
export function createPartitionTruncateTrigger(partition: TableName, n: PartitionTruncateNames, migration: string): string {
  return (
    `CREATE OR REPLACE TRIGGER ${quoteIdent(n.trigger)} AFTER TRUNCATE ON ${quoteTable(partition)} ` +
    `FOR EACH STATEMENT EXECUTE FUNCTION ${n.func}(${quoteLiteral(migration)})`
  );
}

export function dropPartitionTruncateFunction(n: PartitionTruncateNames): string {
  return `DROP FUNCTION IF EXISTS ${n.func}()`;
}

/** The fence's schema, if nothing is left in it (RESTRICT: a fence's objects keep it, SQLSTATE 2BP01). */
export const DROP_FENCE_SCHEMA_IF_EMPTY = `DROP SCHEMA IF EXISTS walbridge_fence RESTRICT`;

/**
 * On the target: is $2 a partition (at any level) of $1 there? Quoted names. The applier
 * truncates the target's partition of the same name, and only if it belongs to the same table:
 * a table of that name elsewhere is none of the migration's business.
 */
export const IS_TARGET_PARTITION = `
SELECT EXISTS (SELECT 1 FROM pg_partition_tree(to_regclass($1)) AS t
                WHERE to_regclass($2) IS NOT NULL AND t.relid = to_regclass($2) AND t.level > 0) AS ok`;
