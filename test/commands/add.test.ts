// ADD in process: dispatch() over makeHandlers(memoryDeps(store)); the node file on disk.
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { InProcess, addrs } from "../helpers/in-process";

const DUAL = ciliumNode(["10.0.2.0/24", "fd00::200/120"], { router: ["10.0.2.10"], health: { ipv4: "10.0.2.11", ipv6: "fd00::20b" } });
const KEY = (containerID: string, ifname = "eth0", network = "podnet") => ({ network, containerID, ifname });
const UNAVAILABLE = "request an address inside the node's podCIDRs that no pod holds, or drop the request";

let n: InProcess;
afterEach(() => n.cleanup());

describe("ADD: next free addresses", () => {
  it("gives a dual-stack node's first pod the first address of each family, with the gateways, and records it", async () => {
    n = new InProcess(DUAL);
    const r = await n.add("c1", { pod: ["default", "web"] });
    expect(r).toEqual({
      cniVersion: "1.1.0",
      ips: [
        { address: "10.0.2.2/24", gateway: "10.0.2.1" },
        { address: "fd00::202/120", gateway: "fd00::201" },
      ],
    });
    const rec = n.store.record(KEY("c1"));
    expect(rec).toMatchObject({
      network: "podnet",
      netns: "/var/run/netns/c1",
      namespace: "default",
      pod: "web",
      ips: [
        { cidr: "10.0.2.0/24", address: "10.0.2.2" },
        { cidr: "fd00::200/120", address: "fd00::202" },
      ],
    });
    const snap = n.store.snapshot();
    expect(Object.keys(snap.ranges)).toEqual(["10.0.2.0/24", "fd00::200/120"]);
    expect(snap.ranges["10.0.2.0/24"]).toMatchObject({ offsets: [1], allocated: 1, next: 2 });
    expect(snap.ranges["fd00::200/120"]).toMatchObject({ offsets: [1], allocated: 1, next: 2 });
    expect(n.claims.ensured).toEqual(["10.0.2.0/24", "fd00::200/120"]);
  });

  it("hands out addresses next-fit: a released address is not reused until the scan wraps", async () => {
    n = new InProcess(ciliumNode(["10.0.2.0/29"]));
    expect(addrs(await n.add("c1"))).toEqual(["10.0.2.2"]);
    expect(addrs(await n.add("c2"))).toEqual(["10.0.2.3"]);
    await n.ok("DEL", "c1");
    expect(addrs(await n.add("c3"))).toEqual(["10.0.2.4"]);
    expect(addrs(await n.add("c4"))).toEqual(["10.0.2.5"]);
    expect(addrs(await n.add("c5"))).toEqual(["10.0.2.6"]);
    expect(addrs(await n.add("c6"))).toEqual(["10.0.2.2"]);
  });

  it("skips the node's router and health addresses", async () => {
    n = new InProcess(DUAL);
    const got: string[] = [];
    for (let i = 0; i < 9; i++) got.push(addrs(await n.add(`c${i}`))[0]!);
    expect(got).toEqual(["10.0.2.2", "10.0.2.3", "10.0.2.4", "10.0.2.5", "10.0.2.6", "10.0.2.7", "10.0.2.8", "10.0.2.9", "10.0.2.12"]);
  });

  it("answers 100 when a family is full, naming the podCIDR's counts, and keeps nothing", async () => {
    n = new InProcess(ciliumNode(["10.0.2.0/29"]));
    for (let i = 1; i <= 5; i++) await n.add(`c${i}`);
    const before = n.store.snapshot();
    const e = await n.fails("ADD", "c6");
    expect(e.code).toBe(100);
    expect(e.msg).toBe("no free IPv4 address in the node's podCIDRs (10.0.2.0/29: 5 allocated, 1 reserved)");
    expect(e.details).toContain("Every IPv4 podCIDR in spec.ipam.podCIDRs is full");
    expect(n.store.snapshot()).toEqual(before);
  });

  it("is all or nothing across families: IPv6 full keeps no IPv4 address either", async () => {
    n = new InProcess(ciliumNode(["10.0.2.0/24", "fd00::200/126"]));
    await n.add("c1");
    await n.add("c2");
    const before = n.store.snapshot();
    expect(before.ranges["10.0.2.0/24"]!.offsets).toEqual([1, 2]);
    const e = await n.fails("ADD", "c3");
    expect(e.code).toBe(100);
    expect(e.msg).toBe("no free IPv6 address in the node's podCIDRs (fd00::200/126: 2 allocated, 1 reserved)");
    expect(n.store.snapshot()).toEqual(before);
    expect(n.store.record(KEY("c3"))).toBeUndefined();
  });
});

