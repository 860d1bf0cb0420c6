// CRC-32 (zlib's polynomial) of bytes: a table while this process has hashed little (the
// meta line and a few records of a quiet store), node:zlib's native one once it hashes
// more (a long log, a checkpoint's sections) where this Node has it (20.15 and later).
// node:zlib is loaded only then: loading it costs an ADD about 1 ms, and the table, run
// cold in a fresh process, costs about as much per 16 KiB.
// Every record and section of the store carries one.
type Native = (data: Uint8Array, value?: number) => number;
/** Bytes this process hashes by table before it loads node:zlib. */
const TABLE_BYTES = 4 << 10;
let tabled = 0;
let native: Native | null | undefined;
let table: Int32Array | undefined;

function nativeCrc(): Native | null {
  if (native === undefined) native = (require("node:zlib") as { crc32?: Native }).crc32 ?? null;
  return native;
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
