// CNI_* environment variables -> CmdArgs, each required exactly where SPEC.md
// requires it, and validated before any of them reaches a path.
import { Code, CniError } from "../errors.js";

export type Command = "ADD" | "DEL" | "CHECK" | "GC" | "STATUS" | "VERSION";
export const COMMANDS: readonly Command[] = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"];

export interface CmdArgs {
  readonly command: Command;
  readonly containerID: string;
  readonly netns: string;
  readonly ifname: string;
  readonly path: string;
  /** CNI_ARGS as KEY -> VALUE. */
  readonly args: ReadonlyMap<string, string>;
}

const REQUIRED: Record<Command, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  GC: ["CNI_PATH"],
  STATUS: [],
  VERSION: [],
};

/** Same rule as the spec's network name and libcni's container ID check. */
export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
export const MAX_NAME = 200;

export function parseCommand(raw: string | undefined): Command {
  if (raw && (COMMANDS as readonly string[]).includes(raw)) return raw as Command;
  throw new CniError(
    Code.InvalidEnvironmentVariables,
    `unknown CNI_COMMAND: ${raw ?? ""}`,
    `CNI_COMMAND must be one of ${COMMANDS.join(", ")}`,
  );
}

export function parseEnv(command: Command, env: Readonly<Record<string, string | undefined>>): CmdArgs {
  const missing = REQUIRED[command].filter((k) => !env[k]);
  if (missing.length > 0) {
    throw new CniError(
      Code.InvalidEnvironmentVariables,
      `required env variables [${missing.join(",")}] missing`,
      `${command} needs ${REQUIRED[command].join(", ")}`,
    );
  }
  const perContainer = command === "ADD" || command === "DEL" || command === "CHECK";
  const containerID = perContainer ? env.CNI_CONTAINERID! : "";
  const ifname = perContainer ? env.CNI_IFNAME! : "";
  if (perContainer) {
    if (!NAME_RE.test(containerID) || containerID.length > MAX_NAME) {
      throw new CniError(
        Code.InvalidEnvironmentVariables,
        `CNI_CONTAINERID ${quote(containerID)} is invalid`,
        `it must match ${NAME_RE.source} and be at most ${MAX_NAME} characters`,
      );
    }
    const why = ifnameProblem(ifname);
    if (why) throw new CniError(Code.InvalidEnvironmentVariables, `CNI_IFNAME ${quote(ifname)} is invalid`, why);
  }
  return {
    command,
    containerID,
    netns: perContainer ? (env.CNI_NETNS ?? "") : "",
    ifname,
    path: env.CNI_PATH ?? "",
    args: perContainer ? parseCniArgs(env.CNI_ARGS ?? "") : new Map(),
  };
}

/** "K=V;K=V". Unknown keys are kept and ignored by the caller (Kubernetes sends many). */
export function parseCniArgs(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of raw.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      throw new CniError(
        Code.InvalidEnvironmentVariables,
        `CNI_ARGS: ${quote(pair)} is not KEY=VALUE`,
        "CNI_ARGS is a ;-separated list of KEY=VALUE pairs",
      );
    }
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

// --- internal ---

function ifnameProblem(name: string): string | null {
  // Linux's limit is 15 bytes (IFNAMSIZ 16 with the NUL), not 15 characters.
  if (Buffer.byteLength(name, "utf8") > 15) return "it is longer than 15 bytes";
  if (name === "." || name === "..") return "it must not be . or ..";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[/:\s\u0000-\u001f\u007f]/.test(name)) return "it must not contain /, :, white space or control characters";
  return null;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}
