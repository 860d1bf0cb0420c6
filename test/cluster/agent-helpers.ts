// Shared by the agent's cluster tests: the built `podcidr-ipam agent` spawned against
// the test cluster (free ports for /readyz and /metrics, its log kept), reading its
// endpoints and metrics, watching the node file change, and calling the plugin with a
// node's conflist as a runtime's main plugin delegates to it.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import { basename, dirname, join } from "node:path";
import { BIN, ROOT, type RunResult, run } from "../helpers/plugin";
import { type DirWatch, watchDir } from "../helpers/watch-dir";
import { type Cluster, WaitAborted, freePort, waitFor } from "./harness";

export interface AgentOptions {
  nodeName: string;
  nodeFile: string;
  dataDir?: string;
  source?: "auto" | "ciliumnode" | "node";
  /** Default: the cluster's admin kubeconfig. */
  kubeconfig?: string;
  logFormat?: "text" | "json";
  /** Serve /metrics on a port of its own (default true). */
  metrics?: boolean;
  /** Default: calls.log beside the node file. */
  callsLog?: string;
  extra?: string[];
}

export interface Agent {
  readonly child: ChildProcess;
  readonly healthPort: number;
  readonly metricsPort: number | undefined;
  /** Everything it wrote to stderr (its log) so far. */
  log(): string;
  readyz(): Promise<{ status: number; text: string }>;
  metrics(): Promise<string>;
  /** The sum of the samples of `name` whose labels include `labels` (0 when there is none). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Wait for a log line matching `re` (after the first `from` characters of the log). */
  waitLog(re: RegExp, what: string, timeoutMs?: number, from?: number): Promise<string>;
  /** SIGTERM, then the exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `podcidr-ipam agent` on free ports; resolves once it is serving (its "agent started" line). */
export async function startAgent(c: Cluster, o: AgentOptions): Promise<Agent> {
  for (let attempt = 1; ; attempt++) {
    const a = await spawnAgent(c, o);
    try {
      await a.waitLog(/agent started/, `agent ${o.nodeName} to start`, 60_000);
      return a;
    } catch (e) {
      await a.stop(2000);
      // A port taken between freePort() and the agent's listen: try other ones.
      if (attempt < 3 && /EADDRINUSE/.test(a.log())) continue;
      throw new Error(`${(e as Error).message}\nagent log:\n${a.log()}`);
    }
  }
}

async function spawnAgent(c: Cluster, o: AgentOptions): Promise<Agent> {
  const healthPort = await freePort();
  const metricsPort = o.metrics === false ? undefined : await freePort();
  const args = [
    "agent",
    "--node-name",
    o.nodeName,
    "--source",
    o.source ?? "auto",
    "--kubeconfig",
    o.kubeconfig ?? c.kubeconfig,
    "--node-file",
    o.nodeFile,
    "--health-addr",
    `127.0.0.1:${healthPort}`,
    "--metrics-addr",
    metricsPort === undefined ? "" : `127.0.0.1:${metricsPort}`,
    "--calls-log",
    o.callsLog ?? join(dirname(o.nodeFile), "calls.log"),
    "--log-format",
    o.logFormat ?? "text",
    ...(o.dataDir ? ["--data-dir", o.dataDir] : []),
    ...(o.extra ?? []),
  ];
  const child = spawn(BIN, args, { env: { PATH: process.env.PATH }, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  exited.then((e) => (exit = e));
  const get = (path: string, port: number) => httpGet(port, path);
  const metrics = async () => {
    if (metricsPort === undefined) throw new Error("this agent serves no /metrics");
    const r = await get("/metrics", metricsPort);
    if (r.status !== 200) throw new Error(`/metrics ${r.status}: ${r.text}`);
    return r.text;
  };
  const a: Agent = {
    child,
    healthPort,
    metricsPort,
    log: () => log,
    readyz: () => get("/readyz", healthPort),
    metrics,
    metric: async (name, labels = {}) => metricValue(await metrics(), name, labels),
    waitLog: (re, what, timeoutMs = 60_000, from = 0) =>
      waitFor(
        () => {
          const line = log
            .slice(from)
            .split("\n")
            .find((l) => re.test(l));
          if (line) return line;
          if (exit) throw new WaitAborted(`agent exited (${JSON.stringify(exit)}) before ${what}; its log:\n${log}`);
          return undefined;
        },
        what,
        timeoutMs,
        50,
      ),
    exited,
    stop: async (graceMs = 20_000) => {
      if (!exit) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
  return a;
}

export function httpGet(port: number, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false, timeout: 10_000 }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET :${port}${path}: no answer within 10 s`)));
    req.on("error", reject);
  });
}

/** Prometheus text: the sum of the samples of `name` whose labels include `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

export interface FileState {
  ino: number;
  mtimeMs: number;
  text: string;
}

export function fileState(path: string): FileState {
  const st = statSync(path);
  return { ino: st.ino, mtimeMs: st.mtimeMs, text: readFileSync(path, "utf8") };
}

/**
 * Watch a file (inotify on its folder: the agent replaces it by rename) and note
 * each state it takes, with the performance.now() at which this process saw it.
 * Seeing comes after the change, so a latency measured from it is an upper bound.
 */
export class FileWatch {
  readonly seen: { at: number; state: FileState }[] = [];
  private readonly w: DirWatch;

  constructor(readonly path: string) {
    const name = basename(path);
    this.w = watchDir(dirname(path), (file) => {
      if (file !== name) return;
      const at = performance.now();
      try {
        const state = fileState(path);
        const last = this.seen.at(-1)?.state;
        if (!last || last.ino !== state.ino || last.text !== state.text) this.seen.push({ at, state });
      } catch {
        /* between unlink and rename: the next event has it */
      }
    });
  }

  /** The first state seen after `since` (performance.now()) that satisfies `ok`; waits up to timeoutMs. */
  async waitFor(ok: (s: FileState) => boolean, what: string, since: number, timeoutMs = 30_000): Promise<{ at: number; state: FileState }> {
    return waitFor(
      () => {
        // A rename whose event was coalesced away: look at the file itself too.
        const hit = this.seen.find((s) => s.at >= since && ok(s.state));
        if (hit) return hit;
        try {
          const state = fileState(this.path);
          if (ok(state)) {
            const s = { at: performance.now(), state };
            this.seen.push(s);
            return s;
          }
        } catch {
          /* not there yet */
        }
        return undefined;
      },
      what,
      timeoutMs,
      20,
    );
  }

  close(): void {
    this.w.close();
  }
}

/** The node file, parsed; undefined while it is not there (or half there, which the agent never leaves). */
export function readNodeFile(path: string): any {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

/** The podCIDRs a node file lists (CiliumNode or v1 Node). */
export function fileCIDRs(path: string): string[] | undefined {
  const o = readNodeFile(path);
  if (!o) return undefined;
  return o.kind === "CiliumNode" ? o.spec?.ipam?.podCIDRs : o.spec?.podCIDRs;
}

/** Wait until the node file lists exactly `cidrs`. */
export function waitForFileCIDRs(path: string, cidrs: string[], what: string, timeoutMs = 30_000, agent?: Agent): Promise<true> {
  return waitFor(() => JSON.stringify(fileCIDRs(path)) === JSON.stringify(cidrs) || undefined, what, timeoutMs, 50).catch((e: Error) => {
    throw new Error(agent ? `${e.message}\n--- agent log:\n${agent.log()}` : e.message);
  });
}

/** What `kubectl get KIND NAME -o json` prints now. */
export function kubectlJson(c: Cluster, kind: "ciliumnode" | "node", name: string): Promise<string> {
  return c.kubectl(["get", kind, name, "-o", "json"]);
}

/** Wait until the node file is byte for byte what kubectl prints for the object. */
export async function waitForFileEqualsObject(
  c: Cluster,
  kind: "ciliumnode" | "node",
  name: string,
  path: string,
  o: { timeoutMs?: number; agent?: Agent } = {},
) {
  let last = "";
  await waitFor(
    async () => {
      last = await kubectlJson(c, kind, name);
      return readNodeFileText(path) === last;
    },
    `the node file ${path} to equal kubectl get ${kind} ${name} -o json`,
    o.timeoutMs ?? 30_000,
    250,
  ).catch((e: Error) => {
    const log = o.agent ? `\n--- agent log:\n${o.agent.log()}` : "";
    throw new Error(`${e.message}\n--- kubectl:\n${last}\n--- file:\n${readNodeFileText(path)}${log}`);
  });
  return last;
}

function readNodeFileText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/**
 * A node's conflist (conf/10-podnet.conflist) pointed at its node file, store and
 * name, written to `dir`; returns the plugin's request config as libcni derives it
 * for the first plugin (bridge), which is what bridge hands its IPAM delegate.
 */
export function nodeConflist(dir: string, o: { nodeFile: string; dataDir: string; nodeName?: string }): Record<string, unknown> {
  const list = JSON.parse(readFileSync(join(ROOT, "conf/10-podnet.conflist"), "utf8"));
  const first = list.plugins[0];
  first.ipam = { ...first.ipam, nodeFile: o.nodeFile, dataDir: o.dataDir, ...(o.nodeName ? { nodeName: o.nodeName } : {}) };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "10-podnet.conflist"), JSON.stringify(list, null, 2));
  return { cniVersion: list.cniVersion, name: list.name, ...first };
}

/** The plugin as bridge calls its IPAM delegate: env + the bridge config on stdin. */
export function ipam(
  command: "ADD" | "DEL" | "CHECK",
  conf: Record<string, unknown>,
  containerID: string,
  callsLog?: string,
): Promise<RunResult> {
  return run({
    command,
    containerID,
    netns: `/var/run/netns/${containerID}`,
    args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${containerID}`,
    stdin: conf,
    ...(callsLog ? { env: { PODCIDR_IPAM_CALLS_LOG: callsLog } } : {}),
  });
}

/** ADD that must succeed: the bare addresses of its result. */
export async function addOk(conf: Record<string, unknown>, containerID: string, callsLog?: string): Promise<string[]> {
  const r = await ipam("ADD", conf, containerID, callsLog);
  if (r.code !== 0 || !r.json?.ips) throw new Error(`ADD ${containerID} failed (${r.code}): ${r.stdout}${r.stderr}`);
  return (r.json.ips as { address: string }[]).map((i) => i.address.split("/")[0]!);
}

/** Run `fn` over `items` with at most `limit` at once; results in order. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Is `ip` inside `cidr`? (IPv4 and IPv6, no library: both as BigInt.) */
export function inCidr(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split("/") as [string, string];
  const v6 = net.includes(":");
  if (v6 !== ip.includes(":")) return false;
  const width = v6 ? 128 : 32;
  const shift = BigInt(width - Number(bits));
  return ipValue(ip) >> shift === ipValue(net) >> shift;
}

function ipValue(ip: string): bigint {
  if (!ip.includes(":")) return ip.split(".").reduce((v, o) => (v << 8n) | BigInt(Number(o)), 0n);
  const [head, tail] = ip.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((v, g) => (v << 16n) | BigInt(Number.parseInt(g || "0", 16)), 0n);
}
