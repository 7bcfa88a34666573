/**
 * A source database built the way Supabase builds one: the platform's roles, schemas, extensions,
 * publication, event trigger and default privileges as supabase/postgres's init scripts and
 * GoTrue's migrations create them, then an app schema in `public` created by a role that is not a
 * superuser (Supabase's `postgres`, here `mig`), as a Supabase user's migrations would. For tests
 * of `walbridge schema`: what the app's tables need must come across, the platform must not.
 *
 * Run as the cluster's superuser `postgres` (on Supabase: supabase_admin) on a cluster with
 * wal_level=logical. Works on 15 and 17 alike.
 *
 * The platform (none of it should land on a target):
 * | object                                             | what it is on Supabase                                                      |
 * |----------------------------------------------------|-----------------------------------------------------------------------------|
 * | roles anon, authenticated, service_role (NOLOGIN)  | PostgREST's API roles; policies name them. service_role has BYPASSRLS       |
 * | role authenticator (LOGIN NOINHERIT)               | PostgREST's login; member of the three API roles (and of supabase_admin)   |
 * | role supabase_admin (SUPERUSER)                    | the platform's superuser                                                    |
 * | roles supabase_auth_admin, supabase_storage_admin, supabase_realtime_admin, supabase_functions_admin | owners of auth, storage, realtime, supabase_functions |
 * | roles supabase_replication_admin, supabase_read_only_user, dashboard_user, pgbouncer | the platform's other logins             |
 * | role settings: anon/authenticated statement_timeout | supabase/postgres sets them                                                |
 * | schema extensions: uuid-ossp, pgcrypto, citext      | extensions live there (WITH SCHEMA extensions), USAGE granted to the API roles and mig |
 * | extensions.grant_pg_graphql_access() + event trigger issue_pg_graphql_access | stub of Supabase's (ddl_command_end on CREATE FUNCTION): fires during mig's migrations and does nothing |
 * | schema auth (owner supabase_auth_admin): auth.users | GoTrue's users table (reduced to the columns apps read)                   |
 * | auth.uid(), auth.role(), auth.email(), auth.jwt()  | GoTrue's functions, exactly as its latest migration defines them (SQL, STABLE, search_path ''); EXECUTE to mig and the API roles. The app uses uid() and jwt() |
 * | schema supabase_functions: hooks, http_request()   | Database Webhooks: the trigger function (a stub that records the call in hooks instead of posting through pg_net) |
 * | schema storage: storage.buckets                    | Storage's table                                                             |
 * | schema realtime: realtime.schema_migrations        | Realtime's table                                                            |
 * | publication supabase_realtime FOR TABLE public.notes, public.profiles | Realtime's publication, tables added by the user           |
 * | ALTER DEFAULT PRIVILEGES FOR ROLE mig IN SCHEMA public GRANT ALL ON TABLES/SEQUENCES/FUNCTIONS TO anon, authenticated, service_role | so every app table carries grants to the API roles |
 * | mig's search_path "$user", public, extensions       | as Supabase sets postgres's: `~` on a citext then resolves to citext's operator |
 *
 * The app (owned by mig; SUPABASE_APP_TABLES; every one of these must come across exactly):
 * | case                                                          | carried by                                                  |
 * |---------------------------------------------------------------|-------------------------------------------------------------|
 * | enum                                                          | public.plan (profiles.plan)                                 |
 * | domain over an extension type, with a CHECK using its operator | public.handle AS extensions.citext (teams.slug)            |
 * | composite type used by a column, with a comment               | public.money_amount (invoices.total_due)                    |
 * | extension type column, UNIQUE                                 | profiles.username extensions.citext                         |
 * | FK to auth.users ON DELETE CASCADE (cannot come: auth.users is the platform's) | profiles.profiles_id_fkey                  |
 * | uuid default from an extension                                | teams.id DEFAULT extensions.uuid_generate_v4()              |
 * | default from pgcrypto                                         | teams.api_key DEFAULT encode(extensions.gen_random_bytes(8), 'hex') |
 * | GENERATED ALWAYS AS IDENTITY                                  | notes.id                                                    |
 * | serial / bigserial                                            | products.id / invoices.id, events.id                        |
 * | STORED generated column                                       | invoices.gross                                              |
 * | standalone sequence used by a default; one nothing uses       | public.invoice_no START 1000 (invoices.number); public.ticket_counter |
 * | default calling auth.uid()                                    | notes.user_id                                               |
 * | a dropped column (attnums differ from a fresh table's)        | notes (legacy_color)                                        |
 * | non-default collation                                         | products.sku COLLATE "C"                                    |
 * | the app's own collation (ICU, nondeterministic, commented), on a column and in an index | public.case_insensitive: teams.name, products_name_ci_idx |
 * | partitioned table: RANGE on a date, 2 partitions + DEFAULT, PK with the key, index on the parent, FK, forced RLS | events, events_2025, events_2026, events_default |
 * | FKs among public tables, CASCADE and SET NULL                 | teams→profiles, notes→profiles/teams, invoices→profiles, events→profiles |
 * | CHECK constraints                                             | profiles.website, products.price_cents, notes.title, invoices.net |
 * | partial unique index; expression index                        | notes_one_pinned_per_user (WHERE pinned); teams_name_lower_idx (lower(name)) |
 * | app trigger function + BEFORE UPDATE triggers                 | public.set_updated_at(): profiles_set_updated_at, notes_set_updated_at |
 * | webhook trigger (cannot come: supabase_functions is the platform's) | invoices_created_webhook AFTER INSERT → supabase_functions.http_request(…) |
 * | trigger on auth.users calling an app function (SECURITY DEFINER) | on_auth_user_created → public.handle_new_user() (cannot come, and the function is not needed) |
 * | RLS + policies TO authenticated using auth.uid()              | profiles (FOR ALL, USING + WITH CHECK), notes (SELECT, INSERT), invoices (SELECT), events (SELECT, FORCE) |
 * | policy TO public USING (true); policy using auth.jwt()        | products                                                    |
 * | comments on a table, a column, a type                         | profiles, invoices.number, money_amount                    |
 * | views (SUPABASE_VIEWS): security_invoker, commented (and a column), a view over a view, one calling auth.uid() | team_directory, pinned_by_team, my_notes |
 * | a view over auth.users (left out)                             | profile_emails                                              |
 * | materialized view with a unique index and a comment (made empty, filled by cutover) | invoice_totals                        |
 * | a schema of views only, over public's tables                  | api.products (made when WALBRIDGE_SCHEMAS names api)        |
 *
 * Seed: three auth users with known ids (SUPABASE_USERS; their profiles made by
 * on_auth_user_created, as on sign-up), notes owned by each (alice 3, bob 2, carol 1), teams,
 * products, invoices (which fire the webhook), events in every partition.
 */
