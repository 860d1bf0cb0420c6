// End to end under the real bridge plugin: host-scope /64, DEL after the netns is
// gone, errors passing through, pool expansion while pods run, a parallel burst.
import { existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode, v1Node } from "../helpers/node";
import { type Pod, World, addr, announceSkip, e2eBlocker } from "./harness";

const blocker = e2eBlocker();
if (blocker) announceSkip(blocker);
const suite = blocker ? describe.skip : describe;

let w: World;
afterEach(() => w?.cleanup());

function hasEth0(p: Pod): boolean {
  return spawnSync("ip", ["-n", p.netns, "link", "show", "eth0"]).status === 0;
}

suite("host-scope cluster (v1 Node with an IPv6 /64)", () => {
  it("pods get addresses from spec.podCIDRs and reach each other over both families", async () => {
    w = new World();
    w.writeNode(v1Node({ podCIDR: "10.244.2.0/24", podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64"] }));
    const conf = w.bridgeConf();
    const a = w.newPod("a");
    const b = w.newPod("b");
    await w.add(a, conf);
    await w.add(b, conf);
    expect(a.result.ips.map((i: any) => i.address)).toEqual(["10.244.2.2/24", "fd00:10:244:2::2/64"]);
    expect(b.result.ips.map((i: any) => i.address)).toEqual(["10.244.2.3/24", "fd00:10:244:2::3/64"]);
    expect(w.ping(a, "10.244.2.3")).toBe(true);
    expect(w.ping(a, "fd00:10:244:2::3")).toBe(true);
    expect(w.ping(b, "fd00:10:244:2::2")).toBe(true);
    for (const p of [a, b]) expect((await w.exec("DEL", p, conf)).code).toBe(0);
    expect(w.status().ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
  });
});

suite("DEL when the namespace is gone, and DEL twice", () => {
  it("both succeed and the address is released", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.6.0/24", "fd00::600/120"]));
    const conf = w.bridgeConf();
    const gone = w.newPod("gone");
    const twice = w.newPod("twice");
    await w.add(gone, conf);
    await w.add(twice, conf);
    w.deleteNetns(gone);
    const d1 = await w.exec("DEL", gone, conf);
    expect(d1.code, d1.stdout + d1.stderr).toBe(0);
    const d2 = await w.exec("DEL", twice, conf);
    const d3 = await w.exec("DEL", twice, conf);
    expect([d2.code, d3.code]).toEqual([0, 0]);
    expect(w.status().ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
    expect(w.bridgePorts()).toEqual([]);
  });
});

suite("our errors reach the runtime through bridge", () => {
  it("node file missing: bridge's ADD fails with code 11 and our message; nothing allocated; the runtime's DEL cleans up", async () => {
    w = new World();
    const conf = w.bridgeConf();
    const p = w.newPod("early");
    const r = await w.exec("ADD", p, conf);
    expect(r.code).not.toBe(0);
    expect(r.json.code).toBe(11);
    expect(r.json.msg).toBe(`node file ${w.nodeFile} does not exist`);
    expect(existsSync(w.dataDir)).toBe(false);
    const d = await w.exec("DEL", p, conf);
    expect(d.code, d.stdout + d.stderr).toBe(0);
    expect(hasEth0(p)).toBe(false);
    expect(w.bridgePorts()).toEqual([]);
  });

  it("pool exhausted: code 100 naming the CIDR; the failed pod holds nothing and leaves no interface after DEL", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.7.0/30"])); // one pod address: .2 (.1 is the gateway)
    const conf = w.bridgeConf();
    const first = w.newPod("first");
    await w.add(first, conf);
    expect(addr(first.result, 0)).toBe("10.0.7.2");
    const p = w.newPod("late");
    const r = await w.exec("ADD", p, conf);
    expect(r.code).not.toBe(0);
    expect(r.json.code).toBe(100);
    expect(r.json.msg).toContain("10.0.7.0/30");
    expect(r.json.details).toContain("Expand the pool");
    const st = w.status();
    expect(st.ranges[0].allocated).toBe(1);
    expect(st.ranges[0].addresses.filter((a: any) => a.owner).map((a: any) => a.owner.pod)).toEqual(["first"]);
    expect((await w.exec("DEL", p, conf)).code).toBe(0);
    expect(hasEth0(p)).toBe(false);
    expect(w.bridgePorts().length).toBe(1); // only the first pod's port
    expect(w.ping(first, "10.0.7.1")).toBe(true);
  });
});

suite("pool expansion while pods run", () => {
  // Debian's (and upstream's) bridge keeps one IPv4 address on the bridge, so with
  // isGateway a second IPv4 podCIDR cannot get its own gateway there. A bridge
  // network that may be expanded therefore runs without gateways and with an
  // on-link route to the cluster pool: pods of both CIDRs meet on the bridge's L2.
  it("a full /29 gets a second CIDR; the next pod uses it and reaches the first CIDR's pods through the bridge", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.77.0/29"]));
    // conf/30-podnet-expandable.conflist: no gateways, an on-link route to the cluster pool.
    const conf = w.fromConflist("30-podnet-expandable.conflist");
    const old: Pod[] = [];
    for (let i = 0; i < 6; i++) {
      const p = w.newPod(`old${i}`);
      await w.add(p, conf);
      old.push(p);
    }
    expect(old.map((p) => addr(p.result, 0))).toEqual(["10.0.77.1", "10.0.77.2", "10.0.77.3", "10.0.77.4", "10.0.77.5", "10.0.77.6"]);
    const refused = w.newPod("refused");
    const r = await w.exec("ADD", refused, conf);
    expect(r.json.code).toBe(100);
    expect((await w.exec("DEL", refused, conf)).code).toBe(0);

    // The operator appends a CIDR; the sync job rewrites the file. No restart of anything.
    w.writeNode(ciliumNode(["10.0.77.0/29", "10.0.78.0/24"]));
    const fresh = w.newPod("fresh");
    await w.add(fresh, conf);
    expect(fresh.result.ips[0].address).toBe("10.0.78.1/24");
    for (const p of old) expect(w.ping(fresh, addr(p.result, 0)), `fresh -> ${addr(p.result, 0)}`).toBe(true);
    expect(w.ping(old[0]!, "10.0.78.1")).toBe(true);
    expect(w.status().ranges.map((x: any) => [x.cidr, x.allocated])).toEqual([
      ["10.0.77.0/29", 6],
      ["10.0.78.0/24", 1],
    ]);
  });

  it("with isGateway, bridge refuses the second CIDR's gateway; its error reaches the runtime and our address is released", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.79.0/30"]));
    const conf = w.bridgeConf();
    const first = w.newPod("first");
    await w.add(first, conf);
    w.writeNode(ciliumNode(["10.0.79.0/30", "10.0.80.0/24"]));
    const second = w.newPod("second");
    const r = await w.exec("ADD", second, conf);
    expect(r.code).not.toBe(0);
    expect(r.json.msg).toContain("already has an IP address different from 10.0.80.1/24");
    // bridge called our DEL on its failure: only the first pod holds an address.
    expect(w.status().ranges.map((x: any) => [x.cidr, x.allocated])).toEqual([
      ["10.0.79.0/30", 1],
      ["10.0.80.0/24", 0],
    ]);
    expect((await w.exec("DEL", second, conf)).code).toBe(0);
  });

  it("under ptp (routed, one gateway per CIDR) the new CIDR's pod reaches the old pods", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.81.0/30"]));
    const conf = w.ptpConf("0.4.0");
    const old = w.newPod("old");
    await w.add(old, conf);
    expect(old.result.ips[0].address).toBe("10.0.81.2/30");
    w.writeNode(ciliumNode(["10.0.81.0/30", "10.0.82.0/24"]));
    const fresh = w.newPod("fresh");
    await w.add(fresh, conf);
    expect(fresh.result.ips[0].address).toBe("10.0.82.2/24");
    expect(w.ping(fresh, "10.0.81.2")).toBe(true);
    expect(w.ping(old, "10.0.82.2")).toBe(true);
    for (const p of [old, fresh]) expect((await w.exec("DEL", p, conf)).code).toBe(0);
  });
});

suite("a burst of pods", () => {
  it("twenty pods added in parallel through bridge get distinct addresses and are all reachable", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.8.0/24", "fd00::800/120"]));
    const conf = w.bridgeConf();
    const pods = Array.from({ length: 20 }, (_, i) => w.newPod(`burst${i}`));
    await Promise.all(pods.map((p) => w.add(p, conf)));
    const v4 = pods.map((p) => addr(p.result, 0));
    const v6 = pods.map((p) => addr(p.result, 1));
    expect(new Set(v4).size).toBe(20);
    expect(new Set(v6).size).toBe(20);
    for (const p of pods.slice(1)) {
      expect(w.ping(pods[0]!, addr(p.result, 0)), addr(p.result, 0)).toBe(true);
      expect(w.ping(pods[0]!, addr(p.result, 1)), addr(p.result, 1)).toBe(true);
    }
    const dels = await Promise.all(pods.map((p) => w.exec("DEL", p, conf)));
    expect(dels.map((d) => d.code)).toEqual(pods.map(() => 0));
    expect(w.status().ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
    expect(w.bridgePorts()).toEqual([]);
  });
});
