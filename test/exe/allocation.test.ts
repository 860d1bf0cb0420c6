// Allocation semantics of ADD/DEL, driven through the built executable.
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FIXTURES, type RunResult, Sandbox, run } from "../helpers/plugin";
import { expectCniError } from "../helpers/protocol";
import { addErr, addOk, addrs, call, delOk, rangeOf, replaceNode, statusJson } from "../helpers/exe";
import { containers } from "../helpers/store-state";
import { ciliumNode, v1Node } from "../helpers/node";
import { snapshot } from "../helpers/snapshot";

let sb: Sandbox;
function sandbox(fixture?: string): Sandbox {
  sb = new Sandbox(fixture);
  return sb;
}
afterEach(() => sb?.cleanup());

describe("ADD basics", () => {
  it("gives the first container 10.0.2.2/24 and fd00::202/120 with gateways .1 and ::201", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "ctr-a");
    expect(res).toEqual({
      cniVersion: "1.1.0",
      ips: [
        { address: "10.0.2.2/24", gateway: "10.0.2.1" },
        { address: "fd00::202/120", gateway: "fd00::201" },
      ],
    });
  });

  it("hands distinct addresses to different containers, in order", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const got: string[][] = [];
    for (const id of ["ctr-a", "ctr-b", "ctr-c", "ctr-d"]) got.push(addrs(await addOk(sb, id)));
    expect(got).toEqual([
      ["10.0.2.2", "fd00::202"],
      ["10.0.2.3", "fd00::203"],
      ["10.0.2.4", "fd00::204"],
      ["10.0.2.5", "fd00::205"],
    ]);
  });

  it("refuses a repeated ADD into the same netns (106), as host-local does, and changes nothing", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "ctr-a");
    const before = snapshot(sb.dataDir);
    const e = await addErr(sb, "ctr-a");
    expect(e.code).toBe(106);
    expect(e.msg).toBe("podnet/ctr-a/eth0 already holds 10.0.2.2, fd00::202 in netns /var/run/netns/ctr-a");
    expect(snapshot(sb.dataDir)).toEqual(before);
    expect(addrs(await addOk(sb, "ctr-b"))).toEqual(["10.0.2.3", "fd00::203"]);
  });

  it("returns the same addresses for an ADD of the same container+ifname into a new netns (a restart without DEL), allocating nothing", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const first = await addOk(sb, "ctr-a");
    const again = await addOk(sb, "ctr-a", { netns: "/var/run/netns/ctr-a-restarted" });
    expect(again).toEqual(first);
    expect(rangeOf(await statusJson(sb), "10.0.2.0/24").allocated).toBe(1);
    expect(rangeOf(await statusJson(sb), "fd00::200/120").allocated).toBe(1);
    // The record now names the new netns: an ADD into it again is a repeat.
    expect((await addErr(sb, "ctr-a", { netns: "/var/run/netns/ctr-a-restarted" })).code).toBe(106);
    expect(addrs(await addOk(sb, "ctr-b"))).toEqual(["10.0.2.3", "fd00::203"]);
  });

  it("tells a netns made again at the same path (another inode) from a repeat: it returns the addresses, a repeat is refused", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const netns = join(sb.dir, "netns-a");
    writeFileSync(netns, "");
    const first = await addOk(sb, "ctr-a", { netns });
    expect((await addErr(sb, "ctr-a", { netns })).code).toBe(106);
    // A new file renamed over the old one: both existed at once, so the inode differs.
    writeFileSync(`${netns}.new`, "");
    renameSync(`${netns}.new`, netns);
    expect(await addOk(sb, "ctr-a", { netns })).toEqual(first);
    expect((await addErr(sb, "ctr-a", { netns })).code).toBe(106);
  });

  it("refuses an ADD into a new netns that asks for a different address than the one held (101)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "ctr-a");
    const e = await addErr(sb, "ctr-a", { args: "IP=10.0.2.60", netns: "/var/run/netns/new" });
    expect(e.code).toBe(101);
    expect(e.msg).toBe("ctr-a/eth0 already holds 10.0.2.2, fd00::202, not the requested 10.0.2.60");
  });

  it("treats another ifname of the same container as a separate attachment", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    expect(addrs(await addOk(sb, "ctr-a", { ifname: "eth0" }))).toEqual(["10.0.2.2", "fd00::202"]);
    expect(addrs(await addOk(sb, "ctr-a", { ifname: "net1" }))).toEqual(["10.0.2.3", "fd00::203"]);
    await delOk(sb, "ctr-a", { ifname: "eth0" });
    // net1 still holds its addresses: an ADD into a new netns returns them.
    expect(addrs(await addOk(sb, "ctr-a", { ifname: "net1", netns: "/var/run/netns/new" }))).toEqual(["10.0.2.3", "fd00::203"]);
    expect(rangeOf(await statusJson(sb), "10.0.2.0/24").allocated).toBe(1);
  });
});

