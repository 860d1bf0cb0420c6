// Drive the CNI handlers in process: dispatch() with makeHandlers(memoryDeps(store)),
// env and stdin as a runtime sends them, and the node file in a temp folder
// (ADD, CHECK and STATUS still read it from disk). No process is spawned.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { type Io, dispatch } from "../../src/cni/dispatch.js";
import { makeHandlers } from "../../src/commands/index.js";
import { MemoryStore, type RecordingClaims, claimsNone, memoryDeps } from "./memory-store.js";

export interface Call {
  /** ADD, DEL, CHECK: CNI_IFNAME (default eth0). */
  ifname?: string;
  /** CNI_NETNS; by default one per container ID. */
  netns?: string;
  /** CNI_ARGS, e.g. "IP=10.0.2.50". */
  args?: string;
  /** K8S_POD_NAMESPACE / K8S_POD_NAME added to CNI_ARGS. */
  pod?: [string, string];
  /** The network's name (default podnet). */
  network?: string;
  version?: string;
  ipam?: Record<string, unknown>;
  /** Top-level keys of the config (prevResult, cni.dev/valid-attachments...). */
  top?: Record<string, unknown>;
}

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as JSON, or undefined when empty. */
  json: any;
}

export class InProcess {
  readonly dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-inproc-"));
  readonly nodeFile = join(this.dir, "node.json");
  readonly dataDir = join(this.dir, "data");
  readonly store = new MemoryStore();
  readonly claims: RecordingClaims = claimsNone();
  private readonly handlers = makeHandlers(memoryDeps(this.store, this.claims));

  constructor(node?: object) {
    if (node) this.setNode(node);
  }

  /** Replace the node file atomically. */
  setNode(obj: object): void {
    writeFileSync(`${this.nodeFile}.tmp`, JSON.stringify(obj));
    renameSync(`${this.nodeFile}.tmp`, this.nodeFile);
  }

  removeNode(): void {
    rmSync(this.nodeFile, { force: true });
  }

  conf(o: Call = {}): Record<string, unknown> {
    return {
      cniVersion: o.version ?? "1.1.0",
      name: o.network ?? "podnet",
      type: "ptp",
      ipam: { type: "podcidr-ipam", nodeFile: this.nodeFile, dataDir: this.dataDir, waitForPodCIDRs: 0, ...o.ipam },
      ...o.top,
    };
  }

  async call(command: string, containerID: string, o: Call = {}): Promise<Outcome> {
    const args = [
      ...(o.pod ? ["IgnoreUnknown=1", `K8S_POD_NAMESPACE=${o.pod[0]}`, `K8S_POD_NAME=${o.pod[1]}`] : []),
      ...(o.args ? [o.args] : []),
    ].join(";");
    const env: Record<string, string> = {
      CNI_COMMAND: command,
      CNI_CONTAINERID: containerID,
      CNI_NETNS: o.netns ?? `/var/run/netns/${containerID}`,
      CNI_IFNAME: o.ifname ?? "eth0",
      CNI_PATH: "/opt/cni/bin",
      ...(args ? { CNI_ARGS: args } : {}),
    };
    const out: string[] = [];
    const err: string[] = [];
    const stdin = JSON.stringify(this.conf(o));
    const io: Io = { env, readStdin: async () => Buffer.from(stdin), stdout: (t) => out.push(t), stderr: (t) => err.push(t) };
    const code = await dispatch(io, this.handlers);
    const stdout = out.join("");
    return { code, stdout, stderr: err.join(""), json: stdout ? JSON.parse(stdout) : undefined };
  }

  /** ADD that must succeed: the result. */
  async add(containerID: string, o: Call = {}): Promise<any> {
    const r = await this.call("ADD", containerID, o);
    expect(r.code, `ADD ${containerID}: ${r.stdout}${r.stderr}`).toBe(0);
    return r.json;
  }

  /** A call that must fail: the CNI error object. */
  async fails(command: string, containerID: string, o: Call = {}): Promise<{ code: number; msg: string; details: string }> {
    const r = await this.call(command, containerID, o);
    expect(r.code, `${command} ${containerID} should fail: ${r.stdout}${r.stderr}`).toBe(1);
    expect(r.json).toBeDefined();
    return r.json;
  }

  /** A call that must succeed with nothing on stdout (DEL, CHECK, GC, STATUS). */
  async ok(command: string, containerID: string, o: Call = {}): Promise<Outcome> {
    const r = await this.call(command, containerID, o);
    expect(r.code, `${command} ${containerID}: ${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toBe("");
    return r;
  }

  gc(valid: { containerID: string; ifname: string }[] | null | undefined, o: Call = {}): Promise<Outcome> {
    const top = valid === undefined ? {} : { "cni.dev/valid-attachments": valid };
    return this.call("GC", "", { ...o, top: { ...o.top, ...top } });
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Bare addresses of a 1.x result. */
export function addrs(result: any): string[] {
  return result.ips.map((i: any) => String(i.address).replace(/\/\d+$/, ""));
}
