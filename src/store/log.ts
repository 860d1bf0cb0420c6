// The log: records appended in place to a preallocated file. A record is a
// 24-byte header (magic, version, flags, generation, seq, payload length, CRC-32
// of header and payload) and an ASCII JSON payload, so the magic's first byte
// (0xCE) occurs only where a record starts. See docs/design-log-store.md.
import { Code, CniError } from "../errors.js";
import { type Change, fromArray, toArray } from "./change.js";
import { asciiJson, crc32, crc32More } from "./crc.js";
import { fileSize, readAt } from "./files.js";

export const MAGIC = 0xce1d4c47;
/** The store's format version; the files of the previous release (journal, range and attachment files) were version 1. */
export const FORMAT_VERSION = 2;
export const HEADER = 24;
/** The log file's size: written with zeros once, so an append allocates nothing. */
export const LOG_BYTES = 128 << 10;
/** A commit whose record would take the log past this (bytes or records) writes a checkpoint instead. */
export const COMPACT_BYTES = 64 << 10;
export const COMPACT_RECORDS = 512;
const FIRST_READ = 64 << 10;

export interface LogScan {
  /** The changes of this generation, seq 1, 2, ... (seq 0, the generation record, has none). */
  readonly changes: Change[];
  /** True when record (gen, 0) starts the log: the checkpoint of this generation was synced. */
  readonly confirmed: boolean;
  /** Where the next record goes. */
  readonly tail: number;
  /** The next record's seq (0 when the log does not start with this generation's record). */
  readonly nextSeq: number;
  /** End of bytes after the tail that are not zeros (a torn record, older generations): the next append zeroes them. */
  readonly junkEnd: number;
  /** The generation of a valid record of a newer generation at offset 0 (its checkpoint is missing or damaged). */
  readonly newerGen?: number;
  /** Salvage only: bytes that failed their checks between valid records of this generation (damage mid-log). */
  readonly damaged?: readonly { readonly at: number; readonly seq: number; readonly text: string }[];
}

export function encodeRecord(gen: number, seq: number, change: Change | null): Buffer {
  const payload = Buffer.from(change ? asciiJson(encodeChange(change)) : "{}", "latin1");
  const buf = Buffer.alloc(HEADER + payload.length);
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt16BE(FORMAT_VERSION, 4);
  buf.writeUInt16BE(0, 6);
  buf.writeUInt32BE(gen, 8);
  buf.writeUInt32BE(seq, 12);
  buf.writeUInt32BE(payload.length, 16);
  payload.copy(buf, HEADER);
  buf.writeUInt32BE(crc32More(crc32(buf, 0, 20), payload), 20);
  return buf;
}

/**
 * Read the records of generation `gen` from the log open at `fd` (path for messages). Damage
 * followed by valid records of `gen` is 103, or, salvaging (repair), skipped and returned.
 */
export function scanLog(fd: number, path: string, gen: number, salvage = false): LogScan {
  const size = Math.min(fileSize(fd), LOG_BYTES * 4);
  let buf = readAt(fd, 0, Math.min(size, FIRST_READ));
  const cover = (end: number): boolean => {
    if (end <= buf.length) return true;
    if (buf.length >= size) return false;
    buf = Buffer.concat([buf, readAt(fd, buf.length, Math.min(size, Math.max(end, buf.length * 2)) - buf.length)]);
    return end <= buf.length;
  };
  const changes: Change[] = [];
  let off = 0;
  let seq = 0;
  for (;;) {
    if (!cover(off + HEADER)) return done(null);
    const h = header(buf, off);
    // Zeros end the log, unless a record starts after them in what was read (a record zeroed mid-log: bad() decides).
    if (h.zero) return buf.indexOf(0xce, off) < 0 ? done(null) : bad();
    if (h.magic !== MAGIC || h.length > size || !cover(off + HEADER + h.length)) return bad();
    if (crc32More(crc32(buf, off, off + 20), buf.subarray(off + HEADER, off + HEADER + h.length)) !== h.crc) return bad();
    if (h.version > FORMAT_VERSION) throw newer(path, h.version);
    if (h.gen !== gen || h.seq !== seq) {
      if (off === 0 && h.gen > gen && h.seq === 0) return { ...done(0), newerGen: h.gen };
      return bad();
    }
    if (seq > 0) changes.push(decodeChange(buf.toString("latin1", off + HEADER, off + HEADER + h.length), path, seq));
    off += HEADER + h.length;
    seq++;
  }

  /** The log ends at `off`; `junkFrom`: where bytes that are not zeros begin (null: zeros or the end of the file follow). */
  function done(junkFrom: number | null): LogScan {
    return { changes, confirmed: seq > 0, tail: off, nextSeq: seq, junkEnd: junkFrom === null ? off : junkEnd(junkFrom) };
  }

  /** A record that fails its checks: a torn tail, unless a valid later record of this generation shows damage mid-log. */
  function bad(): LogScan {
    cover(size);
    const later: { p: number; end: number; seq: number }[] = [];
    for (let p = buf.indexOf(0xce, off + 1); p >= 0 && p + HEADER <= buf.length; p = buf.indexOf(0xce, p + 1)) {
      const h = header(buf, p);
      if (h.magic !== MAGIC || h.gen !== gen || h.seq <= (later.at(-1)?.seq ?? seq) || p + HEADER + h.length > buf.length) continue;
      if (crc32More(crc32(buf, p, p + 20), buf.subarray(p + HEADER, p + HEADER + h.length)) !== h.crc) continue;
      if (!salvage) {
        throw new CniError(
          Code.StoreCorrupt,
          `store file ${path} is corrupt: record ${seq} of generation ${gen} (at byte ${off}) fails its checks, ` +
            `and record ${h.seq} after it is valid`,
          "acknowledged changes follow the damaged record: podcidr-ipam refuses to guess which addresses are in use. Run " +
            "`podcidr-ipam repair --conf <your conflist>` (add --dry-run first): it keeps a copy of the log in quarantine/, applies " +
            "the records it can read, and keeps taken every address still legible in the damaged one.",
        );
      }
      later.push({ p, end: p + HEADER + h.length, seq: h.seq });
      p += HEADER + h.length - 1;
    }
    if (later.length === 0) return done(off);
    // Repair: the records that pass their checks are applied in order; the bytes between them are handed back.
    const damaged: { at: number; seq: number; text: string }[] = [];
    for (const r of later) {
      if (r.p > off) damaged.push({ at: off, seq, text: buf.toString("latin1", off, r.p) });
      changes.push(decodeChange(buf.toString("latin1", r.p + HEADER, r.end), path, r.seq));
      off = r.end;
      seq = r.seq + 1;
    }
    return { ...done(off), damaged };
  }

  /** The end of non-zero bytes from `from` on: the first 4 KiB-aligned zero block after it. */
  function junkEnd(from: number): number {
    for (let p = from; p < buf.length; p = (Math.floor(p / 4096) + 1) * 4096) {
      const end = Math.min(buf.length, (Math.floor(p / 4096) + 1) * 4096);
      if (p % 4096 === 0 && buf.subarray(p, end).every((b) => b === 0)) return p;
    }
    return buf.length;
  }
}

