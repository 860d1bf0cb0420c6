// The store on disk: one per dataDir, shared by every network on the node.
//
//   <dataDir>/_store/                  0700 ("_": no network name starts so)
//     lock/  lock.owner  lock.reap/    the lock (lock.ts)
//     queue/                           tickets of waiting calls (lock-wait.ts)
//     log                              records of commits since the checkpoint (log.ts)
//     checkpoint.0  checkpoint.1       the state as of a generation, alternately (checkpoint.ts)
//     attachments                      a file where older releases kept a folder: they fail closed
//     reserve                          space a DEL on a full disk may free to finish
//
// A commit is one record appended to the log and one fdatasync, or, when the
// log is long, a checkpoint written to the other slot and one fdatasync (engine.ts;
// the crash argument: docs/design-log-store.md). The fence (the lock is still
// this call's) is checked just before the one write that commits, and again
// after its sync: a holder that lost the lock in between (judged by its lease)
// wrote into files the next holder had replaced (create.ts: fenceOff), and answers 11.
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Code, type CniError, errno } from "../errors.js";
import { DiskTx, type TxMode, checkFolder } from "./disk-tx.js";
import { create, fenceOff, remakeLog } from "./create.js";
import { LOG, type View, commit, confirm, isLogStore, load, loadDamage, txOf } from "./engine.js";
import { unlinkFile } from "./files.js";
import { fsyncDir, ioError } from "./io.js";
import { type HeldLock, acquire } from "./lock.js";
import { FENCED } from "./lock-reap.js";
import { sweepQueue } from "./lock-wait.js";
import { LogTx } from "./log-tx.js";
import { findLegacy, migrate } from "./migrate.js";
import { ensureReserve, freeReserve } from "./reserve.js";
import type { Damaged, Store, TransactOptions, Tx } from "./store.js";
import { JOURNAL_RE, finishUpgrade, journalOverlay, oldFiles, upgrade } from "./upgrade.js";

export const STORE = "_store";

export class DiskStore implements Store {
  /** The store folder, <dataDir>/_store. */
  readonly dir: string;
  readonly location: string;

