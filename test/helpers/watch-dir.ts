import { type FSWatcher, readdirSync, statSync, watch } from "node:fs";
import { join } from "node:path";

export interface DirWatch {
  /** "inotify", or "poll" when the kernel had no inotify instance or watch left for this process. */
  readonly how: "inotify" | "poll";
  close(): void;
}

const POLL_MS = 1;

/**
 * Call `onName(name)` when an entry of `dir` is created, changed or removed.
 * inotify (fs.watch) when there is one; when there is none (EMFILE: the user's
 * fs.inotify.max_user_instances is spent, which on a shared CI host other
 * containers' processes count against; ENOSPC: max_user_watches), a 1 ms poll of
 * the folder's entries (name, inode, size, mtime) instead, so a test does not
 * fail, or silently stop attacking, for a limit of the machine it runs on.
 * Throws what fs.watch throws otherwise (ENOENT: the folder is not there yet).
 */
export function watchDir(dir: string, onName: (name: string) => void): DirWatch {
  let w: FSWatcher;
  try {
    w = watch(dir, (_event, name) => onName(String(name ?? "")));
    return { how: "inotify", close: () => w.close() };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EMFILE" && code !== "ENOSPC") throw err;
    process.stderr.write(`[watch-dir] no inotify for ${dir} (${code}): polling every ${POLL_MS} ms\n`);
  }
  let last = entries(dir);
  const timer = setInterval(() => {
    const now = entries(dir);
    for (const [name, sig] of now) if (last.get(name) !== sig) onName(name);
    for (const name of last.keys()) if (!now.has(name)) onName(name);
    last = now;
  }, POLL_MS);
  return { how: "poll", close: () => clearInterval(timer) };
}

function entries(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      const st = statSync(join(dir, name));
      out.set(name, `${st.ino}:${st.size}:${st.mtimeMs}`);
    } catch {
      /* removed between readdir and stat: absent */
    }
  }
  return out;
}