/** The generation of the log's first record when it is a valid generation record (repair: which checkpoint the log follows), else 0. */
export function firstGen(fd: number): number {
  const buf = readAt(fd, 0, HEADER);
  if (buf.length < HEADER) return 0;
  const h = header(buf, 0);
  const ok = h.magic === MAGIC && h.seq === 0 && h.length === 2;
  return ok && crc32More(crc32(buf, 0, 20), readAt(fd, HEADER, 2)) === h.crc ? h.gen : 0;
}

/** A record of a newer format version: refused, whatever else is right about it. */
export function newer(path: string, version: number): CniError {
  return new CniError(
    Code.StoreCorrupt,
    `store file ${path} was written by a newer podcidr-ipam (format version ${version}; this build reads ${FORMAT_VERSION})`,
    "a store is never downgraded: install that release (or a newer one) again on this node; this build changes nothing in it",
  );
}

// --- internal ---

function header(buf: Buffer, off: number) {
  let zero = true;
  for (let i = off; i < off + HEADER; i++) {
    if (buf[i] !== 0) {
      zero = false;
      break;
    }
  }
  return {
    zero,
    magic: buf.readUInt32BE(off),
    version: buf.readUInt16BE(off + 4),
    gen: buf.readUInt32BE(off + 8),
    seq: buf.readUInt32BE(off + 12),
    length: buf.readUInt32BE(off + 16),
    crc: buf.readUInt32BE(off + 20),
  };
}

function encodeChange(c: Change): Record<string, unknown> {
  return {
    t: c.t,
    ...(c.put?.length ? { put: c.put.map(toArray) } : {}),
    ...(c.del?.length ? { del: c.del.map(toArray) } : {}),
    ...(c.rng?.length ? { rng: c.rng } : {}),
    ...(c.sw && Object.keys(c.sw).length ? { sw: c.sw } : {}),
  };
}

function decodeChange(text: string, path: string, seq: number): Change {
  const bad = (): CniError =>
    new CniError(
      Code.StoreCorrupt,
      `store file ${path} is corrupt: record ${seq} passes its checksum but does not hold a change`,
      "it was not written by podcidr-ipam; run `podcidr-ipam repair --conf <your conflist>`",
    );
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw bad();
  }
  if (typeof o !== "object" || o === null || typeof o.t !== "number") throw bad();
  const recs = (v: unknown) => {
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw bad();
    return v.map((a) => fromArray(a) ?? badRec());
  };
  const badRec = (): never => {
    throw bad();
  };
  if (o.rng !== undefined && !Array.isArray(o.rng)) throw bad();
  for (const d of (o.rng as unknown[] | undefined) ?? []) if (typeof (d as { c?: unknown })?.c !== "string") throw bad();
  return {
    t: o.t,
    put: recs(o.put),
    del: recs(o.del),
    rng: (o.rng as Change["rng"]) ?? [],
    sw: typeof o.sw === "object" && o.sw !== null ? (o.sw as Record<string, string>) : {},
  };
}
