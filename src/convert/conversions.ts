/**
 * Column conversions (WALBRIDGE_CONVERT, issue 15): a column whose type differs between source
 * and target, carried across by an SQL expression.
 *
 * Every conversion is an SQL expression over the source value's *text output* and uses only
 * built-in PostgreSQL functions, so the same expression runs on either server (15 to 18) and
 * gives the same value there:
 * - the copy selects `toTarget('t.col::text')` on the source;
 * - the stream applies `INSERT ... SELECT toTarget('u.c3')` on the target, u.c3 being the text
 *   pgoutput sent;
 * - verify hashes `toTarget('t.col::text')` on the source against the target's column.
 * So an expression must give exactly the value the target column holds, whose text output is
 * byte-identical whichever server computes it.
 *
 * Session settings the expressions rely on (src/pg/connect.ts sets them on every session):
 * `extra_float_digits` > 0, so that float4's text output is the shortest exact form, which is
 * the form pgvector prints (with 0 or less it rounds to 6 digits and loses bits); and any
 * `bytea_output` (the bytea text is read with a cast, which takes both hex and escape forms).
 *
 * The expressions are built from small named pieces below. Aliases inside them start with `wbc_`
 * so they cannot shadow a name the caller's text expression refers to (`u.c3`, `t.col`).
 */
import { WalbridgeError } from '../errors.js';

export interface ColumnConversion {
  /** What the user wrote after '=', for messages: 'vector_to_float32le', 'sql:upper($1)', 'drop'. */
  spec: string;
  kind: 'builtin' | 'sql' | 'drop';
  /** An SQL expression of the target column's value, from `text`: an SQL expression of type text holding the source value's text output. Never called with NULL (NULL stays NULL outside). For 'drop': never called. */
  toTarget(text: string): string;
  /** The way back: an SQL expression of the source value's text output from `text`, the target value's text output; null when there is none (the reverse run then refuses the table). */
  toSource: ((text: string) => string) | null;
  /** Target column types it produces (format_type without typmod, as printed with search_path ''), e.g. ['bytea']; [] for sql/drop (any). */
  targetTypes: string[];
  /** Whether it reads a source column of this type (format_type as printed with search_path '', e.g. 'extensions.vector(3)', 'public.vector', 'json', 'text'). */
  readsSource(type: string): boolean;
}

// ---------------------------------------------------------------------------------------------
// Type names
// ---------------------------------------------------------------------------------------------

/** format_type's text without a trailing typmod: 'extensions.vector(3)' -> 'extensions.vector'. */
function withoutTypmod(type: string): string {
  return type.trim().replace(/\(\s*\d+(\s*,\s*\d+)?\s*\)$/, '');
}

/** The name after the schema: 'extensions.vector' -> 'vector', '"My Schema".vector' -> 'vector'. */
function baseName(type: string): string {
  const t = withoutTypmod(type);
  const dot = t.lastIndexOf('.');
  const name = dot < 0 ? t : t.slice(dot + 1);
  return name.replace(/^"(.*)"$/, '$1');
}

/** pgvector's `vector`, in whatever schema the extension was installed (never its arrays). */
function isVector(type: string): boolean {
  return baseName(type) === 'vector';
}

/** Built-in types are printed without a schema under search_path ''; accept pg_catalog. too. */
export function builtinName(type: string): string {
  return withoutTypmod(type).replace(/^pg_catalog\./, '');
}

const JSON_SOURCES = new Set(['json', 'text', 'character varying', 'character']);

// ---------------------------------------------------------------------------------------------
// Raising an error from a plain SQL expression
// ---------------------------------------------------------------------------------------------

/**
 * An expression that fails with `message` (an SQL text expression) when evaluated: SQL has no
 * RAISE outside PL/pgSQL, but a cast of text that is not a number fails and quotes that text:
 * `invalid input syntax for type double precision: "walbridge: ..."`. Only used in a CASE
 * branch, and the message must refer to a column, so the planner cannot fold it into a
 * constant and raise it while planning.
 */
function sqlError(message: string, type: 'float8' | 'int4'): string {
  return `(('walbridge: ' || ${message})::${type})`;
}

// ---------------------------------------------------------------------------------------------
// pgvector text -> float32 bytes or real[]
// ---------------------------------------------------------------------------------------------

