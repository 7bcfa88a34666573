/**
 * Which tables a configuration selects. Pure, so it is unit-tested without a server.
 */
import { displayTable, type TableName } from '../pg/ident.js';

/** `*` matches any run of characters (dots included); everything else is literal. */
export function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
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
  const includes = sel.includeTables?.map((g) => ({ g, re: globToRegExp(g), hit: false })) ?? null;
  const excludes = sel.excludeTables.map((g) => ({ g, re: globToRegExp(g), hit: false }));
  const selected: T[] = [];
  for (const t of inSchemas) {
    const name = displayTable(t);
    if (includes) {
      const inc = includes.filter((i) => i.re.test(name));
      if (inc.length === 0) continue;
      for (const i of inc) i.hit = true;
    }
    const exc = excludes.filter((e) => e.re.test(name));
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
