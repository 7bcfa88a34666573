/**
 * A stand-in for Supabase's REST API (PostgREST), just enough for row counts: HEAD or GET
 * /rest/v1/<table> with `Prefer: count=exact`, the schema in `Accept-Profile`, the key in
 * `apikey`. PostgREST itself is not installable on this machine; the counts come from a real
 * database through SQL, so what is tested is walbridge's use of @supabase/supabase-js against
 * the PostgREST wire contract.
 */
import http from 'node:http';
import pg from 'pg';

export interface RestApi {
  readonly url: string;
  readonly requests: { method: string; path: string; profile: string | undefined }[];
  close(): Promise<void>;
}

export async function startRestApi(databaseUrl: string, serviceRoleKey: string): Promise<RestApi> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  pool.on('error', () => {});
  const requests: RestApi['requests'] = [];
  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const profile = (req.headers['accept-profile'] as string | undefined) ?? undefined;
      requests.push({ method: req.method ?? '', path: url.pathname, profile });
      const json = (code: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(code, { 'content-type': 'application/json', ...headers });
        res.end(req.method === 'HEAD' ? undefined : JSON.stringify(body));
      };
      if (req.headers.apikey !== serviceRoleKey) return json(401, { message: 'Invalid API key' });
      const m = /^\/rest\/v1\/([^/]+)$/.exec(url.pathname);
      if (!m) return json(404, { message: 'not found' });
      const schema = profile ?? 'public';
      const table = decodeURIComponent(m[1] as string);
      try {
        const { rows } = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)}`);
        const n = rows[0]?.n ?? '0';
        return json(200, [], { 'content-range': `*/${n}` });
      } catch (err) {
        const e = err as { code?: string; message?: string };
        return json(404, { code: e.code ?? '42P01', message: e.message ?? 'relation does not exist', details: null, hint: null });
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await pool.end();
    },
  };
}