describe("next-fit and reuse cool-down", () => {
  it("does not hand a just-released address to the next ADD", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    const b = await addOk(sb, "b");
    await addOk(sb, "c");
    expect(addrs(b)).toEqual(["10.0.2.3", "fd00::203"]);
    await delOk(sb, "b");
    expect(addrs(await addOk(sb, "d"))).toEqual(["10.0.2.5", "fd00::205"]);
  });

  it("with reuseCooldown, reuses a released address of a full /29 when nothing else is free", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.5.0/29"]));
    const ipam = { reuseCooldown: 3600 };
    const got: string[] = [];
    for (const id of ["a", "b", "c", "d", "e"]) got.push(addrs(await addOk(sb, id, { ipam }))[0]!);
    expect(got).toEqual(["10.0.5.2", "10.0.5.3", "10.0.5.4", "10.0.5.5", "10.0.5.6"]);
    await delOk(sb, "c", { ipam });
    expect(addrs(await addOk(sb, "f", { ipam }))).toEqual(["10.0.5.4"]);
  });

  it("with reuseCooldown, skips a released address while never-used ones are free, then reuses it last", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.5.0/29"]));
    const ipam = { reuseCooldown: 3600 };
    await addOk(sb, "a", { ipam, args: "IP=10.0.5.2" });
    await addOk(sb, "b", { ipam, args: "IP=10.0.5.3" });
    await delOk(sb, "a", { ipam }); // 10.0.5.2 cools down; .4, .5, .6 were never used
    const got: string[] = [];
    for (const id of ["c", "d", "e", "f"]) got.push(addrs(await addOk(sb, id, { ipam }))[0]!);
    expect(got).toEqual(["10.0.5.4", "10.0.5.5", "10.0.5.6", "10.0.5.2"]);
    expect((await addErr(sb, "g", { ipam })).code).toBe(100);
  });

  it("with reuseCooldown, among cooling addresses the one released longest ago goes first", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.5.0/29"]));
    const ipam = { reuseCooldown: 3600 };
    for (const id of ["a", "b", "c", "d", "e"]) await addOk(sb, id, { ipam });
    await delOk(sb, "d", { ipam }); // 10.0.5.5 first
    await delOk(sb, "b", { ipam }); // 10.0.5.3 later
    expect(addrs(await addOk(sb, "f", { ipam }))).toEqual(["10.0.5.5"]);
    expect(addrs(await addOk(sb, "g", { ipam }))).toEqual(["10.0.5.3"]);
  });
});

