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
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import * as codec from "./codec.js";
import { fsyncDir, ioError, readFileNoFollow, writeAtomic } from "./io.js";
import { type HeldLock, acquire } from "./lock.js";
import { writeFd } from "../stdio.js";
import { ATTACHMENTS, DiskTx } from "./disk-tx.js";
import type { Store, TransactOptions, Tx } from "./store.js";

const JOURNAL = "journal.json";
const MAX_FILE = 8 << 20;

export class DiskStore implements Store {
  readonly dir: string;
  /** Milliseconds the last transact waited for the lock. */
  lastWaitMs = 0;

  constructor(
    readonly dataDir: string,
    readonly network: string,
    private readonly lockTimeoutMs: number,
    /** Where the store says what it did on its own (a replayed journal, an unlocked read). */
    private readonly log: (line: string) => void = (line) => writeFd(2, line),
  ) {
    this.dir = join(dataDir, network);
  }

  async transact<T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<T> {
    if (!this.exists()) {
      if (!opts.create) return fn(new DiskTx(this.dir, false));
      // Nothing is created for a call that fails anyway (a refused requested address,
      // a full first podCIDR): try fn against the empty store first; it runs again under the lock.
      fn(new DiskTx(this.dir, true));
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
      if (opts.readOnly && cannotWrite(err)) return this.readUnlocked(err as CniError, fn);
      throw err;
    }
    this.lastWaitMs = lock.waitedMs;
    try {
      this.checkFolder(join(this.dir, ATTACHMENTS));
      const salvage = opts.salvage === true;
      let broken: { file: string; reason: string }[];
      try {
        broken = this.recover(lock, salvage);
      } catch (err) {
        if (opts.readOnly && cannotWrite(err)) return this.readUnlocked(err as CniError, fn);
        throw err;
      }
      const tx = new DiskTx(this.dir, true, salvage, broken);
      const result = fn(tx);
      if (salvage && !opts.dryRun) this.quarantine(tx.corrupt().map((c) => c.file));
      const writes = tx.changes();
      if (writes.length > 0 && !opts.dryRun) this.commit(writes, lock);
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

  /**
   * A read-only look (status, CHECK) at a store that cannot be written now (read-only
   * or full filesystem): read it without the lock, seeing a pending journal's changes
   * as if they were applied.
   */
  private readUnlocked<T>(err: CniError, fn: (tx: Tx) => T): T {
    this.log(`podcidr-ipam: ${err.message}; reading the store without the lock\n`);
    const path = join(this.dir, JOURNAL);
    const text = readFileNoFollow(path, MAX_FILE * 4);
    const pending = text === null ? [] : codec.decodeJournal(text, path);
    return fn(new DiskTx(this.dir, true, false, [], new Map(pending.map((w) => [w.file, w.content]))));
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
    try {
      this.apply(writes, lock);
    } catch (err) {
      if (!(err instanceof CniError) || err.code !== Code.StoreIOFailure) throw err;
      // The journal is durable: the change is decided, only not yet in place. Say so.
      throw new CniError(
        err.code,
        err.message,
        `${err.details.replace(/ \(the store was left as it was\)/, "")}. The change is recorded in ${JOURNAL} and the next call completes it ` +
          "(an ADD that failed here is released by the runtime's DEL as usual).",
        { cause: err },
      );
    }
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
    // The journal's removal needs no fsync of its own: every write it holds is durable by now,
    // so a journal that a power cut brings back is replayed onto the very content it holds
    // (replay is idempotent), and the next commit's fsync of this folder makes the removal
    // durable before any newer change can be lost behind it.
    try {
      unlinkSync(join(this.dir, JOURNAL));
    } catch (err) {
      if (errno(err) !== "ENOENT") throw ioError(err, `cannot remove ${join(this.dir, JOURNAL)}`);
    }
  }

  /** Move files that failed to load to quarantine/<time>/, so a repair can rebuild around them. */
  private quarantine(files: string[]): void {
    if (files.length === 0) return;
    const dest = join(this.dir, "quarantine", new Date().toISOString().replace(/[:.]/g, "-"));
    try {
      mkdirSync(dest, { recursive: true, mode: 0o700 });
      for (const f of files) renameSync(f, join(dest, f.slice(this.dir.length + 1).replace(/\//g, "_")));
    } catch (err) {
      throw ioError(err, `cannot move corrupt files to ${dest}`);
    }
    fsyncDir(dest);
    fsyncDir(this.dir);
  }

  /**
   * Replay a journal left by a call that died mid-commit, and sweep its temp files.
   * Salvaging, a journal that fails to load is returned for quarantine instead of failing.
   */
  private recover(lock: HeldLock, salvage = false): { file: string; reason: string }[] {
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
    if (!names.includes(JOURNAL)) return [];
    const path = join(this.dir, JOURNAL);
    let writes: codec.JournalWrite[];
    try {
      const text = readFileNoFollow(path, MAX_FILE * 4);
      if (text === null) return [];
      writes = codec.decodeJournal(text, path);
    } catch (err) {
      if (salvage && err instanceof CniError && (err.code === Code.StoreCorrupt || err.code === Code.StoreIOFailure)) return [{ file: path, reason: err.message }];
      throw err;
    }
    this.log(`podcidr-ipam: replaying the journal of an interrupted commit in ${this.dir}\n`);
    this.apply(writes, lock);
    return [];
  }

  private ensureAttachmentsDir(): void {
    try {
      mkdirSync(join(this.dir, ATTACHMENTS), { mode: 0o700 });
    } catch (err) {
      if (errno(err) !== "EEXIST") throw ioError(err, `cannot create ${join(this.dir, ATTACHMENTS)}`);
    }
  }
}

/** A fault that only stops writing: a read-only look at the store can still go ahead. */
function cannotWrite(err: unknown): boolean {
  return err instanceof CniError && err.code === Code.StoreIOFailure && /EROFS|EACCES|ENOSPC|EDQUOT/.test(err.message);
}
