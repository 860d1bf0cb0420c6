// The store on disk, one folder per network:
//
//   <dataDir>/<network>/                  0700
//     lock/  lock.owner  lock.reap/       the lock (see lock.ts)
//     journal.json                        present only while a commit is applied
//     range-10.0.2.0_24.json              bitmap of one podCIDR (codec.ts)
//     range-fd00--200_120.json
//     attachments/<containerID>@<ifname>.json   who holds which addresses
//
// A commit is write-ahead: the new content of every file it changes goes into
// journal.json (temp file, fsync, rename, fsync folder); then each file is
// replaced the same way; then the journal is removed. A call that finds a
// journal replays it before anything else, so a SIGKILL at any instant leaves
// either the old store or the new one. Cost per call: the files of the podCIDRs
// and the one attachment involved, never all allocations.
import { existsSync, lstatSync, mkdirSync, readdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import { type RangeState, emptyRange } from "../ipam/allocator.js";
import type { Cidr } from "../ipam/cidr.js";
import * as codec from "./codec.js";
import { fsyncDir, ioError, readFileNoFollow, writeAtomic } from "./io.js";
import { type HeldLock, acquire } from "./lock.js";
import type { AttachmentRecord, Store, TransactOptions, Tx } from "./store.js";

const JOURNAL = "journal.json";
const ATTACHMENTS = "attachments";
const MAX_FILE = 8 << 20;

export class DiskStore implements Store {
  readonly dir: string;
  /** Milliseconds the last transact waited for the lock. */
  lastWaitMs = 0;

  constructor(
    readonly dataDir: string,
    readonly network: string,
    private readonly lockTimeoutMs: number,
  ) {
    this.dir = join(dataDir, network);
  }

  async transact<T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<T> {
    if (!this.exists()) {
      if (!opts.create) return fn(new DiskTx(this.dir, false));
      try {
        mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
        mkdirSync(this.dir, { mode: 0o700 });
      } catch (err) {
        if (errno(err) !== "EEXIST") throw ioError(err, `cannot create the store folder ${this.dir}`);
      }
      this.exists();
    }
    let lock: HeldLock;
    try {
      lock = await acquire(this.dir, this.lockTimeoutMs);
    } catch (err) {
      // A read-only look (status) at a store on a read-only filesystem: read it as it is, unlocked.
      if (opts.readOnly && err instanceof CniError && err.code === Code.StoreIOFailure && /EROFS|EACCES/.test(err.message)) {
        process.stderr.write(`podcidr-ipam: ${err.message}; reading the store without the lock\n`);
        return fn(new DiskTx(this.dir, true));
      }
      throw err;
    }
    this.lastWaitMs = lock.waitedMs;
    try {
      this.checkFolder(join(this.dir, ATTACHMENTS));
      this.recover(lock);
      const tx = new DiskTx(this.dir, true);
      const result = fn(tx);
      const writes = tx.changes();
      if (writes.length > 0) this.commit(writes, lock);
      return result;
    } finally {
      await lock.release();
    }
  }

  // --- internal ---

  /** True when the network folder exists; throws if something other than a real folder is there. */
  private exists(): boolean {
    this.checkFolder(this.dir);
    return existsSync(this.dir);
  }

  /** A folder of ours must be a real folder, never a symlink planted to send writes elsewhere. */
  private checkFolder(path: string): void {
    let st;
    try {
      st = lstatSync(path);
    } catch (err) {
      if (errno(err) === "ENOENT") return;
      throw ioError(err, `cannot inspect ${path}`);
    }
    if (!st.isDirectory()) {
      throw new CniError(Code.StoreCorrupt, `store folder ${path} is not a folder`, "it is a symbolic link or a file; podcidr-ipam only uses folders it created itself. Remove it.");
    }
  }

  private commit(writes: codec.JournalWrite[], lock: HeldLock): void {
    lock.assertHeld();
    writeAtomic(join(this.dir, JOURNAL), codec.encodeJournal(writes));
    fsyncDir(this.dir);
    this.apply(writes, lock);
  }

  /** Put every write of a journal in place, then drop the journal. Idempotent. */
  private apply(writes: readonly codec.JournalWrite[], lock: HeldLock): void {
    let attachmentsTouched = false;
    for (const w of writes) {
      lock.assertHeld();
      const path = join(this.dir, w.file);
      if (w.file.startsWith(`${ATTACHMENTS}/`)) {
        attachmentsTouched = true;
        this.ensureAttachmentsDir();
      }
      if (w.content === null) {
        try {
          unlinkSync(path);
        } catch (err) {
          if (errno(err) !== "ENOENT") throw ioError(err, `cannot remove ${path}`);
        }
      } else writeAtomic(path, w.content, this.dir);
    }
    if (attachmentsTouched) fsyncDir(join(this.dir, ATTACHMENTS));
    fsyncDir(this.dir);
    try {
      unlinkSync(join(this.dir, JOURNAL));
    } catch (err) {
      if (errno(err) !== "ENOENT") throw ioError(err, `cannot remove ${join(this.dir, JOURNAL)}`);
    }
    fsyncDir(this.dir);
  }

  /** Replay a journal left by a call that died mid-commit, and sweep its temp files. */
  private recover(lock: HeldLock): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      throw ioError(err, `cannot list ${this.dir}`);
    }
    for (const n of names) {
      if (n.startsWith(".tmp-")) {
        try {
          unlinkSync(join(this.dir, n));
        } catch {
          /* gone */
        }
      }
    }
    if (!names.includes(JOURNAL)) return;
    const text = readFileNoFollow(join(this.dir, JOURNAL), MAX_FILE * 4);
    if (text === null) return;
    process.stderr.write(`podcidr-ipam: replaying the journal of an interrupted commit in ${this.dir}\n`);
    this.apply(codec.decodeJournal(text, join(this.dir, JOURNAL)), lock);
  }

  private ensureAttachmentsDir(): void {
    try {
      mkdirSync(join(this.dir, ATTACHMENTS), { mode: 0o700 });
    } catch (err) {
      if (errno(err) !== "EEXIST") throw ioError(err, `cannot create ${join(this.dir, ATTACHMENTS)}`);
    }
  }
}

