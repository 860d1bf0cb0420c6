// What a runtime starts: CNI mode (CNI_COMMAND is set). The build's entry calls
// main() only then; the CLI and the agent are a second bundle in the same
// executable (src/tool.ts), compiled only when CNI_COMMAND is not set, so a CNI
// call never parses their code.
import { CALLS_LOG, recordCall } from "./calls.js";
import { dispatch } from "./cni/dispatch.js";
import { handlers } from "./commands/index.js";
import { readStdin, writeFd } from "./stdio.js";

export function main(): void {
  // CNI mode writes with write(2) on fds 1 and 2: a call never pays for Node's stream objects.
  const stderr = (s: string): void => writeFd(2, s);
  // process.uptime(), not performance.now(): the global `performance` loads perf_hooks and eight modules more (about 1 ms).
  const outcome = (code: number, note?: string): void =>
    recordCall(process.env.PODCIDR_IPAM_CALLS_LOG ?? CALLS_LOG, process.env.CNI_COMMAND ?? "", code, process.uptime() * 1000, {
      id: process.env.CNI_CONTAINERID ?? "",
      note: note ?? "",
    });
  dispatch({ env: process.env, readStdin, stdout: (s) => writeFd(1, s), stderr, outcome }, handlers).then(
    // Everything is written with write(2) and the store released by now: exit at once rather
    // than let Node tear its heap down first (about 2 ms of every call).
    (code) => process.exit(code),
    (e: unknown) => {
      stderr(`podcidr-ipam: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
