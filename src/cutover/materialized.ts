/**
 * Materialized views at cutover. walbridge copies tables; a materialized view holds rows computed
 * from them, and `walbridge schema` makes it empty on the target (WITH NO DATA), where a query
 * on it fails until it is filled. So cutover refreshes every materialized view of the migrated
 * schemas on the target, each after those it reads, just before the fence: the app finds them
 * as fresh as the rows copied a moment before it switches, and the refresh takes no part of the
 * write pause. CONCURRENTLY where the view holds rows already and has a unique index (its
 * readers are not blocked), plainly otherwise.
 */
import type pg from 'pg';
import { describeError, WalbridgeError } from '../errors.js';
import { dependenciesFirst } from '../schema/order.js';
import { refreshMaterializedView, TARGET_MATERIALIZED_VIEWS } from '../sql/materialized.js';

interface MaterializedView {
  oid: number;
  name: string;
  populated: boolean;
  uniqueIndex: boolean;
  reads: number[];
}

/** The materialized views, each after every one it reads. */
export function refreshOrder<T extends { oid: number; reads: number[] }>(views: T[]): T[] {
  const byOid = new Map(views.map((v) => [v.oid, v]));
  return dependenciesFirst(views, (v) => v.reads.flatMap((oid) => byOid.get(oid) ?? []));
}

/**
 * Refresh them all on the target. One that stays empty would fail the app's queries after the
 * switch, so its failure stops the cutover (before the fence), naming the view and the fix; one
 * that holds rows already keeps them, with a warning.
 */
export async function refreshMaterializedViews(target: pg.ClientBase, schemas: string[], say: (line: string) => void): Promise<void> {
  const views = (await target.query<MaterializedView>(TARGET_MATERIALIZED_VIEWS, [schemas])).rows;
  if (views.length === 0) return;
  say(`    filling ${views.length} materialized view(s) on the target from the copied rows…`);
  const started = Date.now();
  for (const v of refreshOrder(views)) {
    try {
      await target.query(refreshMaterializedView(v.name, v.populated && v.uniqueIndex));
    } catch (err) {
      const why = describeError(err).message;
      if (v.populated) {
        say(`    warning: ${v.name} was not refreshed (${why}); it keeps the rows it had`);
        continue;
      }
      throw new WalbridgeError('apply', `could not fill materialized view ${v.name} on the target: ${why}`, {
        cause: err,
        hint:
          `Nothing is switched: the source takes writes as before. Fix it on the target (REFRESH MATERIALIZED VIEW ${v.name}; shows the error), or drop it there if the app does not need it, then run cutover again. ` +
          'On PostgreSQL 17 and later a refresh runs with search_path = pg_catalog, pg_temp: a function it calls that names tables without their schema needs ALTER FUNCTION … SET search_path = public.',
      });
    }
  }
  say(`    filled in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
