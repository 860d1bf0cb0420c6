// Multi-pool through the executable: a CiliumNode's spec.ipam.pools.allocated, the pool of
// each family chosen from every source (args.cni.pool, ipam.pool, the pod's annotations in
// runtimeConfig, its namespace's from the agent's map, "default"), a pool the node has no
// CIDR of yet (11, naming it), the first and last address of each CIDR reserved, and
// `status` by pool. Every refusal leaves the store as it was.
import { writeFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { addErr, addOk, addrs, call, delOk, replaceNode, statusArgs, statusJson } from "../helpers/exe";
import { Sandbox, cli, run } from "../helpers/plugin";
import { snapshot } from "../helpers/snapshot";

let sb: Sandbox;
afterEach(() => sb?.cleanup());

type Allocated = { pool: string; cidrs: string[] }[];
const multiPool = (allocated: Allocated, extra: Record<string, unknown> = {}) => ({
  apiVersion: "cilium.io/v2",
  kind: "CiliumNode",
  metadata: { name: "worker-1" },
  spec: { ipam: { pools: { allocated, requested: allocated.map((a) => ({ pool: a.pool, needed: { "ipv4-addrs": 8 } })) }, ...extra } },
});

const POOLS: Allocated = [
  { pool: "default", cidrs: ["10.10.0.0/24", "fd00:10::/120"] },
  { pool: "blue", cidrs: ["10.20.0.0/24", "fd00:20::/120"] },
  { pool: "green", cidrs: ["10.30.0.0/24"] },
];

function setup(allocated: Allocated = POOLS, namespaces: Record<string, Record<string, string>> | null = {}): void {
  sb = new Sandbox();
  sb.writeNode(multiPool(allocated));
  if (namespaces) writeFileSync(`${sb.nodeFile}.namespaces.json`, JSON.stringify({ namespaces }));
}

const annotated = (a: Record<string, string>) => ({ top: { runtimeConfig: { "io.kubernetes.cri.pod-annotations": a } } });

describe("multi-pool", () => {
  it("gives a pod with no hint pool default, and each source its pool, in the documented order", async () => {
    setup(POOLS, { "team-a": { "ipam.cilium.io/ip-pool": "green" } });
    expect(addrs(await addOk(sb, "plain", { pod: ["default", "p0"] }))).toEqual(["10.10.0.2", "fd00:10::2"]);
    // The pod's annotation, per family: IPv4 from blue, IPv6 (ip-pool) from default.
    const perFamily = annotated({ "ipam.cilium.io/ipv4-pool": "blue", "ipam.cilium.io/ip-pool": "default" });
    expect(addrs(await addOk(sb, "ann", { pod: ["default", "p1"], ...perFamily }))).toEqual(["10.20.0.2", "fd00:10::3"]);
    // The namespace's annotation (from the agent's map): green has no IPv6 CIDR, so 11 names it.
    const nsOnly = await addErr(sb, "ns", { pod: ["team-a", "p2"] });
    expect(nsOnly).toMatchObject({
      code: 11,
      msg: `pool "green" (from namespace team-a's annotation ipam.cilium.io/ip-pool) has no IPv6 CIDR on node worker-1 yet (spec.ipam.pools.allocated has: default, blue, green)`,
    });
    // The pod's own annotation beats its namespace's.
    const own = annotated({ "ipam.cilium.io/ip-pool": "blue" });
    expect(addrs(await addOk(sb, "own", { pod: ["team-a", "p3"], ...own }))).toEqual(["10.20.0.3", "fd00:20::2"]);
    // ipam.pool pins the network over the pod's annotation; args.cni.pool (Multus) beats both.
    expect(
      addrs(
        await addOk(sb, "pinned", {
          pod: ["default", "p4"],
          ipam: { pool: "blue" },
          ...annotated({ "ipam.cilium.io/ip-pool": "default" }),
        }),
      ),
    ).toEqual(["10.20.0.4", "fd00:20::3"]);
    const multus = await call(sb, "ADD", "multus", { ipam: { pool: "default" }, top: { args: { cni: { pool: "blue" } } } });
    expect(multus.json.ips.map((i: { address: string }) => i.address)).toEqual(["10.20.0.5/24", "fd00:20::4/120"]);
  });

  it("a pool the node has no CIDR of: 11 naming it, store unchanged; once the operator delivers one, the same ADD succeeds", async () => {
    setup();
    await addOk(sb, "first");
    const before = snapshot(sb.dataDir);
    const e = await addErr(sb, "red-1", annotated({ "ipam.cilium.io/ip-pool": "red" }));
    expect(e.code).toBe(11);
    expect(e.msg).toBe(
      `pool "red" (from the pod's annotation ipam.cilium.io/ip-pool) has no IPv4 CIDR on node worker-1 yet (spec.ipam.pools.allocated has: default, blue, green)`,
    );
    expect(e.details).toContain("spec.ipam.pools.requested");
    expect(snapshot(sb.dataDir)).toEqual(before);
    replaceNode(sb, multiPool([...POOLS, { pool: "red", cidrs: ["10.40.0.0/28", "fd00:40::/124"] }]));
    expect(addrs(await addOk(sb, "red-1", annotated({ "ipam.cilium.io/ip-pool": "red" })))).toEqual(["10.40.0.2", "fd00:40::2"]);
  });

  it("reserves the first and the last address of each CIDR (a /30 and a /126 hold one pod each)", async () => {
    setup([{ pool: "default", cidrs: ["10.50.0.0/30", "fd00:50::/126"] }]);
    expect(addrs(await addOk(sb, "only"))).toEqual(["10.50.0.2", "fd00:50::2"]);
    // IPv6 fd00:50::3, the last address, is not handed out: the pool is full.
    const full = await addErr(sb, "second");
    expect(full.code).toBe(100);
    await delOk(sb, "only");
    const asked = await addErr(sb, "ask", { args: "IP=fd00:50::3" });
    expect(asked.msg).toBe("requested address fd00:50::3 is not available: it is reserved in fd00:50::/126 (last address)");
  });

  it("refuses with the store unchanged: require-pool-match, a bad annotation, a bad cni-args pool, no namespace map, a map that does not parse", async () => {
    setup(POOLS, null);
    await addOk(sb, "first", { ipam: { pool: "default" } });
    const before = snapshot(sb.dataDir);
    const cases: [Parameters<typeof call>[3], number, string][] = [
      [
        // (no namespace in CNI_ARGS: with one, the missing map would answer first, below)
        annotated({ "ipam.cilium.io/require-pool-match": "true" }),
        7,
        'no pool matches the pod for IPv4, and the pod requires a match (ipam.cilium.io/require-pool-match: "true")',
      ],
      [
        { pod: ["default", "p"], ...annotated({ "ipam.cilium.io/ipv6-pool": "Blue" }) },
        7,
        `the pod's annotation ipam.cilium.io/ipv6-pool "Blue" is not a pool name`,
      ],
      [{ top: { args: { cni: { pool: 7 } } } }, 7, "args.cni.pool must be a pool name"],
      [
        { top: { runtimeConfig: { "io.kubernetes.cri.pod-annotations": "x" } } },
        7,
        'runtimeConfig["io.kubernetes.cri.pod-annotations"] must be an object of annotations',
      ],
      [{ pod: ["team-a", "p"] }, 11, "the namespaces' pool map"],
    ];
    for (const [o, code, msg] of cases) {
      const e = await addErr(sb, "refused", o);
      expect([e.code, e.msg.slice(0, msg.length)], JSON.stringify(o)).toEqual([code, msg]);
      expect(snapshot(sb.dataDir)).toEqual(before);
    }
    writeFileSync(`${sb.nodeFile}.namespaces.json`, '{"namespaces": {"team-a": "blue"}}');
    const bad = await addErr(sb, "refused", { pod: ["team-a", "p"] });
    expect([bad.code, bad.msg]).toEqual([
      102,
      `the namespaces' pool map ${sb.nodeFile}.namespaces.json lists namespace "team-a" with "blue", not an object of annotation strings`,
    ]);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("refuses (102) a node object that mixes podCIDRs and pools, unless ipam.mode picks one", async () => {
    sb = new Sandbox();
    sb.writeNode(multiPool(POOLS, { podCIDRs: ["10.0.2.0/24"] }));
    const e = await addErr(sb, "a");
    expect([e.code, e.msg]).toEqual([
      102,
      `node file ${sb.nodeFile}: mixes Cilium IPAM modes: spec.ipam.podCIDRs (cluster-pool) and spec.ipam.pools (multi-pool)`,
    ]);
    expect(addrs(await addOk(sb, "a", { ipam: { mode: "cluster-pool" } }))).toEqual(["10.0.2.2"]);
    expect(addrs(await addOk(sb, "b", { ipam: { mode: "multi-pool", pool: "blue" } }))).toEqual(["10.20.0.2", "fd00:20::2"]);
  });

  it("`status` shows each CIDR under its pool; DEL releases and CHECK passes; STATUS is ready", async () => {
    setup();
    const res = await addOk(sb, "a", annotated({ "ipam.cilium.io/ip-pool": "blue" }));
    const check = await run({ command: "CHECK", containerID: "a", stdin: { ...sb.conf("1.1.0"), prevResult: res } });
    expect(check.code, check.stdout + check.stderr).toBe(0);
    const text = await cli(["status", ...statusArgs(sb)]);
    expect(text.stdout).toContain("Pool blue: IPv4 2/254 allocated from 10.20.0.0/24");
    // The gateway and the last address of fd00:10::/120 are reserved.
    expect(text.stdout).toContain("Pool default: IPv6 2/255 allocated from fd00:10::/120");
    const json = await statusJson(sb);
    expect(json.ranges.map((r: { cidr: string; pool?: string }) => [r.pool, r.cidr])).toEqual(
      POOLS.flatMap((p) => p.cidrs.map((c) => [p.pool, c])),
    );
    const status = await run({
      command: "STATUS",
      env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined },
      stdin: sb.conf("1.1.0"),
    });
    expect(status.code, status.stdout).toBe(0);
    await delOk(sb, "a");
    expect((await statusJson(sb)).ranges.find((r: { cidr: string }) => r.cidr === "10.20.0.0/24").allocated).toBe(0);
  });
});