describe("addresses never handed out", () => {
  async function fill(max = 10): Promise<string[]> {
    const got: string[] = [];
    for (let i = 0; i < max; i++) {
      const r = await call(sb, "ADD", `p${i}`);
      if (r.code !== 0) {
        expect(r.json?.code, r.stdout).toBe(100);
        return got;
      }
      got.push(...addrs(r.json));
    }
    throw new Error(`pool not exhausted after ${max} ADDs: ${got.join(", ")}`);
  }

  it("skips network, broadcast, gateway, CiliumNode router, health and ingress IPs in a /29", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.5.0/29"], { router: ["10.0.5.3"], health: { ipv4: "10.0.5.4" }, ingress: { ipv4: "10.0.5.5" } }));
    expect(await fill()).toEqual(["10.0.5.2", "10.0.5.6"]);
  });

  it('hands out the first address when "gateway": false, and returns no gateway', async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.5.0/29"], { router: ["10.0.5.3"], health: { ipv4: "10.0.5.4" }, ingress: { ipv4: "10.0.5.5" } }));
    const first = await addOk(sb, "g0", { ipam: { gateway: false } });
    expect(first.ips).toEqual([{ address: "10.0.5.1/29" }]);
    const got = ["10.0.5.1"];
    for (let i = 1; i < 10; i++) {
      const r = await call(sb, "ADD", `g${i}`, { ipam: { gateway: false } });
      if (r.code !== 0) {
        expect(r.json?.code).toBe(100);
        break;
      }
      got.push(...addrs(r.json));
    }
    expect(got).toEqual(["10.0.5.1", "10.0.5.2", "10.0.5.6"]);
  });

  it("skips the IPv6 router/health IPs of a CiliumNode", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["fd00::/125"], { router: ["fd00::3"], health: { ipv6: "fd00::2" } }));
    // fd00::/125: fd00:: anycast, ::1 gateway, ::2 health, ::3 router -> pods ::4 .. ::7
    expect(await fill()).toEqual(["fd00::4", "fd00::5", "fd00::6", "fd00::7"]);
  });

  it("skips the cilium-host and health IPs named by v1 Node annotations", async () => {
    sandbox();
    sb.writeNode(
      v1Node(
        { podCIDRs: ["10.244.9.0/29"] },
        { "io.cilium.network.ipv4-cilium-host": "10.244.9.2", "io.cilium.network.ipv4-health-ip": "10.244.9.5" },
      ),
    );
    expect(await fill()).toEqual(["10.244.9.3", "10.244.9.4", "10.244.9.6"]);
  });
});

describe("requested addresses", () => {
  it("honours IP= in CNI_ARGS (with IgnoreUnknown)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const r = await run({ command: "ADD", containerID: "a", args: "IgnoreUnknown=1;IP=10.0.2.50", stdin: sb.conf() });
    expect(r.code, r.stdout).toBe(0);
    expect(r.json.ips).toEqual([
      { address: "10.0.2.50/24", gateway: "10.0.2.1" },
      { address: "fd00::202/120", gateway: "fd00::201" },
    ]);
  });

  it("honours runtimeConfig.ips", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a", { top: { runtimeConfig: { ips: ["10.0.2.51/24"] } } });
    expect(addrs(res)).toEqual(["10.0.2.51", "fd00::202"]);
  });

  it("honours args.cni.ips", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a", { top: { args: { cni: { ips: ["10.0.2.52"] } } } });
    expect(addrs(res)).toEqual(["10.0.2.52", "fd00::202"]);
  });

  it("honours one address per family: IP=10.0.2.53,fd00::253", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a", { args: "IP=10.0.2.53,fd00::253" });
    expect(res.ips).toEqual([
      { address: "10.0.2.53/24", gateway: "10.0.2.1" },
      { address: "fd00::253/120", gateway: "fd00::201" },
    ]);
  });

  it("does not give a requested address to a later ADD", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a", { args: "IP=10.0.2.2" });
    expect(addrs(await addOk(sb, "b"))).toEqual(["10.0.2.3", "fd00::203"]);
  });

  const cases: [string, string, string][] = [
    [
      "outside every podCIDR",
      "10.9.9.9",
      "requested address 10.9.9.9 is not available: it is outside every podCIDR of the node (10.0.2.0/24, fd00::200/120)",
    ],
    ["the gateway", "10.0.2.1", "requested address 10.0.2.1 is not available: it is reserved in 10.0.2.0/24 (gateway)"],
    [
      "the network address",
      "10.0.2.0",
      "requested address 10.0.2.0 is not available: it is the network or broadcast address of 10.0.2.0/24",
    ],
    [
      "the broadcast address",
      "10.0.2.255",
      "requested address 10.0.2.255 is not available: it is the network or broadcast address of 10.0.2.0/24",
    ],
    [
      "the IPv6 subnet-router anycast address",
      "fd00::200",
      "requested address fd00::200 is not available: it is the subnet-router anycast address of fd00::200/120",
    ],
    ["the IPv6 gateway", "fd00::201", "requested address fd00::201 is not available: it is reserved in fd00::200/120 (gateway)"],
    ["the router IP", "10.0.2.236", "requested address 10.0.2.236 is not available: it is reserved in 10.0.2.0/24 (router)"],
    ["the health IP", "10.0.2.48", "requested address 10.0.2.48 is not available: it is reserved in 10.0.2.0/24 (health)"],
  ];
  for (const [what, ip, msg] of cases) {
    it(`refuses ${what} (${ip}) with 101 and allocates nothing`, async () => {
      sandbox("ciliumnode-cluster-pool.json");
      const e = await addErr(sb, "a", { args: `IP=${ip}` });
      expect(e.code).toBe(101);
      expect(e.msg).toBe(msg);
      expect(addrs(await addOk(sb, "b"))).toEqual(["10.0.2.2", "fd00::202"]);
    });
  }

  it("refuses an address held by another container, naming its pod", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "ctr-nginx", { pod: ["default", "nginx"] });
    const e = await addErr(sb, "b", { args: "IP=10.0.2.2" });
    expect(e.code).toBe(101);
    expect(e.msg).toBe("requested address 10.0.2.2 is not available: it is held by default/nginx (podnet/ctr-nginx/eth0)");
  });

  it("refuses an address held by a container without pod names, naming the attachment", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "ctr-x");
    const e = await addErr(sb, "b", { top: { runtimeConfig: { ips: ["fd00::202"] } } });
    expect(e.code).toBe(101);
    expect(e.msg).toBe("requested address fd00::202 is not available: it is held by podnet/ctr-x/eth0");
  });

  it('allows requesting the first address when "gateway": false', async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a", { args: "IP=10.0.2.1", ipam: { gateway: false } });
    // gateway: false applies to both families: fd00::201 is a pod address too.
    expect(res.ips).toEqual([{ address: "10.0.2.1/24" }, { address: "fd00::201/120" }]);
  });

  it("rejects a requested value that is not an IP address (7)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const e = await addErr(sb, "a", { args: "IP=10.0.2.300" });
    expect(e.code).toBe(7);
    expect(e.msg).toBe('requested address "10.0.2.300" (CNI_ARGS IP=) is not an IP address');
  });
});

