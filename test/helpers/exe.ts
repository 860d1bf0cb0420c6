// Shared helpers for the executable tests: CNI calls with the usual env, the
// node file replaced as a sync job does, and the status CLI.
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { type RunResult, type Sandbox, cli, run } from "./plugin";

/** Replace the node file atomically (write a temp file, rename), as a careful sync job does. */
export function replaceNode(sb: Sandbox, obj: object | string): void {
  const tmp = `${sb.nodeFile}.tmp`;
  writeFileSync(tmp, typeof obj === "string" ? obj : JSON.stringify(obj));
  renameSync(tmp, sb.nodeFile);
}

export interface CallOptions {
  ifname?: string;
  /** CNI_NETNS; by default one per container ID, as runtimes make a netns per sandbox. */
  netns?: string;
  args?: string;
  /** K8S_POD_NAMESPACE/K8S_POD_NAME added to CNI_ARGS. */
  pod?: [string, string];
  version?: string;
  ipam?: Record<string, unknown>;
  top?: Record<string, unknown>;
}

function cniArgs(o: CallOptions): string | undefined {
  const parts: string[] = [];
  if (o.pod) parts.push("IgnoreUnknown=1", `K8S_POD_NAMESPACE=${o.pod[0]}`, `K8S_POD_NAME=${o.pod[1]}`);
  if (o.args) parts.push(o.args);
  return parts.length ? parts.join(";") : undefined;
}

export function call(sb: Sandbox, command: string, containerID: string, o: CallOptions = {}): Promise<RunResult> {
  return run({
    command,
    containerID,
    netns: o.netns ?? `/var/run/netns/${containerID}`,
    ifname: o.ifname ?? "eth0",
    args: cniArgs(o),
    stdin: sb.conf(o.version ?? "1.1.0", o.ipam ?? {}, o.top ?? {}),
  });
}

/** ADD that must succeed; returns the parsed result. */
export async function addOk(sb: Sandbox, containerID: string, o: CallOptions = {}): Promise<any> {
  const r = await call(sb, "ADD", containerID, o);
  expect(r.code, `ADD ${containerID}: ${r.stdout}${r.stderr}`).toBe(0);
  expect(r.json, r.stdout).toBeDefined();
  return r.json;
}

/** ADD that must fail; returns the parsed error object. */
export async function addErr(
  sb: Sandbox,
  containerID: string,
  o: CallOptions = {},
): Promise<{ code: number; msg: string; details: string }> {
  const r = await call(sb, "ADD", containerID, o);
  expect(r.code, `ADD ${containerID} should fail: ${r.stdout}${r.stderr}`).not.toBe(0);
  expect(r.json, r.stdout).toBeDefined();
  return r.json;
}

export async function delOk(sb: Sandbox, containerID: string, o: CallOptions = {}): Promise<void> {
  const r = await call(sb, "DEL", containerID, o);
  expect(r.code, `DEL ${containerID}: ${r.stdout}${r.stderr}`).toBe(0);
  expect(r.stdout).toBe("");
}

/** Bare addresses of a 1.x result, e.g. ["10.0.2.2", "fd00::202"]. */
export function addrs(result: any): string[] {
  return result.ips.map((i: any) => String(i.address).replace(/\/\d+$/, ""));
}

export function statusArgs(sb: Sandbox): string[] {
  return ["--data-dir", sb.dataDir, "--network", "podnet", "--node-file", sb.nodeFile];
}

/** The store folder every network of the sandbox shares. */
export function storeDir(sb: Sandbox): string {
  return join(sb.dataDir, "_store");
}

export async function statusJson(sb: Sandbox): Promise<any> {
  const r = await cli(["status", "--json", "--all-addresses", ...statusArgs(sb)]);
  expect(r.json, r.stdout + r.stderr).toBeDefined();
  return r.json;
}

export function rangeOf(status: any, cidr: string): any {
  const r = status.ranges.find((x: any) => x.cidr === cidr);
  expect(r, `status has no range ${cidr}: ${JSON.stringify(status.ranges.map((x: any) => x.cidr))}`).toBeDefined();
  return r;
}
