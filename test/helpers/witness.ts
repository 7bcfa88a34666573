/**
 * A writer the user forgot to stop: one session that inserts a uniquely keyed row every few
 * hundred milliseconds, for as long as it runs, and remembers what it was told. Every id whose
 * INSERT returned is committed on the database it wrote to; every error is kept as the app saw it.
 */
import pg from 'pg';
import { startPair, type Cluster } from '../harness/cluster.js';
import { createAppSchema, seedAppData } from '../harness/fixture.js';

/** The table the witnesses write to (a forgotten worker's log), the same on both sides. */
export const WORKER_LOG = 'CREATE TABLE public.worker_log (id bigint PRIMARY KEY, who text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())';

/**
 * A source (15) with the app's schema and data, a target (17) with the app's schema, empty, and
 * the witnesses' worker_log on both: what a cutover test starts from.
 */
export async function startWitnessPair(): Promise<{ source: Cluster; target: Cluster; destroy: () => Promise<void> }> {
  const pair = await startPair({ sourceMajor: 15, targetMajor: 17 });
  await pair.source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale: 1 });
  });
  await pair.target.withClient((c) => createAppSchema(c, { target: true }));
  for (const db of [pair.source, pair.target]) await db.query(WORKER_LOG);
  return pair;
}

export interface Witness {
  /** Ids whose INSERT committed. */
  readonly committed: number[];
  /** Errors the writer got, as SQLSTATE and message. */
  readonly refused: { code: string | undefined; message: string }[];
  /** Stop writing; resolves once the last attempt has its answer. */
  stop(): Promise<void>;
  /** Resolve once `pred` holds (checked after every attempt). */
  until(pred: (w: Witness) => boolean, timeoutMs?: number): Promise<void>;
}

/**
 * Insert (id, who) into `table` every `everyMs`, ids from `firstId` on. `insert`: the statement
 * instead, with the id as $1 and who as $2 (to write into a table of another shape).
 */
export function startWitness(url: string, opts: { table: string; who: string; firstId: number; everyMs: number; insert?: string }): Witness {
  const committed: number[] = [];
  const refused: { code: string | undefined; message: string }[] = [];
  let stopping = false;
  const waiters = new Set<() => void>();
  const client = new pg.Client({ connectionString: url, application_name: `witness ${opts.who}` });
  client.on('error', () => undefined);
  const w: Witness = {
    committed,
    refused,
    stop: async () => {
      stopping = true;
      await loop;
    },
    until: (pred, timeoutMs = 60_000) =>
      new Promise<void>((resolve, reject) => {
        if (pred(w)) return resolve();
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`witness ${opts.who}: condition not met within ${timeoutMs} ms (${committed.length} committed, ${refused.length} refused)`));
        }, timeoutMs);
        const check = () => {
          if (!pred(w)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
      }),
  };
  const loop = (async () => {
    await client.connect();
    try {
      for (let id = opts.firstId; !stopping; id++) {
        try {
          await client.query(opts.insert ?? `INSERT INTO ${opts.table} (id, who) VALUES ($1, $2)`, [id, opts.who]);
          committed.push(id);
        } catch (err) {
          const e = err as pg.DatabaseError;
          refused.push({ code: e.code, message: e.message });
        }
        for (const check of [...waiters]) check();
        await new Promise((r) => setTimeout(r, opts.everyMs));
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return w;
}
