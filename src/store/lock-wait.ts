// How a call waits for the store lock without a thundering herd. Waiters queue
// as ticket files in <store>/queue/, named <boot>-<CLOCK_MONOTONIC ns>-<pid>-<start>
// so they sort by arrival within a boot, and a ticket of another boot, of a
// process that is gone (or whose pid now names another process), or older than
// MAX_TICKET_AGE_MS is removed by whoever finds it. Each sleeps on inotify for its predecessor's ticket only; the
// head of the queue sleeps until inotify reports the lock folder's removal. So
// a release wakes one process, not all of them. The queue is only a hint: every
// sleep is bounded by a short timer, after which the waiter tries the lock anyway,
// so a ticket left by a killed call (or a missed event) costs a few ms, never a hang.
import * as fs from "node:fs";
import { join } from "node:path";
import { errno } from "../errors.js";
import { procInfo, selfInfo } from "./proc.js";

const HEAD_FALLBACK_MS = 40;
const QUEUED_FALLBACK_MS = 200;
/** Without inotify (its instances are shared by every process of the user): poll at this pace. */
const NO_INOTIFY_MS = 25;
/** No call waits longer than lockTimeout (at most an hour): an older ticket is a leftover. */
const MAX_TICKET_AGE_MS = 2 * 3600 * 1000;

export class Waiter {
  private readonly queue: string;
  private ticket: string | null | undefined;
  private headWatch: fs.FSWatcher | null | undefined;
  private wakeHead: (() => void) | null = null;

  constructor(private readonly netdir: string) {
    this.queue = join(netdir, "queue");
  }

  /** Sleep until it may be this call's turn to try the lock. */
  next(): Promise<void> {
    if (this.ticket === undefined) this.ticket = this.enqueue();
    const before = this.ticket ? this.predecessor(this.ticket) : null;
    return before ? sleepUntilGone(join(this.queue, before), QUEUED_FALLBACK_MS) : this.sleepAsHead();
  }

  /** Leave the queue (on getting the lock, or giving up): the next waiter wakes. */
  close(): void {
    if (this.ticket) {
      try {
        fs.unlinkSync(join(this.queue, this.ticket));
      } catch {
        /* already gone */
      }
    }
    this.ticket = null;
    this.headWatch?.close();
    this.headWatch = null;
  }

  // --- internal ---

  private enqueue(): string | null {
    try {
      fs.mkdirSync(this.queue, { mode: 0o700 });
    } catch (err) {
      if (errno(err) !== "EEXIST") return null;
    }
    try {
      // Only a real folder of ours: never write a ticket through a planted symlink.
      if (!fs.lstatSync(this.queue).isDirectory()) return null;
      const me = selfInfo();
      const name = `${bootPrefix()}-${process.hrtime.bigint().toString().padStart(20, "0")}-${process.pid}-${me.start}`;
      fs.closeSync(
        fs.openSync(
          join(this.queue, name),
          fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
          0o600,
        ),
      );
      return name;
    } catch {
      return null; // cannot queue (full disk...): wait as head, by timer and inotify
    }
  }

  /** The live ticket just before ours, removing leftovers on the way. */
  private predecessor(mine: string): string | null {
    let names: string[];
    try {
      names = fs
        .readdirSync(this.queue)
        .filter((n) => n < mine)
        .sort();
    } catch {
      return null;
    }
    for (let i = names.length - 1; i >= 0; i--) {
      const n = names[i]!;
      if (ticketLive(n)) return n;
      unlinkQuiet(join(this.queue, n));
    }
    return null;
  }

  private sleepAsHead(): Promise<void> {
    if (this.headWatch === undefined) {
      try {
        this.headWatch = fs.watch(this.netdir, { persistent: false }, (_event, name) => {
          if (name === "lock") this.wakeHead?.();
        });
        this.headWatch.on("error", () => {
          this.headWatch?.close();
          this.headWatch = null;
        });
      } catch {
        this.headWatch = null; // no inotify: the timer alone
      }
    }
    const ms = this.headWatch ? HEAD_FALLBACK_MS : NO_INOTIFY_MS;
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakeHead = null;
        resolve();
      };
      const timer = setTimeout(done, ms * (0.5 + Math.random()));
      this.wakeHead = done;
    });
  }
}

/** Remove every leftover ticket (the lock holder does this, so a killed waiter's ticket never lingers). */
export function sweepQueue(storeDir: string): void {
  const queue = join(storeDir, "queue");
  let names: string[];
  try {
    names = fs.readdirSync(queue);
  } catch {
    return;
  }
  for (const n of names) if (!ticketLive(n)) unlinkQuiet(join(queue, n));
}

// --- internal ---

let prefix: string | undefined;

function bootPrefix(): string {
  prefix ??= (
    selfInfo()
      .boot.replace(/[^0-9a-f]/g, "")
      .slice(0, 12) || "noboot"
  ).padEnd(12, "0");
  return prefix;
}

/** A ticket of this boot whose process is the one that queued it, and not absurdly old. */
function ticketLive(name: string): boolean {
  const m = /^([0-9a-z]+)-(\d{20})-(\d+)-(-?\d+)$/.exec(name);
  if (!m || m[1] !== bootPrefix()) return false;
  if (Number(process.hrtime.bigint() - BigInt(m[2]!)) / 1e6 > MAX_TICKET_AGE_MS) return false;
  const info = procInfo(Number(m[3]));
  if (!info || info.state === "Z") return false;
  const start = Number(m[4]);
  return start < 0 || info.start < 0 || info.start === start;
}

function unlinkQuiet(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch {
    /* someone else removed it */
  }
}

/** Resolve when `path` is removed (inotify), or after `ms` at the latest. */
function sleepUntilGone(path: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    let watcher: fs.FSWatcher | undefined;
    const done = (): void => {
      clearTimeout(timer);
      watcher?.close();
      resolve();
    };
    const timer = setTimeout(done, ms);
    try {
      watcher = fs.watch(path, { persistent: false }, done);
      watcher.on("error", done);
    } catch (err) {
      // Gone already: our turn now. No inotify instance left (EMFILE, ENOSPC): the timer alone.
      if (errno(err) === "ENOENT") done();
    }
  });
}
