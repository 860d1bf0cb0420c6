// Read all of standard input synchronously, bounded: the runtime writes the
// config and closes the pipe. A TTY (a person at a shell) gives nothing.
import { isatty } from "node:tty";
import { readSync } from "node:fs";
import { errno } from "./errors.js";
import { MAX_STDIN } from "./cni/netconf.js";

export async function readStdin(): Promise<Buffer> {
  if (isatty(0)) return Buffer.alloc(0);
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
