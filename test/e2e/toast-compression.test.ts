/**
 * Values walbridge TOASTs on the target are compressed with lz4 where the target has it
 * (WALBRIDGE_TOAST_LZ4, default on): copied rows and streamed rows alike, content equal to the
 * source's. The target is Debian's PostgreSQL 15 (built with lz4; the embedded servers are not),
 * the source the embedded 17. With WALBRIDGE_TOAST_LZ4=false the server's default (pglz) is kept.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { errorsOf, runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { waitForCatchUp, waitForPhase } from '../helpers/state.js';

const SYSTEM_PG15 = '/usr/lib/postgresql/15/bin/initdb';
const TABLES = ['public.sessions'];

let source: Cluster | undefined;
let target: Cluster | undefined;
let daemon: DaemonProcess | null = null;

/** A session document of several kB: compressible, so it is stored compressed. */
const DOC = (from: string) => `SELECT jsonb_build_object('turns', jsonb_agg(jsonb_build_object('n', k, 'text', repeat('turn ' || k || ' of ' || ${from} || ' ', 8))))
   FROM generate_series(1, 40) AS k`;

before(async () => {
  if (!fs.existsSync(SYSTEM_PG15)) return;
  [source, target] = await Promise.all([startCluster({ major: 17, name: 'source' }), startCluster({ major: 'system15', name: 'target' })]);
  await source.query(`CREATE TABLE public.sessions (id bigint PRIMARY KEY, state jsonb NOT NULL, note text)`);
  await source.query(`INSERT INTO public.sessions SELECT g, (${DOC('g')}), 'n' || g FROM generate_series(1, 200) AS g`);
  const made = await runCli(['schema'], env());
  assert.equal(made.code, 0, made.out);
});

after(async () => {
  daemon?.kill('SIGKILL');
  await Promise.all([source?.destroy(), target?.destroy()]);
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { SOURCE_DATABASE_URL: (source as Cluster).url(), TARGET_DATABASE_URL: (target as Cluster).url(), ...extra };
}

/** How the target stores `state` of the rows `where` picks: compression method → rows. */
async function compression(where: string): Promise<Record<string, number>> {
  const rows = await (target as Cluster).query<{ m: string | null; n: number }>(
    `SELECT pg_column_compression(state) AS m, count(*)::int AS n FROM public.sessions WHERE ${where} GROUP BY 1`,
  );
  return Object.fromEntries(rows.map((r) => [r.m ?? 'uncompressed', r.n]));
}

test('copied and streamed documents are stored with lz4; WALBRIDGE_TOAST_LZ4=false keeps the server default', async (t) => {
  if (!source || !target) {
    t.skip(`Debian's PostgreSQL 15 is not installed here (${SYSTEM_PG15}): no target with lz4 to test against`);
    return;
  }
  const s = source;
  const tg = target;
  assert.equal((await tg.query<{ v: string }>(`SELECT current_setting('default_toast_compression') AS v`))[0]?.v, 'pglz', 'the server default is pglz');

  daemon = await startDaemon(env());
  await waitForPhase(tg, 'streaming', { daemon });
  assert.deepEqual(await compression('true'), { lz4: 200 }, 'every copied document is lz4');

  await s.query(`UPDATE public.sessions SET state = (${DOC("'update'")}) WHERE id <= 50`);
  await s.query(`INSERT INTO public.sessions SELECT g, (${DOC('g')}), NULL FROM generate_series(201, 220) AS g`);
  await waitForCatchUp(s, tg);
  assert.deepEqual(await compression('id <= 50 OR id > 200'), { lz4: 70 }, 'every streamed document (update, insert) is lz4');
  await assertSameContent(s.url(), tg.url(), TABLES);
  assert.equal(errorsOf(daemon).includes('error:'), false, errorsOf(daemon));
  await daemon.stop();

  daemon = await startDaemon(env({ WALBRIDGE_TOAST_LZ4: 'false' }));
  await waitForPhase(tg, 'streaming', { daemon });
  await s.query(`UPDATE public.sessions SET state = (${DOC("'again'")}) WHERE id BETWEEN 101 AND 130`);
  await waitForCatchUp(s, tg);
  assert.deepEqual(await compression('id BETWEEN 101 AND 130'), { pglz: 30 }, 'with the setting off, the server default');
  assert.deepEqual(await compression('id <= 50'), { lz4: 50 }, 'rows written before keep theirs');
  await assertSameContent(s.url(), tg.url(), TABLES);
  assert.equal(errorsOf(daemon).includes('error:'), false, errorsOf(daemon));
  await daemon.stop();
  daemon = null;
});
