// Making the log store's files: a new store (or an upgraded one) as generation 1,
// every file written and synced under a temp name, renamed into place with
// checkpoint.0 last (the store exists once it does: engine.isLogStore); and a
// log made again when repair finds it missing; and the files given new inodes after
// a lock was taken from a holder that may still run.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type FullState, encodeCheckpoint } from "./checkpoint.js";
import { LOG, MARKER, MARKER_TEXT, SLOTS } from "./engine.js";
import { closeFile, createFile, fileSize, openFile, padded, readAt, renameFile, syncData, unlinkFile, writeAt } from "./files.js";
import { fsyncDir, uniqueSuffix } from "./io.js";
import { FENCED } from "./lock-reap.js";
import { LOG_BYTES, encodeRecord } from "./log.js";

/** Write `data` (zero-padded to `size`) to a new temp file in `dir`, synced; its path (the caller renames it into place). */
export function writeTemp(dir: string, name: string, data: Buffer, size = data.length): string {
  const path = join(dir, `.tmp-${name}-${process.pid}-${uniqueSuffix()}`);
  const fd = createFile(path);
  try {
    writeAt(fd, size > data.length ? padded(data, size) : data, 0);
    syncData(fd);
  } finally {
    closeFile(fd);
  }
  return path;
}

/** Make a new store's files in `dir` (under the lock): `state` as generation 1. The folder is synced. */
export function create(dir: string, state: FullState | null): void {
  for (const n of [LOG, SLOTS[1]]) unlinkFile(join(dir, n));
  const log = writeTemp(dir, LOG, encodeRecord(1, 0, null), LOG_BYTES);
  const empty = writeTemp(dir, SLOTS[1], Buffer.alloc(0));
  const cp = writeTemp(dir, SLOTS[0], encodeCheckpoint(state ?? { gen: 1, at: Date.now(), ranges: [], records: [], history: [], sw: {} }));
  renameFile(log, join(dir, LOG));
  renameFile(empty, join(dir, SLOTS[1]));
  if (!existsSync(join(dir, MARKER))) renameFile(writeTemp(dir, MARKER, Buffer.from(MARKER_TEXT)), join(dir, MARKER));
  fsyncDir(dir);
  renameFile(cp, join(dir, SLOTS[0]));
  fsyncDir(dir);
}

/**
 * The lock was taken from a holder judged by its lease alone (lock-reap.ts: FENCED): it may still run, and may
 * be past its last fence with a write decided on, which it makes through the descriptors it opened. Before
 * loading, copy each store file to a new inode and rename it over the old one: that write then lands in a file
 * no one reads (the holder finds the lock gone afterwards and answers 11). What it wrote before the copy is a
 * record of the state as it was, whole or torn, and is read as any other.
 */
export function fenceOff(dir: string): void {
  for (const name of [LOG, ...SLOTS]) {
    const path = join(dir, name);
    const fd = openFile(path, false);
    if (fd === null) continue;
    let data: Buffer;
    try {
      data = readAt(fd, 0, fileSize(fd));
    } finally {
      closeFile(fd);
    }
    renameFile(writeTemp(dir, name, data), path);
  }
  fsyncDir(dir);
  unlinkFile(join(dir, FENCED));
}

/** Repair of a store whose log is missing: a new one, all zeros (the checkpoint repair writes then starts it). */
export function remakeLog(dir: string): void {
  renameFile(writeTemp(dir, LOG, Buffer.alloc(0), LOG_BYTES), join(dir, LOG));
  fsyncDir(dir);
}