class DiskTx implements Tx {
  private readonly ranges = new Map<string, RangeState>();
  private readonly dirty = new Set<RangeState>();
  private readonly records = new Map<string, AttachmentRecord | null>();
  private readonly changed = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly writable: boolean,
  ) {}

  range(cidr: Cidr): RangeState {
    let r = this.ranges.get(cidr.text);
    if (!r) {
      const file = join(this.dir, codec.rangeFileName(cidr.text));
      const text = this.writable ? readFileNoFollow(file, MAX_FILE) : null;
      r = text === null ? emptyRange(cidr) : codec.decodeRange(text, file);
      this.ranges.set(cidr.text, r);
    }
    return r;
  }

  storedRanges(): RangeState[] {
    if (!this.writable) return [];
    const out: RangeState[] = [];
    for (const name of readdirSync(this.dir)) {
      if (!name.startsWith("range-") || !name.endsWith(".json")) continue;
      const cached = [...this.ranges.values()].find((r) => codec.rangeFileName(r.cidr.text) === name);
      if (cached) {
        out.push(cached);
        continue;
      }
      const file = join(this.dir, name);
      const text = readFileNoFollow(file, MAX_FILE);
      if (text === null) continue;
      const r = codec.decodeRange(text, file);
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
    const file = join(this.dir, ATTACHMENTS, name);
    const text = this.writable ? readFileNoFollow(file, MAX_FILE) : null;
    const rec = text === null ? null : codec.decodeAttachment(text, file);
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
    for (const name of names) {
      if (!name.endsWith(".json") || this.records.has(name)) continue;
      const file = join(this.dir, ATTACHMENTS, name);
      const text = readFileNoFollow(file, MAX_FILE);
      this.records.set(name, text === null ? null : codec.decodeAttachment(text, file));
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

  // --- internal ---

  private mustWrite(): void {
    if (!this.writable) throw new CniError(Code.Internal, "internal: write to a store that was opened without create", "");
  }
}
