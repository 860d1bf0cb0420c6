// Judging a lock's holder by its process, and removing the lock of one that is
// gone (or killing one stopped past its lease). See lock.ts for the rules.
import * as fs from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import { readFileNoFollow } from "./io.js";
import type { Owner } from "./lock.js";
import { procInfo, selfInfo } from "./proc.js";

/** A lease not renewed for this long has expired. */
export const STALE_MS = 5000;
/** A lock folder with no owner file (its holder died between two system calls) is removed after this. */
const ORPHAN_MS = 2000;
const REAP_GUARD_STALE_MS = 2000;
/**
 * Left by a reaper that removed the lock of a holder that may still run (judged by its lease alone):
 * the next holder gives the store's files new inodes before it loads them (engine.ts, `fenceOff`), so
 * a write that holder had already decided on lands in a file no one reads.
 */
export const FENCED = "lock.fenced";

/** Judge the current holder without waiting: why it keeps the lock, for messages (status, timeouts). */
export function describeHolder(dir: string): string {
  return judge(join(dir, "lock"), join(dir, "lock.owner")).why;
}

/** `mayRun`: the holder removed was judged by its lease (or by a missing owner file), not seen dead. */
export type Verdict = { act: "wait" | "remove" | "kill"; why: string; owner: Owner | null; pid?: number; mayRun?: boolean };

/** What to do about the current holder of the lock. */
function judge(lockPath: string, ownerPath: string): Verdict {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(lockPath);
  } catch {
    return { act: "wait", why: "released", owner: null };
  }
  if (!st.isDirectory()) {
    throw new CniError(
      Code.StoreCorrupt,
      `store lock ${lockPath} is not a folder`,
      "something other than podcidr-ipam put a file or symbolic link there; remove it (no call can hold the lock meanwhile)",
    );
  }
  const age = Date.now() - st.mtimeMs;
  const leaseOver = age > STALE_MS || age < -STALE_MS;
  const owner = readOwner(ownerPath);
  if (!owner || owner.ino !== st.ino) {
    // No owner file for this lock folder: its holder died between mkdir and writing it.
    const orphan = age > ORPHAN_MS || age < -ORPHAN_MS;
    return { act: orphan ? "remove" : "wait", why: "held by a call that has not written lock.owner yet", owner: null, mayRun: true };
  }
  const me = selfInfo();
  if (!owner.pidns || owner.pidns !== me.pidns) {
    return {
      act: leaseOver ? "remove" : "wait",
      why: `held by pid ${owner.pid} in another pid namespace (${owner.pidns || "unknown"})`,
      owner,
      mayRun: true,
    };
  }
  const info = procInfo(owner.pid);
  if (!info || info.state === "Z" || info.state === "X" || (owner.start >= 0 && info.start !== owner.start)) {
    return { act: "remove", why: `held by pid ${owner.pid}, which has exited`, owner };
  }
  if (info.state === "?") {
    return {
      act: leaseOver ? "remove" : "wait",
      why: `held by pid ${owner.pid} (its state is hidden from this user)`,
      owner,
      mayRun: true,
    };
  }
  if (info.state === "T") {
    return {
      act: leaseOver ? "kill" : "wait",
      why: `held by pid ${owner.pid}, which is stopped (SIGSTOP); it is killed once stopped for ${STALE_MS / 1000}s`,
      owner,
      pid: owner.pid,
    };
  }
  const doing = info.state === "D" ? "in disk I/O" : info.state === "t" ? "stopped by a tracer" : "running";
  return { act: "wait", why: `held by pid ${owner.pid} (${doing})`, owner };
}

/** Remove the lock of a holder that is dead (or kill one that is stopped past its lease), under a guard. */
export function recoverIfAbandoned(dir: string): void {
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
      if (!st.isDirectory())
        fs.unlinkSync(guard); // not ours (a planted link or file): never followed
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
      // Without the note the next holder would not fence that holder off: leave the lock, and the call times out saying why.
      if (again.mayRun && !noteFenced(dir, again.owner)) return;
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

function noteFenced(dir: string, owner: Owner | null): boolean {
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | (fs.constants.O_NOFOLLOW ?? 0);
  try {
    const fd = fs.openSync(join(dir, FENCED), flags, 0o600);
    try {
      fs.writeSync(fd, `${JSON.stringify({ removed: owner, at: new Date().toISOString() })}\n`);
    } finally {
      fs.closeSync(fd);
    }
    return true;
  } catch {
    return false;
  }
}

export function readOwner(path: string): Owner | null {
  try {
    const text = readFileNoFollow(path, 4096);
    if (text === null) return null;
    const o = JSON.parse(text) as Partial<Owner>;
    if (typeof o.pid !== "number" || typeof o.ino !== "number" || typeof o.token !== "string") return null;
    return {
      pid: o.pid,
      ino: o.ino,
      token: o.token,
      pidns: String(o.pidns ?? ""),
      start: typeof o.start === "number" ? o.start : -1,
      boot: String(o.boot ?? ""),
    };
  } catch {
    return null;
  }
}

/** Remove a file, symlink or FIFO at path; an empty folder there too (a damaged lock.owner). */
export function removeEntry(path: string): void {
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
        throw new CniError(
          Code.StoreCorrupt,
          `${path} is a folder, not the lock's owner file`,
          `something other than podcidr-ipam made it; remove it (rm -r ${path})`,
          { cause: e },
        );
      }
    }
    throw err;
  }
}

/** rmdir the lock folder; files someone put inside it are removed first (they would block every call). */
export function removeLockFolder(lockPath: string): void {
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
