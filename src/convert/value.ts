/**
 * A column's value on the target, as an SQL expression, from the source value's text: read by
 * the target type's input function, or, for a converted column, through its conversion. The
 * stream (replicator/apply/statements.ts) and the copy of a converted table (backfill/copy.ts)
 * both write values through this one function.
 */

export interface ValueTarget {
  /** The target column's type with typmod, as format_type() prints it; unset: no cast (the conversion's own type). */
  type?: string;
  /** A declared conversion's expression of the target's value from the source value's text. */
  convert?: (text: string) => string;
}

/** `text`: an SQL expression of the source value's text (NULL stays NULL). */
export function valueOf(c: ValueTarget, text: string): string {
  const cast = c.type === undefined ? '' : `::${c.type}`;
  if (!c.convert) return `${text}${cast}`;
  return `(CASE WHEN ${text} IS NULL THEN NULL ELSE (${c.convert(text)}) END)${cast}`;
}
