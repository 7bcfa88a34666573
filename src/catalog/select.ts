/**
 * Which tables a configuration selects. Pure, so it is unit-tested without a server.
 */
import type { TableName } from '../pg/ident.js';

/** `*` matches any run of characters; everything else is literal. */
export function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

/**
 * A `schema.table` pattern matches the schema and the table name separately (split at the
 * first dot), so `public.*` never reaches into a schema named `public.x` and `*.audit`
 * never matches a table named `x.audit`.
 */
export function tablePattern(glob: string): (t: TableName) => boolean {
  const dot = glob.indexOf('.');
  const schema = globToRegExp(dot < 0 ? '*' : glob.slice(0, dot));
  const name = globToRegExp(dot < 0 ? glob : glob.slice(dot + 1));
  return (t) => schema.test(t.schema) && name.test(t.name);
}

export interface SelectionInput {
  schemas: string[];
  includeTables: string[] | null;
  excludeTables: string[];
}

export interface SelectionResult<T extends TableName> {
  selected: T[];
  /** Filters that matched nothing: almost always a typo the user wants to hear about. */
  unmatchedIncludes: string[];
  unmatchedExcludes: string[];
}

export function selectTables<T extends TableName>(all: T[], sel: SelectionInput): SelectionResult<T> {
  const inSchemas = all.filter((t) => sel.schemas.includes(t.schema));
  const includes = sel.includeTables?.map((g) => ({ g, test: tablePattern(g), hit: false })) ?? null;
  const excludes = sel.excludeTables.map((g) => ({ g, test: tablePattern(g), hit: false }));
  const selected: T[] = [];
  for (const t of inSchemas) {
    if (includes) {
      const inc = includes.filter((i) => i.test(t));
      if (inc.length === 0) continue;
      for (const i of inc) i.hit = true;
    }
    const exc = excludes.filter((e) => e.test(t));
    for (const e of exc) e.hit = true;
    if (exc.length > 0) continue;
    selected.push(t);
  }
  return {
    selected,
    unmatchedIncludes: includes?.filter((i) => !i.hit).map((i) => i.g) ?? [],
    unmatchedExcludes: excludes.filter((e) => !e.hit).map((e) => e.g),
  };
}