describe("exhaustion", () => {
  it("fails with 100 naming the CIDR, and says how to expand the pool", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.30.0/30"]));
    expect(addrs(await addOk(sb, "a"))).toEqual(["10.0.30.2"]);
    const e = await addErr(sb, "b");
    expect(e.code).toBe(100);
    expect(e.msg).toBe("no free IPv4 address in the node's podCIDRs (10.0.30.0/30: 1 allocated, 1 reserved)");
    expect(e.details).toContain("Expand the pool");
    expect(e.details).toContain("clusterPoolIPv4PodCIDRList");
    expect(e.details).toContain("--node-cidr-mask-size");
  });

  it("names every CIDR of the family when all are full", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.30.0/30", "10.0.31.0/30"]));
    await addOk(sb, "a");
    await addOk(sb, "b");
    const e = await addErr(sb, "c");
    expect(e.code).toBe(100);
    expect(e.msg).toContain("10.0.30.0/30");
    expect(e.msg).toContain("10.0.31.0/30");
  });

  it("dual stack: a full IPv6 CIDR fails the ADD and the IPv4 address is not kept", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.2.0/24", "fd00::/126"]));
    expect(addrs(await addOk(sb, "a"))).toEqual(["10.0.2.2", "fd00::2"]);
    expect(addrs(await addOk(sb, "b"))).toEqual(["10.0.2.3", "fd00::3"]);
    const before = await statusJson(sb);
    const e = await addErr(sb, "c");
    expect(e.code).toBe(100);
    expect(e.msg).toBe("no free IPv6 address in the node's podCIDRs (fd00::/126: 2 allocated, 1 reserved)");
    const after = await statusJson(sb);
    expect(rangeOf(after, "10.0.2.0/24").allocated).toBe(2);
    expect(rangeOf(after, "10.0.2.0/24").allocated).toBe(rangeOf(before, "10.0.2.0/24").allocated);
    expect(after.ranges.flatMap((r: any) => r.addresses.filter((a: any) => a.owner).map((a: any) => a.ip)).sort()).toEqual(
      ["10.0.2.2", "10.0.2.3", "fd00::2", "fd00::3"].sort(),
    );
    // c holds nothing: DEL of it is a no-op and CHECK knows no such attachment.
    const chk = await run({ command: "CHECK", containerID: "c", stdin: { ...sb.conf(), prevResult: { cniVersion: "1.1.0", ips: [] } } });
    expect(chk.json?.code).toBe(104);
    // Once IPv6 has room again, the IPv4 side continues with the next free address.
    await delOk(sb, "a");
    expect(addrs(await addOk(sb, "c"))).toEqual(["10.0.2.4", "fd00::2"]);
  });
});

