// Small filesystem helpers for the store: durable atomic writes, reads that never
// follow a symlink, and one mapping of fs errors to CNI errors.
import { closeSync, constants, fsyncSync, openSync, readSync, fstatSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { Code, CniError, errno } from "../errors.js";

const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

export function ioError(err: unknown, what: string): CniError {
  if (err instanceof CniError) return err;
  const code = errno(err);
  const hint: Record<string, string> = {
    ENOSPC: "the filesystem is full; free space and retry (the store was left as it was)",
    EDQUOT: "the disk quota is exhausted; free space and retry (the store was left as it was)",
    EROFS: "the filesystem is read-only; set ipam.dataDir to a writable folder",
    EACCES:
      `permission denied for uid ${typeof process.getuid === "function" ? process.getuid() : "?"}; check the owner and mode of ` +
      `the folder (the runtime normally runs the plugin as root)`,
    EPERM: "permission denied; check the folder's owner and mode",
    ELOOP: "a symbolic link was found where the store keeps its own files; remove it",
    ENOTDIR: "a path component is not a folder",
  };
  return new CniError(
    Code.StoreIOFailure,
    `${what}: ${code ?? (err as Error)?.message ?? String(err)}`,
    (code && hint[code]) || String((err as Error)?.message ?? err),
    { cause: err },
  );
}

/** Read a whole regular file without following a symlink. Null when it does not exist. */
export function readFileNoFollow(path: string, maxBytes: number): string | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (errno(err) === "ENOENT") return null;
    throw ioError(err, `cannot open ${path}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile())
      throw new CniError(Code.StoreCorrupt, `${path} is not a regular file`, "the store holds only regular files; remove what is there");
    if (st.size > maxBytes) throw new CniError(Code.StoreCorrupt, `${path} is ${st.size} bytes, larger than any file the store writes`, "");
    return readAll(fd, st.size);
  } finally {
    closeSync(fd);
  }
}

/** Read `size` bytes (fewer if the file shrank) from an open file as UTF-8. */
export function readAll(fd: number, size: number): string {
  const buf = Buffer.alloc(size);
  let n = 0;
  while (n < size) {
    const r = readSync(fd, buf, n, size - n, n);
    if (r === 0) break;
    n += r;
  }
  return buf.toString("utf8", 0, n);
}

/**
 * A suffix no other live call uses: with the pid in the name it only has to
 * differ between calls of this process. (Not node:crypto: loading it costs ms.)
 */
export function uniqueSuffix(): string {
  return `${process.hrtime.bigint().toString(36)}${Math.floor(Math.random() * 2 ** 32).toString(36)}`;
}

/**
 * Write a file atomically: a new temp file in `tmpDir`, fsync, rename over `path`.
 * The caller fsyncs the folder. `beforeRename` (the lock's fence) may throw to stop
 * before the file is replaced.
 */
export function writeAtomic(path: string, content: string, tmpDir = dirname(path), beforeRename?: () => void): void {
  const tmp = join(tmpDir, `.tmp-${basename(path)}-${process.pid}-${uniqueSuffix()}`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW, 0o600);
    const buf = Buffer.from(content, "utf8");
    let n = 0;
    while (n < buf.length) n += writeSync(fd, buf, n, buf.length - n);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    beforeRename?.();
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* not created */
    }
    throw ioError(err, `cannot write ${path}`);
  }
}

export type IoEvent =
  | { readonly op: "write"; readonly path: string; readonly offset: number; readonly data: Buffer }
  | { readonly op: "sync" | "syncdir" | "create" | "unlink" | "mkdir"; readonly path: string }
  | { readonly op: "rename"; readonly path: string; readonly to: string };

/** What the store writes, renames and syncs, reported as it happens when set (tests only: test/store/power-cut.test.ts). */
export const ioTrace: { on: ((e: IoEvent) => void) | null } = { on: null };

export function fsyncDir(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(fd);
    ioTrace.on?.({ op: "syncdir", path });
  } catch (err) {
    throw ioError(err, `cannot sync folder ${path}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
