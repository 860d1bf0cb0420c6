import { describe, expect, it } from "vitest";
import {
  type Candidate,
  type RangeState,
  allocateNext,
  countBits,
  emptyRange,
  freeCount,
  isSet,
  pruneReleased,
  release,
  take,
} from "../../src/ipam/allocator.js";
import { type Cidr, parseCidr } from "../../src/ipam/cidr.js";

function cidr(text: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(p.reason);
  return p.cidr;
}

/** A range of `text` with `taken` offsets set and the cursor at `next`. */
function range(text: string, taken: Iterable<number> = [], next = 0): RangeState {
  const r = emptyRange(cidr(text));
  for (const o of taken) take(r, o);
  r.next = next;
  return r;
}

function all(size: number, except: number[] = []): number[] {
  return Array.from({ length: size }, (_, i) => i).filter((i) => !except.includes(i));
}

function cand(r: RangeState, excluded: number[] = []): Candidate {
  return { range: r, excluded: new Set(excluded) };
}

function pick(cands: Candidate[], now = 0, cooldownMs = 0): { cidr: string; offset: number } | null {
  const got = allocateNext(cands, now, cooldownMs);
  return got && { cidr: got.range.cidr.text, offset: got.offset };
}

describe("emptyRange", () => {
  it.each([
    { name: "/30", text: "10.0.0.4/30", bytes: 1 },
    { name: "/29", text: "10.0.0.8/29", bytes: 1 },
    { name: "/24", text: "10.0.2.0/24", bytes: 32 },
    { name: "/120", text: "fd00::200/120", bytes: 32 },
    { name: "capped /64", text: "fd00::/64", bytes: 8192 },
  ])("sizes the bitmap of a $name to whole bytes", ({ text, bytes }) => {
    const r = emptyRange(cidr(text));
    expect(r.bits.length).toBe(bytes);
    expect(r).toMatchObject({ next: 0, allocated: 0 });
    expect(r.released.size).toBe(0);
  });
});

describe("take and release", () => {
  it("sets bit i in byte i>>3 with mask 1<<(i&7)", () => {
    const r = range("10.0.2.0/24");
    expect(take(r, 0)).toBe(true);
    expect(take(r, 9)).toBe(true);
    expect(take(r, 253)).toBe(true);
    expect([r.bits[0], r.bits[1], r.bits[31]]).toEqual([0b1, 0b10, 0b100000]);
    expect(r.allocated).toBe(3);
    expect(countBits(r.bits)).toBe(3);
  });

  it.each([
    { name: "an offset already taken", offset: 3 },
    { name: "a negative offset", offset: -1 },
    { name: "the offset one past the window", offset: 6 },
  ])("refuses to take $name", ({ offset }) => {
    const r = range("10.0.0.8/29", [3]);
    expect(take(r, offset)).toBe(false);
    expect(r.allocated).toBe(1);
    expect(r.bits[0]).toBe(0b1000);
  });

  it("records when an offset was released and forgets it when taken again", () => {
    const r = range("10.0.0.8/29", [2, 4]);
    expect(release(r, 2, 1234)).toBe(true);
    expect(r.allocated).toBe(1);
    expect(isSet(r, 2)).toBe(false);
    expect([...r.released]).toEqual([[2, 1234]]);
    expect(take(r, 2)).toBe(true);
    expect(r.released.size).toBe(0);
  });

  it.each([
    { name: "a free offset", offset: 1 },
    { name: "an offset outside the window", offset: 6 },
  ])("reports false when releasing $name", ({ offset }) => {
    const r = range("10.0.0.8/29", [2]);
    expect(release(r, offset, 1)).toBe(false);
    expect(r.allocated).toBe(1);
    expect(r.released.size).toBe(0);
  });
});

