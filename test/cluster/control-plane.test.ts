// Smoke test of the cluster harness: the real etcd, kube-apiserver and
// kube-controller-manager on loopback, as the agent's tests will use them.
import { readFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, CLUSTER_CIDRS, K8S_VERSION, announceClusterSkip, clusterBlocker, startCluster, waitFor } from "./harness";

const blocker = clusterBlocker();
if (blocker) announceClusterSkip(blocker);
const suite = blocker ? describe.skip : describe;

/** Block index of a node CIDR inside 10.244.0.0/16 (/24s) or fd00:10:244::/56 (/64s). */
function v4Block(cidr: string): number {
  const m = cidr.match(/^10\.244\.(\d{1,3})\.0\/24$/);
  if (!m) throw new Error(`not a /24 of 10.244.0.0/16: ${cidr}`);
  return Number(m[1]);
}
function v6Block(cidr: string): number {
  const m = cidr.match(/^fd00:10:244:(?:([0-9a-f]{1,4}):)?:\/64$/);
  if (!m) throw new Error(`not a /64 of fd00:10:244::/56: ${cidr}`);
  const n = m[1] === undefined ? 0 : parseInt(m[1], 16);
  if (n > 0xff) throw new Error(`outside the /56: ${cidr}`);
  return n;
}

/** `name{clusterCIDR="cidr"} value` from Prometheus text. */
function metric(text: string, name: string, cidr: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(`clusterCIDR="${cidr}"`));
  return line ? Number(line.trim().split(/\s+/).pop()) : 0;
}

/** A watch by hand over node:https with the admin client certificate: the status and, for 200, the first event. */
function rawWatch(c: Cluster, path: string): Promise<{ status: number; first?: any; body?: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port: c.apiPort,
        path,
        method: "GET",
        headers: { Accept: "application/json" },
        ca: readFileSync(join(c.pki, "ca.crt")),
        cert: readFileSync(join(c.pki, "admin.crt")),
        key: readFileSync(join(c.pki, "admin.key")),
        agent: false,
      },
      (res) => {
        let buf = "";
        const timer = setTimeout(() => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0 });
        }, 20_000);
        res.on("data", (chunk: Buffer) => {
          buf += chunk.toString("utf8");
          const nl = buf.indexOf("\n");
          if (res.statusCode === 200 && nl >= 0) {
            clearTimeout(timer);
            req.destroy();
            resolve({ status: 200, first: JSON.parse(buf.slice(0, nl)) });
          }
        });
        res.on("end", () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: buf, first: res.statusCode === 200 && buf.trim() ? JSON.parse(buf.trim().split("\n")[0]!) : undefined });
        });
        res.on("error", () => undefined);
      },
    );
    req.on("error", (e) => (e.message.includes("socket hang up") ? undefined : reject(e)));
    req.end();
  });
}

/** True when a watch answered "resourceVersion too old": HTTP 410, or an ERROR event whose Status has code 410. */
function isGone(r: { status: number; first?: any }): boolean {
  return r.status === 410 || (r.status === 200 && r.first?.type === "ERROR" && r.first?.object?.code === 410);
}