describe("ADD: a requested address (IP= in CNI_ARGS)", () => {
  it("grants a free address of the podCIDR, and the next one of the other family", async () => {
    n = new InProcess(DUAL);
    expect(addrs(await n.add("c1", { args: "IP=10.0.2.50" }))).toEqual(["10.0.2.50", "fd00::202"]);
    expect(addrs(await n.add("c2", { args: "IP=10.0.2.51,fd00::251" }))).toEqual(["10.0.2.51", "fd00::251"]);
    expect(n.store.snapshot().ranges["10.0.2.0/24"]!.offsets).toEqual([49, 50]);
    expect(n.store.record(KEY("c2"))!.ips).toEqual([
      { cidr: "10.0.2.0/24", address: "10.0.2.51" },
      { cidr: "fd00::200/120", address: "fd00::251" },
    ]);
  });

  describe("refusals leave the store as it was", () => {
    const refusals: { name: string; args: string; code: number; msg: string }[] = [
      {
        name: "outside every podCIDR",
        args: "IP=10.0.3.5",
        code: 101,
        msg: "requested address 10.0.3.5 is not available: it is outside every podCIDR of the node (10.0.2.0/24, fd00::200/120)",
      },
      {
        name: "the network address",
        args: "IP=10.0.2.0",
        code: 101,
        msg: "requested address 10.0.2.0 is not available: it is the network or broadcast address of 10.0.2.0/24",
      },
      {
        name: "the broadcast address",
        args: "IP=10.0.2.255",
        code: 101,
        msg: "requested address 10.0.2.255 is not available: it is the network or broadcast address of 10.0.2.0/24",
      },
      {
        name: "the IPv6 anycast address",
        args: "IP=fd00::200",
        code: 101,
        msg: "requested address fd00::200 is not available: it is the subnet-router anycast address of fd00::200/120",
      },
      {
        name: "the IPv4 gateway",
        args: "IP=10.0.2.1",
        code: 101,
        msg: "requested address 10.0.2.1 is not available: it is reserved in 10.0.2.0/24 (gateway)",
      },
      {
        name: "the IPv6 gateway",
        args: "IP=fd00::201",
        code: 101,
        msg: "requested address fd00::201 is not available: it is reserved in fd00::200/120 (gateway)",
      },
      {
        name: "the router address",
        args: "IP=10.0.2.10",
        code: 101,
        msg: "requested address 10.0.2.10 is not available: it is reserved in 10.0.2.0/24 (router)",
      },
      {
        name: "the IPv4 health address",
        args: "IP=10.0.2.11",
        code: 101,
        msg: "requested address 10.0.2.11 is not available: it is reserved in 10.0.2.0/24 (health)",
      },
      {
        name: "the IPv6 health address",
        args: "IP=fd00::20b",
        code: 101,
        msg: "requested address fd00::20b is not available: it is reserved in fd00::200/120 (health)",
      },
      {
        name: "held by a pod (named)",
        args: "IP=10.0.2.50",
        code: 101,
        msg: "requested address 10.0.2.50 is not available: it is held by default/web (podnet/c1/eth0)",
      },
      {
        name: "held by an attachment without a pod name",
        args: "IP=fd00::250",
        code: 101,
        msg: "requested address fd00::250 is not available: it is held by podnet/c2/eth0",
      },
      {
        name: "two addresses of one family",
        args: "IP=10.0.2.60,10.0.2.61",
        code: 7,
        msg: "more than one IPv4 address requested (10.0.2.60, 10.0.2.61)",
      },
    ];

    it.each(refusals)("$name: $code", async ({ args, code, msg }) => {
      n = new InProcess(DUAL);
      await n.add("c1", { args: "IP=10.0.2.50", pod: ["default", "web"] });
      await n.add("c2", { args: "IP=fd00::250" });
      const before = n.store.snapshot();
      const e = await n.fails("ADD", "c3", { args });
      expect(e.code).toBe(code);
      expect(e.msg).toBe(msg);
      if (code === 101) expect(e.details).toBe(UNAVAILABLE);
      expect(n.store.snapshot()).toEqual(before);
    });

    it("an address of a family the node has no podCIDR of: 101, and a new store is not even created", async () => {
      n = new InProcess(ciliumNode(["10.0.2.0/24"]));
      const e = await n.fails("ADD", "c1", { args: "IP=fd00::205" });
      expect(e.code).toBe(101);
      expect(e.msg).toBe("requested address fd00::205 is not available: the node has no IPv6 podCIDR (spec.ipam.podCIDRs: 10.0.2.0/24)");
      expect(n.store.snapshot()).toEqual({ exists: false, ranges: {}, records: {}, damaged: [], networks: [], quarantined: [] });
      expect(n.claims.ensured).toEqual([]);
    });
  });
});

