// Helpers for the tests that replay the outside testers' reports
// (../shared/reports/*-d173de3.md, issue #9) against the built executable.
//
// They find the store wherever the executable under test keeps it: in
// <dataDir>/_store/ (this build), or in the per-network folder <dataDir>/<network>/
// of the build the reports were written against (d173de3, PODCIDR_BIN=/tmp/old-podcidr-ipam),
// so that a test run against the old build fails for the bug it reproduces and
// not merely because a path moved.
import { type ChildProcess, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmdirSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { attachmentsDir, storeDir } from "./exe";
import { BIN, type RunResult, type Sandbox, collect } from "./plugin";

/** The store folder: `_store` (this build) or, on a build before issue #9, the network's own folder. */
export function sdir(sb: Sandbox, network = "podnet"): string {
  const legacy = join(sb.dataDir, network);
  return existsSync(storeDir(sb)) || !isDir(legacy) ? storeDir(sb) : legacy;
}

/** True when the executable under test keeps the older per-network layout (seen after a first ADD). */
export function legacyLayout(sb: Sandbox, network = "podnet"): boolean {
  return sdir(sb, network) !== storeDir(sb);
}

/** Where one network's attachment records are. */
export function recDir(sb: Sandbox, network = "podnet"): string {
  return legacyLayout(sb, network) ? join(sdir(sb, network), "attachments") : attachmentsDir(sb, network);
}

/** The file of one attachment's record. */
export function recordFile(sb: Sandbox, containerID: string, ifname = "eth0", network = "podnet"): string {
  return join(recDir(sb, network), `${containerID}@${ifname}.json`);
}

/** The bitmap file of one podCIDR ("10.0.2.0/24" -> range-10.0.2.0_24.json). */
export function rangeFile(sb: Sandbox, cidr: string, network = "podnet"): string {
  return join(sdir(sb, network), `range-${cidr.replace(/:/g, "-").replace("/", "_")}.json`);
}

/** Journal files in the store folder (journal-<token>.json now, journal.json before issue #9). */
export function journals(dir: string): string[] {
  return list(dir).filter((n) => /^journal(-[0-9a-z-]+)?\.json$/.test(n));
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

// --- what the store holds, read from its files --------------------------------

export interface Holdings {
  /** IPv4 address -> the attachments whose records hold it ("network/containerID/ifname"). */
  readonly byAddress: Map<string, string[]>;
  /** Addresses two or more records hold. */
  readonly duplicates: string[];
  /** Addresses a record holds whose bit is clear (the next ADD may hand them out again). */
  readonly unmarked: string[];
  /** Bits set that no record holds (a leak). */
  readonly unowned: string[];
  /** containerID (from the record's file name) -> addresses its records hold. */
  readonly byContainer: Map<string, string[]>;
}

/** Read every record and IPv4 bitmap of the store straight from disk (either layout). */
export function holdings(sb: Sandbox, network = "podnet"): Holdings {
  const dir = sdir(sb, network);
  const byAddress = new Map<string, string[]>();
  const byContainer = new Map<string, string[]>();
  const recRoot = join(dir, "attachments");
  const walk = (d: string): void => {
    for (const n of list(d)) {
      const p = join(d, n);
      if (isDir(p)) walk(p);
      else if (/^[^@/]+@[^/]+\.json$/.test(n)) {
        // Who holds an address is what the file's name says (a copied record says otherwise inside).
        let rec: { ips?: unknown };
        try {
          rec = JSON.parse(readFileSync(p, "utf8"));
        } catch {
          continue; // a damaged record holds nothing anyone can read
        }
        if (!Array.isArray(rec.ips)) continue;
        const id = n.slice(0, n.indexOf("@"));
        const who = `${d === recRoot ? network : d.slice(recRoot.length + 1)}/${n.slice(0, -5).replace("@", "/")}`;
        for (const ip of rec.ips as { address: string }[]) {
          byAddress.set(ip.address, [...(byAddress.get(ip.address) ?? []), who]);
          byContainer.set(id, [...(byContainer.get(id) ?? []), ip.address]);
        }
      }
    }
  };
  walk(recRoot);
  const set = new Set<string>();
  for (const n of list(dir)) {
    const m = /^range-(\d+\.\d+\.\d+\.\d+)_(\d+)\.json$/.exec(n);
    if (!m) continue;
    const o = JSON.parse(readFileSync(join(dir, n), "utf8"));
    const bits = Buffer.from(o.bits, "base64");
    const base = ipv4ToInt(m[1]!) + 1;
    for (let i = 0; i < o.size; i++) if (bits[i >> 3]! & (1 << (i & 7))) set.add(intToIpv4(base + i));
  }
  const v4 = [...byAddress.keys()].filter((a) => !a.includes(":"));
  return {
    byAddress,
    byContainer,
    duplicates: [...byAddress].filter(([, who]) => who.length > 1).map(([a]) => a),
    unmarked: v4.filter((a) => !set.has(a)),
    unowned: [...set].filter((a) => !byAddress.has(a)),
  };
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

/** strace with a delay injected into fsync: every one (when omitted), or the Nth of each process. */
export function straceFsync(delayUs: number, when?: number): string[] {
  return [
    "strace",
    "-f",
    "-qq",
    "-o",
    "/dev/null",
    "-e",
    "trace=fsync",
    "-e",
    `inject=fsync:delay_enter=${delayUs}${when !== undefined ? `:when=${when}` : ""}`,
  ];
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
