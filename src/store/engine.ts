// The log store's files: loading the state (a checkpoint slot and the log's records
// of its generation), confirming a checkpoint a killed call left unsynced, and the
// commit: one record appended and synced, or a checkpoint written and synced.
// The argument for each step is in docs/design-log-store.md.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError } from "../errors.js";
import { type FullState, Slot, type SlotView, encodeCheckpoint } from "./checkpoint.js";
import { corrupt } from "./codec.js";
import { closeFile, fileSize, openFile, padded, syncData, writeAt } from "./files.js";
import { type HeldLock, STALE_MS } from "./lock.js";
import { COMPACT_BYTES, COMPACT_RECORDS, HEADER, LOG_BYTES, type LogScan, encodeRecord, firstGen, scanLog } from "./log.js";
import { LogTx, type LogTxMode } from "./log-tx.js";
import { SalvagedSlot, legibleHolds } from "./salvage.js";
import type { Damaged } from "./store.js";

export const LOG = "log";
export const SLOTS = ["checkpoint.0", "checkpoint.1"] as const;
/** In place of the previous release's attachments/ folder: a release that finds a file there fails closed (103). */
export const MARKER = "attachments";
export const MARKER_TEXT =
  "This store is in the log format of podcidr-ipam 0.2 (log, checkpoint.0, checkpoint.1). This file stands where older\n" +
  "releases kept attachments/, so that one still running fails (code 103) instead of reading an empty store.\n";
/** History compaction keeps (README, docs/design-log-store.md). */
export const HISTORY = { maxAge: 30 * 86400_000, maxEvents: 10_000 };

export interface View {
  readonly dir: string;
  readonly fds: (number | null)[];
  readonly logFd: number | null;
  /** Which slot holds the base state (-1: none, a store not yet made). The next checkpoint goes into the other. */
  readonly slot: number;
  readonly base: SlotView | null;
  /** Repair only: the base is what could be salvaged of a checkpoint that does not load (salvage.ts). */
  readonly salvaged?: boolean;
  scan: LogScan;
  close(): void;
}

/** True when the store folder holds this format's files: checkpoint.0 is made last (a creation cut short left only the others). */
export function isLogStore(dir: string): boolean {
  return existsSync(join(dir, SLOTS[0]));
}

