// `podcidr-ipam agent --namespace-pools` against the real control plane: the namespaces'
// pool annotations reach the map beside the node file (only namespaces with a pool key, in
// order), an annotation added or removed reaches it, /readyz waits for the first list, and
// the plugin, reading the multi-pool CiliumNode the same agent syncs, gives a pod of an
// annotated namespace an address of that namespace's pool.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { run } from "../helpers/plugin";
import { type Agent, inCidr, nodeConflist, startAgent, waitForFileEqualsObject } from "./agent-helpers";
import { type Cluster, waitFor } from "./harness";
import { clusterPerFile } from "./per-file";

let c: Cluster;
let dir: string;
const { suite, agents } = clusterPerFile("podcidr-agent-multipool-", (cl, d) => {
  c = cl;
  dir = d;
});

const NS = "/api/v1/namespaces";

async function namespace(name: string, annotations: Record<string, string>): Promise<void> {
  await c.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name, annotations } });
}

async function annotate(name: string, annotations: Record<string, string | null>): Promise<void> {
  const r = await c.api("PATCH", `${NS}/${name}`, { body: { metadata: { annotations } }, contentType: "application/merge-patch+json" });
  if (r.status !== 200) throw new Error(`PATCH namespace ${name}: ${r.status} ${r.text}`);
}

function mapOf(a: Agent & { nodeFile: string }): Record<string, Record<string, string>> | null {
  try {
    return JSON.parse(readFileSync(`${a.nodeFile}.namespaces.json`, "utf8")).namespaces;
  } catch {
    return null;
  }
}

/** A CiliumNode with `ipam` and an agent syncing it (--source ciliumnode, `extra` flags), once it has written the node file. */
async function ciliumNodeAgent(name: string, ipam: Record<string, unknown>, extra: string[] = [], dataDir?: string) {
  await c.apply({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name }, spec: { ipam } });
  const nodeFile = join(dir, name, "node.json");
  const a = Object.assign(await startAgent(c, { nodeName: name, nodeFile, source: "ciliumnode", extra, ...(dataDir ? { dataDir } : {}) }), {
    nodeFile,
  });
  agents.push(a);
  await waitForFileEqualsObject(c, "ciliumnode", name, nodeFile, { agent: a });
  return a;
}

