/**
 * The conversions' SQL (src/convert/conversions.ts) on real servers, PostgreSQL 15, 17 and 18:
 * each forward expression gives exactly the value a JavaScript reference computes (the float32
 * bytes from Buffer.writeFloatLE/BE, Math.fround for real[]), each way back gives exactly
 * pgvector's text (PostgreSQL's own float4 output of each element), and every server gives the
 * same bytes and the same text.
 *
 * The servers have no pgvector: a vector's text form is plain text here (a domain over text in
 * the last test, standing in for the column). NULL is the callers' business and not tested here.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseConversions, suggestConversion, type ColumnConversion } from '../../src/convert/conversions.js';
import type pg from 'pg';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { SeededRandom } from '../harness/rng.js';

const MAJORS = [15, 17, 18] as const;
const servers: Cluster[] = [];

before(async () => {
  const started = await Promise.allSettled(MAJORS.map((major) => startCluster({ major, name: `convert${major}`, logical: false })));
  for (const r of started) if (r.status === 'fulfilled') servers.push(r.value);
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
});
after(async () => {
  await Promise.all(servers.map((c) => c.destroy()));
});

const CONVERSIONS = parseConversions(
  's.t.le=vector_to_float32le;s.t.be=vector_to_float32be;s.t.arr=vector_to_real_array;s.t.json=to_jsonb',
);
function conv(column: string): ColumnConversion {
  const c = CONVERSIONS.get(`s.t.${column}`);
  assert.ok(c);
  return c;
}
const LE = conv('le');
const BE = conv('be');
const ARR = conv('arr');
const JSONB = conv('json');

// ---------------------------------------------------------------------------------------------
// Values and their JavaScript references
// ---------------------------------------------------------------------------------------------

/** A number as an element of a vector's text ('-0' kept apart from '0'). */
function elementText(x: number): string {
  return Object.is(x, -0) ? '-0' : String(x);
}

function vectorText(xs: readonly number[]): string {
  return `[${xs.map(elementText).join(',')}]`;
}

/** The float32 bytes numpy reads: each value rounded to float32 (as Math.fround), 4 bytes each. */
function float32Bytes(xs: readonly number[], order: 'le' | 'be'): Buffer {
  const b = Buffer.alloc(4 * xs.length);
  xs.forEach((x, i) => (order === 'le' ? b.writeFloatLE(x, 4 * i) : b.writeFloatBE(x, 4 * i)));
  return b;
}

/** A bytea's text output, as the reverse stream receives it. */
function byteaText(b: Buffer): string {
  return `\\x${b.toString('hex')}`;
}

const EDGE_VALUES: readonly number[] = [
  0,
  -0,
  1,
  2.5,
  -3e-7,
  3.4028235e38, // largest normal float4
  -3.4028235e38,
  1.1754944e-38, // smallest normal
  -1.1754944e-38,
  1.1754942e-38, // largest subnormal
  3e-39, // subnormals
  1e-45, // the smallest subnormal, as float4 prints it
  1.4e-45, // the same float, written otherwise
  -1e-45,
  0.1,
  1 / 3,
  Math.PI,
  -123456.789,
  16777217, // not a float4: rounds to 16777216, printed 1.6777216e+07
];

/** Float32 values from bit patterns: every exponent (but 255: Infinity/NaN), mantissas at the edges and between. */
function everyExponent(rng: SeededRandom): number[] {
  const out: number[] = [];
  const b = Buffer.alloc(4);
  for (let exponent = 0; exponent <= 254; exponent++) {
    for (const mantissa of [0, 1, 2, 0x400000, 0x2aaaaa, 0x7fffff, rng.int(0, 0x7fffff)]) {
      for (const sign of [0, 1]) {
        b.writeUInt32BE(((sign << 31) | (exponent << 23) | mantissa) >>> 0);
        out.push(b.readFloatBE(0));
      }
    }
  }
  return out;
}

