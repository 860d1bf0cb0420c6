// Upgrade from the previous release's format (journal-<token>.json, range-*.json,
// attachments/<network>/<containerID>@<ifname>.json, read by disk-tx.ts): under the
// lock, the state is read as that release read it (a pending journal seen as
// applied), written as generation 1 of the log store (engine.create: the new files
// synced, checkpoint.0 renamed last), then the old files are moved to
// pre-log-<time>/ and the file `attachments` left in place of the folder.
import { type Dirent, readdirSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError } from "../errors.js";
import { toArray } from "./change.js";
import * as codec from "./codec.js";
import { ATTACHMENTS, DiskTx, MAX_FILE } from "./disk-tx.js";
import { create, writeTemp } from "./create.js";
import { MARKER, MARKER_TEXT } from "./engine.js";
import { makeDir, renameFile } from "./files.js";
import { fsyncDir, ioError, readFileNoFollow } from "./io.js";
import type { Damaged } from "./store.js";

export const JOURNAL_RE = /^journal-[0-9a-z-]+\.json$/;

/** The previous format's files in the store folder: what an upgrade moves away. */
export function oldFiles(dir: string): Dirent[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw ioError(err, `cannot list ${dir}`);
  }
  return entries.filter(
    (e) =>
      // Only names that format wrote: a stray range-notes.json is nobody's bitmap, and is left where it is.
      JOURNAL_RE.test(e.name) || codec.parseRangeName(e.name) !== null || (e.name === ATTACHMENTS && e.isDirectory()),
  );
}

/** The pending journal of the previous format, as an overlay (file -> content). More than one: 103 (salvage: noted, none used). */
export function journalOverlay(dir: string, salvage: boolean, broken: Damaged[]): Map<string, string | null> {
  const journals = oldFiles(dir)
    .map((e) => e.name)
    .filter((n) => JOURNAL_RE.test(n));
  const overlay = new Map<string, string | null>();
  if (journals.length > 1) {
    const files = journals.map((n) => join(dir, n));
    if (salvage) {
      for (const file of files) broken.push({ file, reason: `one of ${journals.length} interrupted commits: none is replayed` });
      return overlay;
    }
    throw new CniError(
      Code.StoreCorrupt,
      `store ${dir} has ${journals.length} interrupted commits (${journals.join(", ")})`,
      "only one call commits at a time, so one of them was written by a call that had lost the lock; run `podcidr-ipam repair` (it " +
        "replays neither and rebuilds the bitmaps from the records)",
    );
  }
  for (const n of journals) {
    const path = join(dir, n);
    try {
      const text = readFileNoFollow(path, MAX_FILE * 4);
      for (const w of text === null ? [] : codec.decodeJournal(text, path)) overlay.set(w.file, w.content);
    } catch (err) {
      if (!salvage || !(err instanceof CniError)) throw err;
      broken.push({ file: path, reason: err.message });
    }
  }
  return overlay;
}

/** Convert a store of the previous format in place. Returns what failed to load (salvage only; otherwise that throws). */
export function upgrade(dir: string, salvage: boolean, log: (line: string) => void): Damaged[] {
  const broken: Damaged[] = [];
  const overlay = journalOverlay(dir, salvage, broken);
  const old = new DiskTx(dir, { writable: true, salvage, broken, overlay });
  const records = old.attachments();
  const ranges = old.storedRanges(); // a damaged one (salvage only) is left out; repair rebuilds it
  const now = Date.now();
  create(dir, {
    gen: 1,
    at: now,
    ranges,
    records,
    history: records.map((r) => [Date.parse(r.createdAt) || now, "put", toArray(r)]),
    sw: {},
  });
  const kept = finishUpgrade(dir);
  log(
    `podcidr-ipam: converted the store ${dir} to the log format (${records.length} attachments, ${ranges.length} ranges); ` +
      `the old files are kept in ${kept}\n`,
  );
  return [...old.corrupt()];
}

/** Move what is left of the previous format to pre-log-<time>/ and leave the marker file. Idempotent. */
export function finishUpgrade(dir: string): string | null {
  const left = oldFiles(dir);
  if (left.length === 0) return null;
  const dest = join(dir, `pre-log-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  makeDir(dest);
  for (const e of left) renameFile(join(dir, e.name), join(dest, e.name));
  fsyncDir(dest);
  renameFile(writeTemp(dir, MARKER, Buffer.from(MARKER_TEXT)), join(dir, MARKER));
  fsyncDir(dir);
  return dest;
}
