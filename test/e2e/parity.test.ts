// Parity with Debian's host-local (containernetworking-plugins 1.1.1): the same
// scenarios run with host-local and with podcidr-ipam as the IPAM, under the real
// bridge plugin where a data path is involved and by calling the IPAM binary
// directly (env + stdin) where it is not. Every row of the README's parity table
// is one of the assertions below; so is every "same as host-local".
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { containers, logNames, readStore } from "../helpers/store-state";
import { type Pod, World, addr, announceSkip, e2eBlocker, hostLocalIpam, ipamExec } from "./harness";

const blocker = e2eBlocker();
if (blocker) announceSkip(blocker);
const suite = blocker ? describe.skip : describe;

const V4 = "10.0.2.0/24";
const V6 = "fd00::200/120";
/** The node's Cilium router (CiliumInternalIP) and health addresses, inside its podCIDRs. */
const ROUTER = ["10.0.2.3", "fd00::203"];
const HEALTH = ["10.0.2.4", "fd00::204"];
const NODE_SPEC = {
  addresses: [
    { type: "InternalIP", ip: "192.168.1.10" },
    { type: "CiliumInternalIP", ip: ROUTER[0] },
    { type: "CiliumInternalIP", ip: ROUTER[1] },
  ],
  health: { ipv4: HEALTH[0], ipv6: HEALTH[1] },
};

interface Side {
  readonly w: World;
  /** The bridge plugin's config with this side's ipam section. */
  readonly conf: Record<string, unknown>;
  /** Where this side keeps the state of the network. */
  readonly stateDir: string;
}

let worlds: World[] = [];
afterEach(() => {
  for (const w of worlds) w.cleanup();
  worlds = [];
});

/** Two worlds, each with its own bridge, network name and data dirs: one per IPAM, same CIDRs. */
function pair(subnets: string[] = [V4, V6], spec: Record<string, unknown> = NODE_SPEC): { hl: Side; ours: Side } {
  const hlWorld = new World();
  const ourWorld = new World();
  worlds.push(hlWorld, ourWorld);
  ourWorld.writeNode(ciliumNode(subnets, { spec }));
  const routes = [{ dst: "0.0.0.0/0" }, { dst: "::/0" }].filter((r) => subnets.some((s) => s.includes(":") === r.dst.includes(":")));
  return {
    hl: {
      w: hlWorld,
      conf: hlWorld.bridgeConf("1.0.0", hostLocalIpam(hlWorld, subnets, { routes })),
      stateDir: join(hlWorld.hostLocalDir, hlWorld.network),
    },
    ours: { w: ourWorld, conf: ourWorld.bridgeConf("1.0.0", ourWorld.ipam({ routes })), stateDir: join(ourWorld.dataDir, "_store") },
  };
}

/** ADD on the IPAM binary directly; the addresses (with prefix) it returned. */
async function ipamAdd(s: Side, containerID: string): Promise<string[]> {
  const r = await ipamExec(s.w, "ADD", s.conf, { containerID });
  expect(r.code, `${containerID}: ${r.stdout} ${r.stderr}`).toBe(0);
  return r.json.ips.map((i: any) => i.address);
}

async function ipamDel(s: Side, containerID: string): Promise<void> {
  const r = await ipamExec(s.w, "DEL", s.conf, { containerID });
  expect(r.code, `${containerID}: ${r.stdout} ${r.stderr}`).toBe(0);
  expect(r.stdout).toBe("");
}

/** Every file under dir, relative, folders marked with a trailing slash. */
function tree(dir: string, rel = ""): string[] {
  return readdirSync(join(dir, rel), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? [`${rel}${e.name}/`, ...tree(dir, `${rel}${e.name}/`)] : [`${rel}${e.name}`]))
    .sort();
}

/** A bridge result with the parts that differ by design (addresses, MACs, names) blanked. */
function shape(result: any): unknown {
  return JSON.parse(
    JSON.stringify(result, (k, v) =>
      ["address", "mac", "name", "sandbox", "gateway"].includes(k) && typeof v === "string" ? `<${k}>` : v,
    ),
  );
}

