// CRC-32 (zlib's polynomial) of bytes: a table while this process has hashed little (the
// meta line and a few records of a quiet store), zlib's native one once it hashes more (a
// long log, a checkpoint's sections) where this Node has it (20.15 and later). The table,
// run cold in a fresh process, costs about 1 ms per 16 KiB.
// The native function is taken from the zlib binding itself, the very function node:zlib's
// crc32() calls after checking its arguments: `require("node:zlib")` also loads Node's whole
// stream stack, 20 internal modules, 1 to 2 ms of a call, for one function. Where the
// binding is not offered (process.binding is deprecated; a later Node may drop zlib from
// it), node:zlib's public crc32, then the table, do the same work.
// Every record and section of the store carries one.
type Native = (data: Uint8Array, value?: number) => number;
/** Bytes this process hashes by table before it loads node:zlib. */
const TABLE_BYTES = 4 << 10;
let tabled = 0;
let native: Native | null | undefined;
let table: Int32Array | undefined;

let engine: "binding" | "zlib" | "table" = "table";

function nativeCrc(): Native | null {
  if (native !== undefined) return native;
  native = bindingCrc() ?? null;
  if (native) engine = "binding";
  else {
    native = (require("node:zlib") as { crc32?: Native }).crc32 ?? null;
    if (native) engine = "zlib";
  }
  return native;
}

function bindingCrc(): Native | undefined {
  try {
    const f = (process as unknown as { binding(name: string): { crc32?: unknown } }).binding("zlib").crc32;
    // Its own contract: (Uint8Array, uint32) -> uint32; checked once, on a known value.
    // The binding takes no default (a missing value aborts the process): always pass one.
    if (typeof f === "function" && f(new Uint8Array([97, 98, 99]), 0) === 0x352441c2) return (data, value = 0) => f(data, value);
  } catch {}
  return undefined;
}

/** Which CRC this process uses past the table's bytes (for the test that checks all three agree). */
export function crcEngine(): "binding" | "zlib" | "table" {
  nativeCrc();
  return engine;
}

export function crc32(data: Uint8Array, start = 0, end = data.length): number {
  tabled += end - start;
  const fast = tabled > TABLE_BYTES ? nativeCrc() : null;
  if (fast) return fast(start === 0 && end === data.length ? data : data.subarray(start, end));
  if (!table) {
    table = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c;
    }
  }
  let crc = -1;
  for (let i = start; i < end; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

/** Continue a CRC over more bytes (a header, then a payload). */
export function crc32More(prev: number, data: Uint8Array): number {
  tabled += data.length;
  const fast = tabled > TABLE_BYTES ? nativeCrc() : null;
  if (fast) return fast(data, prev);
  // Table fallback: undo the final xor, go on, redo it.
  if (!table) crc32(new Uint8Array(0));
  let crc = prev ^ -1;
  for (const b of data) crc = table![(crc ^ b) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

/** JSON with every non-ASCII character escaped: the text holds only bytes 0x20-0x7e (and never a record's magic). */
export function asciiJson(v: unknown): string {
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
