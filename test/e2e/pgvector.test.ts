/**
 * The real pgvector, where it is installed for Debian's PostgreSQL 15 (test/harness/cluster.ts
 * 'system15'): a Supabase-like source (the extension in schema `extensions`) carried into a
 * target 17 without pgvector, `vector_to_float32le` (docs/conversions.md). The bytes on the target
 * are checked against pgvector's own binary output (vector_send: a header, then float4s
 * big-endian), not against a parse of its text; and the way back's expression, run on the source
 * over the target's bytes, gives exactly the text pgvector prints.
 *
 * Elsewhere (no pgvector for the test servers) it is skipped with the reason printed; the same
 * paths run on every machine in convert.test.ts with a stand-in type.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, test } from 'node:test';
import { parseConversions } from '../../src/convert/conversions.js';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { errorsOf, runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { waitForCatchUp, waitForPhase } from '../helpers/state.js';

const CONTROL = '/usr/share/postgresql/15/extension/vector.control';
const COLUMN = 'public.docs.embedding';
const CONVERT = `${COLUMN}=vector_to_float32le`;
const clusters: Cluster[] = [];
let daemon: DaemonProcess | null = null;

after(async () => {
  daemon?.kill('SIGKILL');
  await Promise.all(clusters.map((c) => c.destroy()));
});

/** pgvector's binary form (2-byte dims, 2 unused, float4s big-endian) as the float32le bytes numpy reads. */
function float32leOfVectorSend(hex: string): string {
  const b = Buffer.from(hex, 'hex').subarray(4);
  const out = Buffer.alloc(b.length);
  for (let i = 0; i < b.length; i += 4) out.writeUInt32LE(b.readUInt32BE(i), i);
  return out.toString('hex');
}

test('pgvector on the source, bytea on a target without it: copy and stream give numpy\'s bytes, verify agrees, the way back gives pgvector\'s text', { timeout: 240_000 }, async (t) => {
  if (!fs.existsSync('/usr/lib/postgresql/15/bin/initdb') || !fs.existsSync(CONTROL)) {
    t.skip(`pgvector is not installed for Debian's PostgreSQL 15 here (${CONTROL}): the stand-in type of convert.test.ts covers the same paths`);
    return;
  }
  const source = await startCluster({ major: 'system15', name: 'pgvector-source' });
  clusters.push(source);
  const target = await startCluster({ major: 17, name: 'pgvector-target' });
  clusters.push(target);
  await source.query(`
    CREATE SCHEMA extensions;
    CREATE EXTENSION vector WITH SCHEMA extensions;
    CREATE TABLE public.docs (id int PRIMARY KEY, embedding extensions.vector, body text);
    INSERT INTO public.docs VALUES
      (1, '[0,-0,1e-45,3.4028235e+38]', 'edges'),
      (2, '[1,2.5,-3e-07,1.1754944e-38]', 'normal'),
      (3, NULL, 'none'),
      (4, (SELECT array_agg((sin(g) * 1000)::real)::extensions.vector FROM generate_series(1, 16000) g), 'largest');
  `);
  const env = { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_CONVERT: CONVERT };

  // The target's schema: bytea, and no pgvector needed there.
  const schema = await runCli(['schema'], env);
  assert.equal(schema.code, 0, schema.out);
  assert.deepEqual(await target.query(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'public.docs'::regclass AND attname = 'embedding'`), [{ type: 'bytea' }]);
  const preflight = await runCli(['preflight'], env);
  assert.equal(preflight.code, 0, preflight.out);

  daemon = await startDaemon(env);
  await waitForPhase(target, 'streaming', { daemon });
  await source.query(`
    INSERT INTO public.docs VALUES (5, '[7,8,9]', 'streamed');
    UPDATE public.docs SET embedding = '[-1.5,1e-40]' WHERE id = 2;
    UPDATE public.docs SET body = 'note only' WHERE id = 4;
    DELETE FROM public.docs WHERE id = 1;
  `);
  await waitForCatchUp(source, target);
  assert.equal(daemon.logs().filter((l) => l.level === 'error' || l.level === 'fatal').length, 0, errorsOf(daemon));

  // Byte for byte: the target's bytea is pgvector's float4s, little-endian.
  const expected = await source.query<{ id: number; b: string | null }>(`SELECT id, encode(extensions.vector_send(embedding), 'hex') AS b FROM public.docs ORDER BY id`);
  const actual = await target.query<{ id: number; b: string | null }>(`SELECT id, encode(embedding, 'hex') AS b FROM public.docs ORDER BY id`);
  assert.deepEqual(
    actual,
    expected.map((r) => ({ id: r.id, b: r.b === null ? null : float32leOfVectorSend(r.b) })),
  );

  const verify = await runCli(['verify'], env);
  assert.equal(verify.code, 0, verify.out);

  // The way back: the inverse over the target's bytes gives the text pgvector prints, exactly.
  const back = parseConversions(CONVERT).get(COLUMN)?.toSource;
  assert.ok(back, 'vector_to_float32le has a way back');
  for (const row of actual) {
    if (row.b === null) continue;
    const rows: { same: boolean }[] = await source.query<{ same: boolean }>(`SELECT (${back(`$1::text`)}) = (SELECT embedding::text FROM public.docs WHERE id = $2) AS same`, [`\\x${row.b}`, row.id]);
    assert.equal(rows[0]?.same, true, `row ${row.id} back to pgvector's text`);
  }
  await daemon.stop();
  daemon = null;
});
