// An in-memory Store for in-process tests of the handlers, with the observable
// semantics of the disk store (src/store/disk.ts, disk-tx.ts):
//
// - transactions run one at a time (a promise chain) and resolve { value, waitedMs: 0 };
// - a transaction whose fn throws leaves no trace: ranges and records are deep-copied
//   in and out, and only what fn changed (a range it `touch`ed, a record it put or
//   deleted) is written, after fn returns;
// - create:false on a store that does not exist yet reads empty and refuses writes
//   (999, as DiskTx.mustWrite); create:true on a missing store runs fn once against
//   the empty store first and creates the store only if that run succeeds (as disk does);
// - unlocked: fn sees the store, nothing it does is kept;
// - records are listed in path order (attachments/<network>/<containerID>@<ifname>.json),
//   a record deleted in the transaction is hidden, one put in it is seen;
// - networks() lists every network that ever had a record (folders on disk are never removed);
// - damage can be injected (damageRange, damageRecord): read by key a damaged record
//   throws the 103 of codec.corrupt even when damage is tolerated; listed, or a damaged
//   range, it throws the same 103 unless the transaction tolerates damage (skipDamaged,
//   salvage), then it is noted in corrupt() and read as absent. A damaged range is never
//   rewritten unless salvage; salvaging, every file noted is moved to `quarantined` on commit.
import type { StoreClaims, Deps } from "../../src/commands/index.js";
import { Code, CniError } from "../../src/errors.js";
import { type RangeState, emptyRange, isSet, take } from "../../src/ipam/allocator.js";
import { type Cidr, parseCidr } from "../../src/ipam/cidr.js";
import * as codec from "../../src/store/codec.js";
import type { AttachmentKey, AttachmentRecord, Damaged, Store, TransactOptions, Tx } from "../../src/store/store.js";

/** A damaged range: the file fails to load; `salvaged` is what a repair can still read of its bitmap. */
interface DamagedRange {
  readonly cidr: Cidr;
  readonly reason: string;
  readonly salvaged?: readonly number[];
}

interface DamagedRecord {
  readonly key: AttachmentKey;
  readonly reason: string;
}

/** The committed state. */
interface State {
  exists: boolean;
  ranges: Map<string, RangeState>;
  /** path (codec.attachmentPath) -> record */
  records: Map<string, AttachmentRecord>;
  damagedRanges: Map<string, DamagedRange>;
  /** path -> damage */
  damagedRecords: Map<string, DamagedRecord>;
  /** Networks that have (or had) a record: disk never removes a network's folder. */
  networks: Set<string>;
}

/** A plain, comparable picture of the store (toEqual). */
export interface MemorySnapshot {
  readonly exists: boolean;
  readonly ranges: Record<string, { offsets: number[]; next: number; allocated: number; released: Record<number, number> }>;
  readonly records: Record<string, AttachmentRecord>;
  readonly damaged: string[];
  readonly networks: string[];
  readonly quarantined: string[];
}

export class MemoryStore implements Store {
  readonly location = "memory";
  /** Every transaction's options, in order. */
  readonly transactions: TransactOptions[] = [];
  /** Damaged files a salvaging transaction moved away (as quarantine/ on disk). */
  readonly quarantined: Damaged[] = [];
  /** How many times a transaction function ran (fn runs twice on the transaction that creates the store). */
  runs = 0;
  private state: State = {
    exists: false,
    ranges: new Map(),
    records: new Map(),
    damagedRanges: new Map(),
    damagedRecords: new Map(),
    networks: new Set(),
  };
  private queue: Promise<unknown> = Promise.resolve();

