// The world the model test drives: one node file, two data dirs (A, the node's
// store; B, a second store someone pointed at the same node file), two
// networks, netns files per sandbox, and the ways a call is made: plain, killed,
// stalled in fsync under strace, or stopped while it holds the lock. All reading
// of `status` goes through readStatus(), which knows the per-network layout of
// today and the shared `_store` of the rewrite.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { snapshot } from "../../helpers/snapshot";
import { pendingCheckpoint } from "../../../src/store/disk";
import { readStore } from "../../helpers/store-state";
import { type DirWatch, watchDir } from "../../helpers/watch-dir";
import { BIN, type RunResult, Sandbox, cli, collect, run } from "../../helpers/plugin";
import { type Cidr, type Fam, fmtIp, parseCidr, parseIp } from "./net";

export type StoreId = "A" | "B";
/** Every network the test may use; MODEL_NETWORKS=1 keeps to the first (to look past cross-network bugs). */
export const NETWORKS = ["neta", "netb"] as const;
export const LOCK_TIMEOUT_S = 30;

/** One CNI call as the runtime makes it. */
export interface Call {
  store: StoreId;
  network: string;
  command: "ADD" | "DEL" | "CHECK" | "GC";
  cid?: string;
  ifname?: string;
  /** CNI_NETNS; null leaves it out (a DEL after the netns is gone). */
  netns?: string | null;
  /** K8S_POD_NAMESPACE / K8S_POD_NAME. */
  pod?: [string, string];
  ip?: string;
  /** Extra top-level keys of the config: prevResult, cni.dev/valid-attachments. */
  top?: Record<string, unknown>;
}

export interface Outcome {
  r: RunResult;
  ms: number;
  /** SIGKILLed by the test (a kill that landed before the call finished). */
  killedByUs: boolean;
  /** Ended by SIGKILL from someone else (a waiter recovering the lock from a stopped holder). */
  killedByOther: boolean;
}

export type KillMode = { kind: "timer"; ms: number } | { kind: "commit" } | { kind: "answer" };

export interface Stall {
  delayUs: number;
  /** strace's when= expression: "3" (only the third fsync) or "3+" (the third and every later one). */
  when: string;
}

export class World {
  readonly sb = new Sandbox();
  readonly nodeFile = this.sb.nodeFile;
  readonly dataDirs: Record<StoreId, string> = { A: this.sb.dataDir, B: join(this.sb.dir, "data2") };
  readonly netnsDir = join(this.sb.dir, "netns");
  /** The networks calls go to. */
  readonly networks: readonly string[];
  /** Median wall time of a plain ADD, measured at the start: kill delays are spread over 0..1.5x of it. */
  callMs = 80;
  /** The strace command prefix, or null when strace is missing. */
  strace: string[] | null = null;
  private netnsSeq = 0;

  constructor(networks = 2) {
    this.networks = NETWORKS.slice(0, networks);
    mkdirSync(this.netnsDir);
    const st = spawnSync("/usr/bin/strace", ["--seccomp-bpf", "-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync", "true"]);
    if (st.status === 0) this.strace = ["/usr/bin/strace", "--seccomp-bpf", "-f", "-qq", "-o", "/dev/null"];
    else if (spawnSync("/usr/bin/strace", ["-f", "-qq", "-o", "/dev/null", "true"]).status === 0)
      this.strace = ["/usr/bin/strace", "-f", "-qq", "-o", "/dev/null"];
  }

  cleanup(): void {
    this.sb.cleanup();
  }

  conf(c: Call): Record<string, unknown> {
    return this.sb.conf("1.1.0", { dataDir: this.dataDirs[c.store], lockTimeout: LOCK_TIMEOUT_S }, { name: c.network, ...c.top });
  }

  /** A netns file for a sandbox. `replace` makes a new inode at the same path (written beside it, renamed over). */
  netns(replace?: string): string {
    const path = replace ?? join(this.netnsDir, `cni-${(++this.netnsSeq).toString(16).padStart(8, "0")}`);
    writeFileSync(`${path}.new`, "netns");
    renameSync(`${path}.new`, path);
    this.gens.set(path, (this.gens.get(path) ?? 0) + 1);
    return path;
  }

  /** How many times a netns file was made at this path: the same path and generation is the same netns. */
  netnsGen(path: string): number {
    return this.gens.get(path) ?? 0;
  }

  private readonly gens = new Map<string, number>();

