/**
 * A WAN between walbridge and the source: walbridge runs in its own network namespace with two
 * veth pairs to the host, one towards the source with `tc netem` delay on both ends (round trip
 * +delayMs) and one towards the target without delay. Addresses come from 198.18.0.0/15 (RFC 2544,
 * benchmark networks), on the veths only. The source and target clusters additionally listen on
 * their host-side veth address. Everything is removed on exit.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Cluster } from '../test/harness/cluster.js';
import { onExit, sh } from './proc.js';

export interface Wan {
  netns: string;
  /** Address of the source as seen from inside the namespace (through the delayed link). */
  sourceHost: string;
  /** Address of the target as seen from inside the namespace (no delay). */
  targetHost: string;
  rttMs: number;
  teardown(): void;
}

const SRC_HOST = '198.18.7.1';
const SRC_NS = '198.18.7.2';
const TGT_HOST = '198.18.7.5';
const TGT_NS = '198.18.7.6';

/** Build the namespace, or return the reason it cannot be built here. */
export function setupWan(rttMs: number): Wan | { skip: string } {
  const n = process.pid % 10000;
  const netns = `wbbench${n}`;
  const [sh0, sn1, th0, tn1] = [`wbs${n}h`, `wbs${n}n`, `wbt${n}h`, `wbt${n}n`];
  const teardownNow = () => {
    try {
      sh('ip', ['netns', 'del', netns]);
    } catch {
      // not there
    }
    for (const dev of [sh0, th0]) {
      try {
        sh('ip', ['link', 'del', dev]);
      } catch {
        // removed with the namespace
      }
    }
  };
  try {
    sh('ip', ['netns', 'add', netns]);
  } catch (err) {
    return { skip: `ip netns is not permitted here: ${(err as Error).message.split('\n')[0]}` };
  }
  const teardown = onExit(teardownNow);
  try {
    sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    for (const [h, ns, hostIp, nsIp] of [
      [sh0, sn1, SRC_HOST, SRC_NS],
      [th0, tn1, TGT_HOST, TGT_NS],
    ] as const) {
      sh('ip', ['link', 'add', h, 'type', 'veth', 'peer', 'name', ns]);
      sh('ip', ['link', 'set', ns, 'netns', netns]);
      sh('ip', ['addr', 'add', `${hostIp}/30`, 'dev', h]);
      sh('ip', ['link', 'set', h, 'up']);
      sh('ip', ['-n', netns, 'addr', 'add', `${nsIp}/30`, 'dev', ns]);
      sh('ip', ['-n', netns, 'link', 'set', ns, 'up']);
    }
    const oneWay = `${rttMs / 2}ms`;
    sh('tc', ['qdisc', 'add', 'dev', sh0, 'root', 'netem', 'delay', oneWay]);
    sh('tc', ['-n', netns, 'qdisc', 'add', 'dev', sn1, 'root', 'netem', 'delay', oneWay]);
  } catch (err) {
    teardown();
    return { skip: `could not build the namespace (veth/netem): ${(err as Error).message.replace(/\s+/g, ' ').trim()}` };
  }
  return { netns, sourceHost: SRC_HOST, targetHost: TGT_HOST, rttMs, teardown };
}

/** Make a cluster also listen on `host` (host-side veth address) and accept logins from the namespace; restarts it. */
export async function listenAlsoOn(cluster: Cluster, host: string): Promise<void> {
  await cluster.query(`ALTER SYSTEM SET listen_addresses = '127.0.0.1,${host}'`, [], 'postgres');
  const hba = path.join(cluster.dataDir, 'pg_hba.conf');
  fs.appendFileSync(hba, `host all all 198.18.7.0/29 scram-sha-256\nhost replication all 198.18.7.0/29 scram-sha-256\n`);
  await cluster.restart('fast');
}

/** The cluster's URL for a client inside the namespace (no TLS: a private test link). */
export function urlVia(cluster: Cluster, database: string, host: string): string {
  return `${cluster.url(database).replace('@127.0.0.1:', `@${host}:`)}?sslmode=disable`;
}
