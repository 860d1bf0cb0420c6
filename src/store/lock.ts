// The network's lock: a proper-lockfile lock directory `<net>/lock`, plus
// `<net>/lock.owner` naming the holder (pid, pid namespace, the lock's inode).
//
// proper-lockfile alone only notices a dead holder once the lock's mtime is
// `STALE_MS` old. A holder killed by SIGKILL is recovered much sooner here: a
// waiter that finds the holder's pid gone (or a zombie) removes the lock under a
// second guard directory, `lock.reap`, so two waiters never both remove it.
// A holder that was paused past STALE_MS may have lost the lock; `assertHeld`
// (called before every write of a commit) makes it stop instead of writing.
import * as fs from "node:fs";
import { readFileSync, readlinkSync, rmdirSync, statSync, unlinkSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import lockfile from "proper-lockfile";
import { Code, CniError, errno } from "../errors.js";
import { ioError, readFileNoFollow, uniqueSuffix } from "./io.js";
import { Waiter } from "./lock-wait.js";

/** proper-lockfile's mtime threshold: a lock not refreshed for this long is stale. */
export const STALE_MS = 5000;
const UPDATE_MS = 1000;
/** A lock directory with no owner file (holder killed between mkdir and writing it) is taken over after this. */
const ORPHAN_MS = 2000;
const REAP_GUARD_STALE_MS = 2000;

export interface HeldLock {
  /** Throws TryAgainLater if the lock was lost (this process was paused too long). */
  assertHeld(): void;
  release(): Promise<void>;
  /** Milliseconds spent waiting for the lock. */
  readonly waitedMs: number;
}

interface Owner {
  pid: number;
  pidns: string;
  ino: number;
  token: string;
}

export async function acquire(netdir: string, timeoutMs: number): Promise<HeldLock> {
  const lockPath = join(netdir, "lock");
  const ownerPath = join(netdir, "lock.owner");
  const started = Date.now();
  let compromised: Error | null = null;
  const waiter = new Waiter(netdir);
  let lastReap = 0;
  try {
  for (;;) {
    let release: () => void;
    const owner: Owner = { pid: process.pid, pidns: pidNamespace(), ino: 0, token: `${process.pid}-${uniqueSuffix()}` };
    try {
      // Synchronous from mkdir to release: the holder never yields to its event loop
      // inside the critical section, so a busy machine stretches it as little as possible.
      release = lockfile.lockSync(netdir, {
        lockfilePath: lockPath,
        fs: lockFsWritingOwner(ownerPath, owner),
        realpath: false,
        stale: STALE_MS,
        update: UPDATE_MS,
        retries: 0,
        onCompromised: (err) => {
          compromised = err;
        },
      });
    } catch (err) {
      // ENOENT: our fresh lock folder vanished before proper-lockfile finished taking it
      // (this process was paused, its lock went stale and was removed). Nothing was read yet: try again.
      if (errno(err) !== "ELOCKED" && errno(err) !== "ENOENT") throw ioError(err, `cannot take the store lock ${lockPath}`);
      // Looking for a dead holder reads files and /proc: a few times a second is enough.
      if (Date.now() - lastReap >= REAP_EVERY_MS) {
        lastReap = Date.now();
        reapIfDead(netdir);
      }
      if (Date.now() - started >= timeoutMs) {
        const holder = readOwner(ownerPath);
        throw new CniError(
          Code.TryAgainLater,
          `timed out after ${timeoutMs / 1000}s waiting for the store lock ${lockPath}`,
          holder ? `held by pid ${holder.pid}; if that process is stuck, stop it and the next call recovers the lock` : "the holder is unknown",
        );
      }
      await waiter.next();
      continue;
    }
    waiter.close();
    const waitedMs = Date.now() - started;
    return {
      waitedMs,
      assertHeld() {
        const now = readOwner(ownerPath);
        if (compromised || !now || now.token !== owner.token) {
          throw new CniError(
            Code.TryAgainLater,
            "lost the store lock before committing; nothing was written",
            `this call was paused for more than ${STALE_MS / 1000}s while holding ${lockPath} and another call took it over`,
          );
        }
      },
      async release() {
        // A lock we lost now belongs to someone else: removing it would let a third call in beside them.
        const now = readOwner(ownerPath);
        if (compromised || !now || now.token !== owner.token) return;
        unlinkQuiet(ownerPath);
        try {
          release();
        } catch {
          /* already gone */
        }
      },
    };
  }
  } finally {
    waiter.close();
  }
}

// --- internal ---

const REAP_EVERY_MS = 100;

/**
 * node:fs for proper-lockfile whose mkdir makes the lock folder (0700, like every
 * store folder) and writes lock.owner in the same synchronous step, so that a
 * lock folder without its owner file exists only between two system calls.
 */
function lockFsWritingOwner(ownerPath: string, owner: Owner): typeof fs {
  const mkdirSync = (path: string): void => {
    fs.mkdirSync(path, { mode: 0o700 });
    try {
      owner.ino = fs.statSync(path).ino;
      // The lock is ours, so is lock.owner: remove whatever is there (a planted FIFO or
      // symlink is removed itself, never followed) and create the file afresh.
      try {
        fs.unlinkSync(ownerPath);
      } catch (err) {
        if (errno(err) !== "ENOENT") throw err;
      }
      const fd = fs.openSync(ownerPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
      try {
        fs.writeSync(fd, JSON.stringify(owner));
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      fs.rmdirSync(path);
      throw err;
    }
  };
  // Only what lockSync uses: spreading all of node:fs would load its streams (ms per call).
  return { mkdirSync, statSync: fs.statSync, rmdirSync: fs.rmdirSync, utimesSync: fs.utimesSync, realpathSync: fs.realpathSync } as unknown as typeof fs;
}

let pidns: string | undefined;

function pidNamespace(): string {
  if (pidns === undefined) {
    try {
      pidns = readlinkSync("/proc/self/ns/pid");
    } catch {
      pidns = "";
    }
  }
  return pidns;
}

function readOwner(path: string): Owner | null {
  try {
    const text = readFileNoFollow(path, 4096);
    if (text === null) return null;
    const o = JSON.parse(text) as Owner;
    return typeof o.pid === "number" && typeof o.ino === "number" && typeof o.token === "string" ? o : null;
  } catch {
    return null;
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}

/** True when the process is gone or a zombie (killed, not yet reaped by its parent). */
function pidDead(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return errno(err) === "ESRCH";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return false;
  }
}

/** Is the current lock held by a process that is certainly dead? */
function holderDead(lockPath: string, ownerPath: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(lockPath);
  } catch {
    return false; // released meanwhile
  }
  if (!st.isDirectory()) {
    throw new CniError(Code.StoreCorrupt, `store lock ${lockPath} is not a folder`, "something other than podcidr-ipam put a file or symbolic link there; remove it");
  }
  const { ino, mtimeMs } = st;
  const owner = readOwner(ownerPath);
  if (owner && owner.ino === ino) {
    // A pid from another pid namespace says nothing here; leave it to the stale timer.
    return owner.pidns === pidNamespace() && owner.pid !== process.pid && pidDead(owner.pid);
  }
  return Date.now() - mtimeMs > ORPHAN_MS;
}

function reapIfDead(netdir: string): void {
  const lockPath = join(netdir, "lock");
  const ownerPath = join(netdir, "lock.owner");
  if (!holderDead(lockPath, ownerPath)) return;
  const guard = join(netdir, "lock.reap");
  try {
    mkdirSync(guard, { mode: 0o700 });
  } catch (err) {
    if (errno(err) !== "EEXIST") return;
    try {
      if (Date.now() - statSync(guard).mtimeMs > REAP_GUARD_STALE_MS) rmdirSync(guard);
    } catch {
      /* someone else cleaned it */
    }
    return;
  }
  try {
    // Look again under the guard: another waiter may have reaped and a live call taken the lock.
    if (holderDead(lockPath, ownerPath)) {
      unlinkQuiet(ownerPath);
      try {
        rmdirSync(lockPath);
      } catch {
        /* gone already */
      }
    }
  } finally {
    try {
      rmdirSync(guard);
    } catch {
      /* nothing to do */
    }
  }
}
