// deploy/podcidr-ipam.yaml against the real kube-apiserver: the whole folder passes a server
// dry run; its ServiceAccount, ClusterRole and ClusterRoleBinding, applied for real, are
// enough for the agent (run with the DaemonSet's own arguments and a TokenRequest token of
// that ServiceAccount) to sync a v1 Node and a CiliumNode; without the binding the agent
// says which permission is missing and /readyz answers 503. And the agent's memory stays
// under the manifest's limit.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import { dirname, join } from "node:path";
import { expect, it } from "vitest";
import { BIN, ROOT } from "../helpers/plugin";
import { containerArgv, flags, loadManifest, one, under } from "../deploy/manifest";
import { type Cluster, WaitAborted, freePort, waitFor } from "./harness";
import { clusterPerFile } from "./per-file";

const objs = loadManifest();
const ds = one(objs, "DaemonSet");
const pod = ds.spec.template.spec;
const initC = pod.initContainers.find((c: any) => c.name === "install");
const agentC = pod.containers.find((c: any) => c.name === "agent");
const sa = one(objs, "ServiceAccount");
const rbac = [sa, one(objs, "ClusterRole"), one(objs, "ClusterRoleBinding")];

let c: Cluster;
let dir: string;
const { suite } = clusterPerFile("podcidr-deploy-", (cl, d) => {
  c = cl;
  dir = d;
});
let kubeconfig: string;

