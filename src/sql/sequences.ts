/**
 * The statements cutover moves sequences with (src/cutover/sequences.ts). A sequence's state
 * is read from its own row: pg_sequences.last_value is NULL while is_called is false, so it
 * cannot tell a sequence never used from one set to hand out a given value next.
 */
import { quoteTable, type TableName } from '../pg/ident.js';

export const SEQUENCE_EXISTS = 'SELECT to_regclass($1) IS NOT NULL AS ok';

/** The last value handed out, or, while is_called is false, the one nextval() hands out next. */
export const sequenceState = (seq: TableName) => `SELECT last_value::text AS last, is_called AS called FROM ${quoteTable(seq)}`;

export const SEQUENCE_RANGE = `
SELECT increment_by::text AS increment, min_value::text AS min, max_value::text AS max
  FROM pg_sequences WHERE schemaname = $1 AND sequencename = $2`;

export const SET_SEQUENCE = 'SELECT setval($1::regclass, $2::int8, $3::bool)';
