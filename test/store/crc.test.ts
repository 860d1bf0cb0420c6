// The store's CRC-32 runs by table until a process has hashed 4 KiB, then by zlib's native
// one, taken from the zlib binding (node:zlib's public crc32 where the binding is not
// offered): each must give node:zlib's value, for whole buffers, slices and continuations.
import { randomBytes } from "node:crypto";
import * as zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { crc32, crc32More, crcEngine } from "../../src/store/crc";

const native = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

describe.runIf(native)("crc32", () => {
  it("equals zlib's CRC-32 on both sides of the switch from table to native", () => {
    // Sizes from 0 up: the first calls run by table, the later ones natively.
    for (const n of [0, 1, 7, 64, 200, 1000, 3000, 5000, 20_000, 70_000]) {
      const b = randomBytes(n);
      expect(crc32(b), `size ${n}`).toBe(native!(b));
      if (n >= 10) expect(crc32(b, 3, n - 5), `slice of ${n}`).toBe(native!(b.subarray(3, n - 5)));
      const [head, tail] = [b.subarray(0, n >> 1), b.subarray(n >> 1)];
      expect(crc32More(crc32(head), tail), `continued ${n}`).toBe(native!(b));
    }
    // On a Node whose node:zlib has crc32 (20.15 and later), the binding under it has it too.
    expect(crcEngine()).toBe("binding");
  });
});
