/**
 * What every part of one backfill run shares: its fate. The first failure stops everything (no
 * further table starts, every session is closed) and is what runBackfill throws; the backfill
 * is then run again. An abort stops everything the same way.
 */
export class BackfillRun {
  private failure: unknown = null;
  private readonly stops: (() => void)[] = [];

  constructor(private readonly signal: AbortSignal) {}

  /** `stop` is called on the first failure, and on abort. */
  onStop(stop: () => void): void {
    this.stops.push(stop);
  }

  /** From now until the returned function is called, an abort stops everything. */
  stopOnAbort(): () => void {
    const onAbort = () => this.stop();
    this.signal.addEventListener('abort', onAbort, { once: true });
    return () => this.signal.removeEventListener('abort', onAbort);
  }

  /** The first failure is kept and stops everything; later ones mostly follow from it (their sessions closed under them). */
  fail(err: unknown): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.stop();
  }

  get failed(): boolean {
    return this.failure !== null;
  }

  get aborted(): boolean {
    return this.signal.aborted;
  }

  /** Failed or aborted: nothing new starts, and nothing is kept for later. */
  get stopped(): boolean {
    return this.failed || this.aborted;
  }

  throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }

  private stop(): void {
    for (const stop of this.stops) stop();
  }
}
