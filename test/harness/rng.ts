/**
 * A seeded PRNG for tests that pick random moments (when to kill, how long to wait before a
 * fault). Same seed, same choices: a failing run is repeated by passing its seed again.
 * mulberry32, as in fixture.ts.
 */
export class SeededRandom {
  private s: number;

  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    const v = items[Math.floor(this.next() * items.length)];
    if (v === undefined) throw new Error('pick from an empty list');
    return v;
  }

  /** A new generator derived from this one, so one scenario's choices do not shift another's. */
  fork(label: string): SeededRandom {
    let h = this.seed >>> 0;
    for (const ch of label) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    return new SeededRandom(h);
  }
}

/** The seed for this run: WALBRIDGE_TEST_SEED if set, else a fixed default. */
export function runSeed(fallback = 20251124): number {
  const s = process.env.WALBRIDGE_TEST_SEED;
  if (s && /^\d+$/.test(s)) return Number(s);
  return fallback;
}