import pg from 'pg';
import type { Cluster } from './cluster.js';

/** The migrating role: Supabase's `postgres` (LOGIN NOSUPERUSER REPLICATION CREATEROLE BYPASSRLS). */
export const SUPABASE_MIG = { user: 'mig', password: 'mig-pw-supabase-3' } as const;

/** The app's tables (schema.table, unquoted), parents before children; the partitioned root, not its partitions. */
export const SUPABASE_APP_TABLES: string[] = ['public.profiles', 'public.teams', 'public.products', 'public.notes', 'public.invoices', 'public.events'];

/** The app's views that walbridge schema makes, each after the views it reads. */
export const SUPABASE_VIEWS: string[] = ['public.team_directory', 'public.pinned_by_team', 'public.my_notes'];

/** Its materialized view: made empty, filled by cutover. */
export const SUPABASE_MATVIEW = 'public.invoice_totals';

/** The view it leaves out: over auth.users, the platform's. */
export const SUPABASE_VIEW_LEFT_OUT = 'public.profile_emails';

/** The partitions of public.events. */
export const SUPABASE_PARTITIONS: string[] = ['public.events_2025', 'public.events_2026', 'public.events_default'];

/** Known auth.users ids (and so profiles ids). */
export const SUPABASE_USERS = {
  alice: 'a11ce000-0000-4000-8000-00000000000a',
  bob: 'b0b00000-0000-4000-8000-00000000000b',
  carol: 'ca401000-0000-4000-8000-00000000000c',
} as const;

