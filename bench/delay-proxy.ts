/**
 * A TCP proxy on 127.0.0.1 that adds latency: every chunk is forwarded `oneWayMs` later, in each
 * direction, in order (round trip + 2 × oneWayMs). Used for the WAN scenario when the kernel has no
 * `tc netem`. It emulates latency, not a bandwidth limit: what it shows is how much walbridge
 * waits on round trips.
 */
import net from 'node:net';

export interface DelayProxy {
  readonly port: number;
  close(): Promise<void>;
}

const HIGH_WATER = 8 * 1024 * 1024;

function pipeDelayed(from: net.Socket, to: net.Socket, oneWayMs: number): void {
  let pending = 0;
  from.on('data', (chunk: Buffer) => {
    if (oneWayMs === 0) {
      // No delay: the same hop through this process, to tell its cost from the latency's.
      if (!to.destroyed && !to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
      return;
    }
    pending += chunk.length;
    if (pending > HIGH_WATER) from.pause();
    setTimeout(() => {
      pending -= chunk.length;
      if (!to.destroyed) to.write(chunk);
      if (pending <= HIGH_WATER / 2 && from.isPaused()) from.resume();
    }, oneWayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), oneWayMs));
  from.on('error', () => to.destroy());
  from.on('close', () => setTimeout(() => to.destroy(), oneWayMs + 5));
}

export function startDelayProxy(targetPort: number, oneWayMs: number, targetHost = '127.0.0.1'): Promise<DelayProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ host: targetHost, port: targetPort });
    upstream.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    pipeDelayed(client, upstream, oneWayMs);
    pipeDelayed(upstream, client, oneWayMs);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({
        port,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}
