/**
 * Objects in the order they can be made (or refreshed): each after those it depends on.
 */

/** `roots` and everything they depend on (`depsOf`), each once, after its dependencies. */
export function dependenciesFirst<T>(roots: Iterable<T>, depsOf: (item: T) => Iterable<T>): T[] {
  const out: T[] = [];
  const seen = new Set<T>();
  const visit = (item: T) => {
    if (seen.has(item)) return;
    seen.add(item);
    for (const dep of depsOf(item)) visit(dep);
    out.push(item);
  };
  for (const item of roots) visit(item);
  return out;
}