/** Notes seeded per user. */
export const SUPABASE_NOTES_PER_USER = { alice: 3, bob: 2, carol: 1 } as const;

/** Objects on the app's tables (and on auth.users) that depend on the platform, as `schema.table.object`. */
export const SUPABASE_PLATFORM_DEPENDENT = {
  /** FOREIGN KEY (id) REFERENCES auth.users(id) ON DELETE CASCADE on profiles. */
  profilesAuthFk: 'public.profiles.profiles_id_fkey',
  /** AFTER INSERT ON public.invoices … EXECUTE FUNCTION supabase_functions.http_request(…). */
  webhookTrigger: 'public.invoices.invoices_created_webhook',
  /** AFTER INSERT ON auth.users … EXECUTE FUNCTION public.handle_new_user(). */
  authUserTrigger: 'auth.users.on_auth_user_created',
} as const;

/** The platform's roles (none is the app's; only anon, authenticated, service_role may be needed by policies). */
export const SUPABASE_PLATFORM_ROLES = [
  'supabase_admin',
  'supabase_auth_admin',
  'supabase_storage_admin',
  'supabase_realtime_admin',
  'supabase_replication_admin',
  'supabase_functions_admin',
  'supabase_read_only_user',
  'authenticator',
  'dashboard_user',
  'pgbouncer',
];
export const SUPABASE_API_ROLES = ['anon', 'authenticated', 'service_role'];

// supabase/postgres migrations/db/init-scripts (00000000000000-initial-schema.sql, post-setup),
// with the roles its docker image creates before them.
const PLATFORM_ROLES = `
CREATE ROLE supabase_admin LOGIN SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;
CREATE ROLE supabase_replication_admin LOGIN REPLICATION;
CREATE ROLE supabase_read_only_user LOGIN BYPASSRLS;
GRANT pg_read_all_data TO supabase_read_only_user;
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD 'authenticator-pw';
GRANT anon, authenticated, service_role TO authenticator;
GRANT supabase_admin TO authenticator;
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE NOREPLICATION;
CREATE ROLE supabase_storage_admin LOGIN NOINHERIT CREATEROLE NOREPLICATION;
CREATE ROLE supabase_realtime_admin NOLOGIN NOINHERIT NOREPLICATION;
CREATE ROLE supabase_functions_admin LOGIN NOINHERIT CREATEROLE NOREPLICATION;
CREATE ROLE dashboard_user NOSUPERUSER CREATEDB CREATEROLE REPLICATION;
CREATE ROLE pgbouncer LOGIN;
ALTER ROLE anon SET statement_timeout = '3s';
ALTER ROLE authenticated SET statement_timeout = '8s';

-- Supabase's postgres: the role the user's migrations run as.
CREATE ROLE ${SUPABASE_MIG.user} LOGIN NOSUPERUSER REPLICATION CREATEROLE BYPASSRLS PASSWORD '${SUPABASE_MIG.password}';
ALTER ROLE ${SUPABASE_MIG.user} SET search_path TO "$user", public, extensions;
GRANT CREATE ON DATABASE app TO ${SUPABASE_MIG.user};
GRANT CREATE ON SCHEMA public TO ${SUPABASE_MIG.user};
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
`;

const PLATFORM_EXTENSIONS = `
CREATE SCHEMA extensions AUTHORIZATION supabase_admin;
CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION pgcrypto WITH SCHEMA extensions;
CREATE EXTENSION citext WITH SCHEMA extensions;
GRANT USAGE ON SCHEMA extensions TO ${SUPABASE_MIG.user}, anon, authenticated, service_role;

-- Supabase's is the same shape: on CREATE FUNCTION it looks for graphql.resolve and, when
-- pg_graphql was just installed, grants the API roles access to it. This stub only looks.
CREATE FUNCTION extensions.grant_pg_graphql_access() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
  func_is_graphql_resolve bool;
BEGIN
  func_is_graphql_resolve := EXISTS (
    SELECT 1 FROM pg_event_trigger_ddl_commands() AS ev
      JOIN pg_catalog.pg_proc AS p ON ev.objid = p.oid
     WHERE p.proname = 'resolve' AND p.pronamespace::regnamespace::text = 'graphql');
  IF func_is_graphql_resolve THEN
    RAISE NOTICE 'pg_graphql installed: Supabase would grant the API roles access here';
  END IF;
END;
$$;
COMMENT ON FUNCTION extensions.grant_pg_graphql_access() IS 'Grants access to pg_graphql';
CREATE EVENT TRIGGER issue_pg_graphql_access ON ddl_command_end WHEN TAG IN ('CREATE FUNCTION')
  EXECUTE FUNCTION extensions.grant_pg_graphql_access();

CREATE PUBLICATION supabase_realtime;

ALTER DEFAULT PRIVILEGES FOR ROLE ${SUPABASE_MIG.user} IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE ${SUPABASE_MIG.user} IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE ${SUPABASE_MIG.user} IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
`;