suite(`the upstream control plane on loopback (etcd, kube-apiserver and kube-controller-manager ${K8S_VERSION})`, () => {
  let c: Cluster;

  beforeAll(async () => {
    const t0 = Date.now();
    c = await startCluster();
    process.stderr.write(`cluster started in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${c.startTimings.join(", ")}\n`);
  }, 300_000);

  afterAll(async () => {
    await c?.stop();
  }, 60_000);

  it("the API server answers as the built version, and /readyz passes", async () => {
    const v = await c.api("GET", "/version");
    expect(v.status).toBe(200);
    expect(v.json.gitVersion).toBe(K8S_VERSION);
    const ready = await c.api("GET", "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.text.trim()).toBe("ok");
    // kubectl talks to it through the admin kubeconfig (client certificate in system:masters).
    expect(await c.kubectl(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])).toBe("admin");
    expect((await c.kubectl(["get", "namespaces", "-o", "name"])).split("\n")).toContain("namespace/kube-system");
  });

  it("a Node created with kubectl gets dual-stack spec.podCIDRs from kube-controller-manager within 30 s", async () => {
    await c.kubectl(["create", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: "first" } }) });
    const cidrs = await c.waitForPodCIDRs("first", 30_000);
    expect(cidrs).toHaveLength(2);
    expect(cidrs[0]).toMatch(/^10\.244\.\d{1,3}\.0\/24$/);
    expect(cidrs[1]).toMatch(/^fd00:10:244:([0-9a-f]{1,4}:)?:\/64$/);
    v4Block(cidrs[0]!);
    v6Block(cidrs[1]!);
    const node = await c.getNode("first");
    expect(node.spec.podCIDR).toBe(cidrs[0]);
  });

  it("5 nodes get 5 distinct /24s and 5 distinct /64s", async () => {
    const names = ["n1", "n2", "n3", "n4", "n5"];
    await Promise.all(names.map((n) => c.createNode(n)));
    const all = await Promise.all(names.map((n) => c.waitForPodCIDRs(n, 30_000)));
    const v4 = all.map((x) => x[0]!);
    const v6 = all.map((x) => x[1]!);
    expect(new Set(v4).size).toBe(5);
    expect(new Set(v6).size).toBe(5);
    v4.forEach(v4Block);
    v6.forEach(v6Block);
    // And none of them is the first node's.
    const first = await c.waitForPodCIDRs("first");
    expect(v4).not.toContain(first[0]);
    expect(v6).not.toContain(first[1]);
  });

  it("deleting a node releases its CIDRs; after a controller-manager restart the lowest free block is handed out again", async () => {
    const live = async () => {
      const list = await c.api("GET", "/api/v1/nodes");
      return list.json.items.filter((n: any) => n.spec.podCIDRs).map((n: any) => ({ name: n.metadata.name as string, v4: v4Block(n.spec.podCIDRs[0]), v6: v6Block(n.spec.podCIDRs[1]) }));
    };
    const before = await live();
    // The lowest-block node but "first" (later tests use it).
    const victim = before.filter((n: any) => n.name !== "first").reduce((a: any, b: any) => (b.v4 < a.v4 ? b : a));
    const m0 = await c.controllerManagerMetrics();
    const released0 = CLUSTER_CIDRS.map((cidr) => metric(m0, "node_ipam_controller_cidrset_cidrs_releases_total", cidr));

    await c.deleteNode(victim.name);
    // The release shows in the cidrsets' counters (one block per family).
    await waitFor(async () => {
      const m = await c.controllerManagerMetrics();
      return CLUSTER_CIDRS.every((cidr, i) => metric(m, "node_ipam_controller_cidrset_cidrs_releases_total", cidr) === released0[i]! + 1);
    }, "kube-controller-manager to count the release of the deleted node's CIDRs", 30_000);

    // Next-fit: a node created now gets a block no live node holds (not necessarily the freed one:
    // the set scans on from its last pick and reuses a freed block only after wrapping around).
    await c.createNode("after-delete");
    const after = await c.waitForPodCIDRs("after-delete");
    const held = await live();
    const others = held.filter((n: any) => n.name !== "after-delete");
    expect(others.map((n: any) => n.v4)).not.toContain(v4Block(after[0]!));
    expect(others.map((n: any) => n.v6)).not.toContain(v6Block(after[1]!));

    // A restarted controller-manager rebuilds its sets from the Nodes and scans from block 0,
    // so the next node gets the lowest block that no Node holds: here the deleted node's.
    const lowestFree = (used: number[]) => {
      for (let i = 0; ; i++) if (!used.includes(i)) return i;
    };
    const want = { v4: lowestFree(held.map((n: any) => n.v4)), v6: lowestFree(held.map((n: any) => n.v6)) };
    expect(want.v4).toBe(victim.v4);
    await c.restartControllerManager();
    await c.createNode("reuse");
    const reused = await c.waitForPodCIDRs("reuse");
    expect(v4Block(reused[0]!)).toBe(want.v4);
    expect(v6Block(reused[1]!)).toBe(want.v6);
  }, 120_000);

  it("the CiliumNode CRD keeps spec.ipam.podCIDRs and, through the status subresource, status.ipam", async () => {
    const applied = await c.apply({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNode",
      metadata: { name: "first" },
      spec: { ipam: { podCIDRs: ["10.0.1.0/24", "fd00::100/120"], pool: {} }, addresses: [{ type: "InternalIP", ip: "192.0.2.10" }] },
      // Ignored on the main resource: status has its own subresource.
      status: { ipam: { "operator-status": { error: "ignored" } } },
    });
    expect(applied.spec.ipam.podCIDRs).toEqual(["10.0.1.0/24", "fd00::100/120"]);
    expect(applied.status).toBeUndefined();

    await c.kubectl(["patch", "ciliumnode", "first", "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: { ipam: { used: { "10.0.1.5": { owner: "default/web" } }, "operator-status": {} } } })]);
    const got = await c.api("GET", "/apis/cilium.io/v2/ciliumnodes/first");
    expect(got.status).toBe(200);
    expect(got.json.kind).toBe("CiliumNode");
    expect(got.json.spec.ipam.podCIDRs).toEqual(["10.0.1.0/24", "fd00::100/120"]);
    expect(got.json.spec.addresses).toEqual([{ type: "InternalIP", ip: "192.0.2.10" }]);
    expect(got.json.status.ipam.used).toEqual({ "10.0.1.5": { owner: "default/web" } });
    // Cluster-scoped, selectable by name the way the agent watches it.
    const sel = await c.api("GET", "/apis/cilium.io/v2/ciliumnodes?fieldSelector=metadata.name%3Dfirst");
    expect(sel.json.items.map((i: any) => i.metadata.name)).toEqual(["first"]);
    expect(sel.json.items[0].metadata.namespace).toBeUndefined();
  });

  it("a TokenRequest ServiceAccount token may get nodes only once a ClusterRole binding allows it, and never pods", async () => {
    await c.kubectl(["create", "serviceaccount", "podcidr-ipam", "-n", "kube-system"]);
    const token = await c.serviceAccountToken("kube-system", "podcidr-ipam", { duration: "1h" });
    expect(token.split(".")).toHaveLength(3); // a JWT
    const asSA = (args: string[]) => c.kubectlResult(args, { token });

    const denied = await asSA(["get", "nodes"]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/forbidden/i);

    await c.apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "podcidr-ipam" },
      rules: [
        { apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch"] },
        { apiGroups: ["cilium.io"], resources: ["ciliumnodes"], verbs: ["get", "list", "watch"] },
      ],
    });
    await c.apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "podcidr-ipam" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "podcidr-ipam" },
      subjects: [{ kind: "ServiceAccount", name: "podcidr-ipam", namespace: "kube-system" }],
    });
    // RBAC is read from an informer: the binding takes effect within moments.
    const ok = await waitFor(async () => {
      const r = await asSA(["get", "nodes", "-o", "name"]);
      return r.code === 0 ? r.stdout : undefined;
    }, "the bound ServiceAccount to be allowed to get nodes", 30_000);
    expect(ok.split("\n")).toContain("node/first");
    expect((await asSA(["get", "ciliumnodes", "-o", "name"])).code).toBe(0);

    const pods = await asSA(["get", "pods", "-A"]);
    expect(pods.code).not.toBe(0);
    expect(pods.stderr).toMatch(/pods is forbidden: User "system:serviceaccount:kube-system:podcidr-ipam" cannot list resource "pods"/);

    // The same token over plain HTTPS (what the agent will do), and a kubeconfig for it.
    const r = await c.api("GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dfirst", { token });
    expect(r.status).toBe(200);
    expect(r.json.items).toHaveLength(1);
    expect((await c.api("GET", "/api/v1/namespaces/default/pods", { token })).status).toBe(403);
    const kc = c.kubeconfigForToken(token);
    expect((await c.kubectl(["--kubeconfig", kc, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])).trim()).toBe("system:serviceaccount:kube-system:podcidr-ipam");
  });

  it("an API outage (stop, wait, start) keeps etcd's data: the nodes are still there, and allocation goes on", async () => {
    const before = await c.api("GET", "/api/v1/nodes");
    const names = before.json.items.map((n: any) => n.metadata.name).sort();
    expect(names.length).toBeGreaterThanOrEqual(6);

    await c.stopApiServer();
    await expect(c.api("GET", "/readyz", { timeoutMs: 3000 })).rejects.toThrow(/ECONNREFUSED/);
    await new Promise((r) => setTimeout(r, 3000));
    expect(c.etcd.running).toBe(true);
    expect(c.controllerManager.running).toBe(true);
    await c.startApiServer();

    const after = await c.api("GET", "/api/v1/nodes");
    expect(after.json.items.map((n: any) => n.metadata.name).sort()).toEqual(names);
    for (const n of after.json.items) expect(n.spec.podCIDRs).toEqual(before.json.items.find((b: any) => b.metadata.name === n.metadata.name).spec.podCIDRs);
    // kube-controller-manager reconnected and still carves.
    await c.createNode("after-outage");
    expect(await c.waitForPodCIDRs("after-outage", 60_000)).toHaveLength(2);
  }, 180_000);

  it("compactEtcd() makes a watch from an older resourceVersion get 410 (nodes and ciliumnodes)", async () => {
    const nodes = await c.api("GET", "/api/v1/nodes");
    const cns = await c.api("GET", "/apis/cilium.io/v2/ciliumnodes");
    const oldNodeRV = nodes.json.metadata.resourceVersion;
    const oldCnRV = cns.json.metadata.resourceVersion;
    // Before: the same watch is accepted and delivers the next change.
    const w = await c.watch(`/api/v1/nodes?watch=1&resourceVersion=${oldNodeRV}&allowWatchBookmarks=true`);
    expect(w.status).toBe(200);
    await c.createNode("watched");
    const ev = await w.nextMatching((e) => e.object?.metadata?.name === "watched", 30_000);
    w.close();
    expect(ev.type).toBe("ADDED");

    const rev = await c.compactEtcd();
    expect(rev).toBeGreaterThan(Number(oldNodeRV));
    await c.createNode("after-compaction");

    const gone = await rawWatch(c, `/api/v1/nodes?watch=1&resourceVersion=${oldNodeRV}&allowWatchBookmarks=true`);
    expect(isGone(gone), JSON.stringify(gone)).toBe(true);
    if (gone.status === 200) expect(gone.first.object).toMatchObject({ kind: "Status", status: "Failure", code: 410, reason: expect.stringMatching(/^(Expired|Gone)$/) });
    const goneCn = await rawWatch(c, `/apis/cilium.io/v2/ciliumnodes?watch=1&fieldSelector=metadata.name%3Dfirst&resourceVersion=${oldCnRV}`);
    expect(isGone(goneCn), JSON.stringify(goneCn)).toBe(true);

    // A fresh list gives a resourceVersion that watches again.
    const relist = await c.api("GET", "/api/v1/nodes");
    const again = await c.watch(`/api/v1/nodes?watch=1&resourceVersion=${relist.json.metadata.resourceVersion}`);
    expect(again.status).toBe(200);
    await c.deleteNode("watched");
    const del = await again.nextMatching((e) => e.type === "DELETED" || e.type === "ERROR", 30_000);
    again.close();
    expect(del.type).toBe("DELETED");
    expect(del.object.metadata.name).toBe("watched");
  }, 180_000);
});

suite("the same control plane without kube-apiserver's watch cache (--watch-cache=false)", () => {
  let c: Cluster;

  beforeAll(async () => {
    c = await startCluster({ watchCache: false });
  }, 300_000);

  afterAll(async () => {
    await c?.stop();
  }, 60_000);

  it("compactEtcd() alone, with no restart, makes a watch from an older resourceVersion get 410 from etcd", async () => {
    await c.createNode("a");
    const old = (await c.api("GET", "/api/v1/nodes")).json.metadata.resourceVersion;
    const pid = c.apiserver.child?.pid;
    await c.compactEtcd();
    expect(c.apiserver.child?.pid).toBe(pid); // kube-apiserver was not restarted
    const gone = await rawWatch(c, `/api/v1/nodes?watch=1&resourceVersion=${old}`);
    expect(isGone(gone), JSON.stringify(gone)).toBe(true);
    // A list at that exact resourceVersion is refused the same way.
    const exact = await c.api("GET", `/api/v1/nodes?resourceVersion=${old}&resourceVersionMatch=Exact`);
    expect(exact.status).toBe(410);
  }, 120_000);
});