describe("several CIDRs and pool changes", () => {
  it("fills CIDRs of one family in listed order", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.8.0/29", "10.0.7.0/29"]));
    const got: string[] = [];
    for (let i = 0; i < 6; i++) got.push((await addOk(sb, `p${i}`)).ips[0].address);
    expect(got).toEqual(["10.0.8.2/29", "10.0.8.3/29", "10.0.8.4/29", "10.0.8.5/29", "10.0.8.6/29", "10.0.7.2/29"]);
    const last = await addOk(sb, "p6");
    expect(last.ips).toEqual([{ address: "10.0.7.3/29", gateway: "10.0.7.1" }]);
  });

  it("uses a CIDR appended to the node file on the next ADD, without a restart", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.9.0/29"]));
    for (let i = 0; i < 5; i++) await addOk(sb, `p${i}`);
    expect((await addErr(sb, "p5")).code).toBe(100);
    replaceNode(sb, ciliumNode(["10.0.9.0/29", "10.0.10.0/29"]));
    const res = await addOk(sb, "p5");
    expect(res.ips).toEqual([{ address: "10.0.10.2/29", gateway: "10.0.10.1" }]);
  });

  it("picks up the expanded CiliumNode fixture (10.0.77.0/24 appended)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    replaceNode(sb, readFileSync(join(FIXTURES, "ciliumnode-expanded.json"), "utf8"));
    // 10.0.2.0/24 still has room, so it is used first.
    expect(addrs(await addOk(sb, "b"))).toEqual(["10.0.2.3", "fd00::203"]);
    const st = await statusJson(sb);
    expect(st.ranges.map((r: any) => [r.cidr, r.orphaned])).toEqual([
      ["10.0.2.0/24", false],
      ["10.0.77.0/24", false],
      ["fd00::200/120", false],
    ]);
    // A request inside the new CIDR works at once.
    expect(addrs(await addOk(sb, "c", { args: "IP=10.0.77.9" }))).toEqual(["10.0.77.9", "fd00::204"]);
  });

  it("a CIDR removed from the node file: no new allocations from it, CHECK passes, DEL releases, status says orphaned", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.9.0/29", "10.0.10.0/29"]));
    const held = await addOk(sb, "old", { args: "IP=10.0.10.2", pod: ["default", "old-pod"] });
    expect(held.ips).toEqual([{ address: "10.0.10.2/29", gateway: "10.0.10.1" }]);
    replaceNode(sb, ciliumNode(["10.0.9.0/29"]));
    for (let i = 0; i < 5; i++) expect((await addOk(sb, `p${i}`)).ips[0].address).toMatch(/^10\.0\.9\.[2-6]\/29$/);
    const full = await addErr(sb, "p5");
    expect(full.code).toBe(100);
    expect(full.msg).not.toContain("10.0.10.0/29");
    // Requesting an address of the removed CIDR is refused too.
    expect((await addErr(sb, "p6", { args: "IP=10.0.10.3" })).code).toBe(101);

    const chk = await run({ command: "CHECK", containerID: "old", stdin: { ...sb.conf(), prevResult: { cniVersion: "1.1.0", ...held } } });
    expect(chk.code, chk.stdout + chk.stderr).toBe(0);
    expect(chk.stdout).toBe("");

    const st = await statusJson(sb);
    const orphan = rangeOf(st, "10.0.10.0/29");
    expect(orphan.orphaned).toBe(true);
    expect(orphan.allocated).toBe(1);
    expect(st.problems.join("\n")).toContain("10.0.10.0/29 is no longer in the node file");

    await delOk(sb, "old");
    const after = await statusJson(sb);
    expect(rangeOf(after, "10.0.10.0/29").allocated).toBe(0);
  });
});

