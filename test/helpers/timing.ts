// Instants for tests that kill, freeze or race a call, taken from the call itself
// rather than from a guess about how fast this machine (or this build) is: time a
// few identical calls first, then spread the attacks over what they took.
import { performance } from "node:perf_hooks";

/**
 * Wall time in ms (spawn to exit, as `run`'s kill timer counts it) of `n` calls
 * of `fn`, run `parallel` at a time so they compete for the machine as the
 * attacked calls will. Sorted, shortest first.
 */
export async function measureCall(n: number, fn: (i: number) => Promise<unknown>, parallel = 1): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i += parallel) {
    const batch = Array.from({ length: Math.min(parallel, n - i) }, async (_, j) => {
      const t0 = performance.now();
      await fn(i + j);
      out.push(performance.now() - t0);
    });
    await Promise.all(batch);
  }
  return out.sort((a, b) => a - b);
}

export function median(ms: number[]): number {
  const s = [...ms].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * A kill instant drawn uniformly from [0, over × spanMs), from a seeded PRNG
 * (`prng` in ./prng): with spanMs a call's measured duration, about 1/over of
 * the kills land before the call ends, on a fast machine and a slow one alike.
 */
export function killInstant(rand: () => number, spanMs: number, over = 1.2): number {
  return Math.floor(rand() * over * spanMs);
}