describe("allocateNext", () => {
  // The host-local AllocatorTestCase shape: {cidr, taken, next, expect}.
  it.each([
    { name: "an empty range from the start", text: "10.0.2.0/24", taken: [], next: 0, expected: 0 },
    { name: "the cursor, not the lowest free", text: "10.0.2.0/24", taken: [], next: 40, expected: 40 },
    { name: "past taken offsets at the cursor", text: "10.0.2.0/24", taken: [40, 41, 42], next: 40, expected: 43 },
    { name: "wrapping at the end of the window", text: "10.0.2.0/24", taken: [252, 253], next: 252, expected: 0 },
    { name: "wrapping to a hole behind the cursor", text: "10.0.2.0/24", taken: all(254, [17]), next: 100, expected: 17 },
    { name: "the last offset of a /30", text: "10.0.0.4/30", taken: [0], next: 0, expected: 1 },
    { name: "an out-of-window cursor as 0", text: "10.0.0.8/29", taken: [], next: 99, expected: 0 },
    { name: "the last IPv6 offset", text: "fd00::200/120", taken: all(255, [254]), next: 0, expected: 254 },
  ])("picks $name", ({ text, taken, next, expected }) => {
    const r = range(text, taken, next);
    expect(pick([cand(r)])).toEqual({ cidr: cidr(text).text, offset: expected });
    expect(isSet(r, expected)).toBe(true);
    expect(r.allocated).toBe(taken.length + 1);
  });

  it("advances the cursor past each pick, so a just-released offset is not reused at once", () => {
    const r = range("10.0.0.8/29");
    expect([pick([cand(r)]), pick([cand(r)])].map((p) => p?.offset)).toEqual([0, 1]);
    expect(r.next).toBe(2);
    release(r, 0, 0);
    expect(pick([cand(r)])?.offset).toBe(2);
  });

  it("wraps the cursor to 0 after the last offset", () => {
    const r = range("10.0.0.8/29", [], 5);
    expect(pick([cand(r)])?.offset).toBe(5);
    expect(r.next).toBe(0);
  });

  it.each([
    { name: "the gateway at the start", taken: [], excluded: [0], next: 0, expected: 1 },
    { name: "a run of reserved offsets", taken: [1], excluded: [0, 2, 3], next: 0, expected: 4 },
    { name: "reserved offsets when wrapping", taken: [4, 5], excluded: [0, 1], next: 4, expected: 2 },
  ])("skips excluded offsets: $name", ({ taken, excluded, next, expected }) => {
    const r = range("10.0.0.8/29", taken, next);
    expect(pick([cand(r, excluded)])?.offset).toBe(expected);
  });

  // The scan skips whole bytes that read 0xff; the last byte of a window that is
  // not a multiple of 8 is partial and must still be scanned bit by bit.
  it.each([
    { name: "/29 (6): the last free offset", text: "10.0.0.8/29", taken: all(6, [5]), next: 0, expected: 5 },
    { name: "/29 (6): wrap to offset 0", text: "10.0.0.8/29", taken: all(6, [0]), next: 3, expected: 0 },
    { name: "/28 (14): past a full byte 0", text: "10.0.0.16/28", taken: all(14, [13]), next: 0, expected: 13 },
    { name: "/28 (14): over a full byte after wrap", text: "10.0.0.16/28", taken: all(14, [9]), next: 10, expected: 9 },
    { name: "/28 (14): hole in byte 0 after wrap", text: "10.0.0.16/28", taken: all(14, [5]), next: 8, expected: 5 },
    { name: "/27 (30): across two full bytes", text: "10.0.0.32/27", taken: all(30, [29]), next: 3, expected: 29 },
    { name: "/27 (30): partial last byte, wrap", text: "10.0.0.32/27", taken: all(30, [2]), next: 3, expected: 2 },
    { name: "/120 (255): the very last offset", text: "fd00::200/120", taken: all(255, [254]), next: 1, expected: 254 },
    { name: "/120 (255): cursor in a full byte", text: "fd00::200/120", taken: all(255, [7]), next: 12, expected: 7 },
  ])("scans over full bytes correctly at $name", ({ text, taken, next, expected }) => {
    expect(pick([cand(range(text, taken, next))])?.offset).toBe(expected);
  });

  it.each([
    { name: "/30", text: "10.0.0.4/30", size: 2 },
    { name: "/29", text: "10.0.0.8/29", size: 6 },
    { name: "/28", text: "10.0.0.16/28", size: 14 },
    { name: "/27", text: "10.0.0.32/27", size: 30 },
    { name: "/126", text: "fd00::4/126", size: 3 },
    { name: "/120", text: "fd00::200/120", size: 255 },
  ])("agrees with a plain bit-by-bit scan on random bitmaps of a $name", ({ text, size }) => {
    let seed = 0x2545f491;
    const rand = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    for (let round = 0; round < 200; round++) {
      const density = [0.5, 0.9, 0.97, 1][round % 4]!;
      const taken = all(size).filter(() => rand() < density);
      const excluded = all(size).filter(() => rand() < 0.05);
      const next = Math.floor(rand() * size);
      let want = -1;
      for (let k = 0; k < size; k++) {
        const o = (next + k) % size;
        if (!taken.includes(o) && !excluded.includes(o)) {
          want = o;
          break;
        }
      }
      const got = pick([cand(range(text, taken, next), excluded)]);
      expect({ round, offset: got?.offset ?? -1 }).toEqual({ round, offset: want });
    }
  });

  it.each([
    { name: "a full /29", text: "10.0.0.8/29", taken: all(6), excluded: [], next: 3 },
    { name: "a full /30", text: "10.0.0.4/30", taken: all(2), excluded: [], next: 1 },
    { name: "a full /120", text: "fd00::200/120", taken: all(255), excluded: [], next: 200 },
    { name: "a /29 whose free offsets are reserved", text: "10.0.0.8/29", taken: [1, 2, 3, 4], excluded: [0, 5], next: 0 },
  ])("returns null and changes nothing for $name", ({ text, taken, excluded, next }) => {
    const r = range(text, taken, next);
    const before = Uint8Array.from(r.bits);
    expect(allocateNext([cand(r, excluded)], 0, 0)).toBeNull();
    expect(r.bits).toEqual(before);
    expect(r).toMatchObject({ next, allocated: taken.length });
  });

  it("returns null for no ranges at all", () => {
    expect(allocateNext([], 0, 0)).toBeNull();
  });

  it("takes from the ranges in the order given, moving on when one is full", () => {
    const a = range("10.0.2.0/30");
    const b = range("10.0.3.0/30");
    const order = Array.from({ length: 5 }, () => pick([cand(a), cand(b)]));
    expect(order).toEqual([
      { cidr: "10.0.2.0/30", offset: 0 },
      { cidr: "10.0.2.0/30", offset: 1 },
      { cidr: "10.0.3.0/30", offset: 0 },
      { cidr: "10.0.3.0/30", offset: 1 },
      null,
    ]);
  });

  it("moves to the next range when the first has only reserved offsets free", () => {
    const a = range("10.0.2.0/30", [1]);
    const b = range("10.0.3.0/30");
    expect(pick([cand(a, [0]), cand(b, [0])])).toEqual({ cidr: "10.0.3.0/30", offset: 1 });
  });

  describe("cool-down", () => {
    const COOL = 10_000;

    it("skips an offset released within the cool-down while another is free", () => {
      const r = range("10.0.0.16/28", all(14, [10]));
      release(r, 3, 1000);
      expect(pick([cand(r)], 1500, COOL)?.offset).toBe(10);
    });

    it("skips a cooling offset in the first range for a free one in a later range", () => {
      const a = range("10.0.2.0/30", [0, 1]);
      const b = range("10.0.3.0/30", [0]);
      release(a, 1, 1000);
      expect(pick([cand(a), cand(b)], 2000, COOL)).toEqual({ cidr: "10.0.3.0/30", offset: 1 });
    });

    it("hands out the longest-released offset first when only cooling ones are left", () => {
      const r = range("10.0.0.16/28", all(14));
      release(r, 9, 2000);
      release(r, 3, 1000);
      release(r, 12, 1500);
      const now = 3000;
      expect([pick([cand(r)], now, COOL), pick([cand(r)], now, COOL), pick([cand(r)], now, COOL), pick([cand(r)], now, COOL)]).toEqual([
        { cidr: "10.0.0.16/28", offset: 3 },
        { cidr: "10.0.0.16/28", offset: 12 },
        { cidr: "10.0.0.16/28", offset: 9 },
        null,
      ]);
      expect(r.released.size).toBe(0);
    });

    it("compares cooling offsets across ranges", () => {
      const a = range("10.0.2.0/30", [0, 1]);
      const b = range("10.0.3.0/30", [0, 1]);
      release(a, 0, 1000);
      release(b, 1, 500);
      expect(pick([cand(a), cand(b)], 2000, COOL)).toEqual({ cidr: "10.0.3.0/30", offset: 1 });
    });

    it("does not fall back to a cooling offset that is reserved", () => {
      const r = range("10.0.0.4/30", [0, 1]);
      release(r, 0, 1000);
      expect(pick([cand(r, [0])], 2000, COOL)).toBeNull();
    });

    it.each([
      { name: "exactly at the end of the cool-down", now: 11_000, cooldownMs: COOL },
      { name: "long after the cool-down", now: 99_000, cooldownMs: COOL },
      { name: "when the cool-down is 0", now: 1000, cooldownMs: 0 },
    ])("treats a released offset as free $name", ({ now, cooldownMs }) => {
      const r = range("10.0.0.8/29", all(6, [5]), 0);
      release(r, 2, 1000);
      // Next-fit from 0 meets 2 before 5.
      expect(pick([cand(r)], now, cooldownMs)?.offset).toBe(2);
    });
  });
});

