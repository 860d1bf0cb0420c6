// The log store's files: loading the state (a checkpoint slot and the log's records
// of its generation), confirming a checkpoint a killed call left unsynced, and the
// commit: one record appended and synced, or a checkpoint written and synced.
// The argument for each step is in docs/design-log-store.md.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError } from "../errors.js";
import { type FullState, Slot, encodeCheckpoint } from "./checkpoint.js";
import { closeFile, createFile, openFile, renameFile, syncData, unlinkFile, writeAt } from "./files.js";
import { fsyncDir, uniqueSuffix } from "./io.js";
import type { HeldLock } from "./lock.js";
import { COMPACT_BYTES, COMPACT_RECORDS, HEADER, LOG_BYTES, type LogScan, encodeRecord, scanLog } from "./log.js";
import { LogTx, type LogTxMode } from "./log-tx.js";

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
  /** Which slot holds the base state (-1: none, a store not yet made). */
  readonly slot: number;
  readonly base: Slot | null;
  scan: LogScan;
  close(): void;
}

/** True when the store folder holds this format's files (checkpoint.0 is the last made). */
export function isLogStore(dir: string): boolean {
  return existsSync(join(dir, SLOTS[0])) || existsSync(join(dir, SLOTS[1]));
}

/** Load the state. `write`: open for writing (under the lock). Throws 103 when no valid state can be found. */
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
    const slots = fds.map((fd, i) => (fd === null ? null : Slot.open(fd, join(dir, SLOTS[i]!))));
    const order = [0, 1].filter((i) => slots[i]).sort((a, b) => slots[b]!.meta.gen - slots[a]!.meta.gen);
    for (const i of order) {
      const base = slots[i]!;
      const scan = logFd === null ? emptyScan() : scanLog(logFd, logPath, base.meta.gen);
      if (scan.newerGen !== undefined && !salvage) {
        throw new CniError(
          Code.StoreCorrupt,
          `store ${dir} is corrupt: the log follows checkpoint generation ${scan.newerGen}, and no checkpoint of that generation loads`,
          "a checkpoint that acknowledged changes depend on is damaged; podcidr-ipam refuses to fall back to an older one. Run " +
            "`podcidr-ipam repair --conf <your conflist>` (add --dry-run first).",
        );
      }
      // A checkpoint the log does not confirm is used only if every section of it is whole (see the design).
      if (scan.confirmed || base.verify()) return { dir, fds, logFd, slot: i, base, scan, close };
    }
    if (fds.every((fd) => fd === null)) return { dir, fds, logFd, slot: -1, base: null, scan: emptyScan(), close };
    throw new CniError(
      Code.StoreCorrupt,
      `store ${dir} is corrupt: neither ${SLOTS.join(" nor ")} holds a checkpoint that loads`,
      "podcidr-ipam refuses to guess which addresses are in use. Run `podcidr-ipam repair --conf <your conflist>` " +
        "(add --dry-run first). Never delete the store while pods hold its addresses.",
    );
  } catch (err) {
    close();
    throw err;
  }
}

export function txOf(v: View, mode: LogTxMode): LogTx {
  return new LogTx(v.base, v.scan.changes, mode);
}

/** A checkpoint that a killed call left written but maybe not synced: sync it, then write its generation record. */
export function confirm(v: View): void {
  if (v.slot < 0 || v.scan.confirmed || v.logFd === null) return;
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

/** Make a new store's files in `dir` (under the lock): `state` as generation 1. The folder is synced. */
export function create(dir: string, state: FullState | null): void {
  const tmp = (n: string): string => join(dir, `.tmp-${n}-${process.pid}-${uniqueSuffix()}`);
  const make = (name: string, data: Buffer, size = data.length): string => {
    const path = tmp(name);
    const fd = createFile(path);
    try {
      writeAt(fd, size > data.length ? padded(data, size) : data, 0);
      syncData(fd);
    } finally {
      closeFile(fd);
    }
    return path;
  };
  for (const n of [LOG, SLOTS[1]]) unlinkFile(join(dir, n));
  const log = make(LOG, encodeRecord(1, 0, null), LOG_BYTES);
  const empty = make(SLOTS[1], Buffer.alloc(0));
  const cp = make(SLOTS[0], encodeCheckpoint(state ?? { gen: 1, at: Date.now(), ranges: [], records: [], history: [], sw: {} }));
  renameFile(log, join(dir, LOG));
  renameFile(empty, join(dir, SLOTS[1]));
  if (!existsSync(join(dir, MARKER))) renameFile(make(MARKER, Buffer.from(MARKER_TEXT)), join(dir, MARKER));
  fsyncDir(dir);
  renameFile(cp, join(dir, SLOTS[0]));
  fsyncDir(dir);
}

// --- internal ---

function append(v: View, rec: Buffer, lock: HeldLock): void {
  fence(lock);
  writeAt(v.logFd!, padded(rec, v.scan.junkEnd - v.scan.tail), v.scan.tail);
  syncData(v.logFd!);
  v.scan = { ...v.scan, tail: v.scan.tail + rec.length, nextSeq: v.scan.nextSeq + 1, junkEnd: v.scan.tail + rec.length };
}

function writeCheckpoint(v: View, buf: Buffer, lock: HeldLock): void {
  const other = 1 - v.slot;
  const fd = v.fds[other];
  if (fd === null || fd === undefined) throw new CniError(Code.StoreCorrupt, `store ${v.dir} has no ${SLOTS[other]}`, "");
  fence(lock);
  try {
    writeAt(fd, buf, 0);
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
  // The commit point has passed. The generation record says the checkpoint is synced; the old records after it are zeroed.
  const gen = encodeRecord(v.base!.meta.gen + 1, 0, null);
  try {
    writeAt(v.logFd!, padded(gen, Math.max(v.scan.tail, v.scan.junkEnd)), 0);
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

/** `rec` followed by zeros up to `size` bytes. */
function padded(rec: Buffer, size: number): Buffer {
  if (size <= rec.length) return rec;
  const out = Buffer.alloc(size);
  rec.copy(out, 0);
  return out;
}

function emptyScan(): LogScan {
  return { changes: [], confirmed: false, tail: 0, nextSeq: 0, junkEnd: 0 };
}

export { HEADER };
