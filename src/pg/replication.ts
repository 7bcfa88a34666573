/**
 * A replication-protocol connection (`replication=database`) to the source: IDENTIFY_SYSTEM,
 * CREATE_REPLICATION_SLOT with an exported snapshot, and START_REPLICATION.
 *
 * pg-logical-replication cannot create slots and does things we must not do (see
 * replicator/stream.ts), so this is built on `pg` directly.
 */
import type pg from 'pg';
import { WalbridgeError, sqlState } from '../errors.js';
import { parseLsn, type Lsn } from '../lsn.js';
import { connect, describeEndpoint } from './connect.js';
import { quoteIdent } from './ident.js';

export interface SystemIdentity {
  systemId: string;
  timeline: number;
  walPosition: Lsn;
  database: string;
}

export interface CreatedSlot {
  slotName: string;
  /** The copy taken under `snapshotName` equals the source exactly at this LSN. */
  consistentPoint: Lsn;
  /** Valid only while this connection stays idle. */
  snapshotName: string;
}

export class ReplicationConnection {
  private constructor(
    readonly client: pg.Client,
    readonly serverVersion: number,
  ) {}

  static async open(url: string, applicationName: string): Promise<ReplicationConnection> {
    const client = await connect(url, { side: 'source', applicationName, replication: true }).catch((err: unknown) => {
      // The server checks the REPLICATION attribute at login, so a role without it fails
      // here, not at the first command: say so, instead of retrying a connection error.
      const cause = err instanceof WalbridgeError && err.cause !== undefined ? err.cause : err;
      throw sqlState(cause) === '42501' ? explainReplicationError(cause, url) : err;
    });
    let num = 0;
    try {
      // SHOW works over a replication connection.
      const r = await client.query<{ server_version_num: string }>('SHOW server_version_num');
      num = Number(r.rows[0]?.server_version_num ?? 0);
    } catch (err) {
      await client.end().catch(() => {});
      throw explainReplicationError(err, url);
    }
    return new ReplicationConnection(client, num);
  }

  /**
   * Run first on every replication connection: a Supabase pooler accepts the connection but
   * not the replication protocol, and fails here with a syntax error.
   */
  async identifySystem(url: string): Promise<SystemIdentity> {
    try {
      const r = await this.client.query<{ systemid: string; timeline: string; xlogpos: string; dbname: string }>('IDENTIFY_SYSTEM');
      const row = r.rows[0];
      if (!row) throw new Error('IDENTIFY_SYSTEM returned no row');
      return {
        systemId: row.systemid,
        timeline: Number(row.timeline),
        walPosition: parseLsn(row.xlogpos),
        database: row.dbname,
      };
    } catch (err) {
      throw explainReplicationError(err, url);
    }
  }

  /** Creates a logical slot with pgoutput and an exported snapshot; keep this connection idle while the snapshot is used. */
  async createSlot(name: string, opts: { temporary: boolean }): Promise<CreatedSlot> {
    const temp = opts.temporary ? ' TEMPORARY' : '';
    const sql =
      this.serverVersion >= 150000
        ? `CREATE_REPLICATION_SLOT ${name}${temp} LOGICAL pgoutput (SNAPSHOT 'export')`
        : `CREATE_REPLICATION_SLOT ${name}${temp} LOGICAL pgoutput EXPORT_SNAPSHOT`;
    const r = await this.client.query<{ slot_name: string; consistent_point: string; snapshot_name: string }>(sql);
    const row = r.rows[0];
    if (!row) throw new Error('CREATE_REPLICATION_SLOT returned no row');
    return { slotName: row.slot_name, consistentPoint: parseLsn(row.consistent_point), snapshotName: row.snapshot_name };
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => {});
  }
}

/** The role a URL logs in as, quoted for SQL when it needs to be. */
function roleOf(url: string): string {
  try {
    const user = decodeURIComponent(new URL(url).username) || 'postgres';
    return /^[a-z_][a-z0-9_$]*$/.test(user) ? user : quoteIdent(user);
  } catch {
    return '<user>';
  }
}

export function explainReplicationError(err: unknown, url: string): Error {
  if (err instanceof WalbridgeError) return err;
  const code = sqlState(err);
  const msg = err instanceof Error ? err.message : String(err);
  if (code === '42601' || /syntax error/i.test(msg)) {
    return new WalbridgeError(
      'pooler',
      `the source ${describeEndpoint(url)} does not speak the replication protocol: this looks like a connection pooler (Supabase Supavisor or PgBouncer)`,
      {
        cause: err,
        hint:
          'Set SOURCE_DATABASE_URL to the direct connection: host db.<project-ref>.supabase.co, port 5432, user postgres ' +
          '(Supabase dashboard → Connect → Direct connection).',
      },
    );
  }
  if (code === '42501' || /must be superuser or replication role|permission denied to start WAL sender/i.test(msg)) {
    return new WalbridgeError('privilege', `the source role may not use replication: ${msg}`, {
      cause: err,
      hint: `Connect as a role with the REPLICATION attribute (on Supabase: postgres), or run ALTER ROLE ${roleOf(url)} WITH REPLICATION as a superuser.`,
    });
  }
  if (code === '28000' && /replication/i.test(msg)) {
    return new WalbridgeError('privilege', `the source refuses replication connections from this host: ${msg}`, {
      cause: err,
      hint: 'Allow replication connections for this role in pg_hba.conf (a "host replication" line), or use the direct Supabase host.',
    });
  }
  if (code === '55000' && /wal_level/i.test(msg)) {
    return new WalbridgeError('source', `logical decoding is off on the source: ${msg}`, {
      cause: err,
      hint: 'Set wal_level = logical on the source and restart it (Supabase has it on already).',
    });
  }
  return err instanceof Error ? err : new Error(msg);
}
