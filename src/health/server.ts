/**
 * The daemon's HTTP endpoints on PORT:
 *   /healthz      200 while the process and its event loop are alive (Railway's healthcheck)
 *   /readyz       200 only while the pipeline is connected and copying or streaming
 *   /metrics      Prometheus text
 *   /status.json  the status report (what `walbridge status --json` prints)
 *   /             the status page
 * With WALBRIDGE_HTTP_TOKEN set, everything but /healthz needs `Authorization: Bearer <token>`
 * (or `?token=` for a browser). Nothing here shows a connection string or a data row.
 */
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { Logger } from '../log.js';
import type { LiveStatus } from './live-status.js';
import type { Metrics } from './metrics.js';
import { STATUS_PAGE } from './page.js';

/** Totals the page turns into rates. */
async function appliedCounts(metrics: Metrics): Promise<{ transactions: number; changes: number }> {
  const [t, c] = await Promise.all([metrics.applyTransactions.get(), metrics.applyChanges.get()]);
  return { transactions: t.values.reduce((a, v) => a + v.value, 0), changes: c.values.reduce((a, v) => a + v.value, 0) };
}

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

function tokenMatches(given: string | null, expected: string): boolean {
  if (given === null) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startHealthServer(opts: {
  port: number;
  host?: string;
  token?: string | null;
  metrics: Metrics;
  status: LiveStatus;
  log: Logger;
}): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      res.end(body);
    };
    if (url.pathname === '/healthz') return send(200, 'text/plain', 'ok\n');
    if (opts.token) {
      const header = req.headers.authorization;
      const given = header?.startsWith('Bearer ') ? header.slice(7) : url.searchParams.get('token');
      if (!tokenMatches(given, opts.token)) return send(401, 'text/plain', 'unauthorized: pass WALBRIDGE_HTTP_TOKEN as a Bearer token or ?token=\n');
    }
    switch (url.pathname) {
      case '/readyz':
        return opts.status.ready ? send(200, 'text/plain', `ready: ${opts.status.phase}\n`) : send(503, 'text/plain', `not ready: ${opts.status.phase}\n`);
      case '/metrics':
        opts.metrics.registry
          .metrics()
          .then((body) => send(200, opts.metrics.registry.contentType, body))
          .catch((err: unknown) => send(500, 'text/plain', `metrics failed: ${String(err)}\n`));
        return;
      case '/status.json':
        appliedCounts(opts.metrics)
          .then((applied) => send(200, 'application/json', `${JSON.stringify(opts.status.report(applied), null, 2)}\n`))
          .catch((err: unknown) => send(500, 'text/plain', `status failed: ${String(err)}\n`));
        return;
      case '/':
        return send(200, 'text/html; charset=utf-8', STATUS_PAGE);
      default:
        return send(404, 'text/plain', 'not found\n');
    }
  });
  // '::' is every address, IPv4 included (dual stack): Railway's private network can be IPv6-only.
  const listen = (host: string) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  if (opts.host) await listen(opts.host);
  else await listen('::').catch((err: { code?: string }) => (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL' ? listen('0.0.0.0') : Promise.reject(err)));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  opts.log.info({ port }, 'http server listening (/ status page, /status.json, /metrics, /healthz, /readyz)');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
