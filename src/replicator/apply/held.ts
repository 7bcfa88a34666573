/**
 * Changes of holding tables (tables/): while a table is copied again during streaming, the
 * applier keeps its pgoutput messages exactly as they came, and writes them to
 * walbridge.held_changes with the batch that passes them (so a restart neither loses nor
 * repeats one); they are applied once the table's copy is in (tables/held.ts).
 */
import type { Lsn } from '../../lsn.js';
import { formatLsn } from '../../lsn.js';
import type { BatchStatement } from '../../pg/batch.js';
import type { TableName } from '../../pg/ident.js';
import type { StateSql } from '../../sql/state.js';
import { textArrayOf } from './params.js';

export class HeldMessages {
  private schemas: string[] = [];
  private tables: string[] = [];
  private lsns: string[] = [];
  private data: string[] = [];
  /** Bytes of messages waiting (counted against the applier's buffer limit). */
  bytes = 0;

  /** `state`: where they are held. */
  constructor(private readonly state: StateSql) {}

  get count(): number {
    return this.data.length;
  }

  /** Hold `raw` (one whole pgoutput message) for `table`, from the transaction committing at `commitLsn`. */
  add(table: TableName, commitLsn: Lsn, raw: Buffer): void {
    this.schemas.push(table.schema);
    this.tables.push(table.name);
    this.lsns.push(formatLsn(commitLsn));
    this.data.push(raw.toString('base64'));
    this.bytes += raw.length;
  }

  /** The statement that writes what waits, or null; nothing waits after it. */
  take(): BatchStatement | null {
    if (this.data.length === 0) return null;
    const statement = { text: this.state.HOLD_CHANGES, params: [textArrayOf(this.schemas), textArrayOf(this.tables), textArrayOf(this.lsns), textArrayOf(this.data)] };
    this.clear();
    return statement;
  }

  clear(): void {
    this.schemas = [];
    this.tables = [];
    this.lsns = [];
    this.data = [];
    this.bytes = 0;
  }
}
