/**
 * Every awkward value survives both paths byte for byte: the copy (COPY binary where every
 * column is of a built-in type, COPY text otherwise) and the change stream (pgoutput text ->
 * unnested text[] -> the target's input functions).
 * Source and target are both PostgreSQL 17 here (Supabase's and Railway's current major).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPair, type Cluster } from '../harness/cluster.js';
import { assertSameContent, compareTables } from '../harness/compare.js';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { waitForCatchUp, waitForPhase } from '../helpers/state.js';

const SCHEMA = `
CREATE TYPE mood AS ENUM ('happy', 'sad', 'ünïcode mood');
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE TYPE address AS (street text, zip int);
CREATE TABLE every_type (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  j jsonb, js json, t text, b bytea, n numeric, n6 numeric(20,6), big int8, small int2,
  ts timestamptz, tsn timestamp(6), d date, tm time, tmz timetz, iv interval, u uuid, flag boolean,
  arr text[], marr int[][], earr mood[], e mood, em email, r tstzrange, ir int4range, dr daterange,
  tsv tsvector, f8 float8, f4 real, ip inet, net cidr, mac macaddr, bits bit(5), vbits varbit, ch char(3),
  addr address, pt point,
  "Mixed Case" text, "ünïcödé col" text,
  big_text text, tag text,
  g text GENERATED ALWAYS AS (coalesce(t, '') || '!') STORED
);
-- No key at all: rows are found by their whole old value (json and point have no equality).
-- Stored out of line, uncompressed: an UPDATE that leaves it alone sends an "unchanged" marker.
ALTER TABLE every_type ALTER COLUMN big_text SET STORAGE EXTERNAL;
CREATE TABLE full_ident (js json, pt point, note text, flag boolean, code char(3), addr inet,
                         seq int GENERATED ALWAYS AS IDENTITY);
ALTER TABLE full_ident REPLICA IDENTITY FULL;
CREATE TABLE "Straße Ü" ("Größe" int PRIMARY KEY, "Wert" text, "Kürzel" text UNIQUE);
-- every_type's columns but the enum array and the composite (their binary form carries OIDs
-- that differ between databases), and a few more: copied in binary format.
CREATE TABLE binary_types (
  id bigint PRIMARY KEY,
  j jsonb, js json, t text, b bytea, n numeric, n6 numeric(20,6), big int8, small int2,
  ts timestamptz, tsn timestamp(6), d date, tm time, tmz timetz, iv interval, u uuid, flag boolean,
  arr text[], marr int[][], r tstzrange, ir int4range, dr daterange,
  tsv tsvector, f8 float8, f4 real, ip inet, net cidr, mac macaddr, bits bit(5), vbits varbit, ch char(3),
  pt point, "Mixed Case" text, big_text text, e mood, em email,
  m money, o oid, nm name, c "char", x xml, mr int4multirange
);
-- A reg* value is an object's OID in binary form, and OIDs differ between databases: copied as text.
CREATE TABLE catalog_refs (id int PRIMARY KEY, rel regclass, typ regtype, rels regclass[]);
`;

/** One row per awkward value set; `$1` is a tag so stream rows can be told from copied ones. */
const INSERT_ROWS = `
INSERT INTO every_type (j, js, t, b, n, n6, big, small, ts, tsn, d, tm, tmz, iv, u, flag, arr, marr, earr, e, em, r, ir, dr,
                        tsv, f8, f4, ip, net, mac, bits, vbits, ch, addr, pt, "Mixed Case", "ünïcödé col", big_text, tag)
VALUES
 ('{"a": [1, 2.50, "x"], "nested": {"k": null}, "big": 12345678901234567890123}', '{"b":1,  "b":2}',
  E'tab\\there\\nnewline\\rcr \\\\ backslash "dq" ''sq'' \\x01\\x1f end', '\\x00ff7f80', 123456789012345678901234567890.123456789012345678901,
  99999999999999.999999, 9223372036854775807, -32768, '2024-02-29 23:59:59.999999+00', '1999-12-31 23:59:59.123456',
  '0001-01-01', '23:59:59.999999', '12:00:00.000001+05:30', '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  true, ARRAY['a', NULL, 'NULL', '', 'with,comma', 'with"quote', 'back\\slash'], '{{1,2},{3,4}}', '{happy,"ünïcode mood"}', 'sad',
  'x@y.z', '[2024-01-01 00:00:00.000001+00,infinity)', '[1,10)', 'empty', 'fat:1A cat:2B rat', 'NaN', '-0',
  '2001:db8::1/64', '10.0.0.0/8', '08:00:2b:01:02:03', B'10101', B'1', 'ab ', ROW('Hauptstraße 1', 10115), '(1.5,-2.25)',
  'MiXeD', 'ü', $2, $1),
 ('"just a string"', 'null', '', '\\x', 'NaN', 0, -9223372036854775808, 0, 'infinity', '-infinity', 'infinity', '00:00', '00:00+00',
  '-178000000 years', '00000000-0000-0000-0000-000000000000', false, '{}', '{}', '{}', 'happy', 'a@b', 'empty', '(,)', '[2020-01-01,)',
  '', 'Infinity', '-Infinity', '0.0.0.0', '::/0', '00:00:00:00:00:00', B'00000', B'', '   ', ROW(NULL, NULL), '(0,0)', '', '', $2, $1),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, $1),
 ('{"emoji": "👨‍👩‍👧‍👦", "rtl": "مرحبا", "cjk": "你好"}', '[]', '👨‍👩‍👧‍👦 مرحبا 你好 é vs é', '\\xdeadbeef', 1e-30, -0.000001, 9007199254740993, 1,
  '2038-01-19 03:14:08.000001+00', '2262-04-11 23:47:16.854775', '2024-01-01', '12:34:56', '12:34:56-08', '-1 day +00:00:00.000001',
  gen_random_uuid(), NULL, ARRAY['👍'], '{{NULL}}', '{}', 'ünïcode mood', 'ü@ü.de', '(2024-01-01,2024-01-02]', '[-5,5]', '[2024-01-01,2024-12-31]',
  'ü:1', 3.141592653589793, 0.1, '127.0.0.1', '192.168.0.0/24', 'ff:ff:ff:ff:ff:ff', B'11111', B'0101010101', 'ü  ', ROW('', 0), '(1e300,-1e-300)',
  'x', 'y', $2, $1)`;