describe("ADD for an attachment that exists", () => {
  it("into the same netns: 106, the store unchanged", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    const before = n.store.snapshot();
    const e = await n.fails("ADD", "c1");
    expect(e.code).toBe(106);
    expect(e.msg).toBe("podnet/c1/eth0 already holds 10.0.2.2, fd00::202 in netns /var/run/netns/c1");
    expect(n.store.snapshot()).toEqual(before);
  });

  it("into a new netns: the same addresses, and the record's netns updated", async () => {
    n = new InProcess(DUAL);
    const first = await n.add("c1");
    const before = n.store.snapshot();
    const again = await n.add("c1", { netns: "/var/run/netns/restarted" });
    expect(again).toEqual(first);
    const after = n.store.snapshot();
    expect(after.ranges).toEqual(before.ranges);
    expect(n.store.record(KEY("c1"))).toEqual({ ...before.records["attachments/podnet/c1@eth0.json"], netns: "/var/run/netns/restarted" });
  });

  it("into a new netns asking for an address it does not hold: 101, the store unchanged", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    const before = n.store.snapshot();
    const e = await n.fails("ADD", "c1", { netns: "/var/run/netns/restarted", args: "IP=10.0.2.60" });
    expect(e.code).toBe(101);
    expect(e.msg).toBe("c1/eth0 already holds 10.0.2.2, fd00::202, not the requested 10.0.2.60");
    expect(n.store.snapshot()).toEqual(before);
  });

  it("another interface of the same container is another attachment", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    expect(addrs(await n.add("c1", { ifname: "net1" }))).toEqual(["10.0.2.3", "fd00::203"]);
  });
});

describe("ADD when the node's podCIDR was replaced by an overlapping one", () => {
  it("never hands out an orphaned range's live address, gateway, network or broadcast address from the new CIDR", async () => {
    n = new InProcess(ciliumNode(["10.0.2.16/28"]));
    expect(addrs(await n.add("old"))).toEqual(["10.0.2.18"]);
    n.setNode(ciliumNode(["10.0.2.0/26"]));
    const got = new Set<string>();
    for (let i = 0; i < 57; i++) got.add(addrs(await n.add(`c${i}`))[0]!);
    const expected = new Set<string>();
    for (let h = 2; h <= 62; h++) if (![16, 17, 18, 31].includes(h)) expected.add(`10.0.2.${h}`);
    expect(got).toEqual(expected);
    const before = n.store.snapshot();
    const e = await n.fails("ADD", "one-more");
    expect(e.code).toBe(100);
    expect(e.msg).toBe("no free IPv4 address in the node's podCIDRs (10.0.2.0/26: 57 allocated, 5 reserved)");
    expect(n.store.snapshot()).toEqual(before);
  });

  it("refuses to grant those addresses on request, saying why, until the old range is empty", async () => {
    n = new InProcess(ciliumNode(["10.0.2.16/28"]));
    await n.add("old");
    n.setNode(ciliumNode(["10.0.2.0/26"]));
    const cases: [string, string][] = [
      ["10.0.2.16", "network address of 10.0.2.16/28, which still holds addresses"],
      ["10.0.2.17", "gateway of 10.0.2.16/28, which still holds addresses"],
      ["10.0.2.18", "held in 10.0.2.16/28"],
      ["10.0.2.31", "broadcast address of 10.0.2.16/28, which still holds addresses"],
    ];
    for (const [ip, why] of cases) {
      const e = await n.fails("ADD", "c1", { args: `IP=${ip}` });
      expect(e.code).toBe(101);
      expect(e.msg).toBe(`requested address ${ip} is not available: it is reserved in 10.0.2.0/26 (${why})`);
    }
    await n.ok("DEL", "old");
    expect(addrs(await n.add("c1", { args: "IP=10.0.2.17" }))).toEqual(["10.0.2.17"]);
  });

  it("a new CIDR whose gateway a live pod holds: 11 when there is no other CIDR, the store unchanged", async () => {
    n = new InProcess(ciliumNode(["10.0.2.0/24"]));
    await n.add("old", { args: "IP=10.0.2.129" });
    n.setNode(ciliumNode(["10.0.2.128/25"]));
    const before = n.store.snapshot();
    const e = await n.fails("ADD", "c1");
    expect(e.code).toBe(11);
    expect(e.msg).toBe("no usable IPv4 podCIDR: the gateway of 10.0.2.128/25, 10.0.2.129, is a pod's address in 10.0.2.0/24");
    expect(e.details).toContain("New pods get addresses there once that pod is deleted");
    expect(n.store.snapshot()).toEqual(before);
    // With another CIDR to draw from, ADD goes on there.
    n.setNode(ciliumNode(["10.0.2.128/25", "10.0.3.0/24"]));
    expect(addrs(await n.add("c1"))).toEqual(["10.0.3.2"]);
  });
});
