// Entry point: CNI mode when CNI_COMMAND is set, the CLI otherwise.
import { dispatch } from "./cni/dispatch.js";
import { cli } from "./cli/index.js";
import { handlers } from "./commands/index.js";
import { readStdin, writeFd } from "./stdio.js";

function main(): void {
  // CNI mode writes with write(2) on fds 1 and 2: a call never pays for Node's stream objects.
  const cniMode = process.env.CNI_COMMAND !== undefined;
  const out = cniMode ? (s: string): void => writeFd(1, s) : (s: string): void => void process.stdout.write(s);
  const err = cniMode ? (s: string): void => writeFd(2, s) : (s: string): void => void process.stderr.write(s);
  const run = cniMode
    ? dispatch({ env: process.env, readStdin, stdout: out, stderr: err }, handlers)
    : cli(process.argv.slice(2), out, err);
  // CNI mode has written everything with write(2) and released the store by now: exit at once
  // rather than let Node tear its heap down first (about 2 ms of every call).
  run
    .then((code) => {
      if (cniMode) process.exit(code);
      process.exitCode = code;
    })
    .catch((e: unknown) => {
      err(`podcidr-ipam: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    });
}

main();