/** Random-looking text, far past the TOAST threshold even when compressed. */
const BIG = Array.from({ length: 2000 }, (_, i) => ((i * 2654435761) >>> 0).toString(36).padStart(7, 'z')).join('ǂ');

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
let daemon: DaemonProcess | null = null;

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 17, targetMajor: 17 }));
  // Something created first on the target alone, so that every type of SCHEMA gets another OID there.
  await target.query(`CREATE TYPE pad AS ENUM ('x'); CREATE DOMAIN pad_domain AS int`);
  for (const c of [source, target]) await c.query(SCHEMA.replace(/^\s*$/gm, ''));
  await source.query(INSERT_ROWS, ['copied', BIG]);
  // Values whose cast to text differs from their output (t/true, padding, /32) find their row too.
  await source.query(`INSERT INTO full_ident (js, pt, note, flag, code, addr) OVERRIDING SYSTEM VALUE
                      VALUES ('{"same": 1}', '(1,1)', 'dup', true, 'ab', '10.0.0.1'), ('{"same": 1}', '(1,1)', 'dup', true, 'ab', '10.0.0.1'),
                             ('[1, 2]', '(2,2)', 'other', false, 'x', '::1')`);
  await source.query(`INSERT INTO "Straße Ü" VALUES (1, 'eins', 'E'), (2, 'zwei', 'Z')`);
  await source.query(`INSERT INTO binary_types
                      SELECT id, j, js, t, b, n, n6, big, small, ts, tsn, d, tm, tmz, iv, u, flag, arr, marr, r, ir, dr,
                             tsv, f8, f4, ip, net, mac, bits, vbits, ch, pt, "Mixed Case", big_text, e, em,
                             (id * 1234.56)::numeric::money, (4000000000 - id)::oid, 'n' || id, chr(64 + id::int)::"char",
                             xmlelement(name "ü", xmlattributes(id AS a), 'Größe xmlelement(name "ü", xmlattributes(id AS a), t) <escaped> "q"'), int4multirange(int4range(1, id::int + 1), int4range(20, 30))
                        FROM every_type`);
  await source.query(`INSERT INTO binary_types (id) VALUES (0)`);
  // Objects (in a schema walbridge does not move) created in another order on each side, so their OIDs differ.
  await target.query(`CREATE SCHEMA only_here; CREATE TABLE only_here.t (x int); CREATE TYPE only_here.ty AS (x int)`);
  for (const c of [source, target]) await c.query(`CREATE SCHEMA refs; CREATE TABLE refs.tab (x int); CREATE TYPE refs.ty AS (x int)`);
  await source.query(`INSERT INTO catalog_refs VALUES (1, 'refs.tab', 'refs.ty', '{refs.tab,every_type}'), (2, 'pg_class', 'int4', NULL)`);
});

after(async () => {
  daemon?.kill('SIGKILL');
  await destroy?.();
});

const TABLES = ['public.every_type', 'public.full_ident', 'public.Straße Ü', 'public.binary_types', 'public.catalog_refs'];

