// Stores written before issue #9 kept one folder per network, <dataDir>/<network>/,
// each with its own bitmaps. The first call of this release merges each of them
// into the shared store, holding both locks: records move to
// attachments/<network>/, bits are OR-ed into the shared bitmaps (a pending
// journal is read as an overlay). Then the folder is renamed
// _migrated-<network>-<time> (kept, nothing is deleted) and a regular file is left
// in its place, so that an older podcidr-ipam still running fails closed (it
// refuses a store path that is not a folder) instead of starting an empty store.
import { type Dirent, closeSync, openSync, readdirSync, renameSync, rmdirSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import { take } from "../ipam/allocator.js";
import * as codec from "./codec.js";
import { MAX_FILE } from "./disk-tx.js";
import { commit, confirm, load, txOf } from "./engine.js";
import { fsyncDir, ioError, readFileNoFollow } from "./io.js";
import { type HeldLock, acquire } from "./lock.js";
import type { AttachmentRecord, Damaged } from "./store.js";

export interface Legacy {
  readonly network: string;
  readonly path: string;
}

interface MigratingStore {
  readonly dir: string;
  readonly dataDir: string;
}

/** The per-network folders of an older release in dataDir (one readdir; a few more only before migration). */
export function findLegacy(dataDir: string): Legacy[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(dataDir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: Legacy[] = [];
  for (const e of entries) {
    if (e.name.startsWith("_") || e.name.startsWith(".")) continue;
    if (!e.isDirectory() && !e.isSymbolicLink()) continue;
    const path = join(dataDir, e.name);
    let names: string[];
    try {
      names = readdirSync(path);
    } catch {
      continue;
    }
    if (!names.some((n) => n === "attachments" || n === "journal.json" || (n.startsWith("range-") && n.endsWith(".json")))) continue;
    if (e.isSymbolicLink()) {
      throw new CniError(
        Code.StoreCorrupt,
        `the store of network ${e.name} in ${path} is a symbolic link`,
        `podcidr-ipam moves it into ${join(dataDir, "_store")} but follows no link: move the real folder back in its place (mv), then ` +
          `run any call; never delete it while pods run`,
      );
    }
    out.push({ network: e.name, path });
  }
  return out;
}

/** Merge each legacy store into the shared one. Returns the legacy files that were damaged (salvage only). */
export async function migrate(
  store: MigratingStore,
  legacy: readonly Legacy[],
  lock: HeldLock,
  timeoutMs: number,
  log: (s: string) => void,
  salvage: boolean,
): Promise<Damaged[]> {
  const damaged: Damaged[] = [];
  for (const l of legacy) {
    const old = await acquire(l.path, timeoutMs);
    const archive = join(store.dataDir, `_migrated-${l.network}-${new Date().toISOString().replace(/[:.]/g, "-")}`);
    let moved = false;
    try {
      const { records, ranges, broken } = readLegacy(l, salvage);
      const view = load(store.dir, true);
      try {
        confirm(view);
        const tx = txOf(view, { writable: true });
        for (const r of ranges) {
          const shared = tx.range(r.cidr);
          const fresh = shared.allocated === 0;
          let changed = false;
          for (const o of r.offsets) changed = take(shared, o) || changed;
          if (fresh && changed) shared.next = r.next;
          if (changed) tx.touch(shared);
        }
        for (const rec of records) if (!tx.attachment(rec)) tx.putAttachment(rec);
        commit(view, tx, lock);
      } finally {
        view.close();
      }
      lock.assertHeld();
      renameSync(l.path, archive);
      moved = true;
      leaveMarker(l.path, archive);
      fsyncDir(store.dataDir);
      for (const b of broken) damaged.push({ ...b, file: b.file.replace(l.path, archive) });
      log(
        `podcidr-ipam: moved the store of network ${l.network} (${records.length} attachments, ${ranges.length} ranges) into ` +
          `${store.dir}; the old folder is kept as ${archive}\n`,
      );
    } catch (err) {
      throw ioError(err, `cannot move the store of network ${l.network} (${l.path}) into ${store.dir}`);
    } finally {
      if (moved) {
        // Our hold on the old lock moved with its folder: drop it there.
        for (const f of ["lock.owner"]) unlinkQuiet(join(archive, f));
        try {
          rmdirSync(join(archive, "lock"));
        } catch {
          /* kept in the archive */
        }
      } else old.release();
    }
  }
  return damaged;
}

// --- internal ---

interface LegacyRange {
  readonly cidr: ReturnType<typeof codec.decodeRange>["cidr"];
  readonly offsets: readonly number[];
  readonly next: number;
}

function readLegacy(l: Legacy, salvage: boolean): { records: AttachmentRecord[]; ranges: LegacyRange[]; broken: Damaged[] } {
  const overlay = new Map<string, string | null>();
  const journal = join(l.path, "journal.json");
  const broken: Damaged[] = [];
  const tolerate = (file: string, err: unknown): void => {
    if (!salvage || !(err instanceof CniError)) throw err;
    broken.push({ file, reason: err.message });
  };
  try {
    const text = readFileNoFollow(journal, MAX_FILE * 4);
    if (text !== null) for (const w of codec.decodeJournal(text, journal)) overlay.set(w.file, w.content);
  } catch (err) {
    tolerate(journal, err);
  }
  const read = (rel: string): string | null => (overlay.has(rel) ? overlay.get(rel)! : readFileNoFollow(join(l.path, rel), MAX_FILE));
  const names = (rel: string, prefix: string): string[] => {
    let on: string[] = [];
    try {
      on = readdirSync(join(l.path, rel));
    } catch (err) {
      if (errno(err) !== "ENOENT") throw err;
    }
    const extra = [...overlay.keys()]
      .filter((k) => k.startsWith(prefix) && !k.slice(prefix.length).includes("/"))
      .map((k) => k.slice(prefix.length));
    return [...new Set([...on, ...extra])].sort();
  };
  const ranges: LegacyRange[] = [];
  for (const name of names(".", "")) {
    const cidr = codec.parseRangeName(name);
    if (!cidr) continue;
    const file = join(l.path, name);
    let text: string | null = null;
    try {
      text = read(name);
      if (text === null) continue;
      const r = codec.decodeRange(text, file);
      const offsets: number[] = [];
      for (let o = 0; o < r.cidr.size; o++) if (r.bits[o >> 3]! & (1 << (o & 7))) offsets.push(o);
      ranges.push({ cidr: r.cidr, offsets, next: r.next });
    } catch (err) {
      tolerate(file, err);
      // Repair keeps what a damaged bitmap still marks taken.
      const offsets = text === null ? null : codec.salvageRange(text, cidr);
      if (offsets) ranges.push({ cidr, offsets, next: 0 });
    }
  }
  const records: AttachmentRecord[] = [];
  for (const name of names("attachments", "attachments/")) {
    const id = codec.parseAttachmentName(name);
    if (!id) continue;
    const file = join(l.path, "attachments", name);
    try {
      const text = read(`attachments/${name}`);
      if (text !== null) records.push(codec.decodeLegacyAttachment(text, file, { network: l.network, ...id }));
    } catch (err) {
      tolerate(file, err);
    }
  }
  return { records, ranges, broken };
}

function leaveMarker(path: string, archive: string): void {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch {
    return; // something is there already (an older binary started a folder just now): it is migrated next time
  }
  try {
    writeSync(
      fd,
      `This network's store was moved into ../_store by podcidr-ipam on ${new Date().toISOString()} (the old files: ${archive}).\n` +
        "Keep this file while an older podcidr-ipam may still run: it makes that version fail instead of starting an empty store.\n",
    );
  } finally {
    closeSync(fd);
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* gone */
  }
}
