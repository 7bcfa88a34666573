/**
 * One transaction around a function: committed when it returns, rolled back when it throws
 * (the rollback's own failure, on a broken connection, is not what the caller needs to hear).
 */
import type pg from 'pg';

export async function withTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>, begin = 'BEGIN'): Promise<T> {
  await client.query(begin);
  try {
    const out = await fn();
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