  transact<T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<{ value: T; waitedMs: number }> {
    const run = (): { value: T; waitedMs: number } => ({ value: this.run(opts, fn), waitedMs: 0 });
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  // --- the test's hands on the store (each makes it exist) ---

  /** Store a copy of a range, replacing what was there (and any damage). */
  putRange(range: RangeState): void {
    this.state.exists = true;
    this.state.damagedRanges.delete(range.cidr.text);
    this.state.ranges.set(range.cidr.text, copyRange(range));
  }

  /** A copy of a stored range, or undefined. */
  range(cidr: string): RangeState | undefined {
    const r = this.state.ranges.get(canonical(cidr));
    return r ? copyRange(r) : undefined;
  }

  /** Change a stored range in place (an empty one if none is stored), e.g. to clear or set a bit behind the records' back. */
  editRange(cidr: string, edit: (r: RangeState) => void): void {
    const c = cidrOf(cidr);
    const r = this.range(c.text) ?? emptyRange(c);
    edit(r);
    this.putRange(r);
  }

  /** Set the bits of offsets no record holds (bits whose record was lost). */
  setBits(cidr: string, offsets: readonly number[]): void {
    this.editRange(cidr, (r) => {
      for (const o of offsets) take(r, o);
    });
  }

  putRecord(rec: AttachmentRecord): void {
    this.state.exists = true;
    const path = codec.attachmentPath(rec);
    this.state.damagedRecords.delete(path);
    this.state.records.set(path, copyRecord(rec));
    this.state.networks.add(rec.network);
  }

  record(key: AttachmentKey): AttachmentRecord | undefined {
    const r = this.state.records.get(codec.attachmentPath(key));
    return r ? copyRecord(r) : undefined;
  }

  /** Every stored record, in path order. */
  records(): AttachmentRecord[] {
    return [...this.state.records.entries()].sort(byPath).map(([, r]) => copyRecord(r));
  }

  /**
   * Damage a range's file: it no longer loads. `salvaged`: the offsets a repair can still
   * read from it (as codec.salvageRange); "bits" for those the stored range marks now.
   */
  damageRange(cidr: string, opts: { reason?: string; salvaged?: readonly number[] | "bits" } = {}): void {
    const c = cidrOf(cidr);
    const before = this.state.ranges.get(c.text);
    const salvaged = opts.salvaged === "bits" ? (before ? setOffsets(before) : []) : opts.salvaged;
    this.state.exists = true;
    this.state.ranges.delete(c.text);
    this.state.damagedRanges.set(c.text, {
      cidr: c,
      reason: opts.reason ?? "its checksum does not match its content",
      ...(salvaged ? { salvaged: [...salvaged] } : {}),
    });
  }

  /** Damage an attachment's record: its file is there but fails to load. */
  damageRecord(key: AttachmentKey, reason = "its checksum does not match its content"): void {
    const path = codec.attachmentPath(key);
    this.state.exists = true;
    this.state.records.delete(path);
    this.state.damagedRecords.set(path, { key: { network: key.network, containerID: key.containerID, ifname: key.ifname }, reason });
    this.state.networks.add(key.network);
  }

  /** The name a damaged file has in Damaged.file and in messages: "memory/<path>", as disk's "<store>/<path>". */
  fileOf(what: { cidr: string } | AttachmentKey): string {
    return `${this.location}/${"cidr" in what ? codec.rangeFileName(canonical(what.cidr)) : codec.attachmentPath(what)}`;
  }

  snapshot(): MemorySnapshot {
    const s = this.state;
    const ranges: MemorySnapshot["ranges"] = {};
    for (const [text, r] of [...s.ranges.entries()].sort(byPath)) {
      ranges[text] = {
        offsets: setOffsets(r),
        next: r.next,
        allocated: r.allocated,
        released: Object.fromEntries([...r.released].sort((a, b) => a[0] - b[0])),
      };
    }
    const records: Record<string, AttachmentRecord> = {};
    for (const [path, r] of [...s.records.entries()].sort(byPath)) records[path] = copyRecord(r);
    const damaged = [
      ...[...s.damagedRanges.keys()].map((c) => this.fileOf({ cidr: c })),
      ...[...s.damagedRecords.keys()].map((p) => `${this.location}/${p}`),
    ].sort();
    return {
      exists: s.exists,
      ranges,
      records,
      damaged,
      networks: [...s.networks].sort(),
      quarantined: this.quarantined.map((q) => q.file),
    };
  }

  // --- internal ---

  private run<T>(opts: TransactOptions, fn: (tx: Tx) => T): T {
    this.transactions.push({ ...opts });
    if (!this.state.exists) {
      if (!opts.create || opts.unlocked) return this.fn(fn, new MemoryTx(this, this.state, { writable: false }));
      // As disk: a call that fails anyway creates nothing; fn runs again for real.
      this.fn(fn, new MemoryTx(this, this.state, { writable: true }));
      this.state.exists = true;
    }
    const tx = new MemoryTx(this, this.state, { writable: true, salvage: opts.salvage, skipDamaged: opts.skipDamaged });
    const value = this.fn(fn, tx);
    if (!opts.unlocked) this.commit(tx, opts.salvage === true);
    return value;
  }

  private fn<T>(fn: (tx: Tx) => T, tx: MemoryTx): T {
    this.runs++;
    return fn(tx);
  }

  private commit(tx: MemoryTx, salvage: boolean): void {
    const s = this.state;
    if (salvage) {
      for (const d of tx.corrupt()) {
        const rel = d.file.slice(this.location.length + 1);
        const range = codec.parseRangeName(rel);
        if (range) s.damagedRanges.delete(range.text);
        else s.damagedRecords.delete(rel);
        this.quarantined.push(d);
      }
    }
    for (const [path, rec] of tx.changedRecords()) {
      s.damagedRecords.delete(path);
      if (rec) {
        s.records.set(path, copyRecord(rec));
        s.networks.add(rec.network);
      } else s.records.delete(path);
    }
    for (const r of tx.dirtyRanges()) {
      s.damagedRanges.delete(r.cidr.text);
      s.ranges.set(r.cidr.text, copyRange(r));
    }
  }
}

interface Mode {
  readonly writable: boolean;
  readonly salvage?: boolean;
  readonly skipDamaged?: boolean;
}

class MemoryTx implements Tx {
  private readonly ranges = new Map<string, RangeState>();
  private readonly dirty = new Set<RangeState>();
  private readonly records = new Map<string, AttachmentRecord | null>();
  private readonly changed = new Set<string>();
  private readonly broken: Damaged[] = [];
  private readonly brokenRanges = new Set<string>();

