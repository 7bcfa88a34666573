/**
 * The benchmark's data set: the test fixture's app schema (14 tables + auth.users, with its awkward
 * values from seedAppData at scale 1), plus a bulk generated server-side with generate_series so a
 * few hundred MB take seconds, not minutes. The bulk is shaped like the app's data: most of the
 * bytes are in messages, llm_traces (partitioned, jsonb), agent_sessions (TOASTed jsonb state) and
 * mirt_memories (bytea embeddings), with the smaller tables in proportion.
 *
 * Two tables are added for the benchmark itself, on both sides, empty at copy time:
 *   public.bench_big    — target of the 1,000,000-row transaction
 *   public.bench_marker — one row per "everything before this is applied" marker
 */
import type pg from 'pg';
import type { Cluster } from '../test/harness/cluster.js';
import { APP_TABLES, createAppSchema, seedAppData } from '../test/harness/fixture.js';

export const BENCH_TABLES = ['public.bench_big', 'public.bench_marker'];
/** Every table a migration moves ('schema.table', unquoted; partitioned root, not partitions). */
export const ALL_TABLES = [...APP_TABLES, ...BENCH_TABLES];

const BENCH_DDL = `
CREATE TABLE public.bench_big (
  id bigint PRIMARY KEY,
  n integer NOT NULL,
  label text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.bench_marker (
  id integer PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
`;

/** Row counts of the bulk at scale 1 (about 400 MB on disk with indexes; scale 0.1 about 50 MB). */
export interface BulkShape {
  authUsers: number;
  users: number;
  products: number;
  sessions: number;
  messages: number;
  orders: number;
  crmOrders: number;
  chats: number;
  memories: number;
  summaries: number;
  llmUsage: number;
  llmTraces: number;
  webhooks: number;
  reviews: number;
}

export function bulkShape(scale: number): BulkShape {
  const n = (x: number, min = 20) => Math.max(min, Math.round(x * scale));
  return {
    authUsers: n(15_000),
    users: n(15_000),
    products: n(2_000, 50),
    sessions: n(10_000),
    messages: n(450_000),
    orders: n(60_000),
    crmOrders: n(20_000),
    chats: n(8_000),
    memories: n(25_000),
    summaries: n(15_000),
    llmUsage: n(200_000),
    llmTraces: n(150_000),
    // Kept small on purpose: no primary key (REPLICA IDENTITY FULL), so every replicated DELETE
    // scans it on a native subscriber; the app purges it continuously.
    webhooks: n(5_000),
    reviews: n(5_000),
  };
}

/** Id ranges the pgbench script draws from (it only touches bulk rows). */
export interface BulkRanges {
  userLo: number;
  users: number;
  sessions: number;
  productLo: number;
  products: number;
}

/** Create the app schema plus the bench tables (indexes, keys and FKs included). */
export async function createSchema(c: pg.ClientBase): Promise<void> {
  await createAppSchema(c, { target: true });
  await c.query(BENCH_DDL);
}

/**
 * Build the source: schema, the fixture's awkward rows, then the bulk. FK checks are skipped
 * while loading (the bulk is consistent by construction), then VACUUM (FREEZE, ANALYZE) so that
 * no copy pays for hint bits and every reader sees the same, settled tables.
 */
