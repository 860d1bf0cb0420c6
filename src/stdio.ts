// Standard input and output for CNI mode, without Node's streams: read all of
// stdin synchronously, bounded (the runtime writes the config and closes the
// pipe; a TTY, a person at a shell, gives nothing), and write with write(2).
import { fstatSync, readSync, writeSync } from "node:fs";
import { errno } from "./errors.js";
import { MAX_STDIN } from "./cni/netconf.js";

export async function readStdin(): Promise<Buffer> {
  // A terminal (a character device) means nobody piped a config in. (fstat, not node:tty: cheaper to load.)
  try {
    if (fstatSync(0).isCharacterDevice()) return Buffer.alloc(0);
  } catch {
    return Buffer.alloc(0);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  const buf = Buffer.alloc(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = errno(e);
      if (code === "EAGAIN") {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      if (code === "EOF" || code === "EBADF" || code === "ENXIO") break;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
    total += n;
    if (total > MAX_STDIN) break;
  }
  return Buffer.concat(chunks);
}

/** Write all of `text` to a file descriptor, waiting out a non-blocking pipe that is full. */
export function writeFd(fd: number, text: string): void {
  const buf = Buffer.from(text, "utf8");
  let n = 0;
  while (n < buf.length) {
    try {
      n += writeSync(fd, buf, n, buf.length - n);
    } catch (e) {
      if (errno(e) !== "EAGAIN") return; // the reader is gone: nothing more to say
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}
