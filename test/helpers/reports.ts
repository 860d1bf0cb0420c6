// Helpers for the tests that replay the outside testers' reports
// (../shared/reports/*-d173de3.md, issue #9) against the built executable.
//
// They find the store folder wherever the executable under test keeps it: in
// <dataDir>/_store/ (this build), or in the per-network folder <dataDir>/<network>/
// of the build the reports were written against (d173de3, PODCIDR_BIN=/tmp/old-podcidr-ipam),
// for its lock and queue. What the store holds is read through the store's own
// code (./store-state), which reads this build's log format and the previous
// release's files, not the per-network layout of d173de3.
import { type ChildProcess, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmdirSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { storeDir } from "./exe";
import { BIN, type RunResult, type Sandbox, collect } from "./plugin";
import { type Holdings, holdings as storeHoldings } from "./store-state";

export type { Holdings };

/** The store folder: `_store` (this build) or, on a build before issue #9, the network's own folder. */
export function sdir(sb: Sandbox, network = "podnet"): string {
  const legacy = join(sb.dataDir, network);
  return existsSync(storeDir(sb)) || !isDir(legacy) ? storeDir(sb) : legacy;
}

/** True when the executable under test keeps the older per-network layout (seen after a first ADD). */
export function legacyLayout(sb: Sandbox, network = "podnet"): boolean {
  return sdir(sb, network) !== storeDir(sb);
}

export function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

// --- what the store holds: read through the store's own code (./store-state) ---

/** Who holds what in the sandbox's store (this build's format or the previous one; not the per-network layout). */
export function holdings(sb: Sandbox): Promise<Holdings> {
  return storeHoldings(sb.dataDir);
}

export function ipv4ToInt(a: string): number {
  return a.split(".").reduce((n, p) => n * 256 + Number(p), 0);
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

// --- processes ----------------------------------------------------------------

export interface ProcStat {
  /** R, S, D, T (stopped by a signal), t (stopped by a tracer), Z. */
  readonly state: string;
  /** utime + stime, in clock ticks. */
  readonly cpu: number;
  /** Field 22: start time in clock ticks after boot. */
  readonly start: number;
}

/** /proc/<pid>/stat, or null when there is no such process. */
export function procStat(pid: number): ProcStat | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return null;
  }
  const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
  return { state: rest[0]!, cpu: Number(rest[11]) + Number(rest[12]), start: Number(rest[19]) };
}

