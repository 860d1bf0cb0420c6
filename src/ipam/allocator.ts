// The pure allocator: bitmaps over each podCIDR's window (see cidr.ts), no disk.
//
// Bit i of a range is byte i>>3, mask 1<<(i&7): offset i is taken. A range also
// remembers `next` (next-fit cursor: the scan starts there and wraps) and, for
// the reuse cool-down, when each recently released offset was freed.
import type { Cidr } from "./cidr.js";

export interface RangeState {
  readonly cidr: Cidr;
  readonly bits: Uint8Array;
  /** Offset the next scan starts at. */
  next: number;
  /** Number of set bits. */
  allocated: number;
  /** offset -> epoch ms it was released; only entries still inside the cool-down. */
  readonly released: Map<number, number>;
}

export function emptyRange(cidr: Cidr): RangeState {
  return { cidr, bits: new Uint8Array(Math.ceil(cidr.size / 8)), next: 0, allocated: 0, released: new Map() };
}

export function isSet(r: RangeState, offset: number): boolean {
  return (r.bits[offset >> 3]! & (1 << (offset & 7))) !== 0;
}

/** Mark offset taken. False when it was taken already (an ordinary outcome). */
export function take(r: RangeState, offset: number): boolean {
  if (offset < 0 || offset >= r.cidr.size || isSet(r, offset)) return false;
  r.bits[offset >> 3]! |= 1 << (offset & 7);
  r.allocated++;
  r.released.delete(offset);
  return true;
}

/** Free an offset. False when it was free already. */
export function release(r: RangeState, offset: number, now: number): boolean {
  if (offset < 0 || offset >= r.cidr.size || !isSet(r, offset)) return false;
  r.bits[offset >> 3]! &= ~(1 << (offset & 7));
  r.allocated--;
  r.released.set(offset, now);
  return true;
}

export function countBits(bits: Uint8Array): number {
  let n = 0;
  for (const b of bits) {
    let v = b;
    while (v) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}

/** A range to allocate from, with the offsets that must not be handed out (gateway, node IPs...). */
export interface Candidate {
  readonly range: RangeState;
  readonly excluded: ReadonlySet<number>;
}

/**
 * Pick and take the next free offset across ranges of one family, in order.
 * Next-fit inside a range: start at `next`, wrap, so a just-released offset is
 * not reused at once. Offsets released less than `cooldownMs` ago are skipped
 * while any other offset in any range is free; among cooling ones the longest
 * released goes first. Returns null when every range is full.
 */
export function allocateNext(cands: readonly Candidate[], now: number, cooldownMs: number): { range: RangeState; offset: number } | null {
  let cooling: { range: RangeState; offset: number; at: number } | null = null;
  for (const c of cands) {
    const r = c.range;
    if (freeCount(c) <= 0) continue;
    const found = scan(r, c.excluded, (offset) => {
      const at = r.released.get(offset);
      if (at === undefined || cooldownMs <= 0 || now - at >= cooldownMs) return true;
      if (!cooling || at < cooling.at) cooling = { range: r, offset, at };
      return false;
    });
    if (found >= 0) return commitPick(r, found);
  }
  const pick = cooling as { range: RangeState; offset: number } | null;
  return pick ? commitPick(pick.range, pick.offset) : null;
}

/** Free offsets that may be handed out now (excluding reserved ones). */
export function freeCount(c: Candidate): number {
  let excludedFree = 0;
  for (const o of c.excluded) if (o < c.range.cidr.size && !isSet(c.range, o)) excludedFree++;
  return c.range.cidr.size - c.range.allocated - excludedFree;
}

/** Drop cool-down entries that have expired, so the record stays small. */
export function pruneReleased(r: RangeState, now: number, cooldownMs: number): void {
  for (const [o, at] of r.released) if (cooldownMs <= 0 || now - at >= cooldownMs) r.released.delete(o);
}

// --- internal ---

function commitPick(r: RangeState, offset: number): { range: RangeState; offset: number } {
  take(r, offset);
  r.next = offset + 1 >= r.cidr.size ? 0 : offset + 1;
  return { range: r, offset };
}

/** First offset from `next` (wrapping) that is free, not excluded and accepted. -1 if none. */
function scan(r: RangeState, excluded: ReadonlySet<number>, accept: (offset: number) => boolean): number {
  const size = r.cidr.size;
  const start = r.next >= 0 && r.next < size ? r.next : 0;
  let i = start;
  for (let seen = 0; seen < size; ) {
    // Skip whole bytes that are full.
    if ((i & 7) === 0 && r.bits[i >> 3] === 0xff && i + 8 <= size) {
      const step = Math.min(8, size - seen);
      i += 8;
      seen += step;
      if (i >= size) i = 0;
      continue;
    }
    if (!isSet(r, i) && !excluded.has(i) && accept(i)) return i;
    i++;
    seen++;
    if (i >= size) i = 0;
  }
  return -1;
}
