// How a call waits for the store lock without a thundering herd. Waiters queue
// as ticket files in <net>/queue/ (named by CLOCK_MONOTONIC time, so they sort
// by arrival). Each sleeps on inotify for its predecessor's ticket only; the
// head of the queue sleeps until inotify reports the lock folder's removal. So
// a release wakes one process, not all of them. The queue is only a hint: every
// sleep is bounded by a short timer, after which the waiter tries the lock anyway,
// so a ticket left by a killed call (or a missed event) costs a few ms, never a hang.
import * as fs from "node:fs";
import { join } from "node:path";
import { errno } from "../errors.js";

const HEAD_FALLBACK_MS = 40;
const QUEUED_FALLBACK_MS = 200;

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
      const name = `${process.hrtime.bigint().toString().padStart(20, "0")}-${process.pid}`;
      fs.closeSync(fs.openSync(join(this.queue, name), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600));
      return name;
    } catch {
      return null; // cannot queue (full disk...): wait as head, by timer and inotify
    }
  }

  /** The live ticket just before ours, dropping tickets of processes that are gone. */
  private predecessor(mine: string): string | null {
    let names: string[];
    try {
      names = fs.readdirSync(this.queue).filter((n) => n < mine).sort();
    } catch {
      return null;
    }
    for (let i = names.length - 1; i >= 0; i--) {
      const pid = Number(names[i]!.slice(names[i]!.lastIndexOf("-") + 1));
      try {
        process.kill(pid, 0);
        return names[i]!;
      } catch (err) {
        if (errno(err) !== "ESRCH") return names[i]!;
        try {
          fs.unlinkSync(join(this.queue, names[i]!));
        } catch {
          /* someone else removed it */
        }
      }
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
    const ms = this.headWatch ? HEAD_FALLBACK_MS : 4;
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
    } catch {
      done(); // already gone
    }
  });
}