describe("store files", () => {
  it("creates folders 0700 and files 0600", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a", { pod: ["default", "nginx"] });
    await addOk(sb, "b");
    const seen: string[] = [];
    const walk = (dir: string): void => {
      for (const n of readdirSync(dir)) {
        const p = join(dir, n);
        const st = statSync(p);
        seen.push(p);
        if (st.isDirectory()) {
          expect((st.mode & 0o777).toString(8), p).toBe("700");
          walk(p);
        } else expect((st.mode & 0o777).toString(8), p).toBe("600");
      }
    };
    expect((statSync(sb.dataDir).mode & 0o777).toString(8)).toBe("700");
    walk(sb.dataDir);
    expect(seen.length).toBeGreaterThanOrEqual(6); // _store/, log, checkpoint.0, checkpoint.1, attachments, reserve
  });

  it("leaves every store file byte-identical after bad inputs", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a", { pod: ["default", "nginx"] });
    await addOk(sb, "b");
    await delOk(sb, "a");
    const before = snapshot(sb.dataDir);
    expect(before.size).toBeGreaterThan(3);

    const bad: { name: string; p: () => Promise<RunResult>; code: number; msg: string }[] = [
      {
        name: "invalid JSON",
        p: () => run({ command: "ADD", containerID: "x1", stdin: "{not json" }),
        code: 6,
        msg: "network config on stdin is not valid JSON",
      },
      {
        name: "bad requested IP",
        p: () => call(sb, "ADD", "x2", { args: "IP=banana" }),
        code: 7,
        msg: 'requested address "banana" (CNI_ARGS IP=) is not an IP address',
      },
      {
        name: "two IPv4 requested",
        p: () => call(sb, "ADD", "x3", { args: "IP=10.0.2.70,10.0.2.71" }),
        code: 7,
        msg: "more than one IPv4 address requested (10.0.2.70, 10.0.2.71)",
      },
      {
        name: "held requested IP",
        p: () => call(sb, "ADD", "x4", { args: "IP=10.0.2.3" }),
        code: 101,
        msg: "requested address 10.0.2.3 is not available: it is held by podnet/b/eth0",
      },
      {
        name: "outside requested IP",
        p: () => call(sb, "ADD", "x5", { args: "IP=192.168.0.1" }),
        code: 101,
        msg: "requested address 192.168.0.1 is not available: it is outside every podCIDR of the node",
      },
      {
        name: "bad ipam key",
        p: () => call(sb, "ADD", "x6", { ipam: { reuseCooldown: "soon" } }),
        code: 7,
        msg: "ipam.reuseCooldown must be a number of seconds",
      },
      {
        name: "unknown CHECK",
        p: () => run({ command: "CHECK", containerID: "x7", stdin: { ...sb.conf(), prevResult: { cniVersion: "1.1.0", ips: [] } } }),
        code: 104,
        msg: "podcidr-ipam holds no address for podnet/x7/eth0",
      },
    ];
    for (const b of bad) {
      expectCniError(await b.p(), b.code, b.msg);
      expect(snapshot(sb.dataDir), b.name).toEqual(before);
    }
  });

  it("leaves the store byte-identical when a dual-stack ADD fails on its second family", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.2.0/24", "fd00::/126"]));
    await addOk(sb, "a");
    await addOk(sb, "b");
    const before = snapshot(sb.dataDir);
    expect((await addErr(sb, "c")).code).toBe(100);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("creates no store when the first ADD fails", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.2.0/24"]));
    expect((await addErr(sb, "a", { args: "IP=10.0.3.1" })).code).toBe(101);
    const snap = snapshot(sb.dataDir);
    // At most the empty folders; no range or attachment file.
    expect([...snap.values()].filter((v) => v.startsWith("file"))).toEqual([]);
  });
});

describe("host-scope v1 Node", () => {
  it("gives 10.244.2.2/24 and fd00:10:244:2::2/64", async () => {
    sandbox("node-host-scope.json");
    const res = await addOk(sb, "a");
    expect(res.ips).toEqual([
      { address: "10.244.2.2/24", gateway: "10.244.2.1" },
      { address: "fd00:10:244:2::2/64", gateway: "fd00:10:244:2::1" },
    ]);
  });
});

