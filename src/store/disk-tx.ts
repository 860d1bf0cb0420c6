// One transaction's view of the store: loads files on demand, keeps what the
// handler changes, and hands the commit the new content of each file.
import { type Stats, lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import { type RangeState, emptyRange } from "../ipam/allocator.js";
import type { Cidr } from "../ipam/cidr.js";
import * as codec from "./codec.js";
import { ioError, readFileNoFollow } from "./io.js";
import type { AttachmentKey, AttachmentRecord, Damaged, Tx } from "./store.js";

export const ATTACHMENTS = "attachments";
export const MAX_FILE = 8 << 20;

export interface TxMode {
  /** False: the store does not exist; everything reads as empty and nothing may be written. */
  readonly writable: boolean;
  /** Repair: a file that fails to load is noted (and later quarantined), and its range may be rewritten. */
  readonly salvage?: boolean;
  /** DEL, GC, status: a file that fails to load is noted and skipped; a damaged range is never rewritten. */
  readonly skipDamaged?: boolean;
  /** Files found broken before the transaction began (a journal that failed to load). */
  readonly broken?: readonly Damaged[];
  /** Pending journal writes seen without the lock: file (relative) -> new content, or null if deleted. */
  readonly overlay?: ReadonlyMap<string, string | null>;
}

export class DiskTx implements Tx {
  private readonly ranges = new Map<string, RangeState>();
  private readonly dirty = new Set<RangeState>();
  /** relative path -> record (null: absent or deleted) */
  private readonly records = new Map<string, AttachmentRecord | null>();
  private readonly changed = new Set<string>();
  private readonly broken: Damaged[];
  private readonly brokenRanges = new Set<string>();
  private readonly overlay: ReadonlyMap<string, string | null>;
  private readonly checked = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly mode: TxMode,
  ) {
    this.broken = [...(mode.broken ?? [])];
    this.overlay = mode.overlay ?? new Map();
  }

  range(cidr: Cidr): RangeState {
    let r = this.ranges.get(cidr.text);
    if (!r) {
      const name = codec.rangeFileName(cidr.text);
      r = (this.mode.writable ? this.load(name, (t, f) => codec.decodeRange(t, f), cidr) : null) ?? emptyRange(cidr);
      this.ranges.set(cidr.text, r);
    }
    return r;
  }

  storedRanges(): RangeState[] {
    if (!this.mode.writable) return [];
    const out: RangeState[] = [];
    for (const name of this.list("")) {
      if (!name.startsWith("range-") || !name.endsWith(".json")) continue;
      const cidr = codec.parseRangeName(name);
      const cached = cidr ? this.ranges.get(cidr.text) : undefined;
      if (cached) {
        out.push(cached);
        continue;
      }
      const r = this.load(name, (t, f) => codec.decodeRange(t, f), cidr ?? undefined);
      if (!r) continue;
      this.ranges.set(r.cidr.text, r);
      out.push(r);
    }
    return out;
  }

  touch(range: RangeState): boolean {
    this.mustWrite();
    // A damaged range file is never overwritten from a partial view (DEL, GC): only repair rebuilds it.
    if (this.brokenRanges.has(range.cidr.text) && !this.mode.salvage) return false;
    this.dirty.add(range);
    return true;
  }

  attachment(key: AttachmentKey): AttachmentRecord | null {
    return this.record(key, false);
  }

  networks(): string[] {
    return this.mode.writable ? this.list(`${ATTACHMENTS}/`).filter((n) => !n.startsWith(".")) : [];
  }

  attachments(network?: string): AttachmentRecord[] {
    if (this.mode.writable) {
      const networks = network !== undefined ? [network] : this.networks();
      for (const net of networks) {
        for (const name of this.list(`${ATTACHMENTS}/${net}/`)) {
          const id = codec.parseAttachmentName(name);
          if (!id) continue;
          this.record({ network: net, ...id }, true);
        }
      }
    }
    // Records put in this transaction are included; deleted ones (null) are not. In path order.
    return [...this.records.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, rec]) => rec)
      .filter((rec): rec is AttachmentRecord => rec !== null && (network === undefined || rec.network === network));
  }

  putAttachment(rec: AttachmentRecord): void {
    this.mustWrite();
    const rel = codec.attachmentPath(rec);
    this.records.set(rel, rec);
    this.changed.add(rel);
  }

  deleteAttachment(key: AttachmentKey): void {
    this.mustWrite();
    const rel = codec.attachmentPath(key);
    this.records.set(rel, null);
    this.changed.add(rel);
  }

  changes(): codec.JournalWrite[] {
    const writes: codec.JournalWrite[] = [];
    for (const rel of this.changed) {
      const rec = this.records.get(rel);
      writes.push({ file: rel, content: rec ? codec.encodeAttachment(rec) : null });
    }
    for (const r of this.dirty) writes.push({ file: codec.rangeFileName(r.cidr.text), content: codec.encodeRange(r) });
    return writes;
  }

  corrupt(): readonly Damaged[] {
    return this.broken;
  }

  // --- internal ---

  /**
   * One record. Asked for by name, a record that fails to load always fails the call
   * (DEL must not skip its own record: a copied file could name someone else's address);
   * met while listing, it is skipped and noted when the transaction tolerates damage.
   */
  private record(key: AttachmentKey, listing: boolean): AttachmentRecord | null {
    const rel = codec.attachmentPath(key);
    if (this.records.has(rel)) return this.records.get(rel)!;
    if (!this.mode.writable) return null;
    const decode = (t: string, f: string): AttachmentRecord => codec.decodeAttachment(t, f, key);
    const rec = listing || this.mode.salvage ? this.load(rel, decode) : this.loadStrict(rel, decode);
    this.records.set(rel, rec);
    return rec;
  }

  private loadStrict<T>(rel: string, decode: (text: string, file: string) => T): T | null {
    const file = join(this.dir, rel);
    if (rel.includes("/")) this.checkFolders(rel.slice(0, rel.lastIndexOf("/")));
    const text = this.overlay.has(rel) ? this.overlay.get(rel)! : readFileNoFollow(file, MAX_FILE);
    return text === null ? null : decode(text, file);
  }

  /** The names in a folder of the store (relative prefix "" or "attachments/..."), plus those a pending journal adds. */
  private list(prefix: string): string[] {
    if (prefix) this.checkFolders(prefix.slice(0, -1));
    let names: string[];
    try {
      names = readdirSync(join(this.dir, prefix));
    } catch (err) {
      if (errno(err) !== "ENOENT" && errno(err) !== "ENOTDIR") throw ioError(err, `cannot list ${join(this.dir, prefix)}`);
      names = [];
    }
    const extra: string[] = [];
    for (const k of this.overlay.keys()) {
      if (!k.startsWith(prefix)) continue;
      const rest = k.slice(prefix.length);
      extra.push(rest.includes("/") ? rest.slice(0, rest.indexOf("/")) : rest);
    }
    return [...new Set([...names, ...extra])].sort();
  }

  /** Read and decode one store file; null when absent (or, tolerating damage, when it fails to load). */
  private load<T>(rel: string, decode: (text: string, file: string) => T, rangeCidr?: Cidr): T | null {
    const file = join(this.dir, rel);
    if (this.broken.some((b) => b.file === file)) return null;
    if (rel.includes("/")) this.checkFolders(rel.slice(0, rel.lastIndexOf("/")));
    let text: string | null = null;
    try {
      text = this.overlay.has(rel) ? this.overlay.get(rel)! : readFileNoFollow(file, MAX_FILE);
      return text === null ? null : decode(text, file);
    } catch (err) {
      const tolerate = this.mode.salvage || this.mode.skipDamaged;
      if (!tolerate || !(err instanceof CniError) || (err.code !== Code.StoreCorrupt && err.code !== Code.StoreIOFailure)) throw err;
      const offsets = rangeCidr && text !== null ? codec.salvageRange(text, rangeCidr) : null;
      this.broken.push({ file, reason: err.message, ...(rangeCidr && offsets ? { salvaged: { cidr: rangeCidr, offsets } } : {}) });
      if (rangeCidr) this.brokenRanges.add(rangeCidr.text);
      return null;
    }
  }

  /** Every folder on the way to a store file must be a real folder: a planted symlink would send reads elsewhere. */
  private checkFolders(rel: string): void {
    let sub = "";
    for (const part of rel.split("/")) {
      sub = sub ? `${sub}/${part}` : part;
      if (this.checked.has(sub)) continue;
      checkFolder(join(this.dir, sub));
      this.checked.add(sub);
    }
  }

  private mustWrite(): void {
    if (!this.mode.writable) throw new CniError(Code.Internal, "internal: write to a store that was opened without create", "");
  }
}

/** A folder of the store must be a real folder (or absent), never a symlink or a file. */
export function checkFolder(path: string): void {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (errno(err) === "ENOENT") return;
    throw ioError(err, `cannot inspect ${path}`);
  }
  if (!st.isDirectory()) {
    throw new CniError(
      Code.StoreCorrupt,
      `store folder ${path} is not a folder`,
      `it is a ${st.isSymbolicLink() ? "symbolic link" : "file"}; podcidr-ipam only uses folders it made itself. If you moved the store ` +
        `and left a link, ` +
        "move the real folder back in its place (mv), or point ipam.dataDir at the new place; never delete it while pods run: their " +
        "addresses would be handed out again",
    );
  }
}
