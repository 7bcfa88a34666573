/**
 * Small waiting helper for tests.
 *
 * The project's rule is "no sleeps where a condition can be awaited": a test that sleeps
 * a fixed time is either slow (sleep too long) or flaky (sleep too short on a busy 2-core box).
 * Instead we poll the condition itself, with a deadline that only matters when something is
 * genuinely wrong, and fail with a message that says what we were waiting for.
 */

export interface WaitForOptions {
  /** Give up after this long. Default 30 s: generous, because it only bounds the failure case. */
  timeoutMs?: number;
  /** Pause between polls. Default 50 ms: cheap enough for local queries, quick enough for tests. */
  intervalMs?: number;
  /** Human description used in the timeout message: `timed out waiting for <what>`. */
  what?: string;
}

/**
 * Poll `pred` until it returns true or the deadline passes.
 *
 * A predicate that throws is treated as "not yet" (a server restarting under us refuses
 * connections for a moment, which is exactly the kind of transient we are waiting out); the
 * last such error is attached to the timeout message so a permanent failure is still visible.
 */
export async function waitFor(
  pred: () => Promise<boolean> | boolean,
  opts: WaitForOptions = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const intervalMs = opts.intervalMs ?? 50;
  const what = opts.what ?? 'condition';
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await pred()) return;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail =
        lastError === undefined
          ? ''
          : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`timed out waiting for ${what} after ${timeoutMs} ms${detail}`);
    }
    // Pacing between polls, not a correctness sleep: the condition decides when we are done.
    await new Promise<void>((resolve) => setTimeout(resolve, Math.min(intervalMs, Math.max(1, deadline - Date.now()))));
  }
}
