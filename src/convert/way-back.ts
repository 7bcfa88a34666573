/**
 * The conversions of the way back (`walbridge run --reverse`, after cutover): each column is
 * carried from the new database to the old one by its conversion's inverse. A conversion
 * without one (sql:…, to_jsonb) leaves its table unable to go back, which preflight of the way
 * back reports; a column declared `drop` is left as it is on the old database.
 */
import { builtinName, type ColumnConversion } from './conversions.js';

/** A conversion the way back cannot undo. */
export interface OneWay extends ColumnConversion {
  oneWay: true;
}

export function isOneWay(c: ColumnConversion): c is OneWay {
  return (c as Partial<OneWay>).oneWay === true;
}

export function wayBack(conversions: Map<string, ColumnConversion>): Map<string, ColumnConversion> {
  const out = new Map<string, ColumnConversion>();
  for (const [column, c] of conversions) {
    if (c.kind === 'drop') continue;
    const back = c.toSource;
    if (back === null) {
      const oneWay: OneWay = {
        spec: c.spec,
        kind: c.kind,
        oneWay: true,
        toTarget: () => {
          throw new Error(`${column}: ${c.spec} has no way back`);
        },
        toSource: null,
        targetTypes: [],
        readsSource: () => true,
      };
      out.set(column, oneWay);
      continue;
    }
    out.set(column, {
      spec: `${c.spec}, backwards`,
      kind: c.kind,
      toTarget: back,
      toSource: c.toTarget,
      // Back into the column's type on the old database, whatever it is (vector(3) …).
      targetTypes: [],
      readsSource: (type) => c.targetTypes.length === 0 || c.targetTypes.includes(builtinName(type)),
    });
  }
  return out;
}