/**
 * The elements of pgvector's text form `[1,2.5,-3e-07]`, one row each, numbered from 1:
 * `wbc_elem.txt` ('2.5') and `wbc_elem.pos`. pgvector prints each element with float4's
 * shortest round-trip output, so `txt::float4` (strtof, correctly rounded) gives back exactly
 * the float the vector holds; a malformed element ('abc', '', '1e39') fails the cast.
 */
function vectorElements(text: string): string {
  return `unnest(string_to_array(btrim(${text}, '[]'), ',')) WITH ORDINALITY AS wbc_elem(txt, pos)`;
}

/**
 * The 4 bytes of one element, big-endian. float4send is float4's binary send function, callable
 * from SQL (unlike float4recv, which takes `internal`): it gives the IEEE 754 bits exactly,
 * most significant byte first, on every platform.
 */
const ELEMENT_BE = 'float4send(wbc_elem.txt::float4)';

/** The same 4 bytes least significant first: the big-endian ones in reverse order. */
const ELEMENT_LE =
  'substr(wbc_be.b, 4, 1) || substr(wbc_be.b, 3, 1) || substr(wbc_be.b, 2, 1) || substr(wbc_be.b, 1, 1)';

/**
 * The bytes of every element, concatenated in the vector's order. The empty vector (pgvector
 * refuses it, but a text stand-in may hold '[]') gives empty bytes, not NULL: NULL stays for NULL.
 * For little-endian the big-endian bytes are computed once per element in a LATERAL subquery;
 * OFFSET 0 keeps the planner from pulling it up and calling float4send four times.
 */
function vectorToFloat32(text: string, order: 'le' | 'be'): string {
  const elements = vectorElements(text);
  if (order === 'be') {
    return `coalesce((SELECT string_agg(${ELEMENT_BE}, ''::bytea ORDER BY wbc_elem.pos) FROM ${elements}), ''::bytea)`;
  }
  return (
    `coalesce((SELECT string_agg(${ELEMENT_LE}, ''::bytea ORDER BY wbc_elem.pos) ` +
    `FROM ${elements} CROSS JOIN LATERAL (SELECT ${ELEMENT_BE} AS b OFFSET 0) AS wbc_be), ''::bytea)`
  );
}

/**
 * real[] from the same elements: each element through float4's input function, as above. Not
 * array_in on '{...}', which would also take NULL or quoted elements that no vector has.
 */
function vectorToRealArray(text: string): string {
  return `string_to_array(btrim(${text}, '[]'), ',')::real[]`;
}

// ---------------------------------------------------------------------------------------------
// float32 bytes -> pgvector text (the way back)
// ---------------------------------------------------------------------------------------------

/**
 * The bytes of a bytea from its text output. A cast rather than decode(substr(..., 3), 'hex'):
 * byteain reads both the hex (`\x0000803f`) and the escape form, whatever bytea_output was.
 */
function byteaFromText(text: string): string {
  return `(${text})::bytea`;
}

/** Element numbers 0.. of a bytea of 4-byte floats; a length that is not a multiple of 4 fails. */
const ELEMENT_INDEXES =
  `generate_series(0, CASE WHEN length(wbc_src.b) % 4 = 0 THEN length(wbc_src.b) / 4 - 1 ` +
  `ELSE ${sqlError(`'float32 bytes must be a multiple of 4 long, not ' || length(wbc_src.b)`, 'int4')} END) AS wbc_i(i)`;

/**
 * The 4 bytes of element i as integers, b3 the most significant: little-endian stores it last,
 * big-endian first.
 */
function elementBytes(order: 'le' | 'be'): string {
  const at = (k: number) => `get_byte(wbc_src.b, 4 * wbc_i.i + ${k})`;
  const [b3, b2, b1, b0] = order === 'le' ? [at(3), at(2), at(1), at(0)] : [at(0), at(1), at(2), at(3)];
  return `(SELECT ${b3} AS b3, ${b2} AS b2, ${b1} AS b1, ${b0} AS b0) AS wbc_byte`;
}

/** IEEE 754 binary32 fields: 1 sign bit, 8 exponent bits, 23 mantissa bits. */
const FLOAT_FIELDS =
  '(SELECT wbc_byte.b3 >> 7 AS sign, ' +
  '((wbc_byte.b3 & 127) << 1) | (wbc_byte.b2 >> 7) AS exponent, ' +
  '((wbc_byte.b2 & 127) << 16) | (wbc_byte.b1 << 8) | wbc_byte.b0 AS mantissa) AS wbc_f';