/** Load the state. `write`: open for writing (under the lock). Throws 103 when no valid state can be found, unless salvaging. */
export function load(dir: string, write: boolean, salvage = false): View {
  const fds = SLOTS.map((s) => openFile(join(dir, s), write));
  const logPath = join(dir, LOG);
  let logFd: number | null = null;
  const close = (): void => {
    for (const fd of fds) if (fd !== null) closeFile(fd);
    if (logFd !== null) closeFile(logFd);
  };
  try {
    logFd = openFile(logPath, write);
    // The log is made whole with the slots and never shrinks: missing or short, acknowledged records are gone.
    const logSize = logFd === null ? -1 : fileSize(logFd);
    if (fds.some((fd) => fd !== null) && logSize < LOG_BYTES && !salvage) {
      throw corrupt(logPath, logSize < 0 ? "it is missing" : `it is ${logSize} bytes, shorter than the ${LOG_BYTES} it is made with`);
    }
    const slots = fds.map((fd, i) => (fd === null ? null : Slot.open(fd, join(dir, SLOTS[i]!))));
    const order = [0, 1].filter((i) => slots[i]).sort((a, b) => slots[b]!.meta.gen - slots[a]!.meta.gen);
    const scanOf = (gen: number): LogScan => (logFd === null ? emptyScan() : scanLog(logFd, logPath, gen, salvage));
    const view = (slot: number, base: SlotView | null, scan: LogScan, salvaged?: boolean): View => ({
      dir,
      fds,
      logFd,
      slot,
      base,
      scan,
      close,
      ...(salvaged ? { salvaged } : {}),
    });
    let newest = 0;
    for (const i of order) {
      const base = slots[i]!;
      const scan = scanOf(base.meta.gen);
      if (scan.newerGen !== undefined) {
        newest = scan.newerGen;
        if (salvage) break;
        throw new CniError(
          Code.StoreCorrupt,
          `store ${dir} is corrupt: the log follows checkpoint generation ${scan.newerGen}, and no checkpoint of that generation loads`,
          "a checkpoint that acknowledged changes depend on is damaged; podcidr-ipam refuses to fall back to an older one. Run " +
            "`podcidr-ipam repair --conf <your conflist>` (add --dry-run first).",
        );
      }
      // A checkpoint the log does not confirm is used only if every section of it is whole (see the design).
      if (scan.confirmed || base.verify()) return view(i, base, scan);
    }
    if (fds.every((fd) => fd === null)) return view(-1, null, emptyScan());
    if (!salvage) {
      throw new CniError(
        Code.StoreCorrupt,
        `store ${dir} is corrupt: neither ${SLOTS.join(" nor ")} holds a checkpoint that loads`,
        "podcidr-ipam refuses to guess which addresses are in use. Run `podcidr-ipam repair --conf <your conflist>` " +
          "(add --dry-run first). Never delete the store while pods hold its addresses.",
      );
    }
    // Repair: the newest checkpoint does not load. Salvage what it still holds; the next checkpoint is written over it.
    // The damaged slot salvaged: the one of the generation the log follows (its meta says so, or, when it says nothing
    // legible, the slot that generation goes in: generation G is written in slot (G - 1) % 2).
    const logGen = logFd === null ? 0 : Math.max(newest, firstGen(logFd));
    const gens = fds.map((fd, i) => (fd === null ? -1 : (slots[i]?.meta.gen ?? SalvagedSlot.looseGen(fd))));
    const rank = (i: number): number =>
      (gens[i] === logGen ? 4 : logGen > 0 && i === (logGen - 1) % 2 ? 2 : 0) * 1e9 + (slots[i] ? 0 : 1e9) + gens[i]!;
    const bad = [0, 1].filter((i) => fds[i] !== null).sort((a, b) => rank(b) - rank(a))[0]!;
    const gen = Math.max(logGen, ...gens, 1);
    const base = SalvagedSlot.read(fds[bad]!, join(dir, SLOTS[bad]!), gen);
    // The next checkpoint goes into the other slot (the alternation kept).
    return view(bad, base, scanOf(gen), true);
  } catch (err) {
    close();
    throw err;
  }
}

/** What a salvaging load found damaged (repair notes it: quarantined, rewritten; what is legible in it kept taken). */
export function loadDamage(v: View): Damaged[] {
  const path = join(v.dir, LOG);
  const size = v.logFd === null ? -1 : fileSize(v.logFd);
  const out: Damaged[] = (v.scan.damaged ?? []).map((d) => ({
    file: `${path}: record ${d.seq} of generation ${v.base?.meta.gen ?? 0} (at byte ${d.at})`,
    reason: `store file ${path} is corrupt: its record ${d.seq} (at byte ${d.at}) fails its checks; the valid records after it are applied`,
    held: legibleHolds(d.text),
  }));
  if (v.base && size < LOG_BYTES)
    out.push({ file: path, reason: `store file ${path} is corrupt: it is ${size < 0 ? "missing" : `${size} bytes`}` });
  if (v.salvaged) out.push({ file: `${v.base!.path}: meta`, reason: corrupt(v.base!.path, "its meta line fails its checks").message });
  return out;
}

export function txOf(v: View, mode: LogTxMode): LogTx {
  return new LogTx(v.base, v.scan.changes, mode);
}

/** A checkpoint that a killed call left written but maybe not synced: sync it, then write its generation record. */
export function confirm(v: View): void {
  if (v.slot < 0 || v.scan.confirmed || v.logFd === null || v.salvaged) return;
  syncData(v.fds[v.slot]!);
  const rec = encodeRecord(v.base!.meta.gen, 0, null);
  writeAt(v.logFd, padded(rec, v.scan.junkEnd), 0);
  v.scan = { ...v.scan, confirmed: true, tail: rec.length, nextSeq: 1, junkEnd: rec.length, changes: [] };
}

/**
 * Commit what `tx` changed: one record and one sync, or a checkpoint and one sync. Nothing changed: nothing
 * written. `checkpoint`: always a checkpoint (repair: the damaged sections must go).
 */
