// The fuzz cases' raw material: the seeded generator, and JSON that can carry
// raw pieces JSON.stringify cannot write (deep nesting, 1e400, bytes that are not UTF-8).
import { prng } from "../../helpers/prng";

/** The shared seeded PRNG (mulberry32, test/helpers/prng.ts) with the draws the generators make. */
export class Rng {
  /** A number in [0, 1): the PRNG itself, so a seed gives the same sequence as prng(seed). */
  readonly next: () => number;
  constructor(seed: number) {
    this.next = prng(seed);
  }
  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(0, a.length)]!;
  }
  /** Call one of the generators. */
  gen<T>(a: readonly (() => T)[]): T {
    return this.pick(a)();
  }
}

export class Raw {
  readonly bytes: Buffer;
  constructor(b: Buffer | string) {
    this.bytes = typeof b === "string" ? Buffer.from(b, "utf8") : b;
  }
}
export const raw = (b: Buffer | string): Raw => new Raw(b);

export function encode(v: unknown): Buffer {
  const raws: Buffer[] = [];
  const text = JSON.stringify(v, (_k, x: unknown) => (x instanceof Raw ? `@@RAW${raws.push(x.bytes) - 1}@@` : x));
  const parts = text.split(/"@@RAW(\d+)@@"/);
  return Buffer.concat(parts.map((p, i) => (i % 2 ? raws[Number(p)]! : Buffer.from(p, "utf8"))));
}

export const MiB = 1 << 20;
/** A "1 MB" string that still fits in the 1 MiB stdin limit with the rest of a config, so the field's own check runs. */
export const HUGE = "h".repeat(1_000_000);
export const deepArr = (n: number): Raw => raw("[".repeat(n) + "]".repeat(n));
export const deepObj = (n: number): Raw => raw(`${'{"a":'.repeat(n)}0${"}".repeat(n)}`);
/** Thousands deep; at most 60,000 so a config stays under 1 MiB. */
export const depth = (r: Rng): number => r.int(2_000, 60_000);
/** A string token holding bytes that are not UTF-8. */
export const INVALID_UTF8: readonly number[][] = [
  [0xff],
  [0xfe, 0xff],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xc3],
  [0xf4, 0x90, 0x80, 0x80],
];
export function badUtf8String(r: Rng, before: string, after: string): Raw {
  return raw(Buffer.concat([Buffer.from(`"${before}`), Buffer.from(r.pick(INVALID_UTF8)), Buffer.from(`${after}"`)]));
}
export function throwsJson(b: Buffer): boolean {
  try {
    JSON.parse(b.toString("utf8"));
    return false;
  } catch {
    return true;
  }
}

export function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