suite("parity with Debian's host-local 1.1.1 under the bridge plugin (cniVersion 1.0.0)", () => {
  beforeAll(() => {
    expect(blocker).toBeNull();
  });

  it("allocation order and reserved addresses: host-local hands out the node's router and health IPs, we skip them; both start at .2 with gateway .1; bridge results have the same fields", async () => {
    const { hl, ours } = pair();
    const got: Record<string, Pod[]> = { hl: [], ours: [] };
    for (const [key, s] of [
      ["hl", hl],
      ["ours", ours],
    ] as const) {
      for (const name of ["a", "b", "c"]) {
        const p = s.w.newPod(name);
        await s.w.add(p, s.conf);
        got[key]!.push(p);
      }
    }
    const pairs = (pods: Pod[]) => pods.map((p) => p.result.ips.map((i: any) => i.address));
    // Same: the first address is network+2 (network+1 is the gateway), in both families.
    // host-local: strictly sequential, so the router (.3) and health (.4) IPs go to pods.
    expect(pairs(got.hl!)).toEqual([
      ["10.0.2.2/24", "fd00::202/120"],
      ["10.0.2.3/24", "fd00::203/120"],
      ["10.0.2.4/24", "fd00::204/120"],
    ]);
    // podcidr-ipam: sequential too, but the CiliumNode's router and health IPs are never handed out.
    expect(pairs(got.ours!)).toEqual([
      ["10.0.2.2/24", "fd00::202/120"],
      ["10.0.2.5/24", "fd00::205/120"],
      ["10.0.2.6/24", "fd00::206/120"],
    ]);

    for (const p of [...got.hl!, ...got.ours!]) {
      const r = p.result;
      // Same: cniVersion 1.0.0, address with the subnet's prefix, gateway = first address, ips
      // pointing at the container's interface, routes passed through.
      expect(r.cniVersion).toBe("1.0.0");
      expect(r.ips.map((i: any) => i.gateway)).toEqual(["10.0.2.1", "fd00::201"]);
      for (const ip of r.ips) expect(r.interfaces[ip.interface].sandbox).toBe(`/var/run/netns/${p.netns}`);
      expect(r.routes).toEqual([{ dst: "0.0.0.0/0" }, { dst: "::/0" }]);
      expect(hl.w.podAddresses(p).sort()).toEqual([addr(r, 0), addr(r, 1)].sort()); // what the kernel has on eth0
    }
    // The whole bridge result has the same shape, "dns": {} included (bridge's Go result type
    // always prints it, so our IPAM result's missing dns makes no difference to the runtime).
    expect(shape(got.ours![0]!.result)).toEqual(shape(got.hl![0]!.result));
    expect(got.ours![0]!.result.dns).toEqual({});

    // Same: CHECK through bridge passes; DEL through bridge releases everything.
    for (const [s, pods] of [
      [hl, got.hl!],
      [ours, got.ours!],
    ] as const) {
      for (const p of pods) {
        const c = await s.w.exec("CHECK", p, s.conf);
        expect(c.code, c.stdout + c.stderr).toBe(0);
      }
      for (const p of pods) {
        const d = await s.w.exec("DEL", p, s.conf);
        expect(d.code, d.stdout + d.stderr).toBe(0);
      }
      expect(s.w.bridgePorts()).toEqual([]);
    }
    expect(tree(hl.stateDir)).toEqual(["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
    expect(ours.w.status().ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
  });

  it("where the state lives: host-local writes one file per IP plus last_reserved_ip.<set>; we write a preallocated log and two checkpoint slots", async () => {
    const { hl, ours } = pair();
    // The IPAM results themselves: same fields, except host-local's empty "dns": {}, which we omit.
    const hlRaw = await ipamExec(hl.w, "ADD", hl.conf, { containerID: "ctr-state" });
    const ourRaw = await ipamExec(ours.w, "ADD", ours.conf, { containerID: "ctr-state" });
    expect(hlRaw.json).toEqual({ ...ourRaw.json, dns: {} });
    expect(ourRaw.json).toEqual({
      cniVersion: "1.0.0",
      ips: [
        { address: "10.0.2.2/24", gateway: "10.0.2.1" },
        { address: "fd00::202/120", gateway: "fd00::201" },
      ],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
    });
    expect(tree(hl.stateDir)).toEqual(["10.0.2.2", "fd00::202", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
    expect(readFileSync(join(hl.stateDir, "10.0.2.2"), "utf8")).toBe("ctr-state\r\neth0");
    expect(readFileSync(join(hl.stateDir, "last_reserved_ip.1"), "utf8")).toBe("fd00::202");
    const net = ours.w.network;
    expect(tree(ours.stateDir)).toEqual(["attachments", "checkpoint.0", "checkpoint.1", "log", "reserve"]);
    // The ADD is one record of the log; the store, read through its own code, holds the attachment.
    expect(logNames(ours.w.dataDir, "ctr-state")).toBe(true);
    const recs = (await readStore(ours.w.dataDir)).records;
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({
      network: net,
      containerID: "ctr-state",
      ifname: "eth0",
      netns: "/var/run/netns/ipam-direct",
      ips: [
        { cidr: V4, address: "10.0.2.2" },
        { cidr: V6, address: "fd00::202" },
      ],
    });
  });

  it("a repeated ADD for the same container and ifname: both refuse it (the interface is there); into a new netns we return the same addresses", async () => {
    const { hl, ours } = pair();
    expect(await ipamAdd(hl, "ctr-twice")).toEqual(["10.0.2.2/24", "fd00::202/120"]);
    const again = await ipamExec(hl.w, "ADD", hl.conf, { containerID: "ctr-twice" });
    expect(again.code).toBe(1);
    expect(again.json.code).toBe(999);
    expect(again.json.msg).toBe(
      "failed to allocate for range 0: 10.0.2.2 has been allocated to ctr-twice, duplicate allocation is not allowed",
    );

    expect(await ipamAdd(ours, "ctr-twice")).toEqual(["10.0.2.2/24", "fd00::202/120"]);
    const ourAgain = await ipamExec(ours.w, "ADD", ours.conf, { containerID: "ctr-twice" });
    expect(ourAgain.code).toBe(1);
    expect(ourAgain.json.code).toBe(106);
    expect(ourAgain.json.msg).toBe(
      `${ours.w.network}/ctr-twice/eth0 already holds 10.0.2.2, fd00::202 in netns /var/run/netns/ipam-direct`,
    );
    // A container restarted without a DEL (a new netns) gets its addresses back, where host-local still refuses.
    const restarted = await ipamExec(ours.w, "ADD", ours.conf, {
      containerID: "ctr-twice",
      env: { CNI_NETNS: "/var/run/netns/restarted" },
    });
    expect(restarted.json.ips.map((i: any) => i.address)).toEqual(["10.0.2.2/24", "fd00::202/120"]);
    const hlRestarted = await ipamExec(hl.w, "ADD", hl.conf, { containerID: "ctr-twice", env: { CNI_NETNS: "/var/run/netns/restarted" } });
    expect(hlRestarted.json.code).toBe(999);
    expect(ours.w.status().ranges.map((r: any) => [r.allocated, r.used])).toEqual([
      [1, 4],
      [1, 4],
    ]); // one pod; used counts gateway, router, health
    // Same: another ifname of the same container is a separate attachment.
    for (const s of [hl, ours]) {
      const r = await ipamExec(s.w, "ADD", s.conf, { containerID: "ctr-twice", ifname: "net1" });
      expect(r.code, r.stdout).toBe(0);
      expect(r.json.ips[0].address).not.toBe("10.0.2.2/24");
    }
  });

  it("DEL twice, DEL of an unknown container, DEL with the data dir missing: all succeed silently in both; host-local creates its dir on that DEL, we create nothing", async () => {
    const { hl, ours } = pair();
    for (const s of [hl, ours]) {
      await ipamAdd(s, "ctr-del");
      await ipamDel(s, "ctr-del");
      await ipamDel(s, "ctr-del");
      await ipamDel(s, "ctr-never-added");
    }
    expect(tree(hl.stateDir)).toEqual(["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
    expect(await containers(ours.w.dataDir)).toEqual([]);

    const missing = (s: Side, key: string) => ({
      ...s.conf,
      ipam: { ...(s.conf.ipam as object), dataDir: join(s.w.dir, "missing"), [key]: join(s.w.dir, "missing", "node.json") },
    });
    const hlMissing = { ...hl, conf: missing(hl, "unusedNodeFile") };
    const ourMissing = { ...ours, conf: missing(ours, "nodeFile") };
    await ipamDel(hlMissing, "ctr-del");
    await ipamDel(ourMissing, "ctr-del");
    expect(tree(join(hl.w.dir, "missing"))).toEqual([`${hl.w.network}/`, `${hl.w.network}/lock`]);
    expect(existsSync(join(ours.w.dir, "missing"))).toBe(false);
  });

  it("CHECK: host-local ignores prevResult (passes when the container holds any address), we compare it address by address", async () => {
    const { hl, ours } = pair();
    for (const s of [hl, ours]) await ipamAdd(s, "ctr-check");
    const withPrev = (s: Side, address: string) => ({
      ...s.conf,
      prevResult: { cniVersion: "1.0.0", ips: [{ address, gateway: "10.0.2.1" }] },
    });

    // Same: the prevResult that ADD returned passes.
    for (const s of [hl, ours]) {
      const r = await ipamExec(s.w, "CHECK", withPrev(s, "10.0.2.2/24"), { containerID: "ctr-check" });
      expect(r.code, r.stdout).toBe(0);
    }
    // A prevResult naming an address the container does not hold.
    const hlWrong = await ipamExec(hl.w, "CHECK", withPrev(hl, "10.0.2.99/24"), { containerID: "ctr-check" });
    expect(hlWrong.code).toBe(0);
    const ourWrong = await ipamExec(ours.w, "CHECK", withPrev(ours, "10.0.2.99/24"), { containerID: "ctr-check" });
    expect(ourWrong.code).toBe(1);
    expect(ourWrong.json).toMatchObject({ code: 104, msg: `${ours.w.network}/ctr-check/eth0 does not hold 10.0.2.99` });

    // Same: CHECK of a container that holds nothing fails (host-local: code 999, ours: 104).
    const hlNone = await ipamExec(hl.w, "CHECK", withPrev(hl, "10.0.2.2/24"), { containerID: "ctr-unknown" });
    expect(hlNone.json).toEqual({ code: 999, msg: "host-local: Failed to find address added by container ctr-unknown" });
    const ourNone = await ipamExec(ours.w, "CHECK", withPrev(ours, "10.0.2.2/24"), { containerID: "ctr-unknown" });
    expect(ourNone.json).toMatchObject({ code: 104, msg: `podcidr-ipam holds no address for ${ours.w.network}/ctr-unknown/eth0` });
  });

  it("reuse after release: next-fit in both, a released address is not handed out again until the range wraps", async () => {
    const { hl, ours } = pair();
    const v4 = async (s: Side, id: string) => (await ipamAdd(s, id))[0];
    for (const s of [hl, ours]) for (const id of ["r1", "r2", "r3"]) await ipamAdd(s, id);
    await ipamDel(hl, "r2"); // 10.0.2.3
    await ipamDel(ours, "r2"); // 10.0.2.5
    expect(await v4(hl, "r4")).toBe("10.0.2.5/24");
    expect(await v4(ours, "r4")).toBe("10.0.2.7/24");
  });

  it("a requested address (CNI_ARGS IP=) moves host-local's next-fit cursor past it; ours keeps its cursor", async () => {
    const { hl, ours } = pair();
    for (const s of [hl, ours]) {
      const r = await ipamExec(s.w, "ADD", s.conf, { containerID: "req", env: { CNI_ARGS: "IgnoreUnknown=1;IP=10.0.2.50" } });
      expect(r.code, r.stdout).toBe(0);
      // Same: the requested IPv4 address is given; the IPv6 one is picked as usual.
      expect(r.json.ips.map((i: any) => i.address)).toEqual(["10.0.2.50/24", "fd00::202/120"]);
    }
    expect(readFileSync(join(hl.stateDir, "last_reserved_ip.0"), "utf8")).toBe("10.0.2.50");
    expect(await ipamAdd(hl, "after-req")).toEqual(["10.0.2.51/24", "fd00::203/120"]);
    expect(await ipamAdd(ours, "after-req")).toEqual(["10.0.2.2/24", "fd00::205/120"]);
  });

  it("pool exhausted: host-local code 999 'no IP addresses available in range set', we code 100; capacity differs by the reserved router/health IPs; a freed address is then reused in both", async () => {
    // A /29 (IPv4 only): host-local hands out .2-.6 (5); we keep .3 (router) and .4 (health) back: .2, .5, .6 (3).
    const { hl, ours } = pair(["10.0.9.0/29"], { addresses: [{ type: "CiliumInternalIP", ip: "10.0.9.3" }], health: { ipv4: "10.0.9.4" } });
    const hlGot: string[] = [];
    for (let i = 0; i < 5; i++) hlGot.push(...(await ipamAdd(hl, `x${i}`)));
    expect(hlGot).toEqual(["10.0.9.2/29", "10.0.9.3/29", "10.0.9.4/29", "10.0.9.5/29", "10.0.9.6/29"]);
    const ourGot: string[] = [];
    for (let i = 0; i < 3; i++) ourGot.push(...(await ipamAdd(ours, `x${i}`)));
    expect(ourGot).toEqual(["10.0.9.2/29", "10.0.9.5/29", "10.0.9.6/29"]);

    const hlFull = await ipamExec(hl.w, "ADD", hl.conf, { containerID: "x-full" });
    expect(hlFull.code).toBe(1);
    expect(hlFull.json).toEqual({
      code: 999,
      msg: "failed to allocate for range 0: no IP addresses available in range set: 10.0.9.1-10.0.9.6",
    });
    const ourFull = await ipamExec(ours.w, "ADD", ours.conf, { containerID: "x-full" });
    expect(ourFull.code).toBe(1);
    expect(ourFull.json.code).toBe(100);
    expect(ourFull.json.msg).toBe("no free IPv4 address in the node's podCIDRs (10.0.9.0/29: 3 allocated, 3 reserved)");
    expect(ourFull.json.details).toContain("podcidr-ipam status --all-addresses");
    // Nothing was left behind by the failed ADD, in either.
    expect(tree(hl.stateDir).filter((f) => f.startsWith("10."))).toHaveLength(5);
    expect(await containers(ours.w.dataDir)).not.toContain("x-full@eth0");

    // Same: once one is freed, the next ADD gets exactly that one.
    await ipamDel(hl, "x1"); // 10.0.9.3
    await ipamDel(ours, "x1"); // 10.0.9.5
    expect(await ipamAdd(hl, "x-again")).toEqual(["10.0.9.3/29"]);
    expect(await ipamAdd(ours, "x-again")).toEqual(["10.0.9.5/29"]);
  });

  it("GC, STATUS and CNI 1.1.0: host-local 1.1.1 speaks up to 1.0.0 and knows neither command; we implement both", async () => {
    const { hl, ours } = pair();
    const hlVersion = await ipamExec(hl.w, "VERSION", { ...hl.conf });
    expect(hlVersion.json).toEqual({ cniVersion: "1.0.0", supportedVersions: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] });
    const ourVersion = await ipamExec(ours.w, "VERSION", { ...ours.conf });
    expect(ourVersion.json).toEqual({
      cniVersion: "1.0.0",
      supportedVersions: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    });

    for (const command of ["GC", "STATUS"]) {
      const r = await ipamExec(hl.w, command, { ...hl.conf, cniVersion: "1.1.0" });
      expect(r.code).toBe(1);
      expect(r.json).toEqual({ code: 4, msg: `unknown CNI_COMMAND: ${command}` });
    }
    const hlAdd11 = await ipamExec(hl.w, "ADD", { ...hl.conf, cniVersion: "1.1.0" });
    expect(hlAdd11.json).toMatchObject({ code: 1, msg: "incompatible CNI versions" });

    const st = await ipamExec(
      ours.w,
      "STATUS",
      { ...ours.conf, cniVersion: "1.1.0" },
      { env: { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined } },
    );
    expect(st.code, st.stdout).toBe(0);
    await ipamAdd(ours, "gc-live");
    await ipamAdd(ours, "gc-gone");
    const gc = await ipamExec(
      ours.w,
      "GC",
      { ...ours.conf, cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: "gc-live", ifname: "eth0" }] },
      { env: { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined } },
    );
    expect(gc.code, gc.stdout).toBe(0);
    expect(await containers(ours.w.dataDir, ours.w.network)).toEqual(["gc-live@eth0"]);
  });
});
