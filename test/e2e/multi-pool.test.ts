// Multi-pool end to end under the real bridge plugin, in real network namespaces: the pod
// annotations a runtime passes in runtimeConfig (the conflist declares the capability)
// reach the plugin through bridge, pods of two pools get their pool's addresses on their
// interfaces, reach each other across pools, pass the IPAM's CHECK, and DEL leaves nothing.
//
// The expandable bridge config (conf/30-podnet-expandable.conflist: no gateway, on-link
// routes): bridge's isGateway puts one IPv4 gateway on the bridge and refuses a second
// subnet's ("already has an IP address different from ..."), so pools of one bridge are
// served as podCIDRs appended to a node are.
import { writeFileSync } from "node:fs";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Pod, World, addr, announceSkip, e2eBlocker, ipamExec } from "./harness";

const blocker = e2eBlocker();
if (blocker) announceSkip(blocker);
const suite = blocker ? describe.skip : describe;

let w: World;
afterEach(() => w?.cleanup());

const CAP = "io.kubernetes.cri.pod-annotations";

suite("bridge, multi-pool from a CiliumNode", () => {
  beforeAll(() => {
    expect(blocker).toBeNull();
  });

  it("a pod annotated ipam.cilium.io/ip-pool gets that pool's addresses through bridge; others get default; all reach each other", async () => {
    w = new World();
    w.writeNode({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNode",
      metadata: { name: "e2e-node" },
      spec: {
        ipam: {
          pools: {
            allocated: [
              { pool: "default", cidrs: ["10.10.0.0/24", "fd00:10::/120"] },
              { pool: "blue", cidrs: ["10.20.0.0/24", "fd00:20::/120"] },
            ],
          },
        },
      },
    });
    writeFileSync(`${w.nodeFile}.namespaces.json`, JSON.stringify({ namespaces: {} }));
    const base = w.fromConflist("30-podnet-expandable.conflist");
    const conf = { ...base, ipam: { ...(base.ipam as object), routes: [{ dst: "10.0.0.0/8" }, { dst: "fd00::/8" }] } };
    // What libcni makes of the declared capability: the sandbox's annotations in runtimeConfig.
    expect(base.capabilities).toEqual({ [CAP]: true });
    const withAnnotations = (a: Record<string, string>) => ({
      ...conf,
      runtimeConfig: { [CAP]: { "kubernetes.io/config.seen": "x", ...a } },
    });
    const plain = w.newPod("plain");
    const blue = w.newPod("blue");
    const blue6 = w.newPod("blue6");
    await w.add(plain, withAnnotations({}));
    await w.add(blue, withAnnotations({ "ipam.cilium.io/ip-pool": "blue" }));
    await w.add(blue6, withAnnotations({ "ipam.cilium.io/ipv6-pool": "blue" }));

    // No gateway reserved (gateway: false): each CIDR's first address after the network goes to a pod.
    expect([addr(plain.result, 0), addr(plain.result, 1)]).toEqual(["10.10.0.1", "fd00:10::1"]);
    expect([addr(blue.result, 0), addr(blue.result, 1)]).toEqual(["10.20.0.1", "fd00:20::1"]);
    // Per family: IPv4 from default, IPv6 from blue.
    expect([addr(blue6.result, 0), addr(blue6.result, 1)]).toEqual(["10.10.0.2", "fd00:20::2"]);
    const pods: Pod[] = [plain, blue, blue6];
    for (const p of pods) expect(w.podAddresses(p).sort()).toEqual([addr(p.result, 0), addr(p.result, 1)].sort());
    // Across pools, on the bridge's one segment (the routes are on-link).
    w.expectMesh(pods);
    // CHECK as bridge delegates it to its IPAM plugin, with each pod's result. (Not bridge's own
    // CHECK: without isGateway the bridge takes the lowest MAC of its ports, so a later pod's
    // veth can change it, and bridge's CHECK then fails on "Mac doesn't match" by chance.)
    for (const p of pods) {
      const c = await ipamExec(w, "CHECK", { ...conf, prevResult: p.result }, { containerID: p.containerID });
      expect(c.code, c.stdout + c.stderr).toBe(0);
    }
    const st = w.status();
    expect(st.ranges.map((r: { pool: string; cidr: string; allocated: number }) => [r.pool, r.cidr, r.allocated])).toEqual([
      ["default", "10.10.0.0/24", 2],
      ["default", "fd00:10::/120", 1],
      ["blue", "10.20.0.0/24", 1],
      ["blue", "fd00:20::/120", 2],
    ]);
    for (const p of pods) {
      const d = await w.exec("DEL", p, conf);
      expect(d.code, d.stdout + d.stderr).toBe(0);
    }
    expect(w.status().ranges.map((r: { allocated: number }) => r.allocated)).toEqual([0, 0, 0, 0]);
    expect(w.bridgePorts()).toEqual([]);
  });
});