/** Process ids of `pid`'s descendants (a plugin run under strace is strace's child). */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const n of list("/proc")) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const s = readFileSync(`/proc/${n}/stat`, "latin1");
      const ppid = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(n), ...descendants(Number(n)));
    } catch {
      /* gone */
    }
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` every `everyMs` until it is true or `ms` passed; returns whether it became true. */
export async function until(cond: () => boolean, ms: number, everyMs = 20): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(everyMs);
  }
  return cond();
}

/** The pid that lock.owner names, or null. */
export function lockPid(dir: string): number | null {
  try {
    return JSON.parse(readFileSync(join(dir, "lock.owner"), "utf8")).pid;
  } catch {
    return null;
  }
}

/**
 * Take the store's lock for `pid` as the executable would: the lock folder and a
 * lock.owner naming pid, pid namespace, start time, boot ID and the folder's inode.
 */
export function plantLock(dir: string, pid: number, token = "planted"): void {
  mkdirSync(join(dir, "lock"), { mode: 0o700 });
  const ino = statSync(join(dir, "lock")).ino;
  const owner = {
    pid,
    pidns: readlinkSync("/proc/self/ns/pid"),
    start: procStat(pid)!.start,
    boot: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
    ino,
    token,
  };
  writeFileSync(join(dir, "lock.owner"), JSON.stringify(owner));
}

/**
 * Release a planted lock as a holder does: the folder stamped now (an old folder without its owner file looks orphaned to
 * a waiter, which would remove it and let a call in that the rmdir below would then remove), lock.owner, then the folder.
 */
export function releaseLock(dir: string): void {
  const t = Date.now() / 1000;
  utimesSync(join(dir, "lock"), t, t);
  unlinkSync(join(dir, "lock.owner"));
  rmdirSync(join(dir, "lock"));
}

export interface Spawned {
  readonly child: ChildProcess;
  readonly done: Promise<RunResult>;
}

/** The env a runtime gives a plugin for one attachment. */
export function cniEnv(command: string, containerID: string, extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerID,
    CNI_NETNS: `/var/run/netns/${containerID}`,
    CNI_IFNAME: "eth0",
    CNI_PATH: "/opt/cni/bin",
    ...extra,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return env as Record<string, string>;
}

/** Start the executable (optionally under a wrapper such as strace) without waiting for it. */
export function start(stdin: object, env: Record<string, string>, wrapper: string[] = []): Spawned {
  const [cmd, ...args] = wrapper.length ? [...wrapper, BIN] : [BIN];
  const child = spawn(cmd!, args, { env, stdio: ["pipe", "pipe", "pipe"] });
  child.stdin!.on("error", () => {});
  child.stdin!.end(JSON.stringify(stdin));
  return { child, done: collect(child) };
}

/**
 * strace with a delay injected into the store's syncs (fsync and fdatasync: a commit is one
 * fdatasync of the log, or of a checkpoint slot): every one (when omitted), or the Nth of each
 * process. A process held by strace is "stopped by a tracer" (t): a live holder, never reaped.
 */
export function straceSync(delayUs: number, when?: number, calls = "fsync,fdatasync"): string[] {
  return [
    "strace",
    "-f",
    "-qq",
    "-o",
    "/dev/null",
    "-e",
    `trace=${calls}`,
    "-e",
    `inject=${calls}:delay_enter=${delayUs}${when !== undefined ? `:when=${when}` : ""}`,
  ];
}

/** Where a call freezes itself: after its fence, before the pwrite of its commit; or after that pwrite, before its fdatasync. */
export type FreezePoint = "pwrite" | "fdatasync";

let freezeFile: string | undefined;

/**
 * Env that makes the executable stop itself (SIGSTOP, a plain stop: state T, not a tracer's t)
 * at one instant of its commit: just before its first pwrite to the log (the fence has passed)
 * or just before its first fdatasync of the log (the record is in the page cache, not on disk).
 * The instant is the call's own, whatever the machine's speed. A preload wraps node:fs (the
 * bundle calls it through the module object), as strace's inject=...:signal=SIGSTOP would,
 * minus the tracer that would keep the holder from being judged stopped.
 */
export function freezeEnv(at: FreezePoint): Record<string, string> {
  if (!freezeFile) {
    const dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-freeze-"));
    freezeFile = join(dir, "freeze.cjs");
    writeFileSync(
      freezeFile,
      `const fs = require("node:fs");
const at = process.env.PODCIDR_TEST_FREEZE_AT;
let done = false;
const isLog = (fd) => { try { return fs.readlinkSync("/proc/self/fd/" + fd).endsWith("/_store/log"); } catch { return false; } };
const wrap = (name, point) => {
  const orig = fs[name];
  fs[name] = function (fd, ...rest) {
    if (!done && at === point && typeof fd === "number" && isLog(fd)) { done = true; process.kill(process.pid, "SIGSTOP"); }
    return orig.call(this, fd, ...rest);
  };
};
wrap("writeSync", "pwrite");
wrap("fdatasyncSync", "fdatasync");
`,
    );
  }
  return { NODE_OPTIONS: `--require ${freezeFile}`, PODCIDR_TEST_FREEZE_AT: at };
}

// --- the README ----------------------------------------------------------------

/**
 * The README's commands that write the node file with `kubectl get ... -o json >`
 * straight into place (not to a temp file that is then mv'ed over it): a call that
 * reads it meanwhile finds it empty or half-written. `readme` is the README's text.
 */
export function inPlaceNodeWrites(readme: string): string[] {
  const writes = readme.split("\n").filter((l) => /kubectl get .*-o json\s*>/.test(l));
  if (writes.length === 0) return ["(no `kubectl get ... -o json >` command found)"];
  return writes.filter((l) => {
    const m = /-o json\s*>\s*("?)(\S+?)\1(\s|$)/.exec(l);
    if (!m || !m[2]!.endsWith(".tmp")) return true;
    const target = m[2]!.replace(/[$.*+?^()[\]{}|\\]/g, "\\$&");
    return !new RegExp(`&& mv "?${target}"? `).test(l);
  });
}
