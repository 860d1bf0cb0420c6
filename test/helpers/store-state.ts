// The one way tests look into a store on disk: through the store's own code.
// State is read with an unlocked transact (as `repair --dry-run` and STATUS do:
// no lock taken, nothing written), so a test sees what the next call will see,
// in either format (the log store, or the previous release's files, which the
// store reads as that release did). Tests that damage a store aim at the log
// format's own parts (a checkpoint's sections, a log record), found through the
// store's code too (Slot, the log's header layout), never by guessing offsets.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RangeState, emptyRange, take } from "../../src/ipam/allocator.js";
import { addressAt, parseCidr } from "../../src/ipam/cidr.js";
import { heldOffsets } from "../../src/ipam/pool.js";
import * as codec from "../../src/store/codec.js";
import { DiskStore, STORE } from "../../src/store/disk.js";
import { LOG, SLOTS, commit, confirm, load, txOf } from "../../src/store/engine.js";
import { closeFile, openFile } from "../../src/store/files.js";
import { acquire } from "../../src/store/lock.js";
import { HEADER, MAGIC } from "../../src/store/log.js";
import type { AttachmentRecord } from "../../src/store/store.js";

export interface RangeView {
  readonly cidr: string;
  /** Offsets whose bit is set, ascending. */
  readonly offsets: readonly number[];
  /** The addresses of those offsets. */
  readonly addresses: readonly string[];
  readonly next: number;
  readonly allocated: number;
  /** offset -> released-at (ms) of the reuse cool-down. */
  readonly released: ReadonlyMap<number, number>;
}

export interface StoreState {
  /** Every attachment record, of every network. */
  readonly records: readonly AttachmentRecord[];
  readonly ranges: readonly RangeView[];
  /** Parts that failed to load (skipped, as DEL, GC and status skip them). */
  readonly damaged: readonly { readonly file: string; readonly reason: string }[];
}

/** The store of `dataDir` as the next call sees it. Throws the store's CniError when it does not load (103). */
export async function readStore(dataDir: string): Promise<StoreState> {
  const store = new DiskStore(dataDir, 2000, () => {});
  const { value } = await store.transact({ create: false, unlocked: true, skipDamaged: true }, (tx) => ({
    records: tx.attachments(),
    ranges: tx.storedRanges().map((r): RangeView => {
      const offsets: number[] = [];
      for (let o = 0; o < r.cidr.size; o++) if (r.bits[o >> 3]! & (1 << (o & 7))) offsets.push(o);
      return {
        cidr: r.cidr.text,
        offsets,
        addresses: offsets.map((o) => addressAt(r.cidr, o)),
        next: r.next,
        allocated: r.allocated,
        released: new Map(r.released),
      };
    }),
    damaged: tx.corrupt().map((d) => ({ file: d.file, reason: d.reason })),
  }));
  return value;
}

export interface Holdings {
  /** address -> the attachments whose records hold it ("network/containerID/ifname"). */
  readonly byAddress: Map<string, string[]>;
  /** Addresses two or more records hold. */
  readonly duplicates: string[];
  /** IPv4 addresses a record holds whose bit is clear (the next ADD may hand them out again). */
  readonly unmarked: string[];
  /** IPv4 bits set that no record holds (a leak). */
  readonly unowned: string[];
  /** containerID -> addresses its records hold. */
  readonly byContainer: Map<string, string[]>;
}

/** Who holds what, and where records and IPv4 bitmaps disagree. */
export async function holdings(dataDir: string): Promise<Holdings> {
  const s = await readStore(dataDir);
  const byAddress = new Map<string, string[]>();
  const byContainer = new Map<string, string[]>();
  for (const r of s.records) {
    for (const ip of r.ips) {
      byAddress.set(ip.address, [...(byAddress.get(ip.address) ?? []), `${r.network}/${r.containerID}/${r.ifname}`]);
      byContainer.set(r.containerID, [...(byContainer.get(r.containerID) ?? []), ip.address]);
    }
  }
  const set = new Set(s.ranges.filter((r) => !r.cidr.includes(":")).flatMap((r) => r.addresses));
  const v4 = [...byAddress.keys()].filter((a) => !a.includes(":"));
  return {
    byAddress,
    byContainer,
    duplicates: [...byAddress].filter(([, who]) => who.length > 1).map(([a]) => a),
    unmarked: v4.filter((a) => !set.has(a)),
    unowned: [...set].filter((a) => !byAddress.has(a)),
  };
}

