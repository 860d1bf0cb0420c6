// End to end under the real bridge plugin, in real network namespaces.
import { spawnSync } from "node:child_process";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { type Pod, World, addr, announceSkip, e2eBlocker } from "./harness";

const blocker = e2eBlocker();
if (blocker) announceSkip(blocker);
const suite = blocker ? describe.skip : describe;

let w: World;
afterEach(() => w?.cleanup());

suite("bridge, dual stack from a CiliumNode", () => {
  beforeAll(() => {
    expect(blocker).toBeNull();
  });

  it("three pods get addresses from the node's CIDRs, reach each other and the gateway, pass CHECK, and DEL leaves nothing", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.2.0/24", "fd00::200/120"], { health: { ipv4: "10.0.2.2" } }));
    // conf/10-podnet.conflist as a user copies it (ipMasq included).
    const conf = w.fromConflist("10-podnet.conflist");
    const pods: Pod[] = [w.newPod("web"), w.newPod("api"), w.newPod("db")];
    for (const p of pods) await w.add(p, conf);

    for (const p of pods) {
      // The runtime sees the bridge's full result: our addresses on the pod's interface.
      expect(p.result.cniVersion).toBe("1.0.0");
      const [v4, v6] = [addr(p.result, 0), addr(p.result, 1)];
      expect(v4).toMatch(/^10\.0\.2\.\d+$/);
      expect(v6).toMatch(/^fd00::2[0-9a-f]{2}$/);
      expect(v4).not.toBe("10.0.2.2"); // the node's health IP is never handed out
      expect(p.result.ips[0].gateway).toBe("10.0.2.1");
      expect(p.result.ips[1].gateway).toBe("fd00::201");
      expect(w.podAddresses(p).sort()).toEqual([v4, v6].sort());
    }
    const all = pods.flatMap((p) => [addr(p.result, 0), addr(p.result, 1)]);
    expect(new Set(all).size).toBe(6);

    for (const from of pods) {
      expect(w.ping(from, "10.0.2.1")).toBe(true);
      expect(w.ping(from, "fd00::201")).toBe(true);
    }
    w.expectMesh(pods);
    await w.expectChecksPass(pods, conf);
    const st = w.status();
    expect(st.ranges.map((r: any) => r.allocated)).toEqual([3, 3]);
    expect(
      st.ranges[0].addresses
        .filter((a: any) => a.owner)
        .map((a: any) => a.owner.pod)
        .sort(),
    ).toEqual(["api", "db", "web"]);

    for (const p of pods) {
      const d = await w.exec("DEL", p, conf);
      expect(d.code, d.stdout + d.stderr).toBe(0);
    }
    expect(w.status().ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
    expect(w.bridgePorts()).toEqual([]);
  });

  it("CHECK fails through bridge when our allocation is gone", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.3.0/24"]));
    const conf = w.bridgeConf();
    const p = w.newPod("lost");
    await w.add(p, conf);
    // A runtime's GC that believed the pod dead (sent to our plugin directly: Debian's bridge speaks CNI 1.0.0, before GC).
    const r = spawnSync(`${w.cniPath}/podcidr-ipam`, [], {
      env: { PATH: process.env.PATH, CNI_COMMAND: "GC", CNI_PATH: w.cniPath },
      input: JSON.stringify({ ...conf, cniVersion: "1.1.0", "cni.dev/valid-attachments": [] }),
      encoding: "utf8",
    });
    expect(r.status, r.stdout).toBe(0);
    const c = await w.exec("CHECK", p, conf);
    expect(c.code).not.toBe(0);
    expect(c.json.code).toBe(104);
    expect(c.json.msg).toContain("holds no address");
  });
});
