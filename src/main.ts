// Entry point: CNI mode when CNI_COMMAND is set, the CLI otherwise.
import { dispatch } from "./cni/dispatch.js";
import { cli } from "./cli.js";
import { handlers } from "./commands/index.js";
import { readStdin } from "./stdin.js";

const out = (s: string): void => void process.stdout.write(s);
const err = (s: string): void => void process.stderr.write(s);
const run = process.env.CNI_COMMAND !== undefined ? dispatch({ env: process.env, readStdin, stdout: out, stderr: err }, handlers) : cli(process.argv.slice(2), out, err);
run.then((code) => (process.exitCode = code)).catch((e: unknown) => { err(`podcidr-ipam: ${(e as Error)?.stack ?? String(e)}\n`); process.exitCode = 1; });
