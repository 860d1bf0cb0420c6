// The log store's file operations, all in one place: files opened without
// following a symlink, positioned writes, data syncs. Each write and sync is
// reported to `ioTrace.on` when it is set, so a test can record what a commit
// writes and rebuild every state a power cut could leave (test/store/power-cut.test.ts).
import * as fs from "node:fs";
import { Code, CniError, errno } from "../errors.js";
import { ioError, ioTrace } from "./io.js";

const NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

const paths = new Map<number, string>();

/** Open a store file for reading (and writing); null when absent. Never a symlink, FIFO or folder. */
export function openFile(path: string, write: boolean): number | null {
  let fd: number;
  try {
    fd = fs.openSync(path, (write ? fs.constants.O_RDWR : fs.constants.O_RDONLY) | NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    if (errno(err) === "ENOENT") return null;
    throw ioError(err, `cannot open ${path}`);
  }
  try {
    if (!fs.fstatSync(fd).isFile())
      throw new CniError(Code.StoreCorrupt, `${path} is not a regular file`, "the store holds only regular files; remove what is there");
  } catch (err) {
    fs.closeSync(fd);
    throw ioError(err, `cannot inspect ${path}`);
  }
  paths.set(fd, path);
  return fd;
}

/** Create a new file (it must not exist), 0600. */
export function createFile(path: string): number {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | NOFOLLOW, 0o600);
  } catch (err) {
    throw ioError(err, `cannot create ${path}`);
  }
  paths.set(fd, path);
  ioTrace.on?.({ op: "create", path });
  return fd;
}

export function closeFile(fd: number): void {
  paths.delete(fd);
  try {
    fs.closeSync(fd);
  } catch {
    /* nothing to do */
  }
}

export function fileSize(fd: number): number {
  return fs.fstatSync(fd).size;
}

/** Read up to `length` bytes at `offset` (fewer at the end of the file). */
export function readAt(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let n = 0;
  try {
    while (n < length) {
      const r = fs.readSync(fd, buf, n, length - n, offset + n);
      if (r === 0) break;
      n += r;
    }
  } catch (err) {
    throw ioError(err, `cannot read ${paths.get(fd) ?? "a store file"}`);
  }
  return n === length ? buf : buf.subarray(0, n);
}

/** Write all of `data` at `offset`. */
export function writeAt(fd: number, data: Buffer, offset: number): void {
  const path = paths.get(fd) ?? "a store file";
  let n = 0;
  try {
    while (n < data.length) n += fs.writeSync(fd, data, n, data.length - n, offset + n);
  } catch (err) {
    throw ioError(err, `cannot write ${path}`);
  }
  ioTrace.on?.({ op: "write", path, offset, data: Buffer.from(data) });
}

/** fdatasync: the data (and the size, if it changed) is on disk when this returns. */
export function syncData(fd: number): void {
  const path = paths.get(fd) ?? "a store file";
  try {
    fs.fdatasyncSync(fd);
  } catch (err) {
    throw ioError(err, `cannot sync ${path}`);
  }
  ioTrace.on?.({ op: "sync", path });
}

/** mkdir (a folder of the store's own: pre-log-<time>/); it must not exist. */
export function makeDir(path: string): void {
  try {
    fs.mkdirSync(path, { mode: 0o700 });
  } catch (err) {
    throw ioError(err, `cannot create ${path}`);
  }
  ioTrace.on?.({ op: "mkdir", path });
}

export function renameFile(from: string, to: string): void {
  try {
    fs.renameSync(from, to);
  } catch (err) {
    throw ioError(err, `cannot rename ${from} to ${to}`);
  }
  ioTrace.on?.({ op: "rename", path: from, to });
}

export function unlinkFile(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch (err) {
    if (errno(err) !== "ENOENT") throw ioError(err, `cannot remove ${path}`);
    return;
  }
  ioTrace.on?.({ op: "unlink", path });
}

/** `rec` followed by zeros up to `size` bytes. */
export function padded(rec: Buffer, size: number): Buffer {
  if (size <= rec.length) return rec;
  const out = Buffer.alloc(size);
  rec.copy(out, 0);
  return out;
}
