/**
 * The phases an operator sees (status page, `walbridge status`, the walbridge_phase metric).
 * Not the phase recorded on the target (init, backfill, catchup, streaming, done: see
 * state/store.ts), which says where a restart resumes.
 */
export const PHASES = ['preflight', 'backfill', 'streaming', 'cutover', 'done', 'standby', 'error'] as const;
export type Phase = (typeof PHASES)[number];