  constructor(
    private readonly store: MemoryStore,
    private readonly state: State,
    private readonly mode: Mode,
  ) {}

  range(cidr: Cidr): RangeState {
    let r = this.ranges.get(cidr.text);
    if (!r) {
      r = (this.mode.writable ? this.loadRange(cidr) : null) ?? emptyRange(cidr);
      this.ranges.set(cidr.text, r);
    }
    return r;
  }

  storedRanges(): RangeState[] {
    if (!this.mode.writable) return [];
    const texts = [...new Set([...this.state.ranges.keys(), ...this.state.damagedRanges.keys()])];
    // In file-name order, as disk lists them.
    const named = texts.map((t) => [codec.rangeFileName(t), t] as const).sort(byPath);
    const out: RangeState[] = [];
    for (const [, text] of named) {
      const cached = this.ranges.get(text);
      if (cached) {
        out.push(cached);
        continue;
      }
      const r = this.loadRange(cidrOf(text));
      if (!r) continue;
      this.ranges.set(text, r);
      out.push(r);
    }
    return out;
  }

  touch(range: RangeState): boolean {
    this.mustWrite();
    if (this.brokenRanges.has(range.cidr.text) && !this.mode.salvage) return false;
    this.dirty.add(range);
    return true;
  }

  attachment(key: AttachmentKey): AttachmentRecord | null {
    return this.record(key, false);
  }

  networks(): string[] {
    return this.mode.writable ? [...this.state.networks].sort() : [];
  }

  attachments(network?: string): AttachmentRecord[] {
    if (this.mode.writable) {
      const paths = [...this.state.records.keys(), ...this.state.damagedRecords.keys()];
      for (const path of paths) {
        const key = this.state.records.get(path) ?? this.state.damagedRecords.get(path)!.key;
        if (network === undefined || key.network === network) this.record(key, true);
      }
    }
    return [...this.records.entries()]
      .sort(byPath)
      .map(([, rec]) => rec)
      .filter((rec): rec is AttachmentRecord => rec !== null && (network === undefined || rec.network === network));
  }

  putAttachment(rec: AttachmentRecord): void {
    this.mustWrite();
    const path = codec.attachmentPath(rec);
    this.records.set(path, copyRecord(rec));
    this.changed.add(path);
  }

