// One transaction's view of a network's store: loads files on demand, keeps
// what the handler changes, and hands the commit the new content of each file.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import { type RangeState, emptyRange } from "../ipam/allocator.js";
import type { Cidr } from "../ipam/cidr.js";
import * as codec from "./codec.js";
import { ioError, readFileNoFollow } from "./io.js";
import type { AttachmentRecord, Tx } from "./store.js";

export const ATTACHMENTS = "attachments";
const MAX_FILE = 8 << 20;

export class DiskTx implements Tx {
  private readonly ranges = new Map<string, RangeState>();
  private readonly dirty = new Set<RangeState>();
  private readonly records = new Map<string, AttachmentRecord | null>();
  private readonly changed = new Set<string>();
  private readonly broken: { file: string; reason: string }[];

  constructor(
    private readonly dir: string,
    private readonly writable: boolean,
    /** Repair: a file that fails to load is noted (and later quarantined) instead of failing the call. */
    private readonly salvage = false,
    /** Files found broken before the transaction began (a journal that failed to load). */
    broken: { file: string; reason: string }[] = [],
    /** A pending journal seen without the lock: file (relative) -> new content, or null if deleted. */
    private readonly overlay: ReadonlyMap<string, string | null> = new Map(),
  ) {
    this.broken = [...broken];
  }

  range(cidr: Cidr): RangeState {
    let r = this.ranges.get(cidr.text);
    if (!r) {
      const file = join(this.dir, codec.rangeFileName(cidr.text));
      r = (this.writable ? this.load(file, codec.decodeRange) : null) ?? emptyRange(cidr);
      this.ranges.set(cidr.text, r);
    }
    return r;
  }

  storedRanges(): RangeState[] {
    if (!this.writable) return [];
    const out: RangeState[] = [];
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if (errno(err) !== "ENOENT") throw ioError(err, `cannot list ${this.dir}`);
      names = [];
    }
    for (const name of this.list(names, "")) {
      if (!name.startsWith("range-") || !name.endsWith(".json")) continue;
      const cached = [...this.ranges.values()].find((r) => codec.rangeFileName(r.cidr.text) === name);
      if (cached) {
        out.push(cached);
        continue;
      }
      const r = this.load(join(this.dir, name), codec.decodeRange);
      if (!r) continue;
      this.ranges.set(r.cidr.text, r);
      out.push(r);
    }
    return out;
  }

  touch(range: RangeState): void {
    this.mustWrite();
    this.dirty.add(range);
  }

  attachment(containerID: string, ifname: string): AttachmentRecord | null {
    const name = codec.attachmentFileName(containerID, ifname);
    if (this.records.has(name)) return this.records.get(name)!;
    const rec = this.writable ? this.load(join(this.dir, ATTACHMENTS, name), codec.decodeAttachment) : null;
    this.records.set(name, rec);
    return rec;
  }

  attachments(): AttachmentRecord[] {
    if (!this.writable) return [];
    let names: string[];
    try {
      names = readdirSync(join(this.dir, ATTACHMENTS));
    } catch (err) {
      if (errno(err) === "ENOENT") names = [];
      else throw ioError(err, `cannot list ${join(this.dir, ATTACHMENTS)}`);
    }
    for (const name of this.list(names, `${ATTACHMENTS}/`)) {
      if (!name.endsWith(".json") || this.records.has(name)) continue;
      this.records.set(name, this.load(join(this.dir, ATTACHMENTS, name), codec.decodeAttachment));
    }
    // Records put in this transaction are included; deleted ones (null) are not.
    return [...this.records.values()].filter((rec): rec is AttachmentRecord => rec !== null);
  }

  putAttachment(rec: AttachmentRecord): void {
    this.mustWrite();
    const name = codec.attachmentFileName(rec.containerID, rec.ifname);
    this.records.set(name, rec);
    this.changed.add(name);
  }

  deleteAttachment(containerID: string, ifname: string): void {
    this.mustWrite();
    const name = codec.attachmentFileName(containerID, ifname);
    this.records.set(name, null);
    this.changed.add(name);
  }

  changes(): codec.JournalWrite[] {
    const writes: codec.JournalWrite[] = [];
    for (const name of this.changed) {
      const rec = this.records.get(name);
      writes.push({ file: `${ATTACHMENTS}/${name}`, content: rec ? codec.encodeAttachment(rec) : null });
    }
    for (const r of this.dirty) writes.push({ file: codec.rangeFileName(r.cidr.text), content: codec.encodeRange(r) });
    return writes;
  }

  corrupt(): readonly { file: string; reason: string }[] {
    return this.broken;
  }

  // --- internal ---

  /** A folder's names plus those a pending journal (read without the lock) adds. */
  private list(names: string[], prefix: string): string[] {
    const extra = [...this.overlay.keys()].filter((k) => k.startsWith(prefix) && !k.slice(prefix.length).includes("/")).map((k) => k.slice(prefix.length));
    return [...new Set([...names, ...extra])];
  }

  /** Read and decode one store file; null when absent (or, salvaging, when it fails to load). */
  private load<T>(file: string, decode: (text: string, file: string) => T): T | null {
    if (this.broken.some((b) => b.file === file)) return null;
    try {
      const rel = file.slice(this.dir.length + 1);
      const text = this.overlay.has(rel) ? this.overlay.get(rel)! : readFileNoFollow(file, MAX_FILE);
      return text === null ? null : decode(text, file);
    } catch (err) {
      if (!this.salvage || !(err instanceof CniError) || (err.code !== Code.StoreCorrupt && err.code !== Code.StoreIOFailure)) throw err;
      this.broken.push({ file, reason: err.message });
      return null;
    }
  }

  private mustWrite(): void {
    if (!this.writable) throw new CniError(Code.Internal, "internal: write to a store that was opened without create", "");
  }
}