/**
 * The float's value, in float8 arithmetic that is exact:
 *   normal (exponent 1..254):  (2^23 + mantissa) * 2^(exponent - 150)
 *   subnormal or zero (0):      mantissa * 2^-149
 * The integer factor is below 2^24 and the power of two lies in 2^-149..2^104, both exactly
 * representable in float8 (53-bit mantissa, exponents down to 2^-1022), and so is their product:
 * no rounding anywhere. power(2, k) returns the exact power, as any libm pow does when the
 * result is representable (its error bound is below one unit in the last place). The sign is
 * a multiplication by -1 so that a negative zero stays -0. Exponent 255 is Infinity or NaN, which
 * pgvector refuses: an error naming the element.
 */
const FLOAT_VALUE =
  'CASE WHEN wbc_f.exponent = 255 ' +
  `THEN ${sqlError(`'element ' || (wbc_i.i + 1) || ' of the float32 bytes is Infinity or NaN, which a vector cannot hold'`, 'float8')} ` +
  'ELSE (CASE WHEN wbc_f.sign = 1 THEN -1 ELSE 1 END)::float8 ' +
  '* (wbc_f.mantissa + CASE WHEN wbc_f.exponent = 0 THEN 0 ELSE 8388608 END)::float8 ' +
  '* power(2::float8, greatest(wbc_f.exponent, 1) - 150) END';

/**
 * One row per float: its number i (from 0) and its text, float4's output of the value. The
 * float8 holds a float4 value exactly, so ::float4 is exact, and float4's output (shortest
 * round-trip: 1, 2.5, -3e-07, -0) is the one pgvector's vector_out uses.
 *
 * Both OFFSET 0 keep a subquery the planner would otherwise pull up into its parent:
 * - wbc_src: pulled up, every get_byte would decode the whole text again (16,000 dimensions:
 *   64,000 decodings of 128 kB, seconds per value, minutes when the text is itself computed);
 * - the whole: PostgreSQL 16 and later sort the rows of string_agg(... ORDER BY) under the
 *   aggregate, and pulled up, each row would carry the whole bytea into that sort (a gigabyte on
 *   disk for 16,000 dimensions); kept apart, the sort sees (i, text) only.
 */
function floatTexts(text: string, order: 'le' | 'be'): string {
  return (
    `(SELECT wbc_i.i, (${FLOAT_VALUE})::float4::text AS txt ` +
    `FROM (SELECT ${byteaFromText(text)} AS b OFFSET 0) AS wbc_src ` +
    `CROSS JOIN LATERAL ${ELEMENT_INDEXES} ` +
    `CROSS JOIN LATERAL ${elementBytes(order)} ` +
    `CROSS JOIN LATERAL ${FLOAT_FIELDS} OFFSET 0) AS wbc_float`
  );
}

/** pgvector's text form of the floats: '[' + their texts joined by ',' + ']'. */
function float32ToVector(text: string, order: 'le' | 'be'): string {
  return `(SELECT '[' || coalesce(string_agg(wbc_float.txt, ',' ORDER BY wbc_float.i), '') || ']' FROM ${floatTexts(text, order)})`;
}

/**
 * real[] back to pgvector's text: the element texts are float4's output either way, so only the
 * brackets change: '{1,2.5}' -> '[1,2.5]'.
 */
function realArrayToVector(text: string): string {
  return `('[' || btrim(${text}, '{}') || ']')`;
}

// ---------------------------------------------------------------------------------------------
// The conversions
// ---------------------------------------------------------------------------------------------

const BUILTINS: Record<string, Omit<ColumnConversion, 'spec' | 'kind'>> = {
  vector_to_float32le: {
    toTarget: (text) => vectorToFloat32(text, 'le'),
    toSource: (text) => float32ToVector(text, 'le'),
    targetTypes: ['bytea'],
    readsSource: isVector,
  },
  vector_to_float32be: {
    toTarget: (text) => vectorToFloat32(text, 'be'),
    toSource: (text) => float32ToVector(text, 'be'),
    targetTypes: ['bytea'],
    readsSource: isVector,
  },
  vector_to_real_array: {
    toTarget: vectorToRealArray,
    toSource: realArrayToVector,
    targetTypes: ['real[]'],
    readsSource: isVector,
  },
  // jsonb normalizes (key order, duplicate keys, whitespace): the source's text cannot be
  // recovered, so there is no way back.
  to_jsonb: {
    toTarget: (text) => `(${text})::jsonb`,
    toSource: null,
    targetTypes: ['jsonb'],
    readsSource: (type) => JSON_SOURCES.has(builtinName(type)),
  },
};

