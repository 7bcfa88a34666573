/**
 * The daemon's HTTP endpoints on PORT: /healthz for Railway's healthcheck, /readyz, and
 * /metrics for Prometheus. Nothing here shows a connection string or a data row.
 */
import http from 'node:http';
import type { Logger } from '../log.js';
import type { LiveStatus } from '../pipeline/status.js';
import type { Metrics } from './metrics.js';

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHealthServer(opts: { port: number; host?: string; metrics: Metrics; status: LiveStatus; log: Logger }): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    switch (url.pathname) {
      case '/healthz':
        return send(200, 'text/plain', 'ok\n');
      case '/readyz':
        return opts.status.ready ? send(200, 'text/plain', `ready: ${opts.status.phase}\n`) : send(503, 'text/plain', `not ready: ${opts.status.phase}\n`);
      case '/metrics':
        opts.metrics.registry
          .metrics()
          .then((body) => send(200, opts.metrics.registry.contentType, body))
          .catch((err: unknown) => send(500, 'text/plain', `metrics failed: ${String(err)}\n`));
        return;
      default:
        return send(404, 'text/plain', 'not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  opts.log.info({ port }, 'http server listening (/healthz, /readyz, /metrics)');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
