// The store on disk: one per dataDir, shared by every network on the node.
//
//   <dataDir>/_store/                        0700 ("_": no network name starts so)
//     lock/  lock.owner  lock.reap/          the lock (lock.ts)
//     queue/                                 tickets of waiting calls (lock-wait.ts)
//     journal-<token>.json                   only while a commit is applied
//     range-10.0.2.0_24.json                 bitmap of one podCIDR (codec.ts)
//     attachments/<network>/<containerID>@<ifname>.json   who holds which addresses
//     reserve                                space a DEL on a full disk may free to finish
//
// A commit is write-ahead: the new content of every file it changes goes into
// the committer's journal (temp file, fsync, rename, fsync folder); then each file
// is replaced the same way; then the journal is removed. Before every step the
// committer checks, and renews, its hold on the lock. A call that finds a journal
// replays it before anything else, so a SIGKILL at any instant leaves either the
// old store or the new one. Per call: the files of the podCIDRs and the one
// attachment involved, never all allocations.
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import * as codec from "./codec.js";
import { ATTACHMENTS, DiskTx, MAX_FILE, type TxMode, checkFolder } from "./disk-tx.js";
import { applyWrites, commitWrites, unlinkIfThere } from "./commit.js";
import { fsyncDir, ioError, readFileNoFollow } from "./io.js";
import { type HeldLock, acquire } from "./lock.js";
import { sweepQueue } from "./lock-wait.js";
import { findLegacy, migrate } from "./migrate.js";
import { ensureReserve, freeReserve } from "./reserve.js";
import type { Damaged, Store, TransactOptions, Tx } from "./store.js";

export const STORE = "_store";
const JOURNAL_RE = /^journal-[0-9a-z-]+\.json$/;

export class DiskStore implements Store {
  /** The store folder, <dataDir>/_store. */
  readonly dir: string;
  readonly location: string;

  constructor(
    readonly dataDir: string,
    private readonly lockTimeoutMs: number,
    /** Where the store says what it did on its own (a replayed journal, a migration, an unlocked read). */
    private readonly log: (line: string) => void,
  ) {
    this.dir = join(dataDir, STORE);
    this.location = this.dir;
  }

  async transact<T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<{ value: T; waitedMs: number }> {
    if (opts.unlocked) return { value: this.readUnlocked(opts, fn), waitedMs: 0 };
    try {
      return await this.attempt(opts, fn);
    } catch (err) {
      // A DEL or GC on a full disk frees the reserve and tries once more: pod teardown must not stall.
      if (!opts.frees || !full(err) || !freeReserve(this.dir, this.log)) throw err;
      return this.attempt(opts, fn);
    }
  }

  // --- internal ---

  private async attempt<T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<{ value: T; waitedMs: number }> {
    checkFolder(this.dir);
    const legacy = findLegacy(this.dataDir);
    if (!existsSync(this.dir) && legacy.length === 0) {
      if (!opts.create) return { value: fn(new DiskTx(this.dir, { writable: false })), waitedMs: 0 };
      // Nothing is created for a call that fails anyway (a refused requested address,
      // a full first podCIDR): try fn against the empty store first; it runs again under the lock.
      fn(new DiskTx(this.dir, { writable: true }));
    }
    if (!existsSync(this.dir)) this.create();
    let lock: HeldLock;
    try {
      lock = await acquire(this.dir, this.lockTimeoutMs);
    } catch (err) {
      if (opts.readOnly && cannotWrite(err)) return { value: this.readUnlocked(opts, fn, err as CniError), waitedMs: 0 };
      throw err;
    }
    try {
      checkFolder(join(this.dir, ATTACHMENTS));
      let broken: Damaged[];
      try {
        broken = this.recover(lock, opts.salvage === true);
        if (legacy.length > 0) broken.push(...(await migrate(this, legacy, lock, this.lockTimeoutMs, this.log, opts.salvage === true)));
      } catch (err) {
        if (opts.readOnly && cannotWrite(err)) return { value: this.readUnlocked(opts, fn, err as CniError), waitedMs: lock.waitedMs };
        throw err;
      }
      const tx = new DiskTx(this.dir, { writable: true, salvage: opts.salvage, skipDamaged: opts.skipDamaged, broken });
      const value = fn(tx);
      if (opts.salvage) this.quarantine(tx.corrupt().map((c) => c.file));
      this.commit(tx.changes(), lock);
      return { value, waitedMs: lock.waitedMs };
    } finally {
      lock.release();
    }
  }

  /** Commit a transaction's writes durably (commit.ts), then keep the reserve. The migration commits this way too. */
  commit(writes: codec.JournalWrite[], lock: HeldLock): void {
    commitWrites(this.dir, writes, lock);
    if (writes.length > 0) ensureReserve(this.dir);
  }