describe("freeCount", () => {
  it.each([
    { name: "an empty /24", text: "10.0.2.0/24", taken: [], excluded: [], expected: 254 },
    { name: "a /24 with the gateway reserved", text: "10.0.2.0/24", taken: [], excluded: [0], expected: 253 },
    { name: "a reserved offset that is also taken", text: "10.0.2.0/24", taken: [0, 5], excluded: [0], expected: 252 },
    { name: "a reserved offset beyond the window", text: "10.0.0.8/29", taken: [], excluded: [0, 6, 100], expected: 5 },
    { name: "a full /29", text: "10.0.0.8/29", taken: all(6), excluded: [0], expected: 0 },
  ])("counts $name", ({ text, taken, excluded, expected }) => {
    expect(freeCount(cand(range(text, taken), excluded))).toBe(expected);
  });
});

describe("pruneReleased", () => {
  it("drops entries whose cool-down has passed and keeps the others", () => {
    const r = range("10.0.0.8/29", [1, 2, 3]);
    release(r, 1, 1000);
    release(r, 2, 6000);
    release(r, 3, 9000);
    pruneReleased(r, 15_000, 10_000);
    expect([...r.released.keys()].sort()).toEqual([2, 3]);
  });

  it("drops every entry when the cool-down is 0", () => {
    const r = range("10.0.0.8/29", [1]);
    release(r, 1, 1000);
    pruneReleased(r, 1000, 0);
    expect(r.released.size).toBe(0);
  });
});

describe("countBits", () => {
  it.each([
    { name: "no bytes", bytes: [], expected: 0 },
    { name: "zero bytes", bytes: [0, 0], expected: 0 },
    { name: "full bytes", bytes: [0xff, 0xff, 0xff], expected: 24 },
    { name: "mixed bytes", bytes: [0b1011, 0x80, 0x3f], expected: 10 },
  ])("counts the set bits of $name", ({ bytes, expected }) => {
    expect(countBits(Uint8Array.from(bytes))).toBe(expected);
  });
});
