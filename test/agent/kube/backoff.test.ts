// Backoff: full jitter under a ceiling that doubles per attempt up to a cap, a Retry-After as
// a floor (itself capped), reset after a success; parseRetryAfter for both header forms.
import { describe, expect, it } from "vitest";
import { Backoff, parseRetryAfter, sleep } from "../../../src/agent/kube/backoff";

/** A "random" that returns the given values in turn (then the last one). */
const seq =
  (...vs: number[]) =>
  (): number =>
    vs.length > 1 ? vs.shift()! : vs[0]!;

describe("Backoff", () => {
  it("the ceiling doubles from initialMs per attempt and stops at maxMs", () => {
    const b = new Backoff({ initialMs: 250, maxMs: 30_000, random: () => 0.5 });
    const ceilings: number[] = [];
    for (let i = 0; i < 10; i++) {
      ceilings.push(b.ceilingMs);
      b.next();
    }
    expect(ceilings).toEqual([250, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    expect(b.attempts).toBe(10);
  });

  it("full jitter: a uniform pick in [0, ceiling), the random value times the ceiling", () => {
    const b = new Backoff({ initialMs: 1000, maxMs: 8000, random: seq(0, 0.999999, 0.5, 0.25) });
    expect(b.next()).toBe(0); // ceiling 1000
    expect(b.next()).toBe(1999); // ceiling 2000
    expect(b.next()).toBe(2000); // ceiling 4000
    expect(b.next()).toBe(2000); // ceiling 8000
    expect(b.next()).toBe(2000); // ceiling 8000 (the cap)
  });

  it("spreads: many agents' first delays after a common failure are not in step", () => {
    let x = 42;
    const lcg = () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x / 2 ** 31;
    };
    const delays = Array.from({ length: 200 }, () => {
      const b = new Backoff({ random: lcg });
      for (let i = 0; i < 5; i++) b.next();
      return b.next(); // the 6th: ceiling 250 * 2^5 = 8000
    });
    expect(Math.max(...delays)).toBeLessThan(8000);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(new Set(delays).size).toBeGreaterThan(150);
  });

  it("reset() starts the ceiling over", () => {
    const b = new Backoff({ initialMs: 100, random: () => 0.5 });
    b.next();
    b.next();
    b.next();
    expect(b.ceilingMs).toBe(800);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.ceilingMs).toBe(100);
  });

  it("a Retry-After is a floor over the jitter, and is itself capped at maxRetryAfterMs", () => {
    const b = new Backoff({ initialMs: 1000, maxRetryAfterMs: 60_000, random: () => 0.5 });
    expect(b.next(5000)).toBe(5000); // jitter 500 < 5000
    expect(b.next(100)).toBe(1000); // jitter 1000 (ceiling 2000) > 100
    expect(b.next(3_600_000)).toBe(60_000); // an hour, cut to the cap
  });

  it("defaults: 250 ms first, 30 s cap, 5 min Retry-After cap", () => {
    const b = new Backoff({ random: () => 0 });
    expect(b.ceilingMs).toBe(250);
    for (let i = 0; i < 20; i++) b.next();
    expect(b.ceilingMs).toBe(30_000);
    expect(b.next(24 * 3600 * 1000)).toBe(300_000);
  });

  it("a very long run of attempts does not overflow the ceiling", () => {
    const b = new Backoff({ random: () => 0.5 });
    for (let i = 0; i < 2000; i++) b.next();
    expect(b.ceilingMs).toBe(30_000);
    expect(b.next()).toBe(15_000);
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  it("delay-seconds", () => {
    expect(parseRetryAfter("3", now)).toBe(3000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
  });
  it("an HTTP date, as ms from now (0 once it is past)", () => {
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:10 GMT", now)).toBe(10_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 23:59:00 GMT", now)).toBe(0);
  });
  it("the first of repeated headers; nothing or junk is undefined", () => {
    expect(parseRetryAfter(["2", "9"], now)).toBe(2000);
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter("", now)).toBeUndefined();
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    // Not delay-seconds; Date.parse reads it as the year -1, long past: no floor either way.
    expect(parseRetryAfter("-1", now) ?? 0).toBe(0);
  });
});

describe("sleep", () => {
  it("an abort ends it at once (an agent stopping is not held up by its backoff)", async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    const p = sleep(600_000, ac.signal);
    ac.abort();
    await p;
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
  it("an already aborted signal returns at once", async () => {
    const ac = new AbortController();
    ac.abort();
    await sleep(600_000, ac.signal);
  });
});
