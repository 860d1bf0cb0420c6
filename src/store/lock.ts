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
import { ioError, readFileNoFollow, uniqueSuffix } from "./io.js";
import { Waiter } from "./lock-wait.js";
import { procInfo, selfInfo } from "./proc.js";

/** A lease not renewed for this long has expired. */
export const STALE_MS = 5000;
/** A lock folder with no owner file (its holder died between two system calls) is removed after this. */
const ORPHAN_MS = 2000;
const REAP_GUARD_STALE_MS = 2000;
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

/** Judge the current holder without waiting: why it keeps the lock, for messages (status, timeouts). */
export function describeHolder(dir: string): string {
  const v = judge(join(dir, "lock"), join(dir, "lock.owner"));
  return v.why;
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
      throw new CniError(Code.StoreIOFailure, `store folder ${dir} disappeared while this call waited for its lock`, "it was moved or removed; put it back (never delete it while pods hold addresses)");
    }
    throw ioError(err, `cannot take the store lock ${lockPath}`);
  }
  const me = selfInfo();
  const owner: Owner = { pid: process.pid, pidns: me.pidns, start: me.start, boot: me.boot, ino: 0, token: `${process.pid}-${uniqueSuffix()}` };
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
      removeEntry(ownerPath);
      removeLockFolder(lockPath);
    },
  };
}

type Verdict = { act: "wait" | "remove" | "kill"; why: string; owner: Owner | null; pid?: number };

/** What to do about the current holder of the lock. */
function judge(lockPath: string, ownerPath: string): Verdict {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(lockPath);
  } catch {
    return { act: "wait", why: "released", owner: null };
  }
  if (!st.isDirectory()) {
    throw new CniError(Code.StoreCorrupt, `store lock ${lockPath} is not a folder`, "something other than podcidr-ipam put a file or symbolic link there; remove it (no call can hold the lock meanwhile)");
  }
  const age = Date.now() - st.mtimeMs;
  const leaseOver = age > STALE_MS || age < -STALE_MS;
  const owner = readOwner(ownerPath);
  if (!owner || owner.ino !== st.ino) {
    // No owner file for this lock folder: its holder died between mkdir and writing it.
    const orphan = age > ORPHAN_MS || age < -ORPHAN_MS;
    return { act: orphan ? "remove" : "wait", why: "held by a call that has not written lock.owner yet", owner: null };
  }
  const me = selfInfo();
  if (!owner.pidns || owner.pidns !== me.pidns) {
    return { act: leaseOver ? "remove" : "wait", why: `held by pid ${owner.pid} in another pid namespace (${owner.pidns || "unknown"})`, owner };
  }
  const info = procInfo(owner.pid);
  if (!info || info.state === "Z" || info.state === "X" || (owner.start >= 0 && info.start !== owner.start)) {
    return { act: "remove", why: `held by pid ${owner.pid}, which has exited`, owner };
  }
  if (info.state === "?") {
    return { act: leaseOver ? "remove" : "wait", why: `held by pid ${owner.pid} (its state is hidden from this user)`, owner };
  }
  if (info.state === "T") {
    return { act: leaseOver ? "kill" : "wait", why: `held by pid ${owner.pid}, which is stopped (SIGSTOP); it is killed once stopped for ${STALE_MS / 1000}s`, owner, pid: owner.pid };
  }
  const doing = info.state === "D" ? "in disk I/O" : info.state === "t" ? "stopped by a tracer" : "running";
  return { act: "wait", why: `held by pid ${owner.pid} (${doing})`, owner };
}

/** Remove the lock of a holder that is dead (or kill one that is stopped past its lease), under a guard. */
function recoverIfAbandoned(dir: string): void {
  const lockPath = join(dir, "lock");
  const ownerPath = join(dir, "lock.owner");
  const first = judge(lockPath, ownerPath);
  if (first.act === "wait") return;
  if (first.act === "kill" && first.pid !== undefined) {
    try {
      process.kill(first.pid, "SIGKILL");
    } catch {
      /* gone already, or not ours to kill: judged again next time */
    }
    return; // removed once it is dead, on a later look
  }
  const guard = join(dir, "lock.reap");
  try {
    fs.mkdirSync(guard, { mode: 0o700 });
  } catch (err) {
    if (errno(err) !== "EEXIST") return;
    try {
      const st = fs.lstatSync(guard);
      const age = Date.now() - st.mtimeMs;
      if (!st.isDirectory()) fs.unlinkSync(guard); // not ours (a planted link or file): never followed
      else if (age > REAP_GUARD_STALE_MS || age < -REAP_GUARD_STALE_MS) fs.rmdirSync(guard); // a reaper killed mid-way
    } catch {
      /* someone else cleaned it */
    }
    return;
  }
  try {
    // Look again under the guard: another waiter may have reaped and a live call taken the lock.
    const again = judge(lockPath, ownerPath);
    if (again.act === "remove" && again.owner?.token === first.owner?.token) {
      if (again.owner) removeEntry(ownerPath);
      removeLockFolder(lockPath);
    }
  } finally {
    try {
      fs.rmdirSync(guard);
    } catch {
      /* nothing to do */
    }
  }
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
    `${why}; a call holds the lock only while it allocates or releases: if that process is stuck, stop it and the next call recovers the lock`,
  );
}

function readOwner(path: string): Owner | null {
  try {
    const text = readFileNoFollow(path, 4096);
    if (text === null) return null;
    const o = JSON.parse(text) as Partial<Owner>;
    if (typeof o.pid !== "number" || typeof o.ino !== "number" || typeof o.token !== "string") return null;
    return { pid: o.pid, ino: o.ino, token: o.token, pidns: String(o.pidns ?? ""), start: typeof o.start === "number" ? o.start : -1, boot: String(o.boot ?? "") };
  } catch {
    return null;
  }
}

/** Remove a file, symlink or FIFO at path; an empty folder there too (a damaged lock.owner). */
function removeEntry(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch (err) {
    const code = errno(err);
    if (code === "ENOENT") return;
    if (code === "EISDIR" || code === "EPERM") {
      try {
        fs.rmdirSync(path);
        return;
      } catch (e) {
        throw new CniError(Code.StoreCorrupt, `${path} is a folder, not the lock's owner file`, `something other than podcidr-ipam made it; remove it (rm -r ${path})`, { cause: e });
      }
    }
    throw err;
  }
}

/** rmdir the lock folder; files someone put inside it are removed first (they would block every call). */
function removeLockFolder(lockPath: string): void {
  try {
    fs.rmdirSync(lockPath);
  } catch (err) {
    if (errno(err) !== "ENOTEMPTY" && errno(err) !== "EEXIST") return;
    try {
      for (const n of fs.readdirSync(lockPath)) removeEntry(join(lockPath, n));
      fs.rmdirSync(lockPath);
    } catch {
      /* left for repair, which names it */
    }
  }
}