// GoTrue (supabase/auth): auth.users as its migrations leave it (the columns apps read), and its
// functions as migrations/20240624145325_recreate_auth_functions.up.sql defines them.
const PLATFORM_AUTH = `
CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
SET ROLE supabase_auth_admin;
CREATE TABLE auth.users (
  instance_id uuid,
  id uuid NOT NULL,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz,
  updated_at timestamptz,
  is_anonymous boolean NOT NULL DEFAULT false,
  CONSTRAINT users_pkey PRIMARY KEY (id)
);
COMMENT ON TABLE auth.users IS 'Auth: Stores user login data within a secure schema.';

create or replace function auth.uid()
    returns uuid
    set search_path to ''
as $func$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.sub', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$func$ language sql stable;

create or replace function auth.role()
    returns text
    set search_path to ''
as $func$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.role', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$func$ language sql stable;

create or replace function auth.email()
    returns text
    set search_path to ''
as $func$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.email', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
    )::text
$func$ language sql stable;

create or replace function auth.jwt()
    returns jsonb
    set search_path to ''
as $func$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim', true), ''),
      nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$func$ language sql stable;

comment on function auth.uid() is 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
comment on function auth.role() is 'Deprecated. Use auth.jwt() -> ''role'' instead.';
comment on function auth.email() is 'Deprecated. Use auth.jwt() -> ''email'' instead.';
RESET ROLE;

GRANT USAGE ON SCHEMA auth TO ${SUPABASE_MIG.user}, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.email(), auth.jwt() TO ${SUPABASE_MIG.user}, anon, authenticated, service_role;
-- So that the user's migrations can reference auth.users and put a trigger on it.
GRANT SELECT, REFERENCES, TRIGGER ON auth.users TO ${SUPABASE_MIG.user};
`;

const PLATFORM_OTHERS = `
CREATE SCHEMA supabase_functions AUTHORIZATION supabase_functions_admin;
GRANT USAGE ON SCHEMA supabase_functions TO ${SUPABASE_MIG.user}, anon, authenticated, service_role;
SET ROLE supabase_functions_admin;
CREATE TABLE supabase_functions.hooks (
  id bigserial PRIMARY KEY,
  hook_table_id integer NOT NULL,
  hook_name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  request_id bigint
);
-- Supabase's posts the row through pg_net to TG_ARGV[0] (url, method, headers, params, timeout)
-- and logs the request in hooks; the stub logs the call only.
CREATE FUNCTION supabase_functions.http_request() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = supabase_functions AS $$
BEGIN
  IF TG_NARGS < 5 THEN
    RAISE EXCEPTION 'supabase_functions.http_request: url, method, headers, params and timeout are required';
  END IF;
  INSERT INTO supabase_functions.hooks (hook_table_id, hook_name) VALUES (TG_RELID, TG_NAME);
  RETURN NEW;
END;
$$;
RESET ROLE;
GRANT EXECUTE ON FUNCTION supabase_functions.http_request() TO ${SUPABASE_MIG.user}, anon, authenticated, service_role;

CREATE SCHEMA storage AUTHORIZATION supabase_storage_admin;
SET ROLE supabase_storage_admin;
CREATE TABLE storage.buckets (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE,
  owner uuid,
  public boolean DEFAULT false,
  created_at timestamptz DEFAULT now()
);
RESET ROLE;

CREATE SCHEMA realtime AUTHORIZATION supabase_realtime_admin;
SET ROLE supabase_realtime_admin;
CREATE TABLE realtime.schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp(0));
RESET ROLE;
`;

