// A commit is write-ahead: the new content of every file it changes goes into
// the committer's own journal (temp file, fsync, rename, fsync folder); then each
// file is replaced the same way; then the journal is removed. Before every step
// the committer checks, and renews, its hold on the lock (the fence).
import { mkdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import * as codec from "./codec.js";
import { checkFolder } from "./disk-tx.js";
import { fsyncDir, ioError, writeAtomic } from "./io.js";
import type { HeldLock } from "./lock.js";

/** Commit writes to the store folder `dir` durably, under `lock`. Throws a true account of what is left when it fails. */
export function commitWrites(dir: string, writes: readonly codec.JournalWrite[], lock: HeldLock): void {
  if (writes.length === 0) return;
  const journal = `journal-${lock.token}.json`;
  let journaled = false;
  try {
    lock.assertHeld();
    writeAtomic(join(dir, journal), codec.encodeJournal(writes), dir, () => lock.assertHeld());
    journaled = true;
    lock.assertHeld();
    fsyncDir(dir);
    applyWrites(dir, writes, lock);
    // The journal's removal needs no fsync of its own: every write it holds is durable by now,
    // so a journal that a power cut brings back is replayed onto the very content it holds
    // (replay is idempotent), and the next commit's fsync of this folder makes the removal
    // durable before any newer change can be lost behind it.
    lock.assertHeld();
    unlinkIfThere(join(dir, journal));
  } catch (err) {
    throw commitFailure(err, journaled, journal, lock);
  }
}

/** Put every write of a journal in place, each fenced. Idempotent. */
export function applyWrites(dir: string, writes: readonly codec.JournalWrite[], lock: HeldLock): void {
  const folders = new Set<string>([dir]);
  for (const w of writes) {
    lock.assertHeld();
    const path = join(dir, w.file);
    if (w.file.includes("/")) {
      for (const f of ensureFolders(dir, w.file.slice(0, w.file.lastIndexOf("/")))) folders.add(f);
    }
    if (w.content === null) unlinkIfThere(path);
    else writeAtomic(path, w.content, dir, () => lock.assertHeld());
  }
  // Deepest first: a new network folder's entry lands in attachments/ after its own content.
  for (const f of [...folders].sort((a, b) => b.length - a.length)) {
    lock.assertHeld();
    fsyncDir(f);
  }
}

export function unlinkIfThere(path: string, quiet = false): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if (errno(err) !== "ENOENT" && !quiet) throw ioError(err, `cannot remove ${path}`);
  }
}

// --- internal ---

/** Make the folders on the way to a store file; returns every folder whose entries changed. */
function ensureFolders(dir: string, rel: string): string[] {
  const out: string[] = [];
  let sub = dir;
  for (const part of rel.split("/")) {
    out.push(sub);
    sub = join(sub, part);
    checkFolder(sub);
    try {
      mkdirSync(sub, { mode: 0o700 });
    } catch (err) {
      if (errno(err) !== "EEXIST") throw ioError(err, `cannot create ${sub}`);
    }
  }
  out.push(sub);
  return out;
}

/** Say truly what a failed commit left behind. */
function commitFailure(err: unknown, journaled: boolean, journal: string, lock: HeldLock): unknown {
  const lost = (err instanceof CniError && err.code === Code.TryAgainLater) || !lock.stillHeld();
  if (lost) {
    return new CniError(
      Code.TryAgainLater,
      journaled ? "lost the store lock while committing" : "lost the store lock before committing; nothing was written",
      journaled
        ? `the change is recorded in ${journal}, and whichever call holds the lock next completes it; ` +
            `${err instanceof CniError ? err.details : String(err)}`
        : err instanceof CniError
          ? err.details
          : String(err),
      { cause: err },
    );
  }
  if (journaled && err instanceof CniError && err.code === Code.StoreIOFailure) {
    return new CniError(
      err.code,
      err.message,
      `${err.details.replace(/ \(the store was left as it was\)/, "")}. The change is recorded in ${journal} and the next call ` +
        `completes it ` +
        "(an ADD that failed here is released by the runtime's DEL as usual).",
      { cause: err },
    );
  }
  return err;
}