async function add(conf: Record<string, unknown>, id: string, ns: string) {
  return run({
    command: "ADD",
    containerID: id,
    netns: `/var/run/netns/${id}`,
    args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${id}`,
    stdin: conf,
  });
}

suite("agent --namespace-pools (multi-pool) against the real API server", () => {
  it("keeps the namespaces' pool map, and the plugin puts a namespace's pods in its pool", async () => {
    await namespace("team-a", { "ipam.cilium.io/ip-pool": "blue", "owner.example/team": "a" });
    await namespace("team-b", { "owner.example/team": "b" });
    await namespace("strict", { "ipam.cilium.io/require-pool-match": "true" });
    const pools = {
      allocated: [
        { pool: "default", cidrs: ["10.61.0.0/24"] },
        { pool: "blue", cidrs: ["10.62.0.0/24"] },
      ],
    };
    const a = await ciliumNodeAgent("mp", { pools }, ["--namespace-pools"]);
    const nodeFile = a.nodeFile;
    // Only namespaces with a pool key, and only those keys.
    await waitFor(async () => (mapOf(a)?.strict ? true : undefined), "the namespaces' map", 30_000, 50);
    expect(mapOf(a)).toEqual({ strict: { "ipam.cilium.io/require-pool-match": "true" }, "team-a": { "ipam.cilium.io/ip-pool": "blue" } });
    expect((await a.readyz()).status).toBe(200);

    const conf = nodeConflist(join(dir, "mp", "cni"), { nodeFile, dataDir: join(dir, "mp", "data"), nodeName: "mp" });
    const ip = (r: Awaited<ReturnType<typeof add>>) => {
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return (r.json.ips[0].address as string).split("/")[0]!;
    };
    expect(inCidr(ip(await add(conf, "a-1", "team-a")), "10.62.0.0/24")).toBe(true);
    expect(inCidr(ip(await add(conf, "b-1", "team-b")), "10.61.0.0/24")).toBe(true);
    const strict = await add(conf, "s-1", "strict");
    expect(strict.json).toMatchObject({ code: 7, msg: expect.stringContaining("namespace strict requires a match") });

    // An annotation added, and one removed, reach the map: the next pods follow it.
    await annotate("team-b", { "ipam.cilium.io/ip-pool": "blue" });
    await annotate("team-a", { "ipam.cilium.io/ip-pool": null });
    await waitFor(async () => (mapOf(a)?.["team-b"] && !mapOf(a)?.["team-a"] ? true : undefined), "the map after the changes", 30_000, 50);
    expect(inCidr(ip(await add(conf, "b-2", "team-b")), "10.62.0.0/24")).toBe(true);
    expect(inCidr(ip(await add(conf, "a-2", "team-a")), "10.61.0.0/24")).toBe(true);
    expect(await a.metric("podcidr_ipam_namespace_map_writes_total")).toBeGreaterThanOrEqual(2);
    expect((await a.stop()).code).toBe(0);
  });

  it("without --namespace-pools writes no map, and a pod whose namespace could pick a pool gets 11, not default", async () => {
    const a = await ciliumNodeAgent("mp2", { pools: { allocated: [{ pool: "default", cidrs: ["10.63.0.0/24"] }] } });
    const nodeFile = a.nodeFile;
    expect(mapOf(a)).toBeNull();
    const conf = nodeConflist(join(dir, "mp2", "cni"), { nodeFile, dataDir: join(dir, "mp2", "data"), nodeName: "mp2" });
    const r = await add(conf, "x-1", "team-b");
    expect(r.json).toMatchObject({ code: 11, msg: expect.stringContaining("namespaces' pool map") });
    expect((await a.stop()).code).toBe(0);
  });
});

suite("agent --request-pools (multi-pool) against the real API server, the test playing Cilium's operator", () => {
  it("asks for what each pool needs by Cilium's rule; a refused pod's pool is requested, delivered, and then served", async () => {
    const CNP = "/apis/cilium.io/v2/ciliumnodes/rq";
    const a = await ciliumNodeAgent(
      "rq",
      { pools: { allocated: [{ pool: "default", cidrs: ["10.71.0.0/26"] }] } },
      ["--namespace-pools", "--request-pools", "--pre-allocate", "default=8", "--pool-request-interval", "1"],
      join(dir, "rq", "data"),
    );
    const nodeFile = a.nodeFile;
    const requested = async () => (await c.api("GET", CNP)).json?.spec?.ipam?.pools?.requested;
    // Nothing in use: the pre-allocation alone, 8.
    await waitFor(
      async () => (JSON.stringify(await requested()) === '[{"needed":{"ipv4-addrs":8},"pool":"default"}]' ? true : undefined),
      "requested 8",
      30_000,
      100,
    );
    const conf = nodeConflist(join(dir, "rq", "cni"), { nodeFile, dataDir: join(dir, "rq", "data"), nodeName: "rq" });
    const callsLog = join(dir, "rq", "calls.log");
    const addIn = (id: string, ns: string) =>
      run({
        command: "ADD",
        containerID: id,
        netns: `/var/run/netns/${id}`,
        args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${id}`,
        stdin: conf,
        env: { PODCIDR_IPAM_CALLS_LOG: callsLog },
      });
    // 9 pods in default: inUse 9, so roundUp(9 + 8, 8) = 24. Patches stay within the interval's rate.
    const patches0 = await a.metric("podcidr_ipam_pool_request_patches_total");
    const t0 = Date.now();
    for (let i = 0; i < 9; i++) expect((await addIn(`d-${i}`, "default")).code).toBe(0);
    await waitFor(async () => ((await requested())?.[0]?.needed?.["ipv4-addrs"] === 24 ? true : undefined), "requested 24", 30_000, 100);
    const elapsedS = (Date.now() - t0) / 1000;
    const patches = (await a.metric("podcidr_ipam_pool_request_patches_total")) - patches0;
    expect(patches).toBeGreaterThanOrEqual(1);
    expect(patches).toBeLessThanOrEqual(Math.ceil(elapsedS / 1) + 1);

    // A namespace that picks pool blue, which the node has no CIDR of: the ADD is refused (11) and blue is requested.
    await namespace("team-blue", { "ipam.cilium.io/ip-pool": "blue" });
    await waitFor(async () => (mapOf(a)?.["team-blue"] ? true : undefined), "team-blue in the namespaces' map", 30_000, 50);
    const refused = await addIn("b-1", "team-blue");
    expect(refused.json).toMatchObject({ code: 11, msg: expect.stringContaining('pool "blue"') });
    await waitFor(async () => ((await requested())?.find((r: any) => r.pool === "blue") ? true : undefined), "blue requested", 30_000, 100);
    expect((await requested()).find((r: any) => r.pool === "blue")).toEqual({ pool: "blue", needed: { "ipv4-addrs": 1 } });
    // The operator delivers a CIDR of blue; the runtime's retry is served from it.
    const cur = (await c.api("GET", CNP)).json;
    cur.spec.ipam.pools.allocated.push({ pool: "blue", cidrs: ["10.72.0.0/28"] });
    expect((await c.api("PUT", CNP, { body: cur })).status).toBe(200);
    await waitFor(
      async () => (readFileSync(nodeFile, "utf8").includes("10.72.0.0/28") ? true : undefined),
      "blue in the node file",
      30_000,
      50,
    );
    const served = await addIn("b-1", "team-blue");
    expect(served.code, served.stdout).toBe(0);
    expect(inCidr(served.json.ips[0].address.split("/")[0], "10.72.0.0/28")).toBe(true);
    // Served, it is in use rather than pending: blue still needs 1 (preAllocate 0).
    await waitFor(
      async () => ((await requested())?.find((r: any) => r.pool === "blue")?.needed?.["ipv4-addrs"] === 1 ? true : undefined),
      "blue needs 1",
      30_000,
      100,
    );
    expect((await a.stop()).code).toBe(0);
  });

  it("on a cluster-pool CiliumNode requests nothing (a request would make the node mix modes), and says so", async () => {
    const a = await ciliumNodeAgent("cp", { podCIDRs: ["10.73.0.0/24"] }, ["--request-pools", "--pool-request-interval", "0.2"]);
    await a.waitLog(/--request-pools: the CiliumNode is read as cluster-pool, not multi-pool; nothing is requested/, "the warning", 30_000);
    const cn = (await c.api("GET", "/apis/cilium.io/v2/ciliumnodes/cp")).json;
    expect(cn.spec.ipam).toEqual({ podCIDRs: ["10.73.0.0/24"] });
    expect(await a.metric("podcidr_ipam_pool_request_patches_total")).toBe(0);
    expect((await a.readyz()).status).toBe(200);
    expect((await a.stop()).code).toBe(0);
  });
});