export async function buildSource(source: Cluster, scale: number, database = 'app'): Promise<BulkRanges> {
  const s = bulkShape(scale);
  return source.withClient(async (c) => {
    await createSchema(c);
    await seedAppData(c, { scale: 1 });
    await c.query("SET session_replication_role = 'replica'");
    await c.query('SELECT setseed(0.4242)');
    const one = async (sql: string): Promise<number> => Number(Object.values((await c.query(sql)).rows[0] ?? { v: 0 })[0] ?? 0);
    const authBase = await one('SELECT count(*) FROM auth.users');
    const userLo = (await one('SELECT COALESCE(max(id), 0) FROM public.users')) + 1;
    const productLo = (await one('SELECT COALESCE(max(id), 0) FROM public.products')) + 1;
    const msgBase = await one('SELECT COALESCE(max(id), 0) FROM public.messages');
    const orderBase = await one('SELECT COALESCE(max(id), 0) FROM public.orders');
    const userHi = userLo + s.users - 1;
    const uid = (expr: string) => `(${userLo} + (${expr}) % ${s.users})`;
    void authBase;

    await c.query(`
      INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at, phone,
                              phone_confirmed_at, raw_app_meta_data, raw_user_meta_data, is_super_admin, banned_until,
                              is_anonymous, created_at, updated_at)
      SELECT '00000000-0000-0000-0000-000000000000', md5('auth' || g)::uuid, 'authenticated', 'authenticated',
             'bulk' || g || '@example.com', '$2a$10$' || md5('pw' || g) || left(md5('x' || g), 21),
             CASE WHEN g % 5 <> 0 THEN timestamptz '2024-01-01' + g * interval '37 seconds' END,
             CASE WHEN g % 3 = 0 THEN '+38' || (500000000 + g) END, NULL,
             '{"provider":"email","providers":["email","telegram"]}',
             jsonb_build_object('full_name', 'User ' || g || ' Ткаченко', 'avatar_url', NULL, 'tg_id', 7000000000 + g),
             CASE WHEN g % 3 = 0 THEN NULL ELSE false END, NULL, g % 10 = 0,
             timestamptz '2023-06-01' + g * interval '41 seconds', timestamptz '2024-06-01' + g * interval '13 seconds'
        FROM generate_series(1, ${s.authUsers}) g`);

    await c.query(`
      INSERT INTO public.users ("externalId", channel, auth_user_id, username, display_name, email, language_code, tags,
                                "zählung", is_blocked, created_at, updated_at)
      SELECT 'tg:bulk:' || g, (ARRAY['telegram','instagram','web'])[1 + g % 3]::public.channel,
             CASE WHEN g <= ${s.authUsers} THEN md5('auth' || g)::uuid END,
             CASE WHEN g % 7 = 0 THEN NULL ELSE 'user_' || g END,
             (ARRAY['Олена','Mykola','Sarah','Дмитро','أحمد','李'])[1 + g % 6] || ' ' || left(md5('n' || g), 6),
             CASE WHEN g % 2 = 0 THEN 'buyer' || g || '@example.com' END,
             (ARRAY['uk','ru','en',NULL])[1 + g % 4],
             CASE WHEN g % 4 = 0 THEN '{vip,repeat}'::text[] ELSE '{}'::text[] END,
             g % 500, g % 50 = 0, timestamptz '2023-01-01' + g * interval '1 hour', timestamptz '2025-01-01' + g * interval '1 minute'
        FROM generate_series(1, ${s.users}) g`);

    await c.query(`
      INSERT INTO public.products (sku, title, description, price, cost_exact, currency, stock, tags, attributes, search,
                                   size_range, available_during, created_at)
      SELECT 'BULK-' || lpad(g::text, 7, '0'), 'Товар ' || g || ' ' || left(md5('p' || g), 10),
             repeat('Опис товару ' || md5('d' || g) || ' ', 1 + g % 5),
             round((random() * 5000)::numeric, 6), (random() * 1000)::numeric, 'UAH', 1000000,
             ARRAY['bulk', 'cat' || g % 20], ('{"color": "c' || g % 12 || '", "size": ' || g % 50 || '}')::json,
             to_tsvector('simple', 'товар product ' || g), int4range(30 + g % 10, 40 + g % 10),
             tstzrange(timestamptz '2024-01-01' + g * interval '1 day', NULL), timestamp '2022-01-01' + g * interval '3 hours'
        FROM generate_series(1, ${s.products}) g`);

    // Half the sessions carry a large, poorly compressible state (TOASTed out of line, ~6 kB).
    await c.query(`
      INSERT INTO public.agent_sessions (id, user_id, checkpoint_ns, state, status, turn_count, created_at, updated_at)
      SELECT 'sess-' || g, ${uid('g - 1')}, CASE WHEN g % 4 = 0 THEN 'subgraph:cart' ELSE '' END,
             jsonb_build_object('v', 1, 'channel_values', jsonb_build_object(
               'messages', (SELECT jsonb_agg(jsonb_build_object('type', CASE WHEN i % 2 = 0 THEN 'human' ELSE 'ai' END,
                                                              'id', md5(g || ':' || i)::uuid,
                                                              'content', md5(i || 'a' || g) || md5(i || 'b' || g) || md5(i || 'c' || g) || ' ' || md5(i || 'd' || g)))
                              FROM generate_series(1, CASE WHEN g % 2 = 0 THEN 40 ELSE 3 END) i),
               'cart', jsonb_build_array(jsonb_build_object('sku', 'BULK-' || g % 100, 'qty', 1 + g % 3)),
               'stage', (ARRAY['greeting','browsing','checkout','support'])[1 + g % 4]),
               'nested', '{"deep": {"deeper": [null, true, 1e-7]}}'::jsonb),
             (ARRAY['active','idle','closed'])[1 + g % 3], g % 300,
             timestamptz '2024-01-01' + g * interval '7 minutes', timestamptz '2025-01-01' + g * interval '1 minute'
        FROM generate_series(1, ${s.sessions}) g`);

    // Messages: the biggest table. Explicit ids so replies can point at the message before them.
    await c.query(`
      INSERT INTO public.messages (id, user_id, session_id, role, content, telegram_message_id, reply_to, metadata, created_at)
      SELECT ${msgBase} + g, ${uid('(g % ' + s.sessions + ')')}, 'sess-' || (1 + g % ${s.sessions}),
             (ARRAY['user','assistant','assistant','tool'])[1 + g % 4]::public.message_role,
             CASE WHEN g % 10 = 0 THEN 'Привіт! Є ця сукня в розмірі M? 👗 ' ELSE '' END ||
               left(repeat(md5(g::text) || ' ' || md5((g * 7)::text) || ' ', 1 + g % 6), 30 + ((g::int8 * 7919) % 330)::int),
             CASE WHEN g % 10 <> 0 THEN 9007199254740993 + g END,
             CASE WHEN g % 2 = 0 AND g > 1 THEN ${msgBase} + g - 1 END,
             CASE WHEN g % 2 = 1 THEN jsonb_build_object('tg', jsonb_build_object('chat', 100000 + g % 5000, 'thread', g % 9), 'lang', 'uk') END,
             timestamptz '2024-01-01' + g * interval '23 seconds'
        FROM generate_series(1, ${s.messages}) g`);
    await c.query(`SELECT setval(pg_get_serial_sequence('public.messages', 'id'), ${msgBase + s.messages})`);

    await c.query(`
      INSERT INTO public.orders (id, public_id, user_id, status, status_history, total, currency, delivery_date,
                                 delivery_address, note, created_at, updated_at)
      SELECT ${orderBase} + g, md5('order' || g)::uuid, ${uid('g * 13')},
             (ARRAY['new','confirmed','paid','shipped','delivered','cancelled'])[1 + g % 6]::public.order_status,
             (ARRAY['{new}','{new,confirmed}','{new,confirmed,paid}','{new,confirmed,paid,shipped}',
                    '{new,confirmed,paid,shipped,delivered}','{new,cancelled}'])[1 + g % 6]::public.order_status[],
             round((random() * 10000)::numeric, 6), 'UAH', date '2024-01-01' + g % 700,
             jsonb_build_object('city', (ARRAY['Київ','Львів','Одеса','Харків'])[1 + g % 4], 'np_branch', g % 400,
                                'comment', 'Доставка ' || left(md5('c' || g), 12)),
             CASE WHEN g % 4 = 0 THEN NULL WHEN g % 4 = 1 THEN '' ELSE 'note ' || md5('o' || g) END,
             timestamptz '2024-01-01' + g * interval '5 minutes', timestamptz '2024-01-02' + g * interval '5 minutes'
        FROM generate_series(1, ${s.orders}) g`);
    await c.query(`SELECT setval(pg_get_serial_sequence('public.orders', 'id'), ${orderBase + s.orders})`);

    await c.query(`
      INSERT INTO public.order_items (order_id, line_no, product_id, quantity, unit_price, options)
      SELECT ${orderBase} + g, l, ${productLo} + (g * 31 + l) % ${s.products}, 1 + (g + l) % 3,
             round((random() * 3000)::numeric, 6),
             CASE WHEN (g + l) % 2 = 0 THEN jsonb_build_object('size', (ARRAY['S','M','L','XL'])[1 + g % 4], 'gift', g % 5 = 0) END
        FROM generate_series(1, ${s.orders}) g, generate_series(1, 2) l`);

    await c.query(`
      INSERT INTO public.crm_orders (crm_id, order_id, crm_status, amount, payload, raw_webhook, synced_at, sync_error)
      SELECT 1000000000000 + g, ${orderBase} + g, (ARRAY['new','processing','sent','done','returned'])[1 + g % 5],
             round((random() * 10000)::numeric, 6),
             jsonb_build_object('id', 1000000000000 + g, 'items', 1 + g % 3, 'customer', jsonb_build_object('name', 'Клієнт ' || g)),
             ('{"event":  "order.updated", "id": ' || g || ', "raw": "' || md5('w' || g) || '"}')::json,
             timestamptz '2024-03-01' + g * interval '3 minutes',
             CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE 'HTTP 502' END
        FROM generate_series(1, ${s.crmOrders}) g`);

    await c.query(`
      INSERT INTO public.sitniks_chat_mappings (chat_id, "sitniksChatId", user_id, channel, manager_name, created_at, last_synced_at)
      SELECT -2000000000000 - g, 'bulk_' || g, ${uid('g * 17')}, (ARRAY['telegram','instagram','web'])[1 + g % 3]::public.channel,
             CASE WHEN g % 3 <> 0 THEN 'Менеджер ' || g % 40 END, timestamp '2024-01-01 00:00:00.123456' + g * interval '1 minute',
             timestamptz '2025-01-01' + g * interval '1 minute'
        FROM generate_series(1, ${s.chats}) g`);

    await c.query(`
      INSERT INTO public.mirt_profiles (user_id, persona, traits, preferred_channels, updated_at)
      SELECT ${userLo} + g - 1, jsonb_build_object('style', (ARRAY['casual','formal','sport'])[1 + g % 3], 'sizes', jsonb_build_object('top', 'M', 'shoe', 35 + g % 12)),
             ARRAY['trait' || g % 9, 'loyal'], '{telegram}'::public.channel[], timestamptz '2025-01-01' + g * interval '1 minute'
        FROM generate_series(1, LEAST(${s.sessions}, ${s.users})) g`);

    // 1 kB embeddings (256 float32), incompressible.
    await c.query(`
      INSERT INTO public.mirt_memories (id, user_id, kind, content, embedding, importance, score, valid_during, created_at, updated_at)
      SELECT md5('mem' || g)::uuid, ${uid('g * 7')}, (ARRAY['preference','fact','episode'])[1 + g % 3],
             'Пам''ятає: ' || md5('m' || g) || ' ' || md5('n' || g),
             (SELECT decode(string_agg(md5(g || '.' || i), ''), 'hex') FROM generate_series(1, 64) i),
             (g % 1000) / 1000.0, g * 0.37, tstzrange(timestamptz '2024-01-01' + g * interval '1 hour', NULL),
             timestamptz '2024-01-01' + g * interval '1 minute', timestamptz '2024-06-01' + g * interval '1 minute'
        FROM generate_series(1, ${s.memories}) g`);

    await c.query(`
      INSERT INTO public.mirt_memory_summaries (user_id, period, message_ids, summary, summary_tsv, token_count, created_at)
      SELECT ${uid('g * 3')}, daterange(date '2024-01-01' + g % 600, date '2024-01-02' + g % 600),
             int4range(g, g + 50), 'Підсумок розмови ' || md5('s' || g) || ' про доставку і розміри',
             to_tsvector('simple', 'підсумок розмови доставка ' || g), 100 + g % 1500, timestamptz '2024-01-01' + g * interval '10 minutes'
        FROM generate_series(1, ${s.summaries}) g`);

    await c.query(`
      INSERT INTO public.llm_usage (user_id, request_id, model, prompt_tokens, completion_tokens, cost_usd, cost_exact, usage_day, created_at)
      SELECT CASE WHEN g % 10 <> 0 THEN ${uid('g * 11')} END, md5('req' || g)::uuid,
             (ARRAY['gpt-4o-mini','gpt-4.1','claude-3-5-sonnet','llama-3-70b'])[1 + g % 4],
             100 + (g * 37) % 100000, 1 + (g * 13) % 4000, round((random() * 2)::numeric, 6),
             (random() * 2)::numeric * 1000000000000000000, date '2024-01-01' + g % 700,
             timestamptz '2024-01-01' + g * interval '90 seconds'
        FROM generate_series(1, ${s.llmUsage}) g`);

    await c.query(`
      INSERT INTO public.llm_traces (created_at, trace_id, span_name, input, output, latency_ms, error)
      SELECT timestamptz '2023-07-01' + g * (interval '4 years' / ${s.llmTraces}), md5('tr' || g)::uuid,
             (ARRAY['agent.plan','tool.search_products','llm.call','crm.sync'])[1 + g % 4],
             jsonb_build_object('prompt', 'Користувач питає: ' || md5('q' || g) || ' ' || md5('r' || g) || ' ' || md5('s' || g),
                                'temperature', 0.2, 'tools', jsonb_build_array('search_products', 'cart')),
             CASE WHEN g % 5 <> 0 THEN jsonb_build_object('text', repeat(md5('o' || g) || ' ', 1 + g % 8), 'finish', 'stop') END,
             (g::int8 * 7919) % 5000 + 0.25, CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE 'rate_limited' END
        FROM generate_series(1, ${s.llmTraces}) g`);

    await c.query(`
      INSERT INTO public.webhook_dedupe (source, event_id, payload_sha256, received_at)
      SELECT (ARRAY['telegram','instagram','sitniks'])[1 + g % 3], 'evt_bulk_' || g, decode(md5('h' || g) || md5('i' || g), 'hex'),
             timestamptz '2024-01-01' + g * interval '1 second'
        FROM generate_series(1, ${s.webhooks}) g`);

    await c.query(`
      INSERT INTO public."Kundenbewertungen Ü" (product_id, "Sterne", "Kommentar", "erstelltAm")
      SELECT ${productLo} + g % ${s.products}, 1 + g % 5, CASE WHEN g % 6 = 0 THEN NULL ELSE 'Sehr gut, schön ' || g END,
             timestamp '2024-01-01' + g * interval '1 hour'
        FROM generate_series(1, ${s.reviews}) g`);

    await c.query("SET session_replication_role = 'origin'");
    await c.query('VACUUM (FREEZE, ANALYZE)');
    await c.query('CHECKPOINT');
    void userHi;
    return { userLo, users: s.users, sessions: s.sessions, productLo, products: s.products };
  }, database);
}

