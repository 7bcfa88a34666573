/**
 * Queries only preflight runs: probes of what a role may do, answered without changing anything.
 */

/**
 * Run in a transaction that is rolled back: target sessions write replicated rows with
 * session_replication_role = replica (no triggers, no foreign-key checks), which takes a
 * superuser (or, from PostgreSQL 15, a role granted SET on that parameter).
 */
export const PROBE_REPLICA_ROLE = `SET LOCAL session_replication_role = replica`;