/** The containerIDs of every record (sorted), of one network or all. */
export async function containers(dataDir: string, network?: string): Promise<string[]> {
  const s = await readStore(dataDir);
  return s.records
    .filter((r) => network === undefined || r.network === network)
    .map((r) => `${r.containerID}@${r.ifname}`)
    .sort();
}

/**
 * Write the whole state into a checkpoint now, as a commit past 64 KiB of log would
 * (under the store's lock, through its commit). Returns the slot's path. Tests that
 * damage a range or a record need them in a checkpoint: until one is written, the
 * state is in the log's records.
 */
export async function checkpointNow(dataDir: string): Promise<string> {
  const dir = join(dataDir, STORE);
  const lock = await acquire(dir, 10_000);
  try {
    const v = load(dir, true);
    try {
      confirm(v);
      commit(v, txOf(v, { writable: true }), lock, Date.now(), true);
      return join(dir, SLOTS[1 - v.slot]!);
    } finally {
      v.close();
    }
  } finally {
    lock.release();
  }
}

export interface Section {
  /** The slot file. */
  readonly path: string;
  /** Byte range of the section in that file (its line, without the newline). */
  readonly start: number;
  readonly length: number;
}

export type SectionTarget =
  | { readonly meta: true }
  | { readonly range: string }
  | { readonly record: { readonly network?: string; readonly containerID: string; readonly ifname?: string } }
  | { readonly history: true };

/** Where a part of the checkpoint the store loads from is (the valid slot of the highest generation). */
export function section(dataDir: string, target: SectionTarget): Section {
  const dir = join(dataDir, STORE);
  const v = load(dir, false);
  try {
    if (!v.base) throw new Error(`no checkpoint in ${dir}`);
    const path = v.base.path;
    const text = readFileSync(path).toString("latin1");
    const base = text.indexOf("\n") + 1;
    const m = v.base.meta;
    if ("meta" in target) return { path, start: 0, length: base - 1 };
    if ("history" in target) return { path, start: base + m.history[0], length: m.history[1] };
    if ("range" in target) {
      const p = parseCidr(target.range);
      const e = m.ranges.find((r) => p.ok && r[0] === p.cidr.text);
      if (!e) throw new Error(`checkpoint ${path} has no range ${target.range}`);
      return { path, start: base + e[1], length: e[2] };
    }
    const { network = "podnet", containerID, ifname = "eth0" } = target.record;
    // The record's own entry in its bucket line: [crc,[network,containerID,ifname,...]].
    const needle = JSON.stringify([network, containerID, ifname]).slice(0, -1);
    for (let i = 0; i < m.buckets; i++) {
      const start = base + m.index.readUInt32BE(i * 12);
      const line = text.slice(start, start + m.index.readUInt32BE(i * 12 + 4));
      const at = line.indexOf(needle);
      if (at < 0) continue;
      const open = line.lastIndexOf("[", line.lastIndexOf("[", at - 1));
      let depth = 0;
      for (let j = open; j < line.length; j++) {
        if (line[j] === "[") depth++;
        else if (line[j] === "]" && --depth === 0) return { path, start: start + open, length: j + 1 - open };
      }
    }
    throw new Error(`checkpoint ${path} has no record of ${network}/${containerID}/${ifname}`);
  } finally {
    v.close();
  }
}

/** Change one byte of a section, at `at` bytes into it (kept inside it), keeping its length: its CRC fails. */
export function damageSection(s: Section, at = Math.floor(s.length / 2)): void {
  const buf = readFileSync(s.path);
  const i = s.start + Math.min(Math.max(1, at), s.length - 2);
  buf[i] = buf[i] === 0x41 ? 0x42 : 0x41;
  writeFileSync(s.path, buf);
}

