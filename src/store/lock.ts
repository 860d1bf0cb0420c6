// The store's lock: a folder `lock/` made with mkdir, and `lock.owner` naming the
// holder (pid, pid namespace, process start time, boot ID, the lock's inode, a token).
//
// A holder is judged by what its process is, never by a timer alone:
//   gone, a zombie, or its pid reused (start time differs)  -> the lock is removed at once
//   alive: running, sleeping, in I/O (a slow fsync), or
//     stopped by a tracer (strace, gdb)                      -> it keeps the lock; waiters wait
//   stopped by a signal (SIGSTOP) and its lease expired      -> killed (SIGKILL), then removed as dead
//   in another pid namespace (its pid means nothing here)    -> the lease: removed once expired
// The lease is the lock folder's mtime, renewed by `assertHeld` before every step of
// a commit; it expires STALE_MS after the last renewal (or when it lies more than
// STALE_MS in the future: a clock stepped back). So a holder never acts after losing
// the lock in its own pid namespace (it is dead by then), and elsewhere it stops at
// the next step's fence.
import * as fs from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import { ioError, uniqueSuffix } from "./io.js";
import { STALE_MS, describeHolder, readOwner, recoverIfAbandoned, removeEntry, removeLockFolder } from "./lock-reap.js";
import { Waiter } from "./lock-wait.js";
import { selfInfo } from "./proc.js";

export { STALE_MS } from "./lock-reap.js";
const REAP_EVERY_MS = 50;

export interface HeldLock {
  /** Renew the lease; throws TryAgainLater (11) if the lock is no longer this call's. */
  assertHeld(): void;
  /** True while the lock is still this call's (no renewal, no throw). */
  stillHeld(): boolean;
  release(): void;
  /** Names this holder's own files (its journal). */
  readonly token: string;
  /** Milliseconds spent waiting for the lock. */
  readonly waitedMs: number;
}

export interface Owner {
  pid: number;
  pidns: string;
  start: number;
  boot: string;
  ino: number;
  token: string;
}

export async function acquire(dir: string, timeoutMs: number): Promise<HeldLock> {
  const lockPath = join(dir, "lock");
  const ownerPath = join(dir, "lock.owner");
  const started = Date.now();
  const waiter = new Waiter(dir);
  let lastLook = 0;
  try {
    for (;;) {
      const owner = tryTake(dir);
      if (owner) return held(lockPath, ownerPath, owner, Date.now() - started);
      if (Date.now() - lastLook >= REAP_EVERY_MS) {
        lastLook = Date.now();
        recoverIfAbandoned(dir);
      }
      if (Date.now() - started >= timeoutMs) throw timedOut(dir, timeoutMs);
      await waiter.next();
    }
  } finally {
    waiter.close();
  }
}

// --- internal ---

/** mkdir the lock and write the owner file in one synchronous step. Null when someone holds it. */
function tryTake(dir: string): Owner | null {
  const lockPath = join(dir, "lock");
  try {
    fs.mkdirSync(lockPath, { mode: 0o700 });
  } catch (err) {
    if (errno(err) === "EEXIST") return null;
    if (errno(err) === "ENOENT") {
      throw new CniError(
        Code.StoreIOFailure,
        `store folder ${dir} disappeared while this call waited for its lock`,
        "it was moved or removed; put it back (never delete it while pods hold addresses)",
      );
    }
    throw ioError(err, `cannot take the store lock ${lockPath}`);
  }
  const me = selfInfo();
  const owner: Owner = {
    pid: process.pid,
    pidns: me.pidns,
    start: me.start,
    boot: me.boot,
    ino: 0,
    token: `${process.pid}-${uniqueSuffix()}`,
  };
  const ownerPath = join(dir, "lock.owner");
  try {
    owner.ino = fs.statSync(lockPath).ino;
    // The lock is ours, so is lock.owner: remove whatever is there (a planted FIFO or
    // symlink is removed, never followed) and create the file afresh.
    removeEntry(ownerPath);
    const fd = fs.openSync(ownerPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(owner));
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    try {
      fs.rmdirSync(lockPath);
    } catch {
      /* leave it to the orphan rule */
    }
    throw ioError(err, `cannot take the store lock ${lockPath}`);
  }
  return owner;
}

function held(lockPath: string, ownerPath: string, owner: Owner, waitedMs: number): HeldLock {
  const mine = (): boolean => {
    const now = readOwner(ownerPath);
    return now !== null && now.token === owner.token;
  };
  return {
    token: owner.token,
    waitedMs,
    stillHeld: mine,
    assertHeld() {
      if (mine()) {
        try {
          const t = Date.now() / 1000;
          fs.utimesSync(lockPath, t, t);
          return;
        } catch {
          /* the lock folder is gone: lost */
        }
      }
      throw new CniError(
        Code.TryAgainLater,
        "lost the store lock",
        `another call took ${lockPath} over (this call ran in another pid namespace, or was stopped for more than ${STALE_MS / 1000}s)`,
      );
    },
    release() {
      // A lock we lost now belongs to someone else: removing it would let a third call in beside them.
      if (!mine()) return;
      // Stamped now: for the instant between the two removals the folder stands without its owner file, and a
      // waiter must not take it for an orphan (those are removed only 2 s old) and remove it: another call could
      // then make a new one, and this rmdir would remove it under that call.
      try {
        const t = Date.now() / 1000;
        fs.utimesSync(lockPath, t, t);
      } catch {
        /* gone: nothing to release */
      }
      removeEntry(ownerPath);
      removeLockFolder(lockPath);
    },
  };
}

function timedOut(dir: string, timeoutMs: number): CniError {
  let why: string;
  try {
    why = describeHolder(dir);
  } catch (err) {
    why = (err as Error).message;
  }
  return new CniError(
    Code.TryAgainLater,
    `timed out after ${timeoutMs / 1000}s waiting for the store lock ${join(dir, "lock")}`,
    `${why}; a call holds the lock only while it allocates or releases: if that process is stuck, stop it and the next call recovers ` +
      `the lock`,
  );
}
