// Shared helpers for the executable tests: small node objects, CNI calls with
// the usual env, the status CLI, and a byte-level snapshot of the data dir.
import { existsSync, lstatSync, readFileSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { type RunResult, Sandbox, cli, run } from "./plugin";

/** A CiliumNode with the given podCIDRs (and optional router/health/ingress IPs, operator error). */
export function ciliumNode(
  podCIDRs: string[] | undefined,
  extra: { router?: string[]; health?: { ipv4?: string; ipv6?: string }; ingress?: { ipv4?: string; ipv6?: string }; operatorError?: string } = {},
): Record<string, unknown> {
  const spec: Record<string, unknown> = { ipam: podCIDRs === undefined ? {} : { podCIDRs } };
  if (extra.router) spec.addresses = [{ ip: "172.18.0.9", type: "InternalIP" }, ...extra.router.map((ip) => ({ ip, type: "CiliumInternalIP" }))];
  if (extra.health) spec.health = extra.health;
  if (extra.ingress) spec.ingress = extra.ingress;
  return {
    apiVersion: "cilium.io/v2",
    kind: "CiliumNode",
    metadata: { name: "test-node" },
    spec,
    ...(extra.operatorError !== undefined ? { status: { ipam: { "operator-status": { error: extra.operatorError } } } } : {}),
  };
}

/** A v1 Node with spec.podCIDRs / spec.podCIDR and optional annotations. */
export function v1Node(spec: { podCIDRs?: string[]; podCIDR?: string }, annotations?: Record<string, string>): Record<string, unknown> {
  return { apiVersion: "v1", kind: "Node", metadata: { name: "test-node", ...(annotations ? { annotations } : {}) }, spec };
}

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
export async function addErr(sb: Sandbox, containerID: string, o: CallOptions = {}): Promise<{ code: number; msg: string; details: string }> {
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

/** Where one network's attachment records live. */
export function attachmentsDir(sb: Sandbox, network = "podnet"): string {
  return join(storeDir(sb), "attachments", network);
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

/** Every entry under dir: relative path -> "dir <mode>" or "file <mode> <content>". */
export function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(dir)) return out;
  const walk = (rel: string): void => {
    const abs = rel ? join(dir, rel) : dir;
    const st = lstatSync(abs);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      out.set(rel || ".", `dir ${mode}`);
      for (const n of readdirSync(abs).sort()) walk(rel ? join(rel, n) : n);
    } else {
      out.set(rel, `${st.isFile() ? "file" : "other"} ${mode} ${st.isFile() ? readFileSync(abs).toString("base64") : ""}`);
    }
  };
  walk("");
  return out;
}