  env(c: Call): Record<string, string | undefined> {
    const args: string[] = [];
    if (c.pod) args.push("IgnoreUnknown=1", `K8S_POD_NAMESPACE=${c.pod[0]}`, `K8S_POD_NAME=${c.pod[1]}`);
    if (c.ip) args.push(`IP=${c.ip}`);
    return {
      PATH: process.env.PATH,
      CNI_COMMAND: c.command,
      CNI_CONTAINERID: c.cid,
      CNI_IFNAME: c.ifname,
      CNI_NETNS: c.netns ?? undefined,
      CNI_PATH: "/opt/cni/bin",
      CNI_ARGS: args.length ? args.join(";") : undefined,
    };
  }

  /** A plain call, or one SIGKILLed after a delay. */
  async call(c: Call, killAfterMs?: number): Promise<Outcome> {
    const t0 = Date.now();
    const r = await run({
      command: c.command,
      containerID: c.cid,
      ifname: c.ifname,
      netns: c.netns ?? undefined,
      env: this.env(c),
      stdin: this.conf(c),
      killAfterMs,
    });
    return {
      r,
      ms: Date.now() - t0,
      killedByUs: killAfterMs !== undefined && r.signal === "SIGKILL",
      killedByOther: killAfterMs === undefined && r.signal === "SIGKILL",
    };
  }

  /** Spawn a call and hand back the child: for kills on an event, stops and stalls. */
  spawn(c: Call, stall?: Stall): { child: ChildProcess; done: Promise<RunResult>; t0: number } {
    const env = this.env(c);
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    const cmd = stall && this.strace ? this.strace[0]! : BIN;
    const args =
      stall && this.strace
        ? [
            ...this.strace.slice(1),
            "-e",
            "trace=fsync,fdatasync",
            "-e",
            `inject=fsync,fdatasync:delay_enter=${stall.delayUs}:when=${stall.when}`,
            BIN,
          ]
        : [];
    const child = spawn(cmd, args, { env: env as NodeJS.ProcessEnv, stdio: ["pipe", "pipe", "pipe"] });
    child.stdin!.on("error", () => {});
    child.stdin!.end(JSON.stringify(this.conf(c)));
    return { child, done: collect(child), t0: Date.now() };
  }

  /** A call killed on an event of its own: when it writes its commit to its store's log, or the moment it answers. */
  async callKilledOn(c: Call, mode: "commit" | "answer"): Promise<Outcome> {
    let watcher: DirWatch | undefined;
    const { child, done, t0 } = this.spawn(c);
    let killed = false;
    const kill = (): void => {
      if (killed) return;
      killed = true;
      child.kill("SIGKILL");
    };
    if (mode === "answer") child.stdout!.once("data", kill);
    else {
      // The log is written only by a commit (its record, or a checkpoint's generation record): killed as it lands.
      try {
        watcher = watchDir(join(this.dataDirs[c.store], "_store"), (name) => {
          if (name === "log") kill();
        });
      } catch {
        /* no store yet: the call makes it, and is not killed */
      }
    }
    const r = await done;
    watcher?.close();
    return { r, ms: Date.now() - t0, killedByUs: killed && r.signal === "SIGKILL", killedByOther: !killed && r.signal === "SIGKILL" };
  }

  /** The folders that hold a store's lock: the shared `_store`, else the per-network folder of older releases. */
  storeDirs(store: StoreId, network: string): string[] {
    return [join(this.dataDirs[store], "_store"), join(this.dataDirs[store], network)];
  }

  /** The pid named by the store's lock.owner, in either layout. */
  lockHolder(store: StoreId, network: string): number | null {
    for (const dir of this.storeDirs(store, network)) {
      try {
        const pid = JSON.parse(readFileSync(join(dir, "lock.owner"), "utf8")).pid;
        if (typeof pid === "number") return pid;
      } catch {
        /* no owner file, or half written */
      }
    }
    return null;
  }

