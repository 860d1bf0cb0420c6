// End to end under the real ptp plugin, with the config at cniVersion 0.4.0:
// our result in the old format (version on each IP) must satisfy ptp.
import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { type Pod, World, addr, announceSkip, e2eBlocker } from "./harness";

const blocker = e2eBlocker();
if (blocker) announceSkip(blocker);
const suite = blocker ? describe.skip : describe;

let w: World;
afterEach(() => w?.cleanup());

/** The host end of a pod's eth0: ptp's veth peer, by interface index (`eth0@if<N>` inside the pod). */
function hostPeerIndex(p: Pod): number {
  const out = spawnSync("ip", ["-n", p.netns, "-o", "link", "show", "dev", "eth0"], { encoding: "utf8" }).stdout;
  const m = /eth0@if(\d+)/.exec(out);
  if (!m) throw new Error(`no veth peer for ${p.name}: ${out}`);
  return Number(m[1]);
}

/** Interface indexes present in the host namespace. Other e2e files run beside this one, so compare ours only. */
function hostIndexes(): Set<number> {
  const out = spawnSync("ip", ["-o", "link", "show"], { encoding: "utf8" }).stdout;
  return new Set([...out.matchAll(/^(\d+):/gm)].map((m) => Number(m[1])));
}

suite("ptp at cniVersion 0.4.0", () => {
  it("three dual-stack pods reach each other, pass CHECK with a 0.4.0 prevResult, and DEL removes everything", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.5.0/24", "fd00::500/120"]));
    // conf/20-podnet-ptp.conflist, with the runtime choosing version 0.4.0.
    const conf = w.fromConflist("20-podnet-ptp.conflist", "0.4.0");
    const pods: Pod[] = [w.newPod("p1"), w.newPod("p2"), w.newPod("p3")];
    for (const p of pods) await w.add(p, conf);
    for (const p of pods) {
      expect(p.result.cniVersion).toBe("0.4.0");
      // ptp passes our 0.4.0 result through: each IP still carries its version.
      expect(p.result.ips.map((i: any) => i.version)).toEqual(["4", "6"]);
      expect(addr(p.result, 0)).toMatch(/^10\.0\.5\.\d+$/);
      expect(addr(p.result, 1)).toMatch(/^fd00::5[0-9a-f]{2}$/);
      expect(w.podAddresses(p).sort()).toEqual([addr(p.result, 0), addr(p.result, 1)].sort());
    }
    w.expectMesh(pods);
    await w.expectChecksPass(pods, conf);
    expect(w.status().ranges.map((r: any) => r.allocated)).toEqual([3, 3]);
    const peers = pods.map(hostPeerIndex);
    expect(peers.every((i) => hostIndexes().has(i))).toBe(true);
    for (const p of pods) {
      const d = await w.exec("DEL", p, conf);
      expect(d.code, d.stdout + d.stderr).toBe(0);
    }
    expect(w.status().ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
    // ptp's DEL removes each pod's host-side veth.
    const left = hostIndexes();
    expect(peers.filter((i) => left.has(i))).toEqual([]);
  });
});
