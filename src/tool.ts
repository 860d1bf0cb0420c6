// The executable without CNI_COMMAND: the CLI for people (--help, status, repair)
// and the DaemonSet's commands (agent, install). Bundled apart from src/main.ts.
import { cli } from "./cli/index.js";

const out = (s: string): void => void process.stdout.write(s);
const err = (s: string): void => void process.stderr.write(s);
cli(process.argv.slice(2), out, err).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    err(`podcidr-ipam: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