  writeNode(obj: object): void {
    const tmp = `${this.nodeFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(obj));
    renameSync(tmp, this.nodeFile);
  }

  /** Byte snapshot of what a refused call must not change: both data dirs (claims beside the node file apart). */
  snapshotStores(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [name, dir] of [
      ["A", this.dataDirs.A],
      ["B", this.dataDirs.B],
    ] as const) {
      for (const [k, v] of snapshot(dir)) out.set(`${name}/${k}`, v);
    }
    return out;
  }

  /** The claims beside the node file (docs/design-shared-store.md): file name -> content. */
  claims(): Map<string, string> {
    return snapshot(`${this.nodeFile}.claims`);
  }

  /** Which store each claim names: CIDR text -> the store folder named (realpath), from claim files that parse. */
  claimOwners(): Map<string, string> {
    const out = new Map<string, string>();
    const dir = `${this.nodeFile}.claims`;
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      return out;
    }
    for (const n of names) {
      try {
        const o = JSON.parse(readFileSync(join(dir, n), "utf8"));
        if (typeof o.cidr === "string" && typeof o.store === "string") out.set(parseCidr(o.cidr).text, o.store);
      } catch {
        /* a temp file, or not a claim */
      }
    }
    return out;
  }

  /** The folder a claim of this data dir's store names. */
  storeFolder(store: StoreId): string {
    const p = join(this.dataDirs[store], "_store");
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  }

  /** True when a store holds a checkpoint a killed call left unconfirmed (the next call that takes the lock confirms it). */
  pendingCheckpoint(): boolean {
    return (["A", "B"] as const).some((s) => pendingCheckpoint(join(this.dataDirs[s], "_store")) !== null);
  }

  /** The attachment records of a store, as network/containerID@ifname, read through the store's own code. */
  async recordFiles(store: StoreId): Promise<string[]> {
    return (await readStore(this.dataDirs[store])).records.map((r) => `${r.network}/${r.containerID}@${r.ifname}`);
  }
}

// --- status, read through one adapter ---

export interface OwnerView {
  network: string;
  containerID: string;
  ifname: string;
  namespace?: string;
  pod?: string;
  netns?: string;
}

export interface LineView {
  text: string;
  fam: Fam;
  v: bigint;
  reserved?: string;
  owner?: OwnerView;
}

export interface RangeView {
  cidr: Cidr;
  orphaned: boolean;
  allocated: number;
  /** Today's layout keeps a bitmap per network; null when the range is shared. */
  network: string | null;
  lines: LineView[];
}

export interface StoreView {
  store: StoreId;
  layout: "shared" | "per-network" | "none";
  ranges: RangeView[];
  problems: string[];
  /** Set when status did not give JSON: the store does not load. */
  loadError?: string;
}

/**
 * `podcidr-ipam status --json --all-addresses` of one data dir, whatever its
 * layout: the shared `_store` (one call, every network; owners name their
 * network) or today's `<dataDir>/<network>` folders (one call per network).
 */
export async function readStatus(w: World, store: StoreId): Promise<StoreView> {
  const dataDir = w.dataDirs[store];
  const base = ["status", "--json", "--all-addresses", "--data-dir", dataDir, "--node-file", w.nodeFile];
  const view: StoreView = { store, layout: "none", ranges: [], problems: [] };
  if (existsSync(join(dataDir, "_store"))) {
    view.layout = "shared";
    let r = await cli(base);
    let perNetwork: string | null = null;
    if (r.code === 2) {
      // A status that still wants --network: ask each network; the range is shared all the same.
      for (const net of NETWORKS) {
        r = await cli([...base, "--network", net]);
        perNetwork = net;
        if (!absorb(view, r, null, perNetwork)) return view;
      }
      return view;
    }
    absorb(view, r, null, null);
    return view;
  }
  for (const net of NETWORKS) {
    if (!existsSync(join(dataDir, net))) continue;
    view.layout = "per-network";
    const r = await cli([...base, "--network", net]);
    if (!absorb(view, r, net, net)) return view;
  }
  return view;
}

function absorb(view: StoreView, r: RunResult, rangeNetwork: string | null, askedNetwork: string | null): boolean {
  if (!r.json || !Array.isArray(r.json.ranges) || (r.code !== 0 && r.code !== 1)) {
    view.loadError = `status exited ${r.code}${r.signal ? ` (${r.signal})` : ""}: ${(r.stdout + r.stderr).trim().slice(0, 600)}`;
    return false;
  }
  view.problems.push(...(r.json.problems ?? []));
  for (const range of r.json.ranges) {
    const cidr = parseCidr(range.cidr);
    const existing = view.ranges.find((x) => x.cidr.text === cidr.text && x.network === rangeNetwork);
    const lines: LineView[] = [];
    for (const a of range.addresses ?? []) {
      const ip = parseIp(a.ip);
      if (!ip) throw new Error(`status printed an address that does not parse: ${JSON.stringify(a)}`);
      const line: LineView = { text: fmtIp(ip.fam, ip.v), fam: ip.fam, v: ip.v };
      if (a.reserved) line.reserved = String(a.reserved);
      if (a.owner) {
        const network = a.owner.network ?? askedNetwork ?? rangeNetwork;
        if (!network) throw new Error(`status names no network for the owner of ${a.ip}: ${JSON.stringify(a.owner)}`);
        line.owner = { ...a.owner, network };
      }
      lines.push(line);
    }
    if (existing) {
      // The same shared range asked through two networks: merge, one line per address.
      for (const l of lines) if (!existing.lines.some((e) => e.v === l.v && e.fam === l.fam)) existing.lines.push(l);
      continue;
    }
    view.ranges.push({ cidr, orphaned: Boolean(range.orphaned), allocated: Number(range.allocated), network: rangeNetwork, lines });
  }
  return true;
}
