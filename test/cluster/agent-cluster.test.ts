import { join } from "node:path";
import { expect, it } from "vitest";
import {
  type Agent,
  addOk,
  fileCIDRs,
  inCidr,
  ipam,
  nodeConflist,
  pool,
  startAgent,
  waitForFileCIDRs,
  waitForFileEqualsObject,
} from "./agent-helpers";
import { CLUSTER_CIDRS, type Cluster, waitFor } from "./harness";
import { clusterPerFile } from "./per-file";

let c: Cluster;
let dir: string;
const { suite, agents } = clusterPerFile("podcidr-agent-cluster-", (cl, d) => {
  c = cl;
  dir = d;
});

const say = (s: string) => process.stdout.write(`[agent-cluster] ${s}\n`);

/** One simulated node: its agent, node file, store and the plugin config from its conflist. */
interface SimNode {
  name: string;
  cidrs: string[];
  nodeFile: string;
  agent: Agent;
  conf: Record<string, unknown>;
  /** Pod (container ID) -> its addresses. */
  pods: Map<string, string[]>;
}

async function simNode(name: string, cidrs: string[]): Promise<SimNode> {
  const home = join(dir, name);
  const nodeFile = join(home, "node.json");
  const dataDir = join(home, "data");
  const agent = await startAgent(c, { nodeName: name, nodeFile, dataDir, source: "node", metrics: false });
  agents.push(agent);
  await waitForFileCIDRs(nodeFile, cidrs, `agent ${name}'s first sync`, 60_000, agent);
  return { name, cidrs, nodeFile, agent, conf: nodeConflist(join(home, "cni"), { nodeFile, dataDir, nodeName: name }), pods: new Map() };
}

/** `perNode` ADDs on each node, a few at a time across the cluster; each address checked to be its node's. */
async function addPods(nodes: SimNode[], perNode: number): Promise<void> {
  const jobs = nodes.flatMap((n) => Array.from({ length: perNode }, (_, i) => ({ n, id: `${n.name}-pod-${n.pods.size + i}` })));
  await pool(jobs, 4, async ({ n, id }) => {
    const ips = await addOk(n.conf, id);
    expect(ips.length, `${id}: one address per family`).toBe(2);
    for (const ip of ips)
      expect(
        n.cidrs.some((cidr) => inCidr(ip, cidr)),
        `${id} ${ip} in ${n.cidrs}`,
      ).toBe(true);
    n.pods.set(id, ips);
  });
}

/** Addresses held by more than one live pod. */
function duplicates(nodes: SimNode[]): string[] {
  const owner = new Map<string, string>();
  const dups: string[] = [];
  for (const n of nodes)
    for (const [pod, ips] of n.pods)
      for (const ip of ips) {
        const other = owner.get(ip);
        if (other) dups.push(`${ip}: ${other} and ${pod}`);
        owner.set(ip, pod);
      }
  return dups;
}

