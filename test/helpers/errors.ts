// Shared by the unit tests: the CniError a call throws, and a seeded PRNG.
import { expect } from "vitest";
import { CniError } from "../../src/errors";

/** Run fn and return the CniError it throws; fail the test if it throws nothing else. */
export function failure(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return err as CniError;
  }
  throw new Error("expected a CniError");
}

/** mulberry32: a small seeded PRNG, so a failing randomized run can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
