// End to end: kube-controller-manager assigns a Node its podCIDRs, `podcidr-ipam agent`
// writes the node file, and the real bridge plugin (Debian's containernetworking-plugins)
// with podcidr-ipam as its IPAM gives two pods in network namespaces addresses from those
// CIDRs; they reach each other on both families. Needs both the cluster binaries and what
// the e2e suite needs (root, iproute2, ping, /usr/lib/cni).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Pod, World, addr, announceSkip, e2eBlocker } from "../e2e/harness";
import { type Agent, inCidr, startAgent, waitForFileEqualsObject } from "./agent-helpers";
import { type Cluster, announceClusterSkip, clusterBlocker, startCluster } from "./harness";

const clusterBlocked = clusterBlocker();
if (clusterBlocked) announceClusterSkip(clusterBlocked);
const e2eBlocked = e2eBlocker();
if (e2eBlocked) announceSkip(e2eBlocked);
const suite = clusterBlocked || e2eBlocked ? describe.skip : describe;

let c: Cluster;
let w: World | undefined;
let a: Agent | undefined;
beforeAll(async () => {
  if (clusterBlocked || e2eBlocked) return;
  c = await startCluster();
}, 300_000);
afterAll(async () => {
  await a?.stop(5000);
  w?.cleanup();
  await c?.stop();
});

suite("agent + bridge end to end", () => {
  it("two pods get addresses from the CIDRs kube-controller-manager assigned, and ping each other", async () => {
    await c.createNode("e2e-node");
    const cidrs = await c.waitForPodCIDRs("e2e-node");
    w = new World();
    a = await startAgent(c, { nodeName: "e2e-node", nodeFile: w.nodeFile, dataDir: w.dataDir, source: "auto" });
    await waitForFileEqualsObject(c, "node", "e2e-node", w.nodeFile, { agent: a });

    // conf/10-podnet.conflist as a user installs it, on this world's bridge, node file and store.
    const conf = w.fromConflist("10-podnet.conflist");
    (conf.ipam as Record<string, unknown>).nodeName = "e2e-node";
    const pods: Pod[] = [w.newPod("alpha"), w.newPod("beta")];
    for (const p of pods) await w.add(p, conf);
    const [v4net, v6net] = cidrs as [string, string];
    for (const p of pods) {
      const [v4, v6] = [addr(p.result, 0), addr(p.result, 1)];
      expect(inCidr(v4, v4net), `${p.name} ${v4} in ${v4net}`).toBe(true);
      expect(inCidr(v6, v6net), `${p.name} ${v6} in ${v6net}`).toBe(true);
      expect(w.podAddresses(p).sort()).toEqual([v4, v6].sort());
      // The first address of each podCIDR is the gateway, on the bridge.
      expect(p.result.ips[0].gateway).toBe(v4net.replace(/0\/24$/, "1"));
      expect(w.ping(p, p.result.ips[0].gateway)).toBe(true);
    }
    w.expectMesh(pods);
    process.stdout.write(
      `[agent-e2e] ${pods.map((p) => `${p.name} ${addr(p.result, 0)} ${addr(p.result, 1)}`).join(", ")} from ${cidrs.join(" ")}: ping both ways on both families\n`,
    );
    await w.expectChecksPass(pods, conf);
    for (const p of pods) {
      const d = await w.exec("DEL", p, conf);
      expect(d.code, d.stdout + d.stderr).toBe(0);
    }
    expect(w.bridgePorts()).toEqual([]);
    expect((await a.readyz()).status).toBe(200);
    expect(await a.stop(), a.log()).toEqual({ code: 0, signal: null });
  }, 120_000);
});