/** The builtin conversions by name, in the order suggestConversion prefers them. */
export const BUILTIN_CONVERSIONS: readonly string[] = Object.freeze(Object.keys(BUILTINS));

const ALL_FORMS = `${BUILTIN_CONVERSIONS.join(', ')}, sql:<expression using $1>, drop`;
const SETTING = 'WALBRIDGE_CONVERT (--convert)';
const EXAMPLE = 'public.mirt_memories.embedding=vector_to_float32le';

function builtin(name: string): ColumnConversion | undefined {
  const b = BUILTINS[name];
  return b && { spec: name, kind: 'builtin', ...b };
}

const DROP: ColumnConversion = {
  spec: 'drop',
  kind: 'drop',
  toTarget: () => {
    throw new Error('a dropped column is never written: toTarget must not be called for it');
  },
  // The reverse run would have to write something into the source's column: it refuses instead.
  toSource: null,
  targetTypes: [],
  readsSource: () => true,
};

// ---------------------------------------------------------------------------------------------
// sql:<expression>
// ---------------------------------------------------------------------------------------------

type Scan = { ok: true; parts: string[] } | { ok: false; problem: string };

/**
 * Split a user's expression at each `$1` outside string literals, quoted identifiers and
 * dollar-quoted strings (so `replace($1, '$1', '')` replaces one of them). A `$2`, `$10`... or a
 * comment (it would swallow what walbridge writes after the expression) is a problem.
 */