// The user's migrations, run as mig (whose search_path includes extensions, as on Supabase).
const APP_SCHEMA = `
-- Names compared ignoring case, as apps make for names and e-mail addresses.
CREATE COLLATION public.case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
COMMENT ON COLLATION public.case_insensitive IS 'Compares ignoring case';
CREATE TYPE public.plan AS ENUM ('free', 'pro', 'team');
CREATE DOMAIN public.handle AS extensions.citext CHECK (VALUE ~ '^[a-z0-9_]{3,24}$');
CREATE TYPE public.money_amount AS (amount numeric(12,2), currency char(3));
COMMENT ON TYPE public.money_amount IS 'An amount with its ISO 4217 currency';

CREATE SEQUENCE public.invoice_no START 1000;
CREATE SEQUENCE public.ticket_counter;

CREATE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;

CREATE TABLE public.profiles (
  id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  username extensions.citext UNIQUE,
  full_name text,
  plan public.plan NOT NULL DEFAULT 'free',
  website text CHECK (website IS NULL OR website ~ '^https?://'),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.profiles IS 'One row per auth user: the public part of the account';
CREATE TRIGGER profiles_set_updated_at BEFORE UPDATE ON public.profiles FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users manage their own profile" ON public.profiles FOR ALL TO authenticated
  USING (auth.uid() = id) WITH CHECK (auth.uid() = id);

CREATE TABLE public.teams (
  id uuid DEFAULT extensions.uuid_generate_v4() PRIMARY KEY,
  slug public.handle NOT NULL UNIQUE,
  name text COLLATE public.case_insensitive NOT NULL,
  owner_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  api_key text NOT NULL DEFAULT encode(extensions.gen_random_bytes(8), 'hex'),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX teams_name_lower_idx ON public.teams (lower(name));

CREATE TABLE public.products (
  id serial PRIMARY KEY,
  sku text COLLATE "C" NOT NULL UNIQUE,
  name text NOT NULL,
  price_cents integer NOT NULL CHECK (price_cents >= 0),
  active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_name_ci_idx ON public.products (name COLLATE public.case_insensitive);
ALTER TABLE public.products ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Products are viewable by everyone" ON public.products FOR SELECT USING (true);
CREATE POLICY "Admins add products" ON public.products FOR INSERT TO authenticated
  WITH CHECK ((auth.jwt() ->> 'user_role') = 'admin');

CREATE TABLE public.notes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id uuid NOT NULL DEFAULT auth.uid() REFERENCES public.profiles (id) ON DELETE CASCADE,
  team_id uuid REFERENCES public.teams (id) ON DELETE SET NULL,
  legacy_color text,
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  body text,
  pinned boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.notes DROP COLUMN legacy_color;
CREATE UNIQUE INDEX notes_one_pinned_per_user ON public.notes (user_id) WHERE pinned;
CREATE TRIGGER notes_set_updated_at BEFORE UPDATE ON public.notes FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users read their own notes" ON public.notes FOR SELECT TO authenticated USING (auth.uid() = user_id);
CREATE POLICY "Users write their own notes" ON public.notes FOR INSERT TO authenticated WITH CHECK (auth.uid() = user_id);

CREATE TABLE public.invoices (
  id bigserial PRIMARY KEY,
  number bigint NOT NULL DEFAULT nextval('public.invoice_no') UNIQUE,
  user_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  net numeric(12,2) NOT NULL CHECK (net >= 0),
  vat_rate numeric(4,3) NOT NULL DEFAULT 0.2,
  gross numeric(12,2) GENERATED ALWAYS AS (round(net * (1 + vat_rate), 2)) STORED,
  total_due public.money_amount,
  issued_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN public.invoices.number IS 'The number on the invoice, from public.invoice_no';
-- A Database Webhook, as the dashboard creates it.
CREATE TRIGGER invoices_created_webhook AFTER INSERT ON public.invoices FOR EACH ROW
  EXECUTE FUNCTION supabase_functions.http_request('https://hooks.example.com/invoice-created', 'POST', '{"Content-Type":"application/json"}', '{}', '5000');
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users read their own invoices" ON public.invoices FOR SELECT TO authenticated USING (auth.uid() = user_id);

CREATE TABLE public.events (
  id bigserial,
  occurred_on date NOT NULL,
  user_id uuid REFERENCES public.profiles (id) ON DELETE CASCADE,
  kind text NOT NULL,
  payload jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (id, occurred_on)
) PARTITION BY RANGE (occurred_on);
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
CREATE INDEX events_user_id_idx ON public.events (user_id);
ALTER TABLE public.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.events FORCE ROW LEVEL SECURITY;
CREATE POLICY "Users read their own events" ON public.events FOR SELECT TO authenticated USING (auth.uid() = user_id);

-- Views, as an app serves them through PostgREST: one over two tables (security_invoker,
-- commented, a commented column), one over it, one calling auth.uid(), one reading auth.users
-- (the platform's), and a materialized view with a unique index (for REFRESH ... CONCURRENTLY).
CREATE VIEW public.team_directory WITH (security_invoker = true) AS
  SELECT t.slug, t.name, p.username AS owner, p.plan
    FROM public.teams t JOIN public.profiles p ON p.id = t.owner_id;
COMMENT ON VIEW public.team_directory IS 'Teams and their owners, for the directory page';
COMMENT ON COLUMN public.team_directory.owner IS 'The owner''s username';
CREATE VIEW public.pinned_by_team AS
  SELECT d.slug, d.owner, n.title
    FROM public.team_directory d JOIN public.teams t ON t.slug = d.slug JOIN public.notes n ON n.team_id = t.id
   WHERE n.pinned;
CREATE VIEW public.my_notes WITH (security_invoker = true) AS
  SELECT id, title, pinned, created_at FROM public.notes WHERE user_id = auth.uid();
CREATE VIEW public.profile_emails AS
  SELECT p.id, p.username, u.email FROM public.profiles p JOIN auth.users u ON u.id = p.id;
CREATE MATERIALIZED VIEW public.invoice_totals AS
  SELECT user_id, count(*) AS invoices, sum(gross) AS gross FROM public.invoices GROUP BY user_id;
CREATE UNIQUE INDEX invoice_totals_user_id_key ON public.invoice_totals (user_id);
COMMENT ON MATERIALIZED VIEW public.invoice_totals IS 'Refreshed by the app every night';
-- A schema of views only, as PostgREST serves one (db-schemas = api): made when selected.
CREATE SCHEMA api;
CREATE VIEW api.products AS SELECT sku, name, price_cents FROM public.products WHERE active;

-- Supabase's documented way to make a profile on sign-up.
CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO public.profiles (id, username, full_name)
  VALUES (NEW.id, NEW.raw_user_meta_data ->> 'username', NEW.raw_user_meta_data ->> 'full_name');
  RETURN NEW;
END;
$$;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
`;

