/**
 * What the app saw through Supabase's REST API: row counts of the exposed tables, read with
 * PostgREST's `count: 'exact'`, to compare with the target after the move. Only counts: the
 * content itself is compared by SQL.
 *
 * @supabase/postgrest-js is the REST half of @supabase/supabase-js, used directly: supabase-js's
 * createClient also sets up Realtime (a WebSocket client) and Auth (token refresh timers), which
 * a one-shot count does not need.
 */
import { PostgrestClient } from '@supabase/postgrest-js';
import type { TableName } from '../pg/ident.js';
import { displayTable } from '../pg/ident.js';
import { registerSecret } from '../redact.js';

export interface ApiCount {
  table: string;
  /** Rows the API reports, or null when it could not count them. */
  apiRows: number | null;
  error?: string;
}

export async function countViaApi(supabaseUrl: string, serviceRoleKey: string, tables: TableName[]): Promise<ApiCount[]> {
  registerSecret(serviceRoleKey);
  const client = new PostgrestClient(`${supabaseUrl.replace(/\/+$/, '')}/rest/v1`, {
    headers: { apikey: serviceRoleKey, Authorization: `Bearer ${serviceRoleKey}` },
  });
  const out: ApiCount[] = [];
  for (const t of tables) {
    // Tables outside `public` are reachable only if the project exposes their schema.
    const q = client.schema(t.schema).from(t.name);
    const { count, error } = await q.select('*', { count: 'exact', head: true });
    out.push(
      error
        ? { table: displayTable(t), apiRows: null, error: error.message || `HTTP error${error.code ? ` ${error.code}` : ''}` }
        : { table: displayTable(t), apiRows: count ?? null },
    );
  }
  return out;
}
