// Making the log store's files: a new store (or an upgraded one) as generation 1,
// every file written and synced under a temp name, renamed into place with
// checkpoint.0 last (the store exists once it does: engine.isLogStore); and a
// log made again when repair finds it missing.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type FullState, encodeCheckpoint } from "./checkpoint.js";
import { LOG, MARKER, MARKER_TEXT, SLOTS } from "./engine.js";
import { closeFile, createFile, padded, renameFile, syncData, unlinkFile, writeAt } from "./files.js";
import { fsyncDir, uniqueSuffix } from "./io.js";
import { LOG_BYTES, encodeRecord } from "./log.js";

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

/** Repair of a store whose log is missing: a new one, all zeros (the checkpoint repair writes then starts it). */
export function remakeLog(dir: string): void {
  const path = join(dir, `.tmp-${LOG}-${process.pid}-${uniqueSuffix()}`);
  const fd = createFile(path);
  try {
    writeAt(fd, Buffer.alloc(LOG_BYTES), 0);
    syncData(fd);
  } finally {
    closeFile(fd);
  }
  renameFile(path, join(dir, LOG));
  fsyncDir(dir);
}
