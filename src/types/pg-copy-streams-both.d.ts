// pg-copy-streams ships `both` (CopyBoth, used for START_REPLICATION) but its community
// typings only declare `from` and `to`.
import type { Connection, Submittable } from 'pg';
import type { Duplex, DuplexOptions } from 'node:stream';

declare module 'pg-copy-streams' {
  export class CopyBothQueryStream extends Duplex implements Submittable {
    text: string;
    submit(connection: Connection): void;
  }
  export function both(txt: string, options?: DuplexOptions & { alignOnCopyDataFrame?: boolean }): CopyBothQueryStream;
}
