// The reserve: 64 KiB written once into the store folder, which a DEL (or GC) on
// a full disk gives back to finish, so pod teardown never stalls on ENOSPC.
import { closeSync, existsSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";

const RESERVE = "reserve";
const RESERVE_BYTES = 64 * 1024;

/** Write the reserve if it is missing (after a commit; on a full disk it is made again later). */
export function ensureReserve(dir: string): void {
  const path = join(dir, RESERVE);
  if (existsSync(path)) return;
  const tmp = join(dir, `.tmp-${RESERVE}-${process.pid}`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx", 0o600);
    writeSync(fd, Buffer.alloc(RESERVE_BYTES));
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch {
    if (fd !== undefined) closeSync(fd);
    unlinkIfThere(tmp, true);
  }
}

/** Give the reserve back; false when there is none. */
export function freeReserve(dir: string, log: (line: string) => void): boolean {
  try {
    unlinkSync(join(dir, RESERVE));
  } catch {
    return false;
  }
  log(`podcidr-ipam: the filesystem of ${dir} is full; freed the store's ${RESERVE_BYTES / 1024} KiB reserve to finish\n`);
  return true;
}

function unlinkIfThere(path: string, _quiet: boolean): void {
  try {
    unlinkSync(path);
  } catch {
    /* not there */
  }
}
