// Running one case (in process through dispatch(), or through the built
// executable) and judging its outcome: one CNI error object with an expected
// code naming the problem, exit 1, no stack trace, within the bound.
import { type ChildProcess, spawn } from "node:child_process";
import { type Io, dispatch } from "../../../src/cni/dispatch.js";
import { handlers } from "../../../src/commands/index.js";
import { BIN, type RunResult, collect, run } from "../../helpers/plugin";
import { type Case, type Env, VERSIONS } from "./types";

/** Only bounds a hang (a case takes milliseconds; maxMs is reported): nothing here is killed on purpose. */
export const BOUND_MS = 10_000;

export interface Outcome {
  exit: number | null;
  signal: string | null;
  stdout: string;
  ms: number;
}

export async function runInProcess(env: Env, stdin: Buffer): Promise<Outcome> {
  const out: string[] = [];
  const io: Io = { env, readStdin: async () => stdin, stdout: (t) => void out.push(t), stderr: () => {} };
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([dispatch(io, handlers), new Promise<null>((res) => (timer = setTimeout(() => res(null), BOUND_MS)))]);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  return { exit, signal: exit === null ? "timeout" : null, stdout: out.join(""), ms };
}

function fullEnv(env: Env): Env {
  const all: Env = {
    CNI_COMMAND: undefined,
    CNI_CONTAINERID: undefined,
    CNI_NETNS: undefined,
    CNI_IFNAME: undefined,
    CNI_PATH: undefined,
    CNI_ARGS: undefined,
  };
  return { ...all, ...env };
}

export async function runExe(env: Env, stdin: Buffer): Promise<Outcome> {
  const t0 = performance.now();
  let res: RunResult;
  const text = stdin.toString("utf8");
  if (Buffer.from(text, "utf8").equals(stdin)) {
    res = await run({ command: env.CNI_COMMAND ?? "", env: fullEnv(env), stdin: text, killAfterMs: BOUND_MS });
  } else {
    // run() takes text; bytes that are not UTF-8 go through the same spawn by hand.
    const e: Record<string, string> = { PATH: process.env.PATH ?? "" };
    for (const [k, v] of Object.entries(env)) if (v !== undefined) e[k] = v;
    const child: ChildProcess = spawn(BIN, [], { env: e, stdio: ["pipe", "pipe", "pipe"] });
    const timer = setTimeout(() => child.kill("SIGKILL"), BOUND_MS);
    child.stdin!.on("error", () => {});
    child.stdin!.end(stdin);
    res = await collect(child).finally(() => clearTimeout(timer));
  }
  return { exit: res.code, signal: res.signal, stdout: res.stdout, ms: performance.now() - t0 };
}

export interface Judged {
  problems: string[];
  code?: number;
}

export function judge(c: Case, o: Outcome): Judged {
  const p: string[] = [];
  if (o.signal) return { problems: [`did not finish within ${BOUND_MS} ms (${o.signal})`] };
  if (o.exit === 0)
    return { problems: [`exit 0: the bad input was accepted${o.stdout ? `, stdout ${o.stdout.slice(0, 160).trim()}` : ""}`] };
  if (/^\s+at /m.test(o.stdout)) p.push("stack trace on stdout");
  if (!o.stdout.endsWith("\n") || o.stdout.indexOf("\n") !== o.stdout.length - 1) p.push("stdout is not exactly one line");
  let obj: Record<string, unknown> | undefined;
  try {
    obj = JSON.parse(o.stdout) as Record<string, unknown>;
  } catch {
    p.push(`stdout is not JSON: ${JSON.stringify(o.stdout.slice(0, 120))}`);
  }
  if (!obj) return { problems: p };
  const keys = Object.keys(obj).sort().join(",");
  if (keys !== "cniVersion,code,details,msg") p.push(`error object keys ${keys}`);
  if (typeof obj.code !== "number" || !Number.isInteger(obj.code)) p.push(`code is not an integer: ${JSON.stringify(obj.code)}`);
  if (typeof obj.msg !== "string" || obj.msg === "") p.push("msg is not a non-empty string");
  if (typeof obj.details !== "string") p.push("details is not a string");
  if (typeof obj.cniVersion !== "string" || !VERSIONS.includes(obj.cniVersion)) p.push(`cniVersion ${JSON.stringify(obj.cniVersion)}`);
  if (o.exit !== 1) p.push(`exit status ${o.exit}, expected 1`);
  const code = obj.code as number;
  const msg = String(obj.msg);
  if (code === 999) p.push(`code 999 (internal error): ${msg.slice(0, 100)}`);
  else if (!c.codes.includes(code)) p.push(`code ${code}, expected ${c.codes.join("/")}: ${msg.slice(0, 100)}`);
  else {
    for (const m of c.mentions) {
      const [text, where] = m.startsWith("details:") ? [m.slice(8), String(obj.details)] : [m, msg];
      if (!where.includes(text))
        p.push(
          `${m.startsWith("details:") ? "details do" : "msg does"} not name ${JSON.stringify(text.length > 60 ? "the node file" : text)}: ${msg.slice(0, 120)}`,
        );
    }
  }
  return { problems: p, code };
}

/** How a case is run: in process or through the executable. */
export type Exec = (env: Env, stdin: Buffer) => Promise<Outcome>;
