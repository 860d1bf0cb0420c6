// The real upstream control plane on loopback for the cluster tests: etcd,
// kube-apiserver and kube-controller-manager (its node IPAM controller carving
// spec.podCIDRs), as scripts/cluster-build.sh builds them from the Go module proxy
// into ${PODCIDR_CACHE:-~/.cache/podcidr-ipam}. Everything lives in one temp
// folder (certificates, etcd's data, logs, kubeconfigs) on free 127.0.0.1 ports,
// and stop() ends every process and removes the folder; a watchdog process does
// the same if the test process dies without calling it.
//
// Use:
//   const blocker = clusterBlocker(); if (blocker) announceClusterSkip(blocker);
//   beforeAll(async () => { c = await startCluster(); }, 300_000);
//   afterAll(() => c?.stop());
//
// PODCIDR_CLUSTER=require (CI) turns a skip into a failure. PODCIDR_CLUSTER_KEEP=1
// keeps the folder (logs, data) after stop() and prints where it is.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  accessSync,
  constants,
} from "node:fs";
import https from "node:https";
import http from "node:http";
import { Socket, createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const CLUSTER_SRC = __dirname;

/** The version a go.mod requires of a module (the build cache is keyed by it). */
function goModVersion(file: string, mod: string): string {
  const text = readFileSync(file, "utf8");
  const m = text.match(new RegExp(`^\\s*(?:require\\s+)?${mod.replace(/[./]/g, "\\$&")}\\s+(v\\S+)`, "m"));
  if (!m) throw new Error(`${file} does not require ${mod}`);
  return m[1]!;
}

export const K8S_VERSION = goModVersion(join(CLUSTER_SRC, "go.mod"), "k8s.io/kubernetes");
export const ETCD_VERSION = goModVersion(join(CLUSTER_SRC, "etcd/go.mod"), "go.etcd.io/etcd/server/v3");
export const CACHE = process.env.PODCIDR_CACHE || join(homedir(), ".cache/podcidr-ipam");
export const K8S_BIN = process.env.PODCIDR_K8S_BIN || join(CACHE, `k8s-${K8S_VERSION}`);
export const ETCD_BIN = process.env.PODCIDR_ETCD_BIN || join(CACHE, `etcd-${ETCD_VERSION}`);
export const BINARIES = {
  etcd: join(ETCD_BIN, "etcd"),
  kubeApiserver: join(K8S_BIN, "kube-apiserver"),
  kubeControllerManager: join(K8S_BIN, "kube-controller-manager"),
  kubectl: join(K8S_BIN, "kubectl"),
} as const;

/** The cluster's address plan (dual stack). */
export const CLUSTER_CIDRS = ["10.244.0.0/16", "fd00:10:244::/56"] as const;
export const NODE_MASK = { ipv4: 24, ipv6: 64 } as const;
export const SERVICE_CIDRS = ["10.96.0.0/16", "fd00:10:96::/112"] as const;

// ---------------------------------------------------------------------------------------------
// Skip or fail

/** Why the cluster tests cannot run here (binaries missing or not runnable), or null when they can. */
export function clusterBlocker(): string | null {
  if (spawnSync("openssl", ["version"]).status !== 0) return "`openssl` is not installed";
  const probes: [string, string[]][] = [
    [BINARIES.etcd, ["--version"]],
    [BINARIES.kubeApiserver, ["--version"]],
    [BINARIES.kubeControllerManager, ["--version"]],
    [BINARIES.kubectl, ["version", "--client"]],
  ];
  for (const [bin, args] of probes) {
    try {
      accessSync(bin, constants.X_OK);
    } catch {
      return `${bin} is missing (run scripts/cluster-build.sh)`;
    }
    const r = spawnSync(bin, args, { encoding: "utf8", timeout: 60_000 });
    if (r.status !== 0)
      return `${bin} ${args.join(" ")} cannot run: ${(r.error?.message ?? r.stderr ?? "").trim().slice(0, 300) || `exit ${r.status} ${r.signal ?? ""}`}`;
  }
  return null;
}

/** Say loudly why the cluster tests are skipped; with PODCIDR_CLUSTER=require (CI), fail instead. */
export function announceClusterSkip(blocker: string): void {
  const line = "!".repeat(100);
  process.stderr.write(
    `\n${line}\n!!! podcidr-ipam cluster tests SKIPPED: ${blocker}.\n` +
      `!!! They run the real etcd ${ETCD_VERSION}, kube-apiserver and kube-controller-manager ${K8S_VERSION} on loopback;\n` +
      `!!! build them with scripts/cluster-build.sh (cache: ${CACHE}). PODCIDR_CLUSTER=require makes this a failure.\n${line}\n\n`,
  );
  if (process.env.PODCIDR_CLUSTER === "require")
    throw new Error(`cluster tests required (PODCIDR_CLUSTER=require) but cannot run: ${blocker}`);
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A free TCP port on 127.0.0.1 (the kernel's pick; it is closed again before use). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function describeValue(v: unknown): string {
  try {
    const s = typeof v === "string" ? v : JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 500 ? `${s.slice(0, 500)}…` : s;
  } catch {
    return String(v);
  }
}

/** Thrown inside a waitFor() predicate to stop waiting at once (e.g. the process being waited for died). */
export class WaitAborted extends Error {}

/**
 * Poll `predicate` until it returns a truthy value (which is returned), at most
 * `timeoutMs`; a throw counts as "not yet" (but WaitAborted ends the wait). On timeout the error names `what`,
 * the last value and the last error.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  what: string,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<NonNullable<T>> {
  const t0 = Date.now();
  let last: unknown;
  let lastError: unknown;
  for (;;) {
    try {
      last = await predicate();
      if (last) return last as NonNullable<T>;
      lastError = undefined;
    } catch (e) {
      if (e instanceof WaitAborted) throw e;
      lastError = e;
    }
    if (Date.now() - t0 >= timeoutMs) {
      const err = lastError instanceof Error ? lastError.message : lastError === undefined ? "none" : describeValue(lastError);
      throw new Error(
        `timed out after ${((Date.now() - t0) / 1000).toFixed(1)} s waiting for ${what} (last value: ${describeValue(last)}; last error: ${err})`,
      );
    }
    await sleep(intervalMs);
  }
}

function openssl(cwd: string, args: string[]): void {
  const r = spawnSync("openssl", args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
}

/** The last `bytes` of a log file. */
function tailFile(file: string, bytes = 6000): string {
  try {
    const size = statSync(file).size;
    const fd = openSync(file, "r");
    try {
      const len = Math.min(size, bytes);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      return buf.toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return "(no log)";
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Kills what the harness started if this process dies without stop(): polls our pid each second. */
const WATCHDOG = `
parent=$1; dir=$2
while kill -0 "$parent" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
[ -d "$dir" ] || exit 0
for f in "$dir"/pids/*; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done
[ -e "$dir/keep" ] || rm -rf "$dir"
`;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One control-plane process, its output in a log file in the cluster folder. */
class Proc {
  child?: ChildProcess;
  exit?: Exit;
  private exited?: Promise<Exit>;
  readonly log: string;

  constructor(
    readonly name: string,
    private readonly dir: string,
    private readonly bin: string,
    private readonly args: () => string[],
  ) {
    this.log = join(dir, "logs", `${name}.log`);
  }

  get running(): boolean {
    return this.child !== undefined && this.exit === undefined;
  }

  start(): void {
    if (this.running) throw new Error(`${this.name} is already running`);
    const fd = openSync(this.log, "a");
    writeFileSync(fd, `\n===== ${new Date().toISOString()} start ${this.name}\n`);
    const args = this.args();
    writeFileSync(join(this.dir, "logs", `${this.name}.cmdline`), `${[this.bin, ...args].join(" \\\n  ")}\n`);
    let child: ChildProcess;
    try {
      child = spawn(this.bin, args, {
        stdio: ["ignore", fd, fd],
        env: { ...process.env, KUBECONFIG: "", GOMAXPROCS: process.env.GOMAXPROCS ?? "2" },
      });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    this.exit = undefined;
    const pidFile = join(this.dir, "pids", this.name);
    if (child.pid !== undefined) writeFileSync(pidFile, String(child.pid));
    this.exited = new Promise<Exit>((resolve) => {
      child.on("error", (e) => {
        writeFileSync(this.log, `spawn error: ${e.message}\n`, { flag: "a" });
      });
      child.on("exit", (code, signal) => {
        this.exit = { code, signal };
        writeFileSync(this.log, `===== ${new Date().toISOString()} ${this.name} exited: code ${code}, signal ${signal}\n`, { flag: "a" });
        try {
          unlinkSync(pidFile);
        } catch {
          /* already gone */
        }
        resolve(this.exit);
      });
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running || !this.child || !this.exited) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  killNow(): void {
    if (this.running) this.child?.kill("SIGKILL");
  }

  tail(bytes?: number): string {
    return tailFile(this.log, bytes);
  }

  /** Throws with the log's tail if the process has exited. */
  assertRunning(): void {
    if (this.exit)
      throw new WaitAborted(
        `${this.name} exited (code ${this.exit.code}, signal ${this.exit.signal}); its log (${this.log}) ends:\n${this.tail()}`,
      );
  }
}

const live = new Set<Cluster>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const c of live) c.killSync();
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP against the API server

export interface ApiResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON, or undefined. */
  json: any;
}

export interface RequestOptions {
  /** Bearer token instead of the admin client certificate. */
  token?: string;
  /** Request body (objects are sent as JSON). */
  body?: unknown;
  contentType?: string;
  timeoutMs?: number;
}

/** One watch stream: the HTTP status and the events as they arrive. */
export interface WatchStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body when the status is not 200. */
  text: string;
  /** The next event ({type, object}); rejects after `timeoutMs` or when the stream ends first. */
  next(timeoutMs?: number): Promise<{ type: string; object: any }>;
  /** The next event for which `match` holds, skipping others; rejects like next() when none comes in time. */
  nextMatching(match: (e: { type: string; object: any }) => boolean, timeoutMs?: number): Promise<{ type: string; object: any }>;
  /** Every event received so far. */
  readonly events: { type: string; object: any }[];
  readonly ended: boolean;
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// The cluster

export interface ClusterOptions {
  /** kube-apiserver --watch-cache (default true, as in production clusters). */
  watchCache?: boolean;
  /** Deadline for the whole start, from the call (default 240 s or PODCIDR_CLUSTER_START_TIMEOUT_MS). */
  startTimeoutMs?: number;
  /** Apply the CiliumNode CRD (default true). */
  ciliumNodeCRD?: boolean;
  /** kube-controller-manager --controllers (default: only the node IPAM controller and the ServiceAccount controller). */
  controllers?: string;
  extraApiServerFlags?: string[];
  extraControllerManagerFlags?: string[];
}

/** CiliumNode CRD of our own writing: cilium.io/v2, cluster-scoped, spec/status kept as given, status subresource. */
export const CILIUMNODE_CRD = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: "ciliumnodes.cilium.io" },
  spec: {
    group: "cilium.io",
    scope: "Cluster",
    names: { kind: "CiliumNode", listKind: "CiliumNodeList", plural: "ciliumnodes", singular: "ciliumnode", shortNames: ["cn", "ciliumn"] },
    versions: [
      {
        name: "v2",
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: "object",
            required: ["metadata", "spec"],
            properties: {
              apiVersion: { type: "string" },
              kind: { type: "string" },
              metadata: { type: "object" },
              spec: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
              status: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
            },
          },
        },
      },
    ],
  },
} as const;

export class Cluster {
  readonly dir: string;
  readonly pki: string;
  readonly kubeconfig: string;
  readonly watchCache: boolean;
  etcdPort = 0;
  etcdPeerPort = 0;
  apiPort = 0;
  kcmPort = 0;
  readonly etcd: Proc;
  readonly apiserver: Proc;
  readonly controllerManager: Proc;
  private watchdog?: ChildProcess;
  private stopped = false;
  private readonly opts: ClusterOptions;
  private ca = "";
  private adminCert = "";
  private adminKey = "";

  constructor(opts: ClusterOptions = {}) {
    this.opts = opts;
    this.watchCache = opts.watchCache ?? true;
    this.dir = mkdtempSync(join(tmpdir(), "podcidr-cluster-"));
    this.pki = join(this.dir, "pki");
    this.kubeconfig = join(this.dir, "admin.kubeconfig");
    for (const d of ["pki", "logs", "pids", "apiserver", "controller-manager", "kubectl-cache"]) mkdirSync(join(this.dir, d));
    this.etcd = new Proc("etcd", this.dir, BINARIES.etcd, () => this.etcdArgs());
    this.apiserver = new Proc("kube-apiserver", this.dir, BINARIES.kubeApiserver, () => this.apiServerArgs());
    this.controllerManager = new Proc("kube-controller-manager", this.dir, BINARIES.kubeControllerManager, () =>
      this.controllerManagerArgs(),
    );
    live.add(this);
    installExitHook();
    this.watchdog = spawn("bash", ["-c", WATCHDOG, "podcidr-cluster-watchdog", String(process.pid), this.dir], {
      detached: true,
      stdio: "ignore",
    });
    this.watchdog.unref();
  }

  /** https://127.0.0.1:PORT */
  get server(): string {
    return `https://127.0.0.1:${this.apiPort}`;
  }
  get etcdURL(): string {
    return `http://127.0.0.1:${this.etcdPort}`;
  }
  /** PEM of the cluster CA (what an in-cluster client has as ca.crt). */
  get caPem(): string {
    return this.ca;
  }
  get caFile(): string {
    return join(this.pki, "ca.crt");
  }

  // ----- start

  async start(): Promise<void> {
    const t0 = Date.now();
    const budget = this.opts.startTimeoutMs ?? Number(process.env.PODCIDR_CLUSTER_START_TIMEOUT_MS || 240_000);
    const deadline = t0 + budget;
    const left = () => Math.max(1, deadline - Date.now());
    const phases: string[] = [];
    const mark = (what: string) => phases.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    try {
      this.makePki();
      this.writeKubeconfig(this.kubeconfig, { cert: this.adminCert, key: this.adminKey });
      mark("certificates");

      await this.startWithPorts(
        this.etcd,
        async () => {
          this.etcdPort = await freePort();
          this.etcdPeerPort = await freePort();
        },
        () =>
          this.waitHttp(this.etcd, `${this.etcdURL}/health`, (s, t) => s === 200 && /"health":\s*"true"/.test(t), "etcd /health", left()),
      );
      mark("etcd ready");

      await this.startWithPorts(
        this.apiserver,
        async () => {
          this.apiPort = await freePort();
        },
        () => this.waitApiReady(left()),
      );
      mark("kube-apiserver /readyz");

      await this.startWithPorts(
        this.controllerManager,
        async () => {
          this.kcmPort = await freePort();
        },
        () =>
          this.waitHttp(
            this.controllerManager,
            `https://127.0.0.1:${this.kcmPort}/healthz`,
            (s, t) => s === 200 && t.trim() === "ok",
            "kube-controller-manager /healthz",
            left(),
          ),
      );
      mark("kube-controller-manager /healthz");

      if (this.opts.ciliumNodeCRD ?? true) {
        await this.apply(CILIUMNODE_CRD);
        await this.kubectl(["wait", "--for=condition=Established", "crd/ciliumnodes.cilium.io", `--timeout=${Math.ceil(left() / 1000)}s`]);
        await waitFor(
          async () => (await this.api("GET", "/apis/cilium.io/v2/ciliumnodes")).status === 200,
          "the CiliumNode API to be served",
          left(),
        );
        mark("CiliumNode CRD established");
      }
      this.startTimings = phases;
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const elapsed = ((Date.now() - t0) / 1000).toFixed(1);
      await this.stop(true);
      throw new Error(
        `the test cluster failed to start (after ${elapsed} s of its ${budget / 1000} s budget; ready: ${phases.join(", ") || "nothing"}): ${msg}`,
      );
    }
  }

  /** How long each start phase took (for the test log). */
  startTimings: string[] = [];

  /** Start `p` on fresh ports and wait for it; on a port clash (a race with another program) try again with new ones. */
  private async startWithPorts(p: Proc, pickPorts: () => Promise<void>, ready: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await pickPorts();
      p.start();
      try {
        await ready();
        return;
      } catch (e) {
        const clash = p.exit && /address already in use/i.test(p.tail(20_000));
        if (!clash || attempt >= 3) throw e;
        await p.stop(2000);
      }
    }
  }

  private async waitHttp(
    p: Proc,
    url: string,
    ok: (status: number, text: string) => boolean,
    what: string,
    timeoutMs: number,
  ): Promise<void> {
    await waitFor(
      async () => {
        p.assertRunning();
        try {
          const r = await rawGet(url, url.startsWith("https:") ? { rejectUnauthorized: false } : {});
          return ok(r.status, r.text);
        } catch (e) {
          p.assertRunning();
          throw e;
        }
      },
      what,
      timeoutMs,
      250,
    ).catch((e: Error) => {
      if (p.exit)
        throw new Error(
          `${p.name} exited (code ${p.exit.code}, signal ${p.exit.signal}) before ${what}; its log (${p.log}) ends:\n${p.tail()}`,
        );
      throw new Error(`${e.message}\n${p.name}'s log (${p.log}) ends:\n${p.tail()}`);
    });
  }

  private async waitApiReady(timeoutMs: number): Promise<void> {
    const p = this.apiserver;
    await waitFor(
      async () => {
        p.assertRunning();
        const r = await this.api("GET", "/readyz", { timeoutMs: 5000 }).catch((e: Error) => {
          p.assertRunning();
          throw e;
        });
        if (r.status !== 200)
          throw new Error(
            `/readyz ${r.status}: ${
              r.text
                .split("\n")
                .filter((l) => l.startsWith("[-]"))
                .join(" ") || r.text.slice(0, 300)
            }`,
          );
        return true;
      },
      "kube-apiserver /readyz",
      timeoutMs,
      250,
    ).catch((e: Error) => {
      if (p.exit)
        throw new Error(
          `${p.name} exited (code ${p.exit.code}, signal ${p.exit.signal}) before /readyz; its log (${p.log}) ends:\n${p.tail()}`,
        );
      throw new Error(`${e.message}\n${p.name}'s log (${p.log}) ends:\n${p.tail()}`);
    });
  }

  // ----- certificates and kubeconfigs

  private makePki(): void {
    const d = this.pki;
    writeFileSync(
      join(d, "ca.cnf"),
      "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = podcidr-ipam-test-ca\n[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier = hash\n",
    );
    openssl(d, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ca.key"]);
    openssl(d, ["req", "-x509", "-new", "-key", "ca.key", "-config", "ca.cnf", "-extensions", "v3_ca", "-days", "7", "-out", "ca.crt"]);
    const leaf = (name: string, subj: string, ext: string) => {
      writeFileSync(
        join(d, `${name}.ext`),
        `basicConstraints = critical,CA:FALSE\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n${ext}\n`,
      );
      openssl(d, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`]);
      openssl(d, ["req", "-new", "-key", `${name}.key`, "-subj", subj, "-out", `${name}.csr`]);
      openssl(d, [
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "7",
        "-extfile",
        `${name}.ext`,
        "-out",
        `${name}.crt`,
      ]);
    };
    leaf(
      "apiserver",
      "/CN=kube-apiserver",
      "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
    );
    leaf("admin", "/O=system:masters/CN=admin", "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = clientAuth");
    // The service-account token signing pair (RS256, as kubeadm makes it).
    openssl(d, ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"]);
    openssl(d, ["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    this.ca = readFileSync(join(d, "ca.crt"), "utf8");
    this.adminCert = readFileSync(join(d, "admin.crt"), "utf8");
    this.adminKey = readFileSync(join(d, "admin.key"), "utf8");
  }

  /** Write a kubeconfig for this cluster with a client certificate or a bearer token; returns its path. */
  writeKubeconfig(path: string, auth: { cert: string; key: string } | { token: string }): string {
    const user = "token" in auth ? { token: auth.token } : { "client-certificate-data": b64(auth.cert), "client-key-data": b64(auth.key) };
    const cfg = {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "podcidr-test", cluster: { server: this.server, "certificate-authority-data": b64(this.ca) } }],
      users: [{ name: "user", user }],
      contexts: [{ name: "podcidr-test", context: { cluster: "podcidr-test", user: "user" } }],
      "current-context": "podcidr-test",
    };
    // The API port is chosen later than the certificates; rewrite the admin one then.
    writeFileSync(path, JSON.stringify(cfg, null, 2), { mode: 0o600 });
    return path;
  }

  /** A kubeconfig that authenticates with `token` (e.g. from serviceAccountToken()). */
  kubeconfigForToken(token: string, path = join(this.dir, `token-${Math.random().toString(36).slice(2, 8)}.kubeconfig`)): string {
    return this.writeKubeconfig(path, { token });
  }

  // ----- component flags

  private etcdArgs(): string[] {
    const client = `http://127.0.0.1:${this.etcdPort}`;
    const peer = `http://127.0.0.1:${this.etcdPeerPort}`;
    return [
      "--name=podcidr-test",
      `--data-dir=${join(this.dir, "etcd")}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=podcidr-test=${peer}`,
      // A throwaway store on a shared disk: no fsync.
      "--unsafe-no-fsync=true",
      "--log-level=warn",
    ];
  }

  private apiServerArgs(): string[] {
    const p = this.pki;
    // The admin kubeconfig has the server address: (re)write it now that the port is known.
    this.writeKubeconfig(this.kubeconfig, { cert: this.adminCert, key: this.adminKey });
    return [
      `--etcd-servers=${this.etcdURL}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${this.apiPort}`,
      `--cert-dir=${join(this.dir, "apiserver")}`,
      `--tls-cert-file=${join(p, "apiserver.crt")}`,
      `--tls-private-key-file=${join(p, "apiserver.key")}`,
      `--client-ca-file=${join(p, "ca.crt")}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(p, "sa.pub")}`,
      `--service-account-signing-key-file=${join(p, "sa.key")}`,
      `--service-cluster-ip-range=${SERVICE_CIDRS.join(",")}`,
      "--authorization-mode=Node,RBAC",
      // The lease reconciler would write 127.0.0.1 into the `kubernetes` Endpoints, which validation refuses.
      "--endpoint-reconciler-type=none",
      `--watch-cache=${this.watchCache}`,
      "--profiling=false",
      // On SIGTERM, end open watches (kube-controller-manager's) within a second, so that the
      // process exits promptly instead of waiting for them.
      "--shutdown-watch-termination-grace-period=1s",
      ...(this.opts.extraApiServerFlags ?? []),
    ];
  }

  private controllerManagerArgs(): string[] {
    return [
      `--kubeconfig=${this.kubeconfig}`,
      `--authentication-kubeconfig=${this.kubeconfig}`,
      `--authorization-kubeconfig=${this.kubeconfig}`,
      // Client certificates (the admin's, for /metrics) checked against our CA; no front proxy, so
      // no lookup of the requestheader CA that kube-apiserver does not have.
      `--client-ca-file=${join(this.pki, "ca.crt")}`,
      "--authentication-skip-lookup=true",
      "--bind-address=127.0.0.1",
      `--secure-port=${this.kcmPort}`,
      `--cert-dir=${join(this.dir, "controller-manager")}`,
      "--leader-elect=false",
      `--controllers=${this.opts.controllers ?? "nodeipam,serviceaccount"}`,
      "--allocate-node-cidrs=true",
      `--cluster-cidr=${CLUSTER_CIDRS.join(",")}`,
      `--node-cidr-mask-size-ipv4=${NODE_MASK.ipv4}`,
      `--node-cidr-mask-size-ipv6=${NODE_MASK.ipv6}`,
      `--service-cluster-ip-range=${SERVICE_CIDRS.join(",")}`,
      "--profiling=false",
      ...(this.opts.extraControllerManagerFlags ?? []),
    ];
  }

  // ----- API access

  /** One request to the API server as the admin (client certificate) or with `opts.token`. */
  api(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    return new Promise((resolve, reject) => {
      const body = opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
      const headers: http.OutgoingHttpHeaders = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = opts.contentType ?? "application/json";
      if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
      const req = https.request(
        {
          host: "127.0.0.1",
          port: this.apiPort,
          method,
          path,
          headers,
          ca: this.ca,
          ...(opts.token ? {} : { cert: this.adminCert, key: this.adminKey }),
          agent: false,
          timeout: opts.timeoutMs ?? 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let json: any;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer within ${opts.timeoutMs ?? 30_000} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  /**
   * Open a watch (`path` with watch=1 and its query) as the admin or with a token.
   * Resolves once the response headers are in; events are parsed line by line.
   */
  watch(path: string, opts: { token?: string } = {}): Promise<WatchStream> {
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { Accept: "application/json" };
      if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
      const req = https.request(
        {
          host: "127.0.0.1",
          port: this.apiPort,
          method: "GET",
          path,
          headers,
          ca: this.ca,
          ...(opts.token ? {} : { cert: this.adminCert, key: this.adminKey }),
          agent: false,
        },
        (res) => {
          const events: { type: string; object: any }[] = [];
          const waiters: { resolve: (e: { type: string; object: any }) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
          let taken = 0;
          let ended = false;
          let text = "";
          const settle = () => {
            while (waiters.length && taken < events.length) {
              const w = waiters.shift()!;
              clearTimeout(w.timer);
              w.resolve(events[taken++]!);
            }
            if (ended)
              while (waiters.length) {
                const w = waiters.shift()!;
                clearTimeout(w.timer);
                w.reject(new Error(`watch ${path} ended after ${events.length} events`));
              }
          };
          const finish = () => {
            ended = true;
            settle();
          };
          if (res.statusCode === 200) {
            const rl = createInterface({ input: res });
            rl.on("line", (line) => {
              if (!line.trim()) return;
              try {
                events.push(JSON.parse(line));
              } catch {
                events.push({ type: "UNPARSABLE", object: line });
              }
              settle();
            });
            rl.on("close", finish);
            // close() destroys the request: readline then reports the abort, which is no error here.
            rl.on("error", finish);
          } else {
            res.on("data", (c: Buffer) => (text += c.toString("utf8")));
            res.on("end", finish);
          }
          res.on("error", finish);
          res.on("aborted", finish);
          const stream: WatchStream = {
            status: res.statusCode ?? 0,
            headers: res.headers,
            get text() {
              return text;
            },
            events,
            get ended() {
              return ended;
            },
            next(timeoutMs = 30_000) {
              return new Promise((res2, rej2) => {
                const timer = setTimeout(() => {
                  const i = waiters.findIndex((w) => w.timer === timer);
                  if (i >= 0) waiters.splice(i, 1);
                  rej2(new Error(`no event on watch ${path} within ${timeoutMs} ms (${events.length} so far)`));
                }, timeoutMs);
                waiters.push({ resolve: res2, reject: rej2, timer });
                settle();
              });
            },
            async nextMatching(match, timeoutMs = 30_000) {
              const until = Date.now() + timeoutMs;
              for (;;) {
                const e = await stream.next(Math.max(1, until - Date.now()));
                if (match(e)) return e;
              }
            },
            close() {
              req.destroy();
              finish();
            },
          };
          if (res.statusCode !== 200) res.on("end", () => resolve(stream));
          else resolve(stream);
        },
      );
      // After the response has started, errors (our own close()) end the stream instead.
      req.on("error", (e) => reject(e));
      req.end();
    });
  }

  /** Run the built kubectl against this cluster (admin unless `opts.token`); resolves with the result, never throws. */
  kubectlResult(
    args: string[],
    opts: { input?: string; token?: string; timeoutMs?: number } = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const auth = opts.token
      ? ["--server", this.server, "--certificate-authority", this.caFile, "--token", opts.token]
      : ["--kubeconfig", this.kubeconfig];
    const full = [...auth, "--cache-dir", join(this.dir, "kubectl-cache"), ...args];
    return new Promise((resolve) => {
      const child = execFile(
        BINARIES.kubectl,
        full,
        { env: { ...process.env, KUBECONFIG: "", HOME: this.dir }, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 },
        (err, stdout, stderr) => {
          const code = err ? (typeof (err as any).code === "number" ? (err as any).code : -1) : 0;
          resolve({ code, stdout, stderr: err && code === -1 ? `${stderr}${err.message}` : stderr });
        },
      );
      child.stdin?.end(opts.input ?? "");
    });
  }

  /** Run kubectl; resolves with stdout, throws with stderr when it exits non-zero. */
  async kubectl(args: string[], opts: { input?: string; token?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.kubectlResult(args, opts);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** Server-side apply of one object (or a List); resolves with the object as the server has it. */
  async apply(obj: object): Promise<any> {
    const out = await this.kubectl(
      ["apply", "--server-side", "--force-conflicts", "--field-manager=podcidr-ipam-test", "-o", "json", "-f", "-"],
      { input: JSON.stringify(obj) },
    );
    return JSON.parse(out);
  }

  /** A v1 Node (no kubelet behind it); kube-controller-manager then fills spec.podCIDRs. */
  async createNode(name: string, extra: { labels?: Record<string, string>; spec?: Record<string, unknown> } = {}): Promise<any> {
    const r = await this.api("POST", "/api/v1/nodes", {
      body: {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name, labels: { "kubernetes.io/hostname": name, ...extra.labels } },
        spec: extra.spec ?? {},
      },
    });
    if (r.status !== 201) throw new Error(`creating Node ${name}: ${r.status} ${r.text}`);
    return r.json;
  }

  async getNode(name: string): Promise<any | undefined> {
    const r = await this.api("GET", `/api/v1/nodes/${encodeURIComponent(name)}`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new Error(`GET Node ${name}: ${r.status} ${r.text}`);
    return r.json;
  }

  async deleteNode(name: string): Promise<void> {
    const r = await this.api("DELETE", `/api/v1/nodes/${encodeURIComponent(name)}`);
    if (r.status !== 200 && r.status !== 404) throw new Error(`DELETE Node ${name}: ${r.status} ${r.text}`);
    await waitFor(async () => (await this.getNode(name)) === undefined, `Node ${name} to be gone`, 30_000);
  }

  /** Wait until kube-controller-manager has set the Node's spec.podCIDRs; resolves with them. */
  async waitForPodCIDRs(name: string, timeoutMs = 30_000): Promise<string[]> {
    return waitFor(
      async () => {
        const n = await this.getNode(name);
        const cidrs: string[] | undefined = n?.spec?.podCIDRs;
        return cidrs && cidrs.length > 0 ? cidrs : undefined;
      },
      `kube-controller-manager to set spec.podCIDRs of Node ${name}`,
      timeoutMs,
    );
  }

  /** A ServiceAccount token from the TokenRequest API (`kubectl create token`). */
  async serviceAccountToken(namespace: string, name: string, opts: { duration?: string; audience?: string } = {}): Promise<string> {
    const args = ["create", "token", name, "-n", namespace];
    if (opts.duration) args.push(`--duration=${opts.duration}`);
    if (opts.audience) args.push(`--audience=${opts.audience}`);
    return (await this.kubectl(args)).trim();
  }

  // ----- outages and history

  /** Stop kube-apiserver (etcd and kube-controller-manager keep running). */
  async stopApiServer(): Promise<void> {
    await this.apiserver.stop(20_000);
    // The port must be closed before callers assert on the outage.
    await waitFor(async () => !(await portOpen(this.apiPort)), `kube-apiserver's port ${this.apiPort} to close`, 20_000);
  }

  /**
   * Start kube-apiserver again on the same port and wait for /readyz and for the
   * watch caches of nodes and ciliumnodes (a watch on a cache still (re)initializing gets 429).
   */
  async startApiServer(timeoutMs = 120_000): Promise<void> {
    const t0 = Date.now();
    this.apiserver.start();
    await this.waitApiReady(timeoutMs);
    const paths = ["/api/v1/nodes"];
    if (this.opts.ciliumNodeCRD ?? true) paths.push("/apis/cilium.io/v2/ciliumnodes");
    for (const path of paths) {
      await waitFor(
        async () => {
          const list = await this.api("GET", path);
          if (list.status !== 200) return false;
          const w = await this.watch(`${path}?watch=1&resourceVersion=${list.json.metadata.resourceVersion}&timeoutSeconds=1`);
          w.close();
          return w.status === 200;
        },
        `the watch cache of ${path} after the restart`,
        Math.max(1000, timeoutMs - (Date.now() - t0)),
        250,
      );
    }
  }

  /** Restart kube-controller-manager (its cidrsets are rebuilt from the Nodes; next-fit starts over at the lowest free block). */
  async restartControllerManager(timeoutMs = 120_000): Promise<void> {
    await this.controllerManager.stop(10_000);
    this.controllerManager.start();
    await this.waitHttp(
      this.controllerManager,
      `https://127.0.0.1:${this.kcmPort}/healthz`,
      (s, t) => s === 200 && t.trim() === "ok",
      "kube-controller-manager /healthz",
      timeoutMs,
    );
  }

  /** kube-controller-manager's /metrics (Prometheus text), read as the admin. */
  async controllerManagerMetrics(): Promise<string> {
    const r = await rawGet(`https://127.0.0.1:${this.kcmPort}/metrics`, {
      rejectUnauthorized: false,
      cert: this.adminCert,
      key: this.adminKey,
    });
    if (r.status !== 200) throw new Error(`kube-controller-manager /metrics: ${r.status} ${r.text.slice(0, 300)}`);
    return r.text;
  }

  /** The etcd revision now (the API's resourceVersions are etcd revisions). */
  async etcdRevision(): Promise<number> {
    const r = await etcdPost(this.etcdURL, "/v3/kv/range", { key: b64("\0"), limit: 1 });
    return Number(r.header.revision);
  }

  /**
   * Compact etcd at its current revision (physically), so that a watch from any
   * resourceVersion older than now gets 410 Gone. Resolves with that revision.
   * etcd compaction alone reaches only watches served by etcd: with the watch cache
   * on (the default), kube-apiserver keeps its own event history, so this then also
   * restarts kube-apiserver (unless `restartApiServer: false`): its caches start over
   * from the compacted store and refuse older resourceVersions ("too old resource
   * version"), as after any kube-apiserver restart in a real cluster.
   */
  async compactEtcd(opts: { restartApiServer?: boolean } = {}): Promise<number> {
    // etcd keeps the revision it compacts at, and a watch from resourceVersion R starts at R + 1:
    // write a key of our own (outside /registry) twice first, so that for every R a client can have
    // seen before this call, R + 1 is below the compaction point.
    let rev = 0;
    for (let i = 0; i < 2; i++) {
      const put = await etcdPost(this.etcdURL, "/v3/kv/put", {
        key: b64("/podcidr-ipam-test/compaction"),
        value: b64(`${new Date().toISOString()} ${i}`),
      });
      rev = Number(put.header.revision);
    }
    await etcdPost(this.etcdURL, "/v3/kv/compaction", { revision: String(rev), physical: true });
    if (opts.restartApiServer ?? this.watchCache) {
      await this.stopApiServer();
      await this.startApiServer();
    }
    return rev;
  }

  // ----- teardown

  /** End every process (kube-controller-manager, kube-apiserver, etcd) and remove the folder. Idempotent. */
  async stop(failed = false): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all([this.controllerManager.stop(5000), this.apiserver.stop(5000)]);
    await this.etcd.stop(5000);
    this.killWatchdog();
    live.delete(this);
    this.removeDir(failed);
  }

  /** For the process exit hook: SIGKILL everything now. */
  killSync(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const p of [this.controllerManager, this.apiserver, this.etcd]) p.killNow();
    this.killWatchdog();
    this.removeDir(false);
  }

  private killWatchdog(): void {
    const pid = this.watchdog?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      /* already gone */
    }
    this.watchdog = undefined;
  }

  private removeDir(failed: boolean): void {
    if (process.env.PODCIDR_CLUSTER_KEEP === "1") {
      writeFileSync(join(this.dir, "keep"), "");
      process.stderr.write(`podcidr-ipam cluster folder kept (PODCIDR_CLUSTER_KEEP=1): ${this.dir}\n`);
      return;
    }
    if (failed)
      process.stderr.write(`podcidr-ipam cluster: logs were in ${join(this.dir, "logs")} (removed; PODCIDR_CLUSTER_KEEP=1 keeps them)\n`);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The last part of each component's log (for failure messages). */
  logTails(bytes = 3000): string {
    return [this.etcd, this.apiserver, this.controllerManager].map((p) => `----- ${p.name} (${p.log}):\n${p.tail(bytes)}`).join("\n");
  }
}

/** Start a cluster (see Cluster); on failure everything started is stopped again and the error carries the logs' tails. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const c = new Cluster(opts);
  await c.start();
  return c;
}

// ---------------------------------------------------------------------------------------------

function b64(s: string): string {
  return Buffer.from(s, "utf8").toString("base64");
}

function rawGet(url: string, opts: https.RequestOptions): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith("https:") ? https : http;
    const req = mod.get(url, { ...opts, agent: false, timeout: 5000 }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer within 5 s`)));
    req.on("error", reject);
  });
}

/** etcd's JSON gateway to its gRPC API (served on the client URL). */
function etcdPost(base: string, path: string, body: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(
      `${base}${path}`,
      { method: "POST", headers: { "Content-Type": "application/json" }, agent: false, timeout: 10_000 },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString("utf8")));
        res.on("end", () => {
          if (res.statusCode !== 200) return reject(new Error(`etcd ${path}: ${res.statusCode} ${text}`));
          resolve(JSON.parse(text));
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`etcd ${path}: no answer within 10 s`)));
    req.on("error", reject);
    req.end(data);
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.setTimeout(1000);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(false));
    s.connect(port, "127.0.0.1");
  });
}