/**
 * Damage a part of the checkpoint the store loads, the way a flipped bit on disk would, and
 * so that the rest of that part still parses: a range's bitmap (a character of its base64),
 * a record's time of creation (its key fields intact: the damage is that record's own), a
 * character of the meta's format name, of the history. Returns the section damaged.
 */
export function damage(dataDir: string, target: SectionTarget): Section {
  const s = section(dataDir, target);
  const text = readFileSync(s.path).toString("latin1", s.start, s.start + s.length);
  const aim = "range" in target ? '"bits":"' : "record" in target ? '"20' : "meta" in target ? '"podcidr' : null;
  const at = aim === null ? Math.floor(s.length / 2) : text.indexOf(aim) + aim.length + 1;
  if (aim !== null && at <= aim.length) throw new Error(`no ${aim} in ${s.path} at ${s.start}`);
  damageSection(s, at);
  return s;
}

export interface LogRecord {
  readonly offset: number;
  /** Header and payload. */
  readonly length: number;
  readonly gen: number;
  readonly seq: number;
  /** The payload (JSON text; "{}" for a generation record). */
  readonly payload: string;
}

/** The records at the start of the log, read with the log's header layout up to the first that is not one (zeros, a torn one). */
export function logRecords(dataDir: string): LogRecord[] {
  const path = join(dataDir, STORE, LOG);
  const fd = openFile(path, false);
  if (fd === null) return [];
  closeFile(fd);
  const buf = readFileSync(path);
  const out: LogRecord[] = [];
  for (let off = 0; off + HEADER <= buf.length && buf.readUInt32BE(off) === MAGIC; ) {
    const length = HEADER + buf.readUInt32BE(off + 16);
    if (off + length > buf.length) break;
    out.push({
      offset: off,
      length,
      gen: buf.readUInt32BE(off + 8),
      seq: buf.readUInt32BE(off + 12),
      payload: buf.toString("latin1", off + HEADER, off + length),
    });
    off += length;
  }
  return out;
}

/** True when a record in the log names `containerID` (its commit's pwrite has happened). */
export function logNames(dataDir: string, containerID: string): boolean {
  return logRecords(dataDir).some((r) => r.seq > 0 && r.payload.includes(`,${JSON.stringify(containerID)},`));
}

/** Change one byte of a log record's payload (its CRC fails). */
export function damageRecord(dataDir: string, r: LogRecord): void {
  const path = join(dataDir, STORE, LOG);
  const buf = readFileSync(path);
  const i = r.offset + HEADER + Math.floor((r.length - HEADER) / 2);
  buf[i] = buf[i] === 0x41 ? 0x42 : 0x41;
  writeFileSync(path, buf);
}

/**
 * A store of the previous release's format (range-*.json, attachments/<network>/<id>@<if>.json), written with that
 * format's own encoders (src/store/codec.ts, which the upgrade reads with): `records`, their addresses taken.
 */
export function previousFormatStore(dataDir: string, records: readonly AttachmentRecord[]): void {
  const dir = join(dataDir, STORE);
  const ranges = new Map<string, RangeState>();
  for (const r of records) {
    mkdirSync(join(dir, "attachments", r.network), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, codec.attachmentPath(r)), codec.encodeAttachment(r), { mode: 0o600 });
    for (const h of heldOffsets(r)) {
      if (!h.cidr) continue;
      const range = ranges.get(h.cidr.text) ?? emptyRange(h.cidr);
      take(range, h.offset);
      ranges.set(h.cidr.text, range);
    }
  }
  for (const r of ranges.values()) writeFileSync(join(dir, codec.rangeFileName(r.cidr.text)), codec.encodeRange(r), { mode: 0o600 });
}

/** A pending journal of the previous format (what a commit killed mid-way left), sealed as that release sealed it. */
export function previousFormatJournal(writes: readonly { file: string; content: string | null }[]): string {
  return codec.encodeJournal(writes);
}
