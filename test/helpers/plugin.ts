// Drive the built bin/podcidr-ipam the way a runtime does: env + stdin, parse stdout.
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(__dirname, "../..");
/** The executable under test: the bundle, or another build (PODCIDR_BIN=bin/podcidr-ipam-standalone). */
export const BIN = process.env.PODCIDR_BIN ? resolve(ROOT, process.env.PODCIDR_BIN) : join(ROOT, "bin/podcidr-ipam");
export const FIXTURES = join(ROOT, "test/fixtures");

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined when empty / not JSON. */
  json: any;
}

export interface RunOptions {
  command: string;
  containerID?: string;
  ifname?: string;
  netns?: string;
  args?: string;
  path?: string;
  /** Extra or overriding env; a value of undefined removes the variable. */
  env?: Record<string, string | undefined>;
  stdin: string | object;
  /**
   * Kill the process with SIGKILL after this many ms. A constant may only bound a hang; a test
   * whose kill attacks the call takes the instant from the call (./timing: measureCall, killInstant).
   */
  killAfterMs?: number;
  /** Another executable than the one under test (an older release, for the upgrade tests). */
  bin?: string;
}

export function run(opts: RunOptions): Promise<RunResult> {
  const env: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    CNI_COMMAND: opts.command,
    CNI_CONTAINERID: opts.containerID ?? "ctr1",
    CNI_NETNS: opts.netns ?? "/var/run/netns/test",
    CNI_IFNAME: opts.ifname ?? "eth0",
    CNI_PATH: opts.path ?? "/opt/cni/bin",
    ...(opts.args !== undefined ? { CNI_ARGS: opts.args } : {}),
    ...opts.env,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(opts.bin ?? BIN, [], { env: env as NodeJS.ProcessEnv, stdio: ["pipe", "pipe", "pipe"] });
  const timer = opts.killAfterMs !== undefined ? setTimeout(() => child.kill("SIGKILL"), opts.killAfterMs) : undefined;
  child.stdin!.on("error", () => {});
  child.stdin!.end(typeof opts.stdin === "string" ? opts.stdin : JSON.stringify(opts.stdin));
  return collect(child).finally(() => clearTimeout(timer));
}

/** Run the CLI (no CNI_COMMAND), of the executable under test or of `bin`. */
export function cli(args: string[], bin = BIN, extraEnv: Record<string, string> = {}): Promise<RunResult> {
  const env = { ...process.env, ...extraEnv };
  delete env.CNI_COMMAND;
  return collect(spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] }));
}

/** Gather a child's stdout/stderr and exit, parsing stdout as JSON when it is JSON. */
export function collect(child: ChildProcess): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      let json: any;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolvePromise({ code, signal, stdout, stderr, json });
    });
  });
}

/** A temp folder with a node file (copied from test/fixtures) and a data dir, plus a config builder. */
export class Sandbox {
  readonly dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-test-"));
  readonly nodeFile = join(this.dir, "node.json");
  readonly dataDir = join(this.dir, "data");

  constructor(fixture?: string) {
    if (fixture) cpSync(join(FIXTURES, fixture), this.nodeFile);
  }

  writeNode(obj: object | string): void {
    writeFileSync(this.nodeFile, typeof obj === "string" ? obj : JSON.stringify(obj));
  }

  /** A request config as bridge passes it to its IPAM delegate. */
  conf(version = "1.1.0", ipam: Record<string, unknown> = {}, top: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      cniVersion: version,
      name: "podnet",
      type: "bridge",
      bridge: "cni0",
      isGateway: true,
      ipam: { type: "podcidr-ipam", nodeFile: this.nodeFile, dataDir: this.dataDir, waitForPodCIDRs: 0, ...ipam },
      ...top,
    };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