/** Sign-ups, as GoTrue makes them (its role inserts; the app's trigger makes the profiles). */
function signUpSql(users: { id: string; email: string; username: string; fullName: string }[]): string {
  const values = users
    .map(
      (u) =>
        `('00000000-0000-0000-0000-000000000000', '${u.id}', 'authenticated', 'authenticated', '${u.email}', '', now(), '{"provider":"email","providers":["email"]}', ` +
        `'${JSON.stringify({ username: u.username, full_name: u.fullName })}', now(), now())`,
    )
    .join(',\n  ');
  return `SET ROLE supabase_auth_admin;
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at, raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
VALUES
  ${values};
RESET ROLE;`;
}

const { alice, bob, carol } = SUPABASE_USERS;

const APP_SEED = `
UPDATE public.profiles SET plan = 'pro', website = 'https://alice.example' WHERE id = '${alice}';
UPDATE public.profiles SET plan = 'team' WHERE id = '${bob}';

INSERT INTO public.teams (slug, name, owner_id, created_at) VALUES
  ('Alice_Team', 'Alice''s Team', '${alice}', '2025-01-16 09:00:00+00'),
  ('bobs', 'Bob & Co', '${bob}', '2025-01-17 09:00:00+00');

INSERT INTO public.products (sku, name, price_cents, created_at) VALUES
  ('SKU-001', 'Notebook', 1299, '2025-01-10 08:00:00+00'),
  ('sku-002', 'Pen', 199, '2025-01-10 08:00:00+00'),
  ('SKU-003', 'Sticker pack', 450, '2025-01-11 08:00:00+00');

INSERT INTO public.notes (user_id, team_id, title, body, pinned, created_at, updated_at) VALUES
  ('${alice}', (SELECT id FROM public.teams WHERE slug = 'alice_team'), 'Groceries', 'milk, eggs', true, '2025-02-01 10:00:00+00', '2025-02-01 10:00:00+00'),
  ('${alice}', NULL, 'Ideas', NULL, false, '2025-02-02 10:00:00+00', '2025-02-02 10:00:00+00'),
  ('${alice}', NULL, 'Книги 📚', 'ünïcödé', false, '2025-02-03 10:00:00+00', '2025-02-03 10:00:00+00'),
  ('${bob}', (SELECT id FROM public.teams WHERE slug = 'bobs'), 'Standup', 'yesterday, today', true, '2025-02-04 10:00:00+00', '2025-02-04 10:00:00+00'),
  ('${bob}', NULL, 'Todo', '', false, '2025-02-05 10:00:00+00', '2025-02-05 10:00:00+00'),
  ('${carol}', NULL, 'Hello', 'first note', false, '2025-02-06 10:00:00+00', '2025-02-06 10:00:00+00');

INSERT INTO public.invoices (user_id, net, total_due, issued_at) VALUES
  ('${alice}', 100.00, ROW(120.00, 'EUR'), '2025-03-01 12:00:00+00'),
  ('${alice}', 12.50, ROW(15.00, 'EUR'), '2025-03-02 12:00:00+00'),
  ('${bob}', 49.90, NULL, '2025-03-03 12:00:00+00');

INSERT INTO public.events (occurred_on, user_id, kind, payload) VALUES
  ('2025-05-01', '${alice}', 'login', '{"ip": "203.0.113.7"}'),
  ('2026-02-01', '${bob}', 'login', '{}'),
  ('2031-01-01', '${carol}', 'signup', '{"via": "email"}');
`;