export function commit(v: View, tx: LogTx, lock: HeldLock, now = Date.now(), checkpoint = false): void {
  const change = tx.change(now);
  if (!change && !checkpoint) return;
  const gen = v.base!.meta.gen;
  const rec = encodeRecord(gen, v.scan.nextSeq, change ?? { t: now });
  const end = checkpoint ? Number.POSITIVE_INFINITY : v.scan.tail + rec.length;
  if (end <= COMPACT_BYTES && v.scan.nextSeq < COMPACT_RECORDS) return void append(v, rec, lock);
  let state: FullState;
  try {
    state = tx.fullState(gen + 1, now, HISTORY);
  } catch (err) {
    // A damaged section a DEL skipped must not be dropped from the state: only repair rewrites it.
    if (end <= LOG_BYTES && err instanceof CniError && err.code === Code.StoreCorrupt) return void append(v, rec, lock);
    throw err;
  }
  try {
    writeCheckpoint(v, encodeCheckpoint(state), lock);
  } catch (err) {
    if (end <= LOG_BYTES && err instanceof CniError && /ENOSPC|EDQUOT/.test(err.message)) return void append(v, rec, lock);
    throw err;
  }
}

// --- internal ---

function append(v: View, rec: Buffer, lock: HeldLock): void {
  fence(lock);
  writeAt(v.logFd!, padded(rec, v.scan.junkEnd - v.scan.tail), v.scan.tail);
  syncData(v.logFd!);
  afterFence(lock);
  v.scan = { ...v.scan, tail: v.scan.tail + rec.length, nextSeq: v.scan.nextSeq + 1, junkEnd: v.scan.tail + rec.length };
}

function writeCheckpoint(v: View, buf: Buffer, lock: HeldLock): void {
  const other = 1 - v.slot;
  const fd = v.fds[other];
  if (fd === null || fd === undefined) throw new CniError(Code.StoreCorrupt, `store ${v.dir} has no ${SLOTS[other]}`, "");
  fence(lock);
  try {
    // Zeros after it, over what an older, longer checkpoint left in this slot: no stale line survives to be salvaged.
    writeAt(fd, padded(buf, fileSize(fd)), 0);
    syncData(fd);
  } catch (err) {
    // Leave no meta of a torn checkpoint behind: every later load would verify it whole, in vain.
    try {
      writeAt(fd, Buffer.alloc(64), 0);
    } catch {
      /* it fails its checks anyway */
    }
    throw err;
  }
  afterFence(lock);
  // The commit point has passed. The generation record says the checkpoint is synced; the old records after it are zeroed
  // (and a log repair found short is made whole again).
  const gen = encodeRecord(v.base!.meta.gen + 1, 0, null);
  try {
    writeAt(v.logFd!, padded(gen, Math.max(v.scan.tail, v.scan.junkEnd, fileSize(v.logFd!) < LOG_BYTES ? LOG_BYTES : 0)), 0);
  } catch {
    /* the next writer confirms the checkpoint itself */
  }
}

/** The lock is still this call's (lease renewed), checked just before the one write that commits. */
function fence(lock: HeldLock): void {
  try {
    lock.assertHeld();
  } catch (err) {
    const e = err as CniError;
    throw new CniError(Code.TryAgainLater, "lost the store lock before committing; nothing was written", e.details ?? "", { cause: err });
  }
}

/**
 * The lock is still this call's after the write that commits. If not, another call took it over between the fence
 * and the write (judged by the lease: this call's process was not visible to it) and gave the files new inodes: this
 * write went to the old ones unless it came before the copy. Kept or not, never answered as success.
 */
function afterFence(lock: HeldLock): void {
  if (lock.stillHeld()) return;
  throw new CniError(
    Code.TryAgainLater,
    "lost the store lock while committing; this change may not have been kept",
    `another call took the lock over (this call ran in another pid namespace, or was stopped for more than ${STALE_MS / 1000}s) ` +
      "and gave the store's files new inodes; an address this ADD may still hold is released by the runtime's DEL or the next GC",
  );
}

function emptyScan(): LogScan {
  return { changes: [], confirmed: false, tail: 0, nextSeq: 0, junkEnd: 0 };
}

export { HEADER };