function splitAtParam(expr: string): Scan {
  const parts: string[] = [];
  let start = 0;
  let i = 0;
  const closeQuote = (q: string, backslashes: boolean): number => {
    let j = i + 1;
    while (j < expr.length) {
      const ch = expr[j];
      if (backslashes && ch === '\\') j += 2;
      else if (ch === q && expr[j + 1] === q) j += 2;
      else if (ch === q) return j + 1;
      else j++;
    }
    return -1;
  };
  while (i < expr.length) {
    const ch = expr[i] as string;
    const rest = expr.slice(i);
    if (ch === "'" || ch === '"') {
      const escapes = ch === "'" && i > 0 && /[eE]/.test(expr[i - 1] as string) && !/[\w$]/.test(expr[i - 2] ?? ' ');
      const end = closeQuote(ch, escapes);
      if (end < 0) {
        const what = ch === "'" ? 'string literal' : 'quoted identifier';
        return { ok: false, problem: `its ${what} is not closed (a ';' ends the entry, even inside quotes)` };
      }
      i = end;
    } else if (rest.startsWith('--') || rest.startsWith('/*')) {
      return { ok: false, problem: 'it contains a comment (-- or /*), which is not allowed there' };
    } else if (ch === '$') {
      const param = /^\$(\d+)/.exec(rest);
      const tag = /^\$([A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$/.exec(rest);
      if (param) {
        if (param[1] !== '1') return { ok: false, problem: `it uses $${param[1]}, but only $1 (the source value's text) exists` };
        parts.push(expr.slice(start, i));
        i += 2;
        start = i;
      } else if (tag && !/[\w$]/.test(expr[i - 1] ?? ' ')) {
        const end = expr.indexOf(tag[0], i + tag[0].length);
        if (end < 0) return { ok: false, problem: `its dollar-quoted string ${tag[0]} is not closed (a ';' ends the entry, even inside quotes)` };
        i = end + tag[0].length;
      } else i++;
    } else i++;
  }
  parts.push(expr.slice(start));
  if (parts.length === 1) return { ok: false, problem: 'it does not use $1, the source value\'s text' };
  return { ok: true, parts };
}

function sqlConversion(spec: string, parts: string[]): ColumnConversion {
  return {
    spec,
    kind: 'sql',
    // Every $1 becomes the text expression, parenthesized so that operators around $1 bind to
    // the whole of it; the whole expression is parenthesized for the same reason.
    toTarget: (text) => `(${parts.join(`(${text})`)})`,
    toSource: null,
    targetTypes: [],
    readsSource: () => true,
  };
}

// ---------------------------------------------------------------------------------------------
// WALBRIDGE_CONVERT
// ---------------------------------------------------------------------------------------------

function configError(entry: string, problem: string, hint: string): WalbridgeError {
  return new WalbridgeError('config', `${SETTING}: "${entry}": ${problem}`, { hint });
}

const NAMES_HINT =
  'Write schema.table.column with each name as it is stored, case-sensitive and without quotes ' +
  `(for example ${EXAMPLE}). Names that contain '.', '=' or ';' cannot be given here.`;

/** The conversion after '=': a builtin, `drop` or `sql:<expression>`. */
function parseConversion(entry: string, text: string): ColumnConversion {
  if (text.startsWith('sql:')) {
    const expr = text.slice('sql:'.length).trim();
    if (expr === '') {
      throw configError(entry, 'the sql: expression is empty', `Write an expression of $1, the source value's text, for example ${entry.split('=')[0]?.trim()}=sql:upper($1).`);
    }
    const scan = splitAtParam(expr);
    if (!scan.ok) {
      throw configError(
        entry,
        `the sql: expression cannot be used: ${scan.problem}`,
        "Write one SQL expression of $1 (the source value's text output, type text) using built-in functions only, " +
          "for example sql:upper($1) or sql:($1)::numeric(12,2); it cannot contain ';' (write chr(59)) or comments.",
      );
    }
    return sqlConversion(`sql:${expr}`, scan.parts);
  }
  if (text === 'drop') return DROP;
  const b = builtin(text);
  if (b) return b;
  throw configError(
    entry,
    text === '' ? 'no conversion after \'=\'' : `unknown conversion "${text}"`,
    `Use one of: ${ALL_FORMS}.`,
  );
}

/**
 * WALBRIDGE_CONVERT: ';'-separated `schema.table.column=CONVERSION`. Keys are
 * 'schema.table.column'. Blank entries (a trailing ';') are ignored.
 */
export function parseConversions(spec: string | undefined): Map<string, ColumnConversion> {
  const out = new Map<string, ColumnConversion>();
  const entryOf = new Map<string, string>();
  if (spec === undefined) return out;
  for (const raw of spec.split(';')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const eq = entry.indexOf('=');
    if (eq < 0) {
      throw configError(
        entry,
        "no '=' (each entry is schema.table.column=CONVERSION)",
        `Write for example ${EXAMPLE}, entries separated by ';'. ` +
          "If this is the end of an sql: expression that contained ';', write chr(59) in the expression instead.",
      );
    }
    const key = entry.slice(0, eq).trim();
    const names = key.split('.').map((s) => s.trim());
    if (key === '') throw configError(entry, "no column before '='", NAMES_HINT);
    if (names.some((n) => n.startsWith('"'))) {
      throw configError(entry, 'quoted names are not needed (and not read)', NAMES_HINT);
    }
    if (names.length !== 3) {
      throw configError(entry, `"${key}" is not schema.table.column (${names.length} part${names.length === 1 ? '' : 's'})`, NAMES_HINT);
    }
    if (names.some((n) => n === '')) throw configError(entry, `"${key}" has an empty name`, NAMES_HINT);
    const name = names.join('.');
    const conversion = parseConversion(entry, entry.slice(eq + 1).trim());
    const earlier = entryOf.get(name);
    if (earlier !== undefined) {
      throw configError(entry, `the column ${name} is named twice (also in "${earlier}")`, 'Keep one conversion per column.');
    }
    entryOf.set(name, entry);
    out.set(name, conversion);
  }
  return out;
}

/**
 * The builtin conversion that carries a sourceType column into a targetType column (both as
 * format_type prints them with search_path ''), or null. The first that fits wins:
 * vector -> bytea is vector_to_float32le, the order numpy uses on every common machine.
 */
export function suggestConversion(sourceType: string, targetType: string): string | null {
  const target = builtinName(targetType);
  for (const name of BUILTIN_CONVERSIONS) {
    const b = BUILTINS[name];
    if (b && b.readsSource(sourceType) && b.targetTypes.includes(target)) return name;
  }
  return null;
}