suite("agent: v1 Nodes and kube-controller-manager's podCIDRs", () => {
  it("kube-controller-manager assigns a Node its podCIDRs; the agent syncs them and pod ADDs get addresses from them", async () => {
    await c.createNode("kcm-1");
    const cidrs = await c.waitForPodCIDRs("kcm-1");
    expect(cidrs).toHaveLength(2);
    expect(inCidr(cidrs[0]!.split("/")[0]!, CLUSTER_CIDRS[0])).toBe(true);
    expect(inCidr(cidrs[1]!.split("/")[0]!, CLUSTER_CIDRS[1])).toBe(true);
    const nodeFile = join(dir, "kcm-1", "node.json");
    const a = await startAgent(c, { nodeName: "kcm-1", nodeFile, source: "auto" });
    agents.push(a);
    await waitForFileEqualsObject(c, "node", "kcm-1", nodeFile, { agent: a });
    expect(a.log()).toMatch(/serves no CiliumNode kcm-1; using the v1 Node/);
    const conf = nodeConflist(join(dir, "kcm-1", "cni"), { nodeFile, dataDir: join(dir, "kcm-1", "data"), nodeName: "kcm-1" });
    const got: string[] = [];
    for (let i = 0; i < 3; i++) {
      const ips = await addOk(conf, `kcm-pod-${i}`);
      expect(inCidr(ips[0]!, cidrs[0]!), `${ips[0]} in ${cidrs[0]}`).toBe(true);
      expect(inCidr(ips[1]!, cidrs[1]!), `${ips[1]} in ${cidrs[1]}`).toBe(true);
      got.push(...ips);
    }
    expect(new Set(got).size).toBe(6);
    const del = await ipam("DEL", conf, "kcm-pod-0");
    expect(del.code, del.stdout).toBe(0);
    await waitFor(async () => (await a.metric("podcidr_ipam_ready")) === 1, "the ready gauge");
    expect(await a.stop(), a.log()).toEqual({ code: 0, signal: null });
  });

  it("50 nodes, one agent each, 20 ADDs each: no address twice; 10 drained and deleted, 10 new on their CIDRs: still none", async () => {
    const t0 = performance.now();
    const names = Array.from({ length: 50 }, (_, i) => `sim-${String(i).padStart(2, "0")}`);
    await pool(names, 8, (n) => c.createNode(n));
    const cidrs = await pool(names, 8, (n) => c.waitForPodCIDRs(n, 60_000));
    const v4 = cidrs.map((x) => x[0]!);
    expect(new Set(v4).size, "kube-controller-manager gave each node its own /24").toBe(50);
    for (const x of v4) expect(x).toMatch(/^10\.244\.\d+\.0\/24$/);

    // One agent per node, started ten at a time (the machine has two cores), each until its file is synced.
    const nodes: SimNode[] = [];
    for (let i = 0; i < names.length; i += 10) {
      nodes.push(...(await Promise.all(names.slice(i, i + 10).map((n, j) => simNode(n, cidrs[i + j]!)))));
    }
    const synced = performance.now();
    say(`50 Nodes created and 50 agents synced in ${((synced - t0) / 1000).toFixed(1)} s`);
    await addPods(nodes, 20);
    const added = performance.now();
    const pods = nodes.reduce((s, n) => s + n.pods.size, 0);
    expect(pods).toBe(1000);
    expect(duplicates(nodes)).toEqual([]);
    say(`1000 ADDs (2000 addresses) in ${((added - synced) / 1000).toFixed(1)} s: 0 duplicates`);

    // Drain 10 nodes (every fifth: DEL of each pod, as the kubelet does before the node goes), then delete them.
    const gone = nodes.filter((_, i) => i % 5 === 2);
    await pool(
      gone.flatMap((n) => [...n.pods.keys()].map((id) => ({ n, id }))),
      4,
      async ({ n, id }) => {
        const r = await ipam("DEL", n.conf, id);
        expect(r.code, `DEL ${id}: ${r.stdout}${r.stderr}`).toBe(0);
        n.pods.delete(id);
      },
    );
    await pool(gone, 5, (n) => c.deleteNode(n.name));
    for (const n of gone) {
      // The agent of a deleted node keeps its file and stops being ready; then its DaemonSet pod goes.
      await waitFor(async () => (await n.agent.readyz()).status === 503, `agent ${n.name} not ready once its Node is gone`);
      expect(fileCIDRs(n.nodeFile)).toEqual(n.cidrs);
      expect(await n.agent.stop(), n.agent.log()).toEqual({ code: 0, signal: null });
    }
    const live = nodes.filter((n) => !gone.includes(n));
    // kube-controller-manager hands out next-fit; after a restart it starts over at the lowest free block: the freed ones.
    await c.restartControllerManager();
    const fresh = Array.from({ length: 10 }, (_, i) => `new-${String(i).padStart(2, "0")}`);
    await pool(fresh, 5, (n) => c.createNode(n));
    const freshCidrs = await pool(fresh, 5, (n) => c.waitForPodCIDRs(n, 60_000));
    const freed = gone.map((n) => n.cidrs[0]!).sort();
    expect(freshCidrs.map((x) => x[0]!).sort(), "the new nodes got the deleted nodes' CIDRs").toEqual(freed);
    const newNodes = await Promise.all(fresh.map((n, i) => simNode(n, freshCidrs[i]!)));
    await addPods(newNodes, 20);
    const all = [...live, ...newNodes];
    expect(all.reduce((s, n) => s + n.pods.size, 0)).toBe(1000);
    expect(duplicates(all)).toEqual([]);
    say(
      `10 nodes drained (200 DELs) and deleted, 10 new ones on the same /24s with their own agents, 200 more ADDs: ` +
        `0 duplicates among 1000 live pods; whole test ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    await Promise.all(all.map(async (n) => expect(await n.agent.stop(), n.agent.log()).toEqual({ code: 0, signal: null })));
  }, 900_000);
});