  deleteAttachment(key: AttachmentKey): void {
    this.mustWrite();
    const path = codec.attachmentPath(key);
    this.records.set(path, null);
    this.changed.add(path);
  }

  corrupt(): readonly Damaged[] {
    return this.broken;
  }

  changedRecords(): [string, AttachmentRecord | null][] {
    return [...this.changed].map((p) => [p, this.records.get(p) ?? null]);
  }

  dirtyRanges(): RangeState[] {
    return [...this.dirty];
  }

  // --- internal ---

  private get tolerant(): boolean {
    return this.mode.salvage === true || this.mode.skipDamaged === true;
  }

  private loadRange(cidr: Cidr): RangeState | null {
    const d = this.state.damagedRanges.get(cidr.text);
    if (!d) {
      const r = this.state.ranges.get(cidr.text);
      return r ? copyRange(r) : null;
    }
    const file = this.store.fileOf({ cidr: cidr.text });
    if (this.broken.some((b) => b.file === file)) return null;
    if (!this.tolerant) throw codec.corrupt(file, d.reason);
    this.broken.push({
      file,
      reason: codec.corrupt(file, d.reason).message,
      ...(d.salvaged ? { salvaged: { cidr, offsets: [...d.salvaged] } } : {}),
    });
    this.brokenRanges.add(cidr.text);
    return null;
  }

  /** As DiskTx.record: by key a damaged record always throws (unless salvaging); listed, it is skipped when tolerated. */
  private record(key: AttachmentKey, listing: boolean): AttachmentRecord | null {
    const path = codec.attachmentPath(key);
    if (this.records.has(path)) return this.records.get(path)!;
    if (!this.mode.writable) return null;
    const d = this.state.damagedRecords.get(path);
    let rec: AttachmentRecord | null = null;
    if (d) {
      const file = `${this.store.location}/${path}`;
      const err = codec.corrupt(file, d.reason);
      if (!(listing || this.mode.salvage) || !this.tolerant) throw err;
      if (!this.broken.some((b) => b.file === file)) this.broken.push({ file, reason: err.message });
    } else {
      const stored = this.state.records.get(path);
      rec = stored ? copyRecord(stored) : null;
    }
    this.records.set(path, rec);
    return rec;
  }

  private mustWrite(): void {
    if (!this.mode.writable) throw new CniError(Code.Internal, "internal: write to a store that was opened without create", "");
  }
}

/** Claims that accept every podCIDR, recording which ones were ensured and checked (each once, in order). */
export interface RecordingClaims extends StoreClaims {
  readonly ensured: string[];
  readonly checked: string[];
}

export function claimsNone(): RecordingClaims {
  const ensured: string[] = [];
  const checked: string[] = [];
  return {
    ensured,
    checked,
    ensure: (cs) => {
      for (const c of cs) if (!ensured.includes(c.text)) ensured.push(c.text);
    },
    check: (c) => {
      if (!checked.includes(c.text)) checked.push(c.text);
      return true;
    },
  };
}

/** Deps that hand every handler this store, and claims that accept everything. */
export function memoryDeps(store: MemoryStore, claims: StoreClaims = claimsNone()): Deps {
  return { openStore: () => store, claims: () => claims };
}

// --- internal ---

function copyRange(r: RangeState): RangeState {
  return { cidr: r.cidr, bits: new Uint8Array(r.bits), next: r.next, allocated: r.allocated, released: new Map(r.released) };
}

function copyRecord(r: AttachmentRecord): AttachmentRecord {
  return { ...r, ips: r.ips.map((i) => ({ cidr: i.cidr, address: i.address })) };
}

function setOffsets(r: RangeState): number[] {
  const out: number[] = [];
  for (let o = 0; o < r.cidr.size; o++) if (isSet(r, o)) out.push(o);
  return out;
}

function cidrOf(text: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(`memory store: ${p.reason}`);
  return p.cidr;
}

function canonical(text: string): string {
  return cidrOf(text).text;
}

function byPath<T>([a]: readonly [string, T], [b]: readonly [string, T]): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
