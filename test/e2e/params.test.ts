/**
 * Apply's parameters against a real server: a column's values go as one binary text[] built
 * from the bytes pgoutput sent (src/replicator/apply/params.ts), and must reach the server as the
 * exact same text, element by element, NULL kept apart from '' and from the string 'NULL'.
 * Run through PostgreSQL 15 and 17 (array_recv and textrecv on both).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { textArray, textArrayOf } from '../../src/replicator/apply/params.js';
import { Tuple, type TupleValue } from '../../src/replicator/pgoutput.js';

const AWKWARD: TupleValue[] = [
  'plain',
  '',
  null,
  'NULL',
  "it's \"quoted\"",
  '{a,b}',
  'back\\slash \\\\ \\x00ff',
  'tab\there\nnewline\r\ncrlf',
  '👨‍👩‍👧‍👦 مرحبا 你好 é vs é',
  '\u0001\u001f control',
  ' leading and trailing ',
  'x'.repeat(20_000) + 'ü',
];

const clusters: Cluster[] = [];
before(async () => {
  clusters.push(...(await Promise.all([startCluster({ major: 15, name: 'params15', logical: false }), startCluster({ major: 17, name: 'params17', logical: false })])));
});
after(async () => {
  await Promise.all(clusters.map((c) => c.destroy()));
});

test('a binary text[] built from row images reaches the server as exactly the values, in order', async () => {
  const rows = AWKWARD.map((v) => Tuple.of(['k', v]));
  const param = textArray(rows, (t) => t, 1).toBuffer();
  for (const c of clusters) {
    const got = await c.withClient(async (client) => {
      const r = await client.query<{ v: string | null }>('SELECT u.v FROM unnest($1::text[]) WITH ORDINALITY AS u(v, n) ORDER BY u.n', [param]);
      return r.rows.map((x) => x.v);
    });
    assert.deepEqual(got, AWKWARD, `PostgreSQL ${c.major}`);
  }
});

test('elements are cast by the target type\'s input function, as COPY and literals would be', async () => {
  const values: TupleValue[] = ['123456789012345678901234567890.000000000000000000001', '9223372036854775807', '2024-02-29 23:59:59.999999+00', '{"b": 1, "a": [1, 2.50]}', '\\x00ff'];
  const types = ['numeric', 'int8', 'timestamptz', 'jsonb', 'bytea'];
  const params = values.map((v) => textArray([Tuple.of([v])], (t) => t, 0).toBuffer());
  for (const c of clusters) {
    const got = await c.withClient(async (client) => {
      await client.query("SET timezone = 'UTC'");
      const r = await client.query({
        text: `SELECT ${types.map((t, i) => `(u.c${i}::${t})::text`).join(', ')} FROM unnest(${types.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS u(${types.map((_, i) => `c${i}`).join(', ')})`,
        values: params,
        rowMode: 'array',
      });
      return r.rows[0] as string[];
    });
    assert.deepEqual(got, ['123456789012345678901234567890.000000000000000000001', '9223372036854775807', '2024-02-29 23:59:59.999999+00', '{"a": [1, 2.50], "b": 1}', '\\x00ff'], `PostgreSQL ${c.major}`);
  }
});

test('short strings as a text[] (group ids and counts of a keyless delete)', async () => {
  const got = await (clusters[0] as Cluster).withClient(async (client) => (await client.query<{ a: string[] }>('SELECT $1::text[] AS a', [textArrayOf(['0', '1', '10', 'ü'])])).rows[0]?.a);
  assert.deepEqual(got, ['0', '1', '10', 'ü']);
});
