// What the lock needs to know about a process, read from /proc: whether it is
// the same process that wrote an owner file (a pid can be reused), and whether
// it is running, stopped by a signal, or gone. And the kernel's boot ID.
import { readFileSync, readlinkSync } from "node:fs";

export interface ProcInfo {
  /** /proc/<pid>/stat field 3: R running, S sleeping, D in I/O, T stopped by a signal, t stopped by a tracer, Z zombie. */
  readonly state: string;
  /** Field 22: start time in clock ticks after boot. Together with the pid it names one process. */
  readonly start: number;
}

/**
 * A live process's state and start time; null when there is no such process.
 * State "?" when it exists but /proc does not show it (hidepid, another user).
 */
export function procInfo(pid: number): ProcInfo | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return alive(pid) ? { state: "?", start: -1 } : null;
  }
  // The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const start = Number(rest[19]);
  return rest[0] ? { state: rest[0], start: Number.isFinite(start) ? start : -1 } : null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code !== "ESRCH";
  }
}

let self: { pidns: string; start: number; boot: string } | undefined;

/** This process: its pid namespace ("" when /proc does not say), start time, and the boot ID. */
export function selfInfo(): { pidns: string; start: number; boot: string } {
  if (!self) {
    let pidns = "";
    try {
      pidns = readlinkSync("/proc/self/ns/pid");
    } catch {
      /* no /proc: the lock falls back to its lease */
    }
    self = { pidns, start: procInfo(process.pid)?.start ?? -1, boot: bootId() };
  }
  return self;
}

/** The kernel's boot ID, "" when unknown. Changes at every boot. */
export function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "latin1").trim();
  } catch {
    return "";
  }
}
