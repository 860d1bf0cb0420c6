// A tiny container runtime for the end-to-end tests: real network namespaces
// (`ip netns`), the real main plugins from Debian's containernetworking-plugins
// (/usr/lib/cni), and our built bin/podcidr-ipam beside them in CNI_PATH, called
// exactly as containerd calls them: env + the network config on stdin, and
// prevResult (the cached ADD result) for CHECK and DEL.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { BIN, ROOT, type RunResult, collect } from "../helpers/plugin";

export const SYSTEM_CNI = "/usr/lib/cni";

/** Why the e2e suite cannot run here, or null when it can. */
export function e2eBlocker(): string | null {
  if (process.getuid?.() !== 0) return "not running as root";
  if (spawnSync("ip", ["-V"]).status !== 0) return "`ip` (iproute2) is not installed";
  if (spawnSync("ping", ["-V"]).status !== 0) return "`ping` (iputils-ping) is not installed";
  for (const p of ["bridge", "ptp", "host-local"])
    if (!existsSync(join(SYSTEM_CNI, p))) return `${SYSTEM_CNI}/${p} is missing (apt-get install containernetworking-plugins)`;
  const probe = `pcie2e-probe-${process.pid}`;
  const add = spawnSync("ip", ["netns", "add", probe], { encoding: "utf8" });
  if (add.status !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  spawnSync("ip", ["netns", "del", probe]);
  return null;
}

/** Say loudly why the suite is skipped; with PODCIDR_E2E=require (CI), fail instead. */
export function announceSkip(blocker: string): void {
  const msg = `\n!!! podcidr-ipam e2e suite SKIPPED: ${blocker}.\n!!! It needs root, iproute2, iputils-ping and containernetworking-plugins (see .ci/run).\n`;
  process.stderr.write(msg);
  if (process.env.PODCIDR_E2E === "require") throw new Error(`e2e suite required (PODCIDR_E2E=require) but cannot run: ${blocker}`);
}

let seq = 0;

/** A short unique name (interface names are at most 15 characters). */
export function uniq(prefix: string): string {
  return `${prefix}${(process.pid % 1000).toString(36)}${(seq++).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`.slice(
    0,
    15,
  );
}

export interface Pod {
  readonly name: string;
  readonly containerID: string;
  readonly netns: string;
  /** The ADD result as the main plugin returned it (what a runtime caches). */
  result?: any;
}

/** One test world: a CNI_PATH folder, a node file, a data dir, namespaces to clean up. */
export class World {
  readonly dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-e2e-"));
  readonly cniPath = join(this.dir, "cni");
  readonly nodeFile = join(this.dir, "node.json");
  readonly dataDir = join(this.dir, "data");
  readonly hostLocalDir = join(this.dir, "host-local");
  readonly bridge = uniq("pcbr");
  readonly network = uniq("net");
  private readonly namespaces = new Set<string>();

  constructor() {
    mkdirSync(this.cniPath);
    for (const f of readdirSync(SYSTEM_CNI)) symlinkSync(join(SYSTEM_CNI, f), join(this.cniPath, f));
    symlinkSync(BIN, join(this.cniPath, "podcidr-ipam"));
  }

  writeNode(obj: object): void {
    const tmp = `${this.nodeFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(obj));
    execFileSync("mv", [tmp, this.nodeFile]);
  }

  /** Our ipam section. */
  ipam(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      type: "podcidr-ipam",
      nodeFile: this.nodeFile,
      dataDir: this.dataDir,
      waitForPodCIDRs: 0,
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
      ...extra,
    };
  }

  /** A bridge plugin config (what libcni derives from a conflist for this plugin). */
  bridgeConf(version = "1.0.0", ipam = this.ipam()): Record<string, unknown> {
    return { cniVersion: version, name: this.network, type: "bridge", bridge: this.bridge, isGateway: true, ipMasq: false, ipam };
  }

  /**
   * The first plugin of one of the example conflists in conf/, as libcni derives
   * its request config, pointed at this world's node file, store and bridge.
   */
  fromConflist(file: string, version?: string): Record<string, unknown> {
    const list = JSON.parse(readFileSync(join(ROOT, "conf", file), "utf8"));
    const plugin = { ...list.plugins[0] };
    plugin.ipam = { ...plugin.ipam, nodeFile: this.nodeFile, dataDir: this.dataDir, waitForPodCIDRs: 0 };
    if (plugin.type === "bridge") plugin.bridge = this.bridge;
    return { cniVersion: version ?? list.cniVersion, name: this.network, ...plugin };
  }

  ptpConf(version = "0.4.0", ipam = this.ipam()): Record<string, unknown> {
    return { cniVersion: version, name: this.network, type: "ptp", ipMasq: false, ipam };
  }

  newPod(name = uniq("pod")): Pod {
    const netns = uniq("pcns");
    execFileSync("ip", ["netns", "add", netns]);
    this.namespaces.add(netns);
    execFileSync("ip", ["-n", netns, "link", "set", "lo", "up"]);
    return { name, containerID: `e2e-${name}-${Math.random().toString(16).slice(2, 10)}`, netns };
  }

  deleteNetns(pod: Pod): void {
    execFileSync("ip", ["netns", "del", pod.netns]);
    this.namespaces.delete(pod.netns);
  }

  /** Run the main plugin as a runtime would. prevResult is added for CHECK and DEL when known. */
  exec(command: "ADD" | "CHECK" | "DEL", pod: Pod, conf: Record<string, unknown>, extraArgs = ""): Promise<RunResult> {
    // libcni sends the cached result as prevResult to CHECK and DEL from 0.4.0 on.
    const withPrev = command !== "ADD" && pod.result && ["0.4.0", "1.0.0", "1.1.0"].includes(String(conf.cniVersion));
    const stdin = withPrev ? { ...conf, prevResult: pod.result } : conf;
    const env = {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: pod.containerID,
      CNI_NETNS: `/var/run/netns/${pod.netns}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: this.cniPath,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=${pod.name}${extraArgs}`,
    };
    const child = spawn(join(this.cniPath, String(conf.type)), [], { env, stdio: ["pipe", "pipe", "pipe"] });
    child.stdin!.end(JSON.stringify(stdin));
    return collect(child);
  }

  async add(pod: Pod, conf: Record<string, unknown>): Promise<any> {
    const r = await this.exec("ADD", pod, conf);
    if (r.code !== 0) throw new Error(`ADD ${pod.name} failed (${r.code}): ${r.stdout} ${r.stderr}`);
    pod.result = r.json;
    return r.json;
  }

  /** Addresses of the pod's eth0 as the kernel has them, without prefix. */
  podAddresses(pod: Pod): string[] {
    const out = execFileSync("ip", ["-n", pod.netns, "-o", "addr", "show", "dev", "eth0", "scope", "global"], { encoding: "utf8" });
    return [...out.matchAll(/inet6? ([0-9a-f.:]+)\//g)].map((m) => m[1]!);
  }

  /** True when `from` gets an echo reply from `ip` within a few seconds (IPv6 DAD may still be running). */
  ping(from: Pod, ip: string): boolean {
    const r = spawnSync(
      "ip",
      ["netns", "exec", from.netns, "ping", ip.includes(":") ? "-6" : "-4", "-c", "1", "-w", "6", "-i", "0.2", ip],
      { encoding: "utf8" },
    );
    return r.status === 0;
  }

  /** Every pod reaches every other pod on each of its result's addresses. */
  expectMesh(pods: Pod[], families = 2): void {
    for (const from of pods) {
      for (const to of pods) {
        if (to === from) continue;
        for (let i = 0; i < families; i++) expect(this.ping(from, addr(to.result, i)), `${from.name} -> ${addr(to.result, i)}`).toBe(true);
      }
    }
  }

  /** CHECK, with each pod's cached result as prevResult, passes through the main plugin. */
  async expectChecksPass(pods: Pod[], conf: Record<string, unknown>): Promise<void> {
    for (const p of pods) {
      const c = await this.exec("CHECK", p, conf);
      expect(c.code, c.stdout + c.stderr).toBe(0);
    }
  }

  /** Interfaces still enslaved to the bridge (veths the bridge plugin should have removed). */
  bridgePorts(): string[] {
    const r = spawnSync("ip", ["-o", "link", "show", "master", this.bridge], { encoding: "utf8" });
    return r.status === 0 ? r.stdout.split("\n").filter((l) => l.trim() !== "") : [];
  }

  /** `podcidr-ipam status --json` for this world's store. */
  status(): any {
    const r = spawnSync(
      BIN,
      ["status", "--json", "--all-addresses", "--data-dir", this.dataDir, "--network", this.network, "--node-file", this.nodeFile],
      { encoding: "utf8", env: { PATH: process.env.PATH } },
    );
    return JSON.parse(r.stdout);
  }

  cleanup(): void {
    for (const ns of this.namespaces) spawnSync("ip", ["netns", "del", ns]);
    spawnSync("ip", ["link", "del", this.bridge]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The bare address of a result's ips[i].address. */
export function addr(result: any, i: number): string {
  return String(result.ips[i].address).split("/")[0]!;
}

/** A host-local ipam section for this world: one range set per subnet, state under hostLocalDir. */
export function hostLocalIpam(w: World, subnets: string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "host-local",
    dataDir: w.hostLocalDir,
    ranges: subnets.map((subnet) => [{ subnet }]),
    routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
    ...extra,
  };
}

export interface IpamCall {
  containerID?: string;
  ifname?: string;
  /** Extra or overriding env; a value of undefined removes the variable. */
  env?: Record<string, string | undefined>;
}

/**
 * Call the IPAM binary named by conf.ipam.type in the world's CNI path directly,
 * as a main plugin delegates to it: env + the main plugin's whole config on stdin.
 */
export function ipamExec(w: World, command: string, conf: Record<string, unknown>, call: IpamCall = {}): Promise<RunResult> {
  const type = String((conf.ipam as Record<string, unknown>).type);
  const env: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: call.containerID ?? "ctr1",
    CNI_NETNS: "/var/run/netns/ipam-direct",
    CNI_IFNAME: call.ifname ?? "eth0",
    CNI_PATH: w.cniPath,
    ...call.env,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(join(w.cniPath, type), [], { env: env as NodeJS.ProcessEnv, stdio: ["pipe", "pipe", "pipe"] });
  child.stdin!.on("error", () => {});
  child.stdin!.end(JSON.stringify(conf));
  return collect(child);
}