describe("DEL", () => {
  it("releases what the attachment holds", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    await addOk(sb, "b");
    await delOk(sb, "a");
    const st = await statusJson(sb);
    expect(rangeOf(st, "10.0.2.0/24").allocated).toBe(1);
    expect(rangeOf(st, "fd00::200/120").allocated).toBe(1);
    expect(await containers(sb.dataDir, "podnet")).toEqual(["b@eth0"]);
  });

  it("succeeds with empty stdout when the attachment holds nothing", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    const before = snapshot(sb.dataDir);
    await delOk(sb, "never-added");
    await delOk(sb, "a", { ifname: "net1" });
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("succeeds when called twice", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    await delOk(sb, "a");
    const once = snapshot(sb.dataDir);
    await delOk(sb, "a");
    expect(snapshot(sb.dataDir)).toEqual(once);
    expect(rangeOf(await statusJson(sb), "10.0.2.0/24").allocated).toBe(0);
  });

  it("succeeds when the store folder does not exist, and creates nothing", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await delOk(sb, "a");
    expect(existsSync(sb.dataDir)).toBe(false);
  });

  it("succeeds when the node file does not exist (and still releases)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    rmSync(sb.nodeFile);
    await delOk(sb, "a");
    await delOk(sb, "b");
    replaceNode(sb, readFileSync(join(FIXTURES, "ciliumnode-cluster-pool.json"), "utf8"));
    expect(rangeOf(await statusJson(sb), "10.0.2.0/24").allocated).toBe(0);
  });

  it("succeeds without CNI_NETNS", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    const r = await run({ command: "DEL", containerID: "a", env: { CNI_NETNS: undefined }, stdin: sb.conf() });
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toBe("");
    expect(rangeOf(await statusJson(sb), "10.0.2.0/24").allocated).toBe(0);
  });
});

describe("more edge cases", () => {
  it("a full /24 hands out exactly the 251 addresses that are not gateway, router or health", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.2.0/24"], { router: ["10.0.2.236"], health: { ipv4: "10.0.2.48" } }));
    const got: string[] = [];
    const ids = Array.from({ length: 251 }, (_, i) => `p${i}`);
    for (let i = 0; i < ids.length; i += 8) {
      const batch = await Promise.all(ids.slice(i, i + 8).map((id) => call(sb, "ADD", id)));
      for (const r of batch) {
        expect(r.code, r.stdout + r.stderr).toBe(0);
        got.push(...addrs(r.json));
      }
    }
    const want = Array.from({ length: 253 }, (_, i) => `10.0.2.${i + 2}`).filter((a) => a !== "10.0.2.48" && a !== "10.0.2.236");
    expect(got.slice().sort()).toEqual(want.slice().sort());
    const e = await addErr(sb, "one-more");
    expect(e.code).toBe(100);
    expect(e.msg).toBe("no free IPv4 address in the node's podCIDRs (10.0.2.0/24: 251 allocated, 3 reserved)");
  }, 120_000);

  it("refuses a requested family the node has no podCIDR for, and keeps nothing", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.2.0/24"]));
    const e = await addErr(sb, "a", { args: "IP=fd00::5" });
    expect(e.code).toBe(101);
    expect(e.msg).toBe("requested address fd00::5 is not available: the node has no IPv6 podCIDR (spec.ipam.podCIDRs: 10.0.2.0/24)");
    expect(addrs(await addOk(sb, "b"))).toEqual(["10.0.2.2"]);
  });

  it("refuses an IPv6 address beyond the allocatable window of a /64", async () => {
    sandbox("node-host-scope.json");
    const e = await addErr(sb, "a", { args: "IP=fd00:10:244:2::5:5" });
    expect(e.code).toBe(101);
    expect(e.msg).toContain("fd00:10:244:2::/64");
    expect(addrs(await addOk(sb, "b", { args: "IP=fd00:10:244:2::ff" }))).toEqual(["10.244.2.2", "fd00:10:244:2::ff"]);
  });

  it("a new CIDR overlapping a removed one does not hand out the addresses still held in the old one", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.9.0/29"]));
    expect(addrs(await addOk(sb, "old"))).toEqual(["10.0.9.2"]);
    replaceNode(sb, ciliumNode(["10.0.9.0/28"]));
    expect(addrs(await addOk(sb, "new"))).toEqual(["10.0.9.3"]);
    const e = await addErr(sb, "x", { args: "IP=10.0.9.2" });
    expect(e.code).toBe(101);
    expect(e.msg).toBe("requested address 10.0.9.2 is not available: it is reserved in 10.0.9.0/28 (held in 10.0.9.0/29)");
    await delOk(sb, "old");
    expect(addrs(await addOk(sb, "x", { args: "IP=10.0.9.2" }))).toEqual(["10.0.9.2"]);
  });
});