test('every value round-trips byte-exact through the copy and through the change stream', { timeout: 180_000 }, async () => {
  daemon = await startDaemon({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url() });
  await waitForPhase(target, 'streaming', { daemon });
  await waitForCatchUp(source, target);
  await assertSameContent(source.url(), target.url(), TABLES);
  const formats = Object.fromEntries(daemon.logs().filter((l) => l.msg === 'copy finished').map((l) => [l.table, l.format]));
  assert.deepEqual(
    formats,
    {
      'public.every_type': 'text',
      'public.full_ident': 'binary',
      'public.Straße Ü': 'binary',
      'public.binary_types': 'binary',
      'public.catalog_refs': 'text',
    },
    'binary format only where every column is of a type whose binary form means the same in any database',
  );

  // Through the stream: the same values inserted again, then changed in every way. Once as
  // a few rows (a plain INSERT on the target), once as many in one transaction (COPY).
  await source.query(INSERT_ROWS, ['streamed', BIG]);
  await source.withClient(async (c) => {
    await c.query('BEGIN');
    for (let i = 0; i < 12; i++) await c.query(INSERT_ROWS, ['bulk', BIG]);
    await c.query('COMMIT');
  });
  // Identity GENERATED ALWAYS values chosen by the source reach the target as they are.
  await source.query(`INSERT INTO every_type (id, t, tag) OVERRIDING SYSTEM VALUE VALUES (1000000000000, 'explicit id', 'streamed')`);
  // Only a small column changes: the big TOASTed ones arrive as "unchanged" markers.
  await source.query(`UPDATE every_type SET flag = NOT coalesce(flag, false), small = 7 WHERE big_text IS NOT NULL`);
  // Values to NULL, NULL to values, '' to NULL.
  await source.query(`UPDATE every_type SET t = NULL, j = '{}', arr = NULL, em = NULL WHERE tag = 'copied' AND t = ''`);
  await source.query(`UPDATE every_type SET t = '', e = 'happy', earr = '{sad,sad}' WHERE t IS NULL AND tag = 'streamed'`);
  // The big value itself rewritten.
  await source.query(`UPDATE every_type SET big_text = big_text || 'ǂ tail', j = jsonb_set(coalesce(j, '{}'), '{n}', '1') WHERE id = (SELECT min(id) FROM every_type WHERE big_text IS NOT NULL)`);
  await source.query(`DELETE FROM every_type WHERE id = (SELECT max(id) FROM every_type WHERE tag = 'copied')`);
  // Several changes to one row inside one transaction, and a key change.
  await source.query(`BEGIN; UPDATE "Straße Ü" SET "Wert" = 'a' WHERE "Größe" = 1; UPDATE "Straße Ü" SET "Wert" = 'b' WHERE "Größe" = 1;
                      UPDATE "Straße Ü" SET "Größe" = 3 WHERE "Größe" = 2; UPDATE "Straße Ü" SET "Größe" = 2 WHERE "Größe" = 1; COMMIT`);
  // A unique value handed from one row to another (checked row by row on the target too).
  // Rows now: 2 has 'E', 3 has 'Z'. Row 3 takes the 'E' that row 2 has just released.
  await source.query(`BEGIN; UPDATE "Straße Ü" SET "Kürzel" = 'X' WHERE "Größe" = 2; UPDATE "Straße Ü" SET "Kürzel" = 'E' WHERE "Größe" = 3;
                      UPDATE "Straße Ü" SET "Kürzel" = 'Z' WHERE "Größe" = 2; COMMIT`);
  // REPLICA IDENTITY FULL without a key: exactly one of two identical rows goes.
  await source.query(`DELETE FROM full_ident WHERE ctid = (SELECT min(ctid) FROM full_ident WHERE note = 'dup')`);
  await source.query(`UPDATE full_ident SET note = 'changed' WHERE js::text = '[1, 2]'`);
  await source.query(`INSERT INTO full_ident (js, pt, note) VALUES (NULL, NULL, NULL), (NULL, NULL, NULL)`);
  await source.query(`UPDATE full_ident SET note = 'flagged' WHERE flag AND ctid = (SELECT min(ctid) FROM full_ident WHERE flag)`);
  await source.query(`DELETE FROM full_ident WHERE ctid = (SELECT min(ctid) FROM full_ident WHERE note IS NULL)`);

  await waitForCatchUp(source, target);
  const diffs = await compareTables(source.url(), target.url(), TABLES);
  for (const d of diffs) assert.ok(d.equal, `${d.table}: ${d.firstDifference}`);
  const [counts] = await target.query<{ n: string; dups: string }>(`SELECT count(*)::text AS n, count(*) FILTER (WHERE note = 'dup')::text AS dups FROM full_ident`);
  assert.deepEqual(counts, { n: '3', dups: '0' }, 'one of two identical rows deleted, not both, and the other found by its values');
  const [big] = await target.query<{ len: number }>(`SELECT min(length(big_text)) AS len FROM every_type WHERE big_text IS NOT NULL`);
  assert.ok((big?.len ?? 0) > 10_000, 'unchanged TOAST values kept on the target');

  const { code } = await daemon.stop();
  daemon = null;
  assert.equal(code, 0);
});