function get(port: number, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false, timeout: 10_000 }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path}: no answer in 10 s`)));
    req.on("error", reject);
  });
}

interface Agent {
  child: ChildProcess;
  port: number;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  log(): string;
  /** For waitFor: throws WaitAborted (with the log) once the agent has exited. */
  alive(): void;
  stop(): Promise<number | null>;
}

/**
 * The agent as the DaemonSet runs it on node `name`: the container's arguments (paths moved under a
 * folder of this node, after the init container's install put the conflist there), NODE_NAME set,
 * the health server on a free port, and `kubeconfig` instead of the pod's ServiceAccount files.
 */
async function startAgent(name: string, extra: string[] = []): Promise<Agent> {
  const root = join(dir, name);
  const cm = one(objs, "ConfigMap");
  const initArgv = containerArgv(initC, name);
  const cmFile = `${root}${flags(initArgv.slice(2)).get("cni-conf")}`;
  mkdirSync(dirname(cmFile), { recursive: true });
  writeFileSync(cmFile, Object.values(cm.data as Record<string, string>)[0]!);
  const inst = spawnSync(BIN, under(root, initArgv.slice(1)), { encoding: "utf8", env: { PATH: process.env.PATH } });
  if (inst.status !== 0) throw new Error(`install failed: ${inst.stderr}`);
  const port = await freePort();
  const args = [
    ...under(root, containerArgv(agentC, name).slice(1)),
    `--health-addr=127.0.0.1:${port}`,
    "--metrics-addr=",
    `--kubeconfig=${kubeconfig}`,
    ...extra,
  ];
  const child = spawn(BIN, args, { env: { PATH: process.env.PATH, NODE_NAME: name }, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d) => (log += d));
  const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  return {
    child,
    port,
    exited,
    log: () => log,
    alive: () => {
      if (child.exitCode !== null) throw new WaitAborted(`the agent exited (${child.exitCode}):\n${log}`);
    },
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

const nodeFileOf = (name: string) => `${join(dir, name)}${flags(containerArgv(agentC, name).slice(2)).get("node-file")}`;

/** "128Mi" -> bytes */
function quantity(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(q);
  if (!m) throw new Error(`quantity ${q}`);
  return Number(m[1]) * { "": 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2] ?? ""]!;
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
function rss(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

async function waitReady(a: Agent): Promise<void> {
  await waitFor(
    async () => {
      a.alive();
      return (await get(a.port, "/readyz")).status === 200;
    },
    "/readyz 200",
    60_000,
  );
}

suite("deploy/podcidr-ipam.yaml against kube-apiserver", () => {
  it("kubectl apply --dry-run=server -f deploy/ accepts every object", async () => {
    const out = await c.kubectl(["apply", "--dry-run=server", "-f", join(ROOT, "deploy")]);
    for (const o of objs) {
      const kind = o.kind.toLowerCase();
      expect(out, out).toMatch(new RegExp(`${kind}[^ ]*/${o.metadata.name} (created|configured|unchanged) \\(server dry run\\)`));
    }
  });

  it("with its RBAC applied, the agent syncs a v1 Node and a CiliumNode, ready, under its memory limit", async () => {
    for (const o of rbac) await c.apply(o);
    const token = await c.serviceAccountToken(sa.metadata.namespace!, sa.metadata.name);
    kubeconfig = c.kubeconfigForToken(token);

    // A v1 Node with the podCIDRs kube-controller-manager gives it; --source auto (the DaemonSet's) finds no CiliumNode.
    await c.createNode("deploy-node");
    const cidrs = await c.waitForPodCIDRs("deploy-node");
    const a = await startAgent("deploy-node");
    try {
      await waitReady(a);
      const obj = JSON.parse(readFileSync(nodeFileOf("deploy-node"), "utf8"));
      expect(obj.kind).toBe("Node");
      expect(obj.spec.podCIDRs).toEqual(cidrs);
      expect(a.log()).toContain("using the v1 Node");
      // Idle RSS after the sync and a few /metrics scrapes (the store and the calls log read), and the peak.
      for (let i = 0; i < 3; i++) expect((await get(a.port, "/readyz")).status).toBe(200);
      const m = rss(a.child.pid!);
      const limit = quantity(agentC.resources.limits.memory);
      process.stderr.write(
        `deploy: agent RSS ${(m.rss / 2 ** 20).toFixed(1)} MiB, peak ${(m.peak / 2 ** 20).toFixed(1)} MiB ` +
          `(${BIN}; request ${agentC.resources.requests.memory}, limit ${agentC.resources.limits.memory})\n`,
      );
      expect(m.peak).toBeLessThan(limit * 0.75);
    } finally {
      expect(await a.stop(), a.log()).toBe(0);
    }

    // A CiliumNode, as Cilium's operator writes it: auto picks it.
    await c.apply({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNode",
      metadata: { name: "deploy-cilium" },
      spec: { ipam: { podCIDRs: ["10.200.3.0/24", "fd00:10:200:3::/64"] } },
    });
    const b = await startAgent("deploy-cilium");
    try {
      await waitReady(b);
      const obj = JSON.parse(readFileSync(nodeFileOf("deploy-cilium"), "utf8"));
      expect(obj.kind).toBe("CiliumNode");
      expect(obj.spec.ipam.podCIDRs).toEqual(["10.200.3.0/24", "fd00:10:200:3::/64"]);
    } finally {
      expect(await b.stop(), b.log()).toBe(0);
    }
  });

  it("without the ClusterRoleBinding the agent names the missing permission and /readyz is 503", async () => {
    for (const o of rbac) await c.apply(o); // (already there after the test above; this one can run alone)
    const token = await c.serviceAccountToken(sa.metadata.namespace!, sa.metadata.name);
    kubeconfig = c.kubeconfigForToken(token);
    await c.kubectl(["delete", "clusterrolebinding", one(objs, "ClusterRoleBinding").metadata.name]);
    await waitFor(async () => (await c.api("GET", "/api/v1/nodes", { token })).status === 403, "RBAC to refuse the token", 30_000);

    for (const [source, resource] of [
      ["node", "nodes"],
      ["ciliumnode", "ciliumnodes"],
    ] as const) {
      const name = `deploy-forbidden-${source}`;
      const a = await startAgent(name, [`--source=${source}`]);
      try {
        await waitFor(
          () => {
            a.alive();
            return /cannot list resource/.test(a.log());
          },
          `the agent (--source ${source}) to log the 403`,
          60_000,
        );
        const line = a
          .log()
          .split("\n")
          .find((l) => /cannot list resource/.test(l))!;
        expect(line).toContain(`cannot list resource \\"${resource}\\"`);
        expect(line).toContain("system:serviceaccount:kube-system:podcidr-ipam");
        expect(line).toContain("deploy/podcidr-ipam.yaml");
        const r = await waitFor(
          async () => {
            a.alive();
            return get(a.port, "/readyz").catch(() => undefined);
          },
          "/readyz to answer",
          30_000,
        );
        expect(r.status).toBe(503);
        expect(r.text).toContain(resource);
        expect(existsSync(nodeFileOf(name))).toBe(false);
      } finally {
        expect(await a.stop(), a.log()).toBe(0);
      }
    }

    // --source auto (the DaemonSet's) cannot even ask whether Cilium serves a CiliumNode: it exits, saying why.
    const auto = await startAgent("deploy-forbidden-auto");
    const code = await auto.exited;
    expect(code, auto.log()).toBe(1);
    expect(auto.log()).toContain('cannot list resource \\"ciliumnodes\\"');
    expect(auto.log()).toContain("deploy/podcidr-ipam.yaml");
  });
});