  /**
   * Replay a journal left by a call that died mid-commit, and sweep its temp files
   * and the queue tickets of waiters that are gone. Salvaging, a journal that fails
   * to load (or more than one journal) is returned for quarantine instead of failing.
   */
  private recover(lock: HeldLock, salvage: boolean): Damaged[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      throw ioError(err, `cannot list ${this.dir}`);
    }
    for (const n of names) if (n.startsWith(".tmp-")) unlinkIfThere(join(this.dir, n), true);
    sweepQueue(this.dir);
    const journals = names.filter((n) => JOURNAL_RE.test(n));
    if (journals.length === 0) return [];
    if (journals.length > 1) {
      const files = journals.map((n) => join(this.dir, n));
      if (salvage) return files.map((file) => ({ file, reason: `one of ${journals.length} interrupted commits: none is replayed` }));
      throw new CniError(
        Code.StoreCorrupt,
        `store ${this.dir} has ${journals.length} interrupted commits (${journals.join(", ")})`,
        "only one call commits at a time, so one of them was written by a call that had lost the lock; run `podcidr-ipam repair` (it " +
          "replays neither and rebuilds the bitmaps from the records)",
      );
    }
    const path = join(this.dir, journals[0]!);
    let writes: codec.JournalWrite[];
    try {
      const text = readFileNoFollow(path, MAX_FILE * 4);
      if (text === null) return [];
      writes = codec.decodeJournal(text, path);
    } catch (err) {
      if (salvage && err instanceof CniError && (err.code === Code.StoreCorrupt || err.code === Code.StoreIOFailure))
        return [{ file: path, reason: err.message }];
      throw err;
    }
    this.log(`podcidr-ipam: replaying the journal of an interrupted commit in ${this.dir}\n`);
    applyWrites(this.dir, writes, lock);
    lock.assertHeld();
    unlinkIfThere(path);
    return [];
  }

  /**
   * A read-only look (status, CHECK, repair --dry-run) without the lock: the store
   * cannot be locked now (read-only or full filesystem), or the caller must not write.
   * A pending journal's changes are seen as if they were applied.
   */
  private readUnlocked<T>(opts: TransactOptions, fn: (tx: Tx) => T, why?: CniError): T {
    if (why) this.log(`podcidr-ipam: ${why.message}; reading the store without the lock\n`);
    checkFolder(this.dir);
    if (!existsSync(this.dir)) return fn(new DiskTx(this.dir, { writable: false }));
    let names: string[] = [];
    try {
      names = readdirSync(this.dir).filter((n) => JOURNAL_RE.test(n));
    } catch (err) {
      throw ioError(err, `cannot list ${this.dir}`);
    }
    const overlay = new Map<string, string | null>();
    const broken: Damaged[] = [];
    for (const n of names.length === 1 ? names : []) {
      const path = join(this.dir, n);
      try {
        const text = readFileNoFollow(path, MAX_FILE * 4);
        for (const w of text === null ? [] : codec.decodeJournal(text, path)) overlay.set(w.file, w.content);
      } catch (err) {
        if (!opts.salvage) throw err;
        broken.push({ file: path, reason: (err as Error).message });
      }
    }
    const mode: TxMode = { writable: true, salvage: opts.salvage, skipDamaged: opts.skipDamaged, broken, overlay };
    return fn(new DiskTx(this.dir, mode));
  }

  /** Make the store folder (and dataDir), durably: its entry in dataDir must survive a power cut. */
  private create(): void {
    try {
      mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
      mkdirSync(this.dir, { mode: 0o700 });
    } catch (err) {
      if (errno(err) !== "EEXIST") throw ioError(err, `cannot create the store folder ${this.dir}`);
      return;
    }
    fsyncDir(this.dataDir);
  }

  /** Move files that failed to load to quarantine/<time>/, so a repair can rebuild around them. */
  private quarantine(files: string[]): void {
    if (files.length === 0) return;
    const dest = join(this.dir, "quarantine", new Date().toISOString().replace(/[:.]/g, "-"));
    try {
      mkdirSync(dest, { recursive: true, mode: 0o700 });
      for (const f of files) {
        if (existsSync(f)) renameSync(f, join(dest, f.slice(this.dataDir.length + 1).replace(/\//g, "_")));
      }
    } catch (err) {
      throw ioError(err, `cannot move corrupt files to ${dest}`);
    }
    fsyncDir(dest);
    fsyncDir(this.dir);
  }
}

// --- internal ---

/** A fault that only stops writing: a read-only look at the store can still go ahead. */
function cannotWrite(err: unknown): boolean {
  return err instanceof CniError && err.code === Code.StoreIOFailure && /EROFS|EACCES|ENOSPC|EDQUOT/.test(err.message);
}

function full(err: unknown): boolean {
  return err instanceof CniError && err.code === Code.StoreIOFailure && /ENOSPC|EDQUOT/.test(err.message);
}

/** The journals of interrupted commits in a store folder (for `repair --dry-run`). */
export function pendingJournalFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((n) => JOURNAL_RE.test(n))
      .map((n) => join(dir, n));
  } catch {
    return [];
  }
}