  constructor(
    readonly dataDir: string,
    private readonly lockTimeoutMs: number,
    /** Where the store says what it did on its own (an upgrade, a migration, an unlocked read). */
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

  /**
   * Under the lock: make the store's files if there are none (a new store, or an upgrade of the previous
   * format), merge older per-network stores, and load the state for writing. Returns what failed to load (salvage).
   */
  async open(lock: HeldLock, opts: TransactOptions, legacyFound: boolean): Promise<{ view: View; broken: Damaged[] }> {
    const salvage = opts.salvage === true;
    const broken: Damaged[] = [];
    const names = readdirSync(this.dir);
    for (const n of names) if (n.startsWith(".tmp-")) unlinkFile(join(this.dir, n));
    sweepQueue(this.dir);
    if (salvage && isLogStore(this.dir) && !existsSync(join(this.dir, LOG))) {
      remakeLog(this.dir);
      const log = join(this.dir, LOG);
      broken.push({
        file: log,
        reason: `store file ${log} is corrupt: it is missing (made again; what it held since the checkpoint is lost)`,
      });
    }
    // The lock was taken from a holder that may still run: its files get new inodes before anything is read.
    if (names.includes(FENCED) && isLogStore(this.dir)) fenceOff(this.dir);
    if (isLogStore(this.dir)) finishUpgrade(this.dir);
    else if (oldFiles(this.dir).length > 0) broken.push(...upgrade(this.dir, salvage, this.log));
    else if (opts.create || legacyFound) create(this.dir, null);
    if (legacyFound) {
      const legacy = findLegacy(this.dataDir);
      broken.push(...(await migrate(this, legacy, lock, this.lockTimeoutMs, this.log, salvage)));
    }
    const view = load(this.dir, true, salvage);
    if (salvage) broken.push(...loadDamage(view));
    try {
      confirm(view);
    } catch (err) {
      view.close();
      throw err;
    }
    return { view, broken };
  }

  // --- internal ---

  private async attempt<T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<{ value: T; waitedMs: number }> {
    checkFolder(this.dir);
    const legacy = findLegacy(this.dataDir);
    if (!existsSync(this.dir) && legacy.length === 0) {
      if (!opts.create) return { value: fn(new LogTx(null, [], { writable: false })), waitedMs: 0 };
      // Nothing is created for a call that fails anyway (a refused requested address,
      // a full first podCIDR): try fn against the empty store first; it runs again under the lock.
      fn(new LogTx(null, [], { writable: true }));
    }
    if (!existsSync(this.dir)) this.makeFolder();
    let lock: HeldLock;
    try {
      lock = await acquire(this.dir, this.lockTimeoutMs);
    } catch (err) {
      if (opts.readOnly && cannotWrite(err)) return { value: this.readUnlocked(opts, fn, err as CniError), waitedMs: 0 };
      throw err;
    }
    let view: View | undefined;
    try {
      let broken: Damaged[];
      try {
        ({ view, broken } = await this.open(lock, opts, legacy.length > 0));
      } catch (err) {
        if (opts.readOnly && cannotWrite(err)) return { value: this.readUnlocked(opts, fn, err as CniError), waitedMs: lock.waitedMs };
        throw err;
      }
      const tx = txOf(view, { writable: view.base !== null, salvage: opts.salvage, skipDamaged: opts.skipDamaged });
      tx.note(broken);
      const value = fn(tx);
      const damaged = opts.salvage === true && tx.corrupt().length > 0;
      if (damaged) this.quarantine(tx.corrupt().map((c) => c.file.replace(/: .*$/, "")));
      if (view.base) commit(view, tx, lock, Date.now(), damaged);
      if (view.base) ensureReserve(this.dir);
      return { value, waitedMs: lock.waitedMs };
    } finally {
      view?.close();
      lock.release();
    }
  }

  /**
   * A read-only look (status, CHECK, repair --dry-run) without the lock: the store
   * cannot be locked now (read-only or full filesystem), or the caller must not write.
   * A store of the previous format is read as that release did (a pending journal seen as applied).
   */
  private readUnlocked<T>(opts: TransactOptions, fn: (tx: Tx) => T, why?: CniError): T {
    if (why) this.log(`podcidr-ipam: ${why.message}; reading the store without the lock\n`);
    checkFolder(this.dir);
    // No store, or one whose creation was cut short (checkpoint.0 is made last): nothing was ever acknowledged in it.
    if (!existsSync(this.dir) || (!isLogStore(this.dir) && oldFiles(this.dir).length === 0))
      return fn(new LogTx(null, [], { writable: false }));
    if (isLogStore(this.dir)) {
      const view = load(this.dir, false, opts.salvage);
      try {
        const tx = txOf(view, { writable: view.base !== null, salvage: opts.salvage, skipDamaged: opts.skipDamaged });
        if (opts.salvage) tx.note(loadDamage(view));
        return fn(tx);
      } finally {
        view.close();
      }
    }
    const broken: Damaged[] = [];
    const overlay = journalOverlay(this.dir, opts.salvage === true, broken);
    const mode: TxMode = { writable: true, salvage: opts.salvage, skipDamaged: opts.skipDamaged, broken, overlay };
    return fn(new DiskTx(this.dir, mode));
  }

  /** Make the store folder (and dataDir), durably: its entry in dataDir must survive a power cut. */
  private makeFolder(): void {
    try {
      mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
      mkdirSync(this.dir, { mode: 0o700 });
    } catch (err) {
      if (errno(err) !== "EEXIST") throw ioError(err, `cannot create the store folder ${this.dir}`);
      return;
    }
    fsyncDir(this.dataDir);
  }

  /** Copy files that failed to load to quarantine/<time>/ before repair writes the state without their damage. */
  private quarantine(files: string[]): void {
    const dest = join(this.dir, "quarantine", new Date().toISOString().replace(/[:.]/g, "-"));
    try {
      mkdirSync(dest, { recursive: true, mode: 0o700 });
      for (const f of new Set(files)) {
        if (existsSync(f)) copyFileSync(f, join(dest, f.slice(this.dataDir.length + 1).replace(/\//g, "_")));
      }
    } catch (err) {
      throw ioError(err, `cannot copy corrupt files to ${dest}`);
    }
    fsyncDir(dest);
    fsyncDir(this.dir);
  }
}

// --- internal ---

/** A fault that only stops writing: a read-only look at the store can still go ahead. */
function cannotWrite(err: unknown): boolean {
  return err instanceof Error && (err as CniError).code === Code.StoreIOFailure && /EROFS|EACCES|ENOSPC|EDQUOT/.test(err.message);
}

function full(err: unknown): boolean {
  return err instanceof Error && (err as CniError).code === Code.StoreIOFailure && /ENOSPC|EDQUOT/.test(err.message);
}

/** The journals of interrupted commits of the previous format (for `repair --dry-run`: the upgrade applies them). */
export function pendingJournalFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((n) => JOURNAL_RE.test(n))
      .map((n) => join(dir, n));
  } catch {
    return [];
  }
}

/** The checkpoint an interrupted commit left whole but unconfirmed, which the next call confirms (`repair --dry-run`); null if none. */
export function pendingCheckpoint(dir: string): string | null {
  if (!isLogStore(dir)) return null;
  try {
    const v = load(dir, false);
    try {
      return v.base && !v.scan.confirmed ? v.base.path : null;
    } finally {
      v.close();
    }
  } catch {
    return null; // a store that does not load: the report says why
  }
}
