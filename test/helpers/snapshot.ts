// What a folder holds, to check that a call changed nothing (or only what it
// should): one walk, not following links and never opening a FIFO or device,
// shared by every test that compares a data dir before and after.
import { type Stats, lstatSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";

export interface Entry {
  kind: "dir" | "file" | "link" | "other";
  /** Permission bits (mode & 0o7777). */
  mode: number;
  ino: number;
  size: number;
  mtimeMs: number;
  /** A file's bytes. */
  data?: Buffer;
  /** A link's target. */
  link?: string;
}

export interface SnapshotOptions {
  /** Leave an entry out, and for a folder everything under it; rel is its path under dir. */
  skip?: (rel: string) => boolean;
  /** Also record inode, size and mtime: a file replaced by one with the same bytes counts as changed. */
  stat?: boolean;
  /** Files only: folders, links and other entries are left out. */
  filesOnly?: boolean;
}

/**
 * Every entry under dir by relative path ("." for dir itself), in sorted order;
 * empty when dir does not exist. An entry that goes away during the walk is left out.
 */
export function entries(dir: string, skip: (rel: string) => boolean = () => false): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string): void => {
    if (rel && skip(rel)) return;
    const abs = rel ? join(dir, rel) : dir;
    let st: Stats;
    try {
      st = lstatSync(abs);
    } catch {
      return;
    }
    const e: Entry = { kind: "other", mode: st.mode & 0o7777, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    if (st.isDirectory()) {
      out.set(rel || ".", { ...e, kind: "dir" });
      for (const n of readdirSync(abs).sort()) walk(rel ? join(rel, n) : n);
    } else if (st.isSymbolicLink()) out.set(rel, { ...e, kind: "link", link: readlinkSync(abs) });
    else if (st.isFile()) out.set(rel, { ...e, kind: "file", data: readFileSync(abs) });
    else out.set(rel, e);
  };
  walk("");
  return out;
}

/**
 * entries() as text to compare with toEqual: relative path -> "dir 700",
 * "file 600 <base64 bytes>", "link 777 -> <target>" or "other 644" (with
 * `stat`, "ino=... size=... mtime=..." after the mode).
 */
export function snapshot(dir: string, o: SnapshotOptions = {}): Map<string, string> {
  const out = new Map<string, string>();
  for (const [rel, e] of entries(dir, o.skip)) {
    if (o.filesOnly && e.kind !== "file") continue;
    const head = `${e.kind} ${e.mode.toString(8)}${o.stat ? ` ino=${e.ino} size=${e.size} mtime=${e.mtimeMs}` : ""}`;
    out.set(rel, e.kind === "file" ? `${head} ${e.data!.toString("base64")}` : e.kind === "link" ? `${head} -> ${e.link}` : head);
  }
  return out;
}

/** What differs from snapshot a to snapshot b: "changed <rel>", "removed <rel>", "created <rel>". */
export function changes(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(b.has(k) ? `changed ${k}` : `removed ${k}`);
  for (const k of b.keys()) if (!a.has(k)) out.push(`created ${k}`);
  return out;
}
