/**
 * A TCP proxy on 127.0.0.1 in front of a test cluster, which a test controls: cut the
 * network (every connection dropped, new ones refused) and restore it, or play a connection
 * pooler that accepts connections but not the replication protocol (it drops the
 * `replication` startup parameter, as Supavisor effectively does).
 */
import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Drop every open connection and refuse new ones until restore(). */
  cut(): void;
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
  const sockets = new Set<net.Socket>();
  let isCut = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    if (isCut) {
      client.destroy();
      return;
    }
    accepted++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    upstream.pipe(client);
    if (!opts.poolerLike) {
      client.pipe(upstream);
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
    };
    client.on('data', onData);
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
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      isCut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
