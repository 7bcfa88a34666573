/**
 * What belongs to Supabase's platform rather than to the app: the schemas its own CLI leaves out
 * of a schema dump, its reserved roles, and the few functions of `auth` that the app's policies
 * and defaults call. (Gathered from the Supabase CLI's `db dump` and the supabase/postgres and
 * GoTrue migrations; see docs/schema.md.) A schema the user selects is the app's, whatever its
 * name: the demo migrates its own `auth.users`.
 */

/** Schemas of Supabase's services and of extensions' internals; `extensions` is handled apart. */
const PLATFORM_SCHEMAS = new Set([
  '_analytics',
  '_realtime',
  '_supavisor',
  'auth',
  'cron',
  'dbdev',
  'extensions',
  'graphql',
  'graphql_public',
  'net',
  'pgbouncer',
  'pgmq',
  'pgsodium',
  'pgsodium_masks',
  'pgtle',
  'realtime',
  'repack',
  'storage',
  'supabase_functions',
  'supabase_migrations',
  'tiger',
  'tiger_data',
  'topology',
  'vault',
]);

/** walbridge's own schemas: its state (walbridge, or walbridge_<group>), and the fence's functions. Never part of a schema to make. */
const isWalbridgeName = (schema: string) => schema === 'walbridge' || schema.startsWith('walbridge_');

export function isPlatformSchema(schema: string): boolean {
  return PLATFORM_SCHEMAS.has(schema) || schema.startsWith('timescaledb_') || schema.startsWith('pg_') || schema === 'information_schema';
}

export function isWalbridgeSchema(schema: string): boolean {
  return isWalbridgeName(schema);
}

/** The app's: a schema the user selected (whatever its name), or one neither the platform's nor walbridge's. */
export function isAppSchema(schema: string, selected: string[]): boolean {
  return selected.includes(schema) || (!isPlatformSchema(schema) && !isWalbridgeSchema(schema));
}

/** The roles PostgREST switches to: what `TO authenticated` policies name. */
export const API_ROLES = ['anon', 'authenticated', 'service_role'] as const;

/** Supabase's reserved roles besides the API roles: never created on the target. */
const RESERVED_ROLES = new Set([
  'authenticator',
  'dashboard_user',
  'pgbouncer',
  'supabase_admin',
  'supabase_auth_admin',
  'supabase_functions_admin',
  'supabase_read_only_user',
  'supabase_realtime_admin',
  'supabase_replication_admin',
  'supabase_storage_admin',
  'supabase_etl_admin',
  'pgtle_admin',
]);

export function isReservedRole(role: string): boolean {
  return RESERVED_ROLES.has(role) || role.startsWith('pgsodium_key');
}

export function isApiRole(role: string): boolean {
  return (API_ROLES as readonly string[]).includes(role);
}

/**
 * GoTrue's helpers that read the caller's JWT claims from settings PostgREST sets
 * (`request.jwt.claims`); they touch no table, so the same definition works on any PostgreSQL.
 */
export const AUTH_HELPERS = ['uid', 'role', 'jwt', 'email'];

export function isAuthHelper(schema: string, name: string): boolean {
  return schema === 'auth' && AUTH_HELPERS.includes(name);
}

/** The auth helpers a function body calls by name (plpgsql and SQL bodies leave no dependency to read). */
export function authHelpersCalledIn(body: string): string[] {
  const found = new Set<string>();
  for (const m of body.matchAll(/\bauth\s*\.\s*"?(uid|role|jwt|email)"?\s*\(/g)) found.add(m[1] as string);
  return [...found];
}