/** Any finite float32, from random bits. */
function randomFloats(rng: SeededRandom, n: number): number[] {
  const out: number[] = [];
  const b = Buffer.alloc(4);
  while (out.length < n) {
    b.writeUInt32BE(rng.int(0, 0xffffffff) >>> 0);
    const x = b.readFloatBE(0);
    if (Number.isFinite(x)) out.push(x);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Running the expressions
// ---------------------------------------------------------------------------------------------

/** One connection to one server, kept for a series of statements. */
interface Session {
  major: number;
  query<T>(sql: string, params?: unknown[]): Promise<T[]>;
}

function session(major: number, client: pg.Client): Session {
  return {
    major,
    query: async <T>(sql: string, params: unknown[] = []) => (await client.query(sql, params)).rows as T[],
  };
}

/** fn on each server in turn, with a connection to it. */
async function onEachServer(fn: (s: Session) => Promise<void>): Promise<void> {
  for (const c of servers) await c.withClient((client) => fn(session(c.major, client)));
}

/** toTarget over $1, the source value's text; bytea comes back as a Buffer. */
async function forward<T>(c: Session, conversion: ColumnConversion, text: string): Promise<T> {
  const rows = await c.query<{ v: T }>(`SELECT ${conversion.toTarget('$1::text')} AS v`, [text]);
  return rows[0]?.v as T;
}

/** toSource over $1, the target value's text output. */
async function back(c: Session, conversion: ColumnConversion, text: string): Promise<string> {
  assert.ok(conversion.toSource);
  const rows = await c.query<{ v: string }>(`SELECT ${conversion.toSource('$1::text')} AS v`, [text]);
  return rows[0]?.v as string;
}

/** toSource(toTarget($1)) in one statement: the round trip as the reverse run would see it. */
async function roundTrip(c: Session, conversion: ColumnConversion, text: string): Promise<string> {
  assert.ok(conversion.toSource);
  const rows = await c.query<{ v: string }>(`SELECT ${conversion.toSource(`(${conversion.toTarget('$1::text')})::text`)} AS v`, [text]);
  return rows[0]?.v as string;
}

/** pgvector's text of these values: PostgreSQL's float4 output of each element (what vector_out prints). */
async function pgvectorText(c: Session, xs: readonly number[]): Promise<string> {
  const rows = await c.query<{ v: string }>(
    `SELECT '[' || string_agg(e::float4::text, ',' ORDER BY n) || ']' AS v FROM unnest($1::text[]) WITH ORDINALITY AS x(e, n)`,
    [xs.map(elementText)],
  );
  return rows[0]?.v as string;
}

/** The real[]'s elements' bits, big-endian, and its text output. */
async function forwardRealArray(c: Session, text: string): Promise<{ bits: Buffer; text: string }> {
  const rows = await c.query<{ bits: Buffer; text: string }>(
    `SELECT (SELECT string_agg(float4send(e), ''::bytea ORDER BY n) FROM unnest(a.v) WITH ORDINALITY AS x(e, n)) AS bits, a.v::text AS text
       FROM (SELECT ${ARR.toTarget('$1::text')} AS v) AS a`,
    [text],
  );
  const r = rows[0];
  assert.ok(r);
  return r;
}

/** Checks every conversion of the vector on every server against the references. */
async function checkVector(xs: readonly number[], label: string): Promise<void> {
  const text = vectorText(xs);
  const le = float32Bytes(xs, 'le');
  const be = float32Bytes(xs, 'be');
  const results: string[] = [];
  await onEachServer(async (c) => {
    const at = `${label}, PostgreSQL ${c.major}`;
    const expectedText = await pgvectorText(c, xs);

    const gotLe = await forward<Buffer>(c, LE, text);
    assert.ok(gotLe.equals(le), `${at}: float32le bytes differ`);
    const gotBe = await forward<Buffer>(c, BE, text);
    assert.ok(gotBe.equals(be), `${at}: float32be bytes differ`);
    const arr = await forwardRealArray(c, text);
    assert.ok(arr.bits.equals(be), `${at}: real[] elements differ`);
    assert.equal(arr.text, `{${expectedText.slice(1, -1)}}`, at);

    assert.equal(await back(c, LE, byteaText(le)), expectedText, `${at}: float32le back`);
    assert.equal(await back(c, BE, byteaText(be)), expectedText, `${at}: float32be back`);
    assert.equal(await back(c, ARR, arr.text), expectedText, `${at}: real[] back`);
    // The round trip is the identity on pgvector's text.
    for (const conversion of [LE, BE, ARR]) assert.equal(await roundTrip(c, conversion, expectedText), expectedText, `${at}: ${conversion.spec} round trip`);
    results.push(expectedText);
  });
  assert.equal(new Set(results).size, 1, `${label}: the servers print the floats differently`);
}

// ---------------------------------------------------------------------------------------------

describe('the vector conversions', () => {
  test('edge values: ±0, the largest and smallest normal float4, subnormals, values that round', async () => {
    await checkVector(EDGE_VALUES, 'edge values');
    // The reference itself, as pgvector prints these floats (float4's shortest round-trip output).
    await onEachServer(async (c) =>
      assert.equal(
        await pgvectorText(c, EDGE_VALUES),
        '[0,-0,1,2.5,-3e-07,3.4028235e+38,-3.4028235e+38,1.1754944e-38,-1.1754944e-38,1.1754942e-38,3e-39,1e-45,1e-45,-1e-45,0.1,0.33333334,3.1415927,-123456.79,1.6777216e+07]',
      ),
    );
    // One value at a time as well: a one-element vector has no separator to lean on.
    for (const x of EDGE_VALUES) await checkVector([x], `[${elementText(x)}]`);
  });

  test('every float4 exponent, with mantissas at the edges and in between (3570 values)', async () => {
    await checkVector(everyExponent(new SeededRandom(15)), 'every exponent');
  });

  test('a 16,000-dimension vector of random float4 values', async () => {
    const xs = randomFloats(new SeededRandom(16000), 16_000);
    await checkVector(xs, '16,000 dimensions');
  });

  test('the empty text [] gives empty bytes and back (pgvector refuses it; NULL stays for NULL)', async () => {
    await onEachServer(async (c) => {
      assert.equal((await forward<Buffer>(c, LE, '[]')).length, 0);
      assert.equal(await roundTrip(c, LE, '[]'), '[]');
      assert.equal(await roundTrip(c, BE, '[]'), '[]');
      assert.equal(await roundTrip(c, ARR, '[]'), '[]');
    });
  });

  test('a value that cannot convert raises an error, on every server', async () => {
    await onEachServer(async (c) => {
      for (const conversion of [LE, BE, ARR]) {
        await assert.rejects(forward(c, conversion, '[1,abc]'), /invalid input syntax for type real: "abc"/, `${conversion.spec} on ${c.major}`);
        await assert.rejects(forward(c, conversion, '[1,,2]'), /invalid input syntax for type real: ""/);
        await assert.rejects(forward(c, conversion, '[1,1e39]'), /out of range for type real/);
        await assert.rejects(forward(c, conversion, '[1,NULL]'), /invalid input syntax for type real: "NULL"/);
      }
      for (const conversion of [LE, BE]) {
        await assert.rejects(back(c, conversion, '\\x0000803f00'), /walbridge: float32 bytes must be a multiple of 4 long, not 5/);
        for (const bits of [0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001]) {
          const b = float32Bytes([0, 1], conversion === LE ? 'le' : 'be');
          const odd = Buffer.alloc(4);
          if (conversion === LE) odd.writeUInt32LE(bits);
          else odd.writeUInt32BE(bits);
          await assert.rejects(
            back(c, conversion, byteaText(Buffer.concat([b, odd]))),
            /walbridge: element 3 of the float32 bytes is Infinity or NaN/,
            `${conversion.spec} ${bits.toString(16)} on ${c.major}`,
          );
        }
      }
    });
  });
});

describe('to_jsonb', () => {
  test("json or text becomes the jsonb PostgreSQL makes of it, the same on every server; there is no way back", async () => {
    assert.equal(JSONB.toSource, null);
    const json = '{"b": 1,  "a": [1, 2.50, 1e400, "ü\\n"], "b": 2, "big": 12345678901234567890123}';
    const seen = new Set<string>();
    for (const c of servers) {
      const rows = await c.query<{ v: string; ref: string }>(`SELECT (${JSONB.toTarget('$1::text')})::text AS v, $1::jsonb::text AS ref`, [json]);
      const r = rows[0];
      assert.ok(r);
      assert.equal(r.v, r.ref);
      seen.add(r.v);
      await assert.rejects(c.query(`SELECT ${JSONB.toTarget('$1::text')}`, ['{"a":']), /invalid input syntax for type json/);
    }
    assert.equal(seen.size, 1);
  });
});

describe('as the copy, the stream, verify and the reverse run use them', () => {
  test('a stand-in vector column (a domain over text) on 15 copied and streamed to 17 and 18, verified, and read back', async () => {
    const [source, ...targets] = servers;
    assert.ok(source && source.major === 15);
    const rows: Array<[number, number[]]> = [
      [1, [1, 2.5, -3e-7]],
      [2, EDGE_VALUES.slice()],
      [3, randomFloats(new SeededRandom(3), 1536)],
      [4, [-0]],
      // Read from a table, a long value is not folded into a constant: an expression that
      // decoded it once per element would take minutes here.
      [5, randomFloats(new SeededRandom(5), 16_000)],
    ];
    await source.query(`
      CREATE DOMAIN public.vector AS text CHECK (VALUE ~ '^\\[[^]]*\\]$');
      CREATE TABLE public.items (id int PRIMARY KEY, embedding public.vector, emb_be public.vector, emb_arr public.vector, meta json);`);
    for (const [id, xs] of rows) {
      // The source holds pgvector's text: each element as float4 prints it.
      const text = await pgvectorText(source, xs);
      await source.query('INSERT INTO public.items VALUES ($1, $2, $2, $2, $3)', [id, text, `{"id": ${id}, "id": "again"}`]);
    }

    // The source column types as the rest of walbridge reads them, and what preflight would suggest.
    const types = await source.withClient(async (client) => {
      await client.query("SET search_path = ''");
      const r = await client.query<{ attname: string; type: string }>(
        "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'public.items'::regclass AND attnum > 0 ORDER BY attnum",
      );
      return Object.fromEntries(r.rows.map((x) => [x.attname, x.type]));
    });
    assert.deepEqual(types, { id: 'integer', embedding: 'public.vector', emb_be: 'public.vector', emb_arr: 'public.vector', meta: 'json' });
    assert.equal(suggestConversion(types.embedding as string, 'bytea'), 'vector_to_float32le');
    assert.equal(suggestConversion(types.emb_arr as string, 'real[]'), 'vector_to_real_array');
    assert.equal(suggestConversion(types.meta as string, 'jsonb'), 'to_jsonb');
    const convs = parseConversions(
      'public.items.embedding=vector_to_float32le;public.items.emb_be=vector_to_float32be;public.items.emb_arr=vector_to_real_array;public.items.meta=to_jsonb',
    );
    const cols = ['embedding', 'emb_be', 'emb_arr', 'meta'] as const;
    const c = (col: (typeof cols)[number]) => convs.get(`public.items.${col}`) as ColumnConversion;
    for (const col of cols) assert.equal(c(col).readsSource(types[col] as string), true, col);

    for (const target of targets) {
      await target.query('CREATE TABLE public.items (id int PRIMARY KEY, embedding bytea, emb_be bytea, emb_arr real[], meta jsonb)');
      // The copy: the source computes the target's values (rows 1 and 2).
      const copied = await source.query<Record<string, string>>(
        `SELECT t.id::text AS id, ${cols.map((col) => `(${c(col).toTarget(`t.${col}::text`)})::text AS ${col}`).join(', ')}
           FROM public.items t WHERE t.id <= 2 ORDER BY t.id`,
      );
      for (const r of copied) {
        await target.query('INSERT INTO public.items VALUES ($1, $2, $3, $4, $5)', [r.id, r.embedding, r.emb_be, r.emb_arr, r.meta]);
      }
      // The stream: the target computes them from the source's text output (rows 3 and 4).
      const streamed = await source.query<Record<string, string>>(
        `SELECT id::text AS id, ${cols.map((col) => `${col}::text AS ${col}`).join(', ')} FROM public.items WHERE id > 2 ORDER BY id`,
      );
      await target.query(
        `INSERT INTO public.items (id, ${cols.join(', ')})
         SELECT u.c1::int, ${cols.map((col, i) => c(col).toTarget(`u.c${i + 2}`)).join(', ')}
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(c1, c2, c3, c4, c5)`,
        [streamed.map((r) => r.id), ...cols.map((col) => streamed.map((r) => r[col]))],
      );

      // Verify: the source's converted row hashes to the target's row, row by row.
      const sourceHashes: Array<{ id: number; h: string }> = await source.query(
        `SELECT t.id, md5(ROW(t.id, ${cols.map((col) => c(col).toTarget(`t.${col}::text`)).join(', ')})::text) AS h FROM public.items t ORDER BY t.id`,
      );
      const targetHashes = await target.query<{ id: number; h: string }>(
        `SELECT t.id, md5(ROW(t.id, ${cols.map((col) => `t.${col}`).join(', ')})::text) AS h FROM public.items t ORDER BY t.id`,
      );
      assert.equal(sourceHashes.length, rows.length);
      assert.deepEqual(targetHashes, sourceHashes, `PostgreSQL ${target.major}`);

      // The bytes are numpy's, whichever side computed them.
      const stored = await target.query<{ id: number; embedding: Buffer; emb_be: Buffer }>('SELECT id, embedding, emb_be FROM public.items ORDER BY id');
      for (const [i, [id, xs]] of rows.entries()) {
        assert.equal(stored[i]?.id, id);
        assert.ok(stored[i]?.embedding.equals(float32Bytes(xs, 'le')), `row ${id} le on ${target.major}`);
        assert.ok(stored[i]?.emb_be.equals(float32Bytes(xs, 'be')), `row ${id} be on ${target.major}`);
      }

      // The reverse run: the target's values back into the source's text, exactly.
      const backCols = cols.filter((col) => c(col).toSource !== null);
      assert.deepEqual(backCols, ['embedding', 'emb_be', 'emb_arr']);
      const fromTarget = await target.query<Record<string, string>>(
        `SELECT t.id, ${backCols.map((col) => `${c(col).toSource?.(`t.${col}::text`)} AS ${col}`).join(', ')} FROM public.items t ORDER BY t.id`,
      );
      const onSource: Array<Record<string, string>> = await source.query(`SELECT id, ${backCols.map((col) => `${col}::text AS ${col}`).join(', ')} FROM public.items ORDER BY id`);
      assert.deepEqual(fromTarget, onSource, `PostgreSQL ${target.major}`);
    }
  });
});