/** A fresh, empty database on the target with the tables (and their indexes) pre-created. */
export async function createTargetDb(target: Cluster, name: string): Promise<void> {
  await target.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, [], 'postgres');
  await target.query(`CREATE DATABASE ${name}`, [], 'postgres');
  await target.withClient((c) => createSchema(c), name);
}

/** count(*) of every table, keyed 'schema.table'. */
export async function rowCounts(cluster: Cluster, database: string, tables = ALL_TABLES): Promise<Record<string, number>> {
  return cluster.withClient(async (c) => {
    const out: Record<string, number> = {};
    for (const t of tables) {
      const dot = t.indexOf('.');
      const q = `"${t.slice(0, dot)}"."${t.slice(dot + 1).replace(/"/g, '""')}"`;
      const r = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${q}`);
      out[t] = Number(r.rows[0]?.n ?? 0);
    }
    return out;
  }, database);
}

/** Tables whose counts differ, as 'table: source N, target M' lines (empty when equal). */
export function countDiffs(src: Record<string, number>, tgt: Record<string, number>): string[] {
  return Object.keys(src)
    .filter((t) => src[t] !== tgt[t])
    .map((t) => `${t}: source ${src[t]}, target ${tgt[t] ?? 'missing'}`);
}

export async function databaseBytes(cluster: Cluster, database: string): Promise<number> {
  const [r] = await cluster.query<{ b: string }>('SELECT pg_database_size(current_database())::text AS b', [], database);
  return Number(r?.b ?? 0);
}
