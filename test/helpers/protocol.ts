// Assertions on the CNI process protocol shared by the executable tests.
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { expect } from "vitest";
import { BIN, type RunResult, type Sandbox, collect } from "./plugin";

export const SUPPORTED = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

function ctx(r: RunResult): string {
  return `exit=${r.code} signal=${r.signal} stdout=${JSON.stringify(r.stdout)} stderr=${JSON.stringify(r.stderr)}`;
}

/**
 * The call failed the CNI way: non-zero exit, and stdout is exactly one JSON
 * error object {cniVersion, code, msg, details} and nothing else.
 * Each fragment must occur in msg. Returns the parsed object.
 */
export function expectCniError(r: RunResult, code: number, ...fragments: string[]): any {
  expect(r.signal, ctx(r)).toBeNull();
  expect(r.code, ctx(r)).not.toBe(0);
  expect(r.code, ctx(r)).not.toBeNull();
  let obj: any;
  expect(() => (obj = JSON.parse(r.stdout)), `stdout must be exactly one JSON value: ${ctx(r)}`).not.toThrow();
  expect(typeof obj === "object" && obj !== null && !Array.isArray(obj), ctx(r)).toBe(true);
  expect(typeof obj.cniVersion, ctx(r)).toBe("string");
  expect(typeof obj.code, ctx(r)).toBe("number");
  expect(obj.code, ctx(r)).toBe(code);
  expect(typeof obj.msg, ctx(r)).toBe("string");
  expect(obj.msg.length, ctx(r)).toBeGreaterThan(0);
  expect(typeof obj.details, ctx(r)).toBe("string");
  for (const f of fragments) expect(obj.msg, ctx(r)).toContain(f);
  return obj;
}

/** Success with a single JSON object on stdout (ADD, VERSION). Returns it. */
export function expectJsonSuccess(r: RunResult): any {
  expect(r.signal, ctx(r)).toBeNull();
  expect(r.code, ctx(r)).toBe(0);
  let obj: any;
  expect(() => (obj = JSON.parse(r.stdout)), `stdout must be exactly one JSON value: ${ctx(r)}`).not.toThrow();
  expect(typeof obj === "object" && obj !== null && !Array.isArray(obj), ctx(r)).toBe(true);
  return obj;
}

/** Success with nothing on stdout (DEL, CHECK, GC, STATUS). */
export function expectSilentSuccess(r: RunResult): void {
  expect(r.signal, ctx(r)).toBeNull();
  expect(r.code, ctx(r)).toBe(0);
  expect(r.stdout, ctx(r)).toBe("");
}

/** Entries of the system temp folder (the sandbox's parent). */
export function tmpEntries(): Set<string> {
  return new Set(readdirSync(tmpdir()));
}

/**
 * A rejected call left no trace: the sandbox holds only its node file (no data
 * dir, nothing beside it), and the temp folder gained no entry named after any
 * of `names` (exactly, or followed by "@" or ".").
 */
export function expectNoTrace(sb: Sandbox, before: Set<string>, names: string[] = []): void {
  if (existsSync(sb.dataDir)) expect(readdirSync(sb.dataDir, { recursive: true })).toEqual([]);
  expect(readdirSync(sb.dir).filter((e) => e !== "data")).toEqual(existsSync(sb.nodeFile) ? ["node.json"] : []);
  const gained = [...tmpEntries()].filter((e) => !before.has(e));
  const bases = names
    .map(
      (n) =>
        n
          .split("/")
          .filter((s) => s !== "" && s !== "." && s !== "..")
          .pop() ?? "",
    )
    .filter((b) => b !== "");
  const suspicious = gained.filter((e) => bases.some((b) => e === b || e.startsWith(`${b}@`) || e.startsWith(`${b}.`)));
  expect(suspicious).toEqual([]);
}

/** Run the executable with stdin connected to /dev/null (no pipe at all). */
export function runDevNull(env: Record<string, string>): Promise<RunResult> {
  return collect(spawn(BIN, [], { env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] }));
}