/** The user adds tables to Realtime's publication (Dashboard → Database → Replication). */
const REALTIME_TABLES = `ALTER PUBLICATION supabase_realtime ADD TABLE public.notes, public.profiles;`;

/**
 * Build a Supabase-like source in the cluster's database `app` (see the head of this file).
 * Returns the login of the migrating role (`mig`, Supabase's `postgres`).
 */
export async function createSupabaseSource(cluster: Cluster): Promise<{ user: string; password: string }> {
  await cluster.withClient(async (c) => {
    await c.query(PLATFORM_ROLES);
    await c.query(PLATFORM_EXTENSIONS);
    await c.query(PLATFORM_AUTH);
    await c.query(PLATFORM_OTHERS);
  });
  const mig = new pg.Client({ connectionString: cluster.url('app', SUPABASE_MIG) });
  mig.on('error', () => undefined);
  await mig.connect();
  try {
    await mig.query(APP_SCHEMA);
  } finally {
    await mig.end().catch(() => undefined);
  }
  await cluster.withClient(async (c) => {
    await c.query(REALTIME_TABLES);
    await c.query(
      signUpSql([
        { id: alice, email: 'alice@example.com', username: 'alice', fullName: 'Alice Liddell' },
        { id: bob, email: 'bob@example.com', username: 'Bob', fullName: 'Bob Builder' },
        { id: carol, email: 'carol@example.com', username: 'carol', fullName: 'Carol Danvers' },
      ]),
    );
  });
  const seed = new pg.Client({ connectionString: cluster.url('app', SUPABASE_MIG) });
  seed.on('error', () => undefined);
  await seed.connect();
  try {
    await seed.query(APP_SEED);
  } finally {
    await seed.end().catch(() => undefined);
  }
  return { user: SUPABASE_MIG.user, password: SUPABASE_MIG.password };
}

/** A sign-up while the app runs: GoTrue inserts the user, on_auth_user_created makes the profile. */
export async function signUp(cluster: Cluster, user: { id: string; email: string; username: string; fullName: string }): Promise<void> {
  await cluster.query(signUpSql([user]));
}
