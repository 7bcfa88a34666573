/**
 * A TCP proxy on 127.0.0.1 in front of a test cluster, which a test controls: cut the
 * network (every connection dropped, new ones refused) and restore it, black-hole it (no
 * connection is closed, but no byte passes either way, as in a network partition where packets
 * are dropped: nobody is told) and restore it, or play a connection pooler that accepts
 * connections but not the replication protocol (it drops the `replication` startup parameter,
 * as Supavisor effectively does).
 */
import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Drop every open connection and refuse new ones until restore(). */
  cut(): void;
  /**
   * Stop every byte in both directions without closing anything: open connections hang, new
   * ones are accepted but get no answer. restore() lets everything through again (what was
   * held is delivered then, unless an end timed out and closed its side meanwhile).
   */
  blackhole(): void;
  /** Undo cut() or blackhole(). */
  restore(): void;
  close(): Promise<void>;
  /** Connections accepted so far. */
  readonly accepted: number;
}

/** Rebuild a StartupMessage without its `replication` parameter. */
function stripReplication(packet: Buffer): Buffer {
  const protocol = packet.readInt32BE(4);
  if (protocol !== 196608) return packet; // SSLRequest, CancelRequest...: untouched
  const fields = packet.subarray(8, packet.length - 1).toString('utf8').split('\0');
  const kept: string[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] !== 'replication') kept.push(fields[i] as string, fields[i + 1] as string);
  }
  const body = Buffer.from(`${kept.join('\0')}\0\0`, 'utf8');
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(protocol, 4);
  body.copy(out, 8);
  return out;
}

export async function startProxy(targetPort: number, opts: { poolerLike?: boolean } = {}): Promise<TcpProxy> {
  /** One proxied connection: the client's socket and ours to the server. */
  interface Pair {
    client: net.Socket;
    upstream: net.Socket;
    /** client → upstream is piped (false until a pooler-like proxy has rewritten the startup packet). */
    clientPiped: boolean;
  }
  const pairs = new Set<Pair>();
  let isCut = false;
  let holes = false;
  /** Connections accepted during a black hole: wired up by restore(). */
  const held: net.Socket[] = [];
  let accepted = 0;
  const wire = (client: net.Socket) => {
    if (client.destroyed) return;
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair: Pair = { client, upstream, clientPiped: false };
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    upstream.pipe(client);
    if (!opts.poolerLike) {
      client.pipe(upstream);
      pair.clientPiped = true;
      return;
    }
    // Read the first packet whole, rewrite it, then pass everything else through.
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4) return;
      const len = head.readInt32BE(0);
      if (head.length < len) return;
      client.off('data', onData);
      upstream.write(stripReplication(head.subarray(0, len)));
      if (head.length > len) upstream.write(head.subarray(len));
      client.pipe(upstream);
      pair.clientPiped = true;
    };
    client.on('data', onData);
    client.resume();
  };
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    if (isCut) {
      client.destroy();
      return;
    }
    accepted++;
    if (holes) {
      client.on('error', () => client.destroy());
      held.push(client);
      return;
    }
    wire(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    get accepted() {
      return accepted;
    },
    cut() {
      isCut = true;
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
      for (const c of held.splice(0)) c.destroy();
    },
    blackhole() {
      if (holes) return;
      holes = true;
      for (const p of pairs) {
        // Unpiped and paused: whatever arrives stays in the kernel's buffers, and once they
        // are full the sender blocks, as on a link that drops packets.
        p.upstream.unpipe(p.client);
        if (p.clientPiped) p.client.unpipe(p.upstream);
        p.upstream.pause();
        p.client.pause();
      }
    },
    restore() {
      isCut = false;
      if (!holes) return;
      holes = false;
      for (const p of pairs) {
        if (p.client.destroyed || p.upstream.destroyed) continue;
        p.upstream.pipe(p.client);
        if (p.clientPiped) p.client.pipe(p.upstream);
        else p.client.resume();
      }
      for (const c of held.splice(0)) wire(c);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) {
          p.client.destroy();
          p.upstream.destroy();
        }
        for (const c of held.splice(0)) c.destroy();
        server.close(() => resolve());
      }),
  };
}
