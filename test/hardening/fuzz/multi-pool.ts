// Multi-pool's shapes, broken (docs/modes.md): node objects that mix modes or carry a bad
// spec.ipam.pools or node address (102, or 50 for STATUS), and, over a valid multi-pool
// node, a bad ipam.mode or ipam.pool, args.cni.pool, pod-annotations capability, pool
// annotation or namespaces' map (7, 11 or 102). Every one must leave the store unchanged.
import { Raw, type Rng, clone, deepArr, deepObj, depth, encode } from "./bytes";
import { type Ctx, type Fault, type NodeSetup, type Spec, type Target, ipamOf } from "./types";

const POOLS = [
  { pool: "default", cidrs: ["10.0.2.0/24", "fd00::200/120"] },
  { pool: "blue", cidrs: ["10.0.3.0/24"] },
];
const BAD_NAMES: unknown[] = ["Blue", "blue_pool", "", "-blue", "blue-", "a".repeat(254), "blue pool", "blü", 5, null, true, ["blue"], {}];
const CAP = "io.kubernetes.cri.pod-annotations";

function multiPool(ipam: Record<string, unknown>, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return { apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name: "fz-node" }, spec: { ...spec, ipam } };
}

export function multiPoolFault(r: Rng, s: Spec, ctx: Ctx, id: number, target: Target): Fault {
  const path = `${ctx.nodesDir}/mp-${id}.json`;
  ipamOf(s).nodeFile = path;
  const add = target !== "STATUS";
  // `namespaces` null: no map beside the node file.
  const node = (obj: unknown, namespaces: unknown = null): NodeSetup => ({
    kind: "bytes",
    bytes: encode(obj),
    ...(namespaces === null ? {} : { namespaces: typeof namespaces === "string" ? Buffer.from(namespaces) : encode(namespaces) }),
  });
  // A node object the plugin refuses: 102 for ADD, 50 for STATUS.
  const badNode = (variant: string, obj: unknown, mentions: string[]): Fault => {
    s.node = { path, setup: node(obj) };
    return { variant: `node: ${variant}`, codes: add ? [102] : [50], mentions: [`node file ${path}`, ...mentions] };
  };
  // A valid multi-pool node, and a bad request.
  const badAsk = (variant: string, codes: number[], mentions: string[], namespaces: unknown = { namespaces: {} }): Fault => {
    s.node = { path, setup: node(multiPool({ pools: { allocated: clone(POOLS) } }), namespaces) };
    return { variant, codes, mentions };
  };
  const nodeFaults: (() => Fault)[] = [
    () => badNode("mixed modes", multiPool({ podCIDRs: ["10.0.9.0/24"], pools: { allocated: clone(POOLS) } }), ["mixes Cilium IPAM modes"]),
    () => badNode("a CRD-backed node", multiPool({ pool: { "10.0.2.9": {} } }), ["CRD-backed"]),
    () => {
      const v = r.pick<unknown>([["x"], 5, "pools", true, deepArr(depth(r))]);
      return badNode(`pools wrong type${v instanceof Raw ? " (deeply nested)" : ""}`, multiPool({ pools: v }), ["spec.ipam.pools"]);
    },
    () => {
      const v = r.pick<unknown>([{ default: ["10.0.2.0/24"] }, 5, "default", true, deepObj(depth(r))]);
      return badNode("allocated wrong type", multiPool({ pools: { allocated: v } }), ["spec.ipam.pools.allocated"]);
    },
    () => {
      const entries = clone(POOLS) as unknown[];
      const i = r.int(0, entries.length + 1);
      entries.splice(i, 0, r.pick<unknown>(["blue", 5, null, [], { cidrs: ["10.0.4.0/24"] }]));
      return badNode("allocated entry wrong type", multiPool({ pools: { allocated: entries } }), [`spec.ipam.pools.allocated[${i}]`]);
    },
    () => {
      const entries = clone(POOLS) as { pool: unknown; cidrs: string[] }[];
      const i = r.int(0, entries.length);
      entries[i]!.pool = r.pick(BAD_NAMES);
      return badNode("bad pool name", multiPool({ pools: { allocated: entries } }), [`spec.ipam.pools.allocated[${i}].pool`]);
    },
    () => {
      const entries = [...clone(POOLS), { pool: "default", cidrs: ["10.0.8.0/24"] }];
      return badNode("a pool listed twice", multiPool({ pools: { allocated: entries } }), ["listed twice"]);
    },
    () => {
      const entries = clone(POOLS) as { pool: string; cidrs: unknown[] }[];
      entries[1]!.cidrs = [r.pick(["10.0.2.128/25", "10.0.0.0/16", "10.0.2.0/24"])];
      return badNode("two pools over one CIDR", multiPool({ pools: { allocated: entries } }), [
        "spec.ipam.pools.allocated[1].cidrs[0]",
        "overlaps",
      ]);
    },
    () => {
      const entries = clone(POOLS) as { pool: string; cidrs: unknown[] }[];
      const bad = r.pick<unknown>(["10.0.5.0/33", "10.0.5.1/24", "10.0.5.0/31", "fd00::/127", "x", 5, null, "", "010.0.5.0/24"]);
      entries[1]!.cidrs.push(bad);
      return badNode("a bad CIDR in a pool", multiPool({ pools: { allocated: entries } }), ["spec.ipam.pools.allocated[1].cidrs[1]"]);
    },
    () => {
      const needed = r.pick<unknown>([{ "ipv4-addrs": -1 }, { "ipv4-addrs": 1.5 }, { "ipv6-addrs": "8" }, 5, [], "x"]);
      const requested = r.chance(0.3) ? [{ needed: {} }] : [{ pool: "default", needed }];
      return badNode("a bad request", multiPool({ pools: { allocated: clone(POOLS), requested } }), ["spec.ipam.pools.requested[0]"]);
    },
    () => {
      const ip = r.pick<unknown>(["10.0.2.300", "10.0.2.1 ", "node-1", 5, "::g"]);
      return badNode(
        "an InternalIP that is not an address",
        multiPool({ pools: { allocated: clone(POOLS) } }, { addresses: [{ ip, type: "InternalIP" }] }),
        ["(InternalIP)"],
      );
    },
  ];
  const configFaults: (() => Fault)[] = [
    () => {
      ipamOf(s).mode = r.pick<unknown>(["eni", "MultiPool", "", 5, true, ["multi-pool"], deepObj(depth(r))]);
      return badAsk("ipam.mode invalid", [7], ["ipam.mode"]);
    },
    () => {
      ipamOf(s).pool = r.pick(BAD_NAMES.filter((v) => v !== undefined));
      return badAsk("ipam.pool invalid", [7], ["ipam.pool"]);
    },
  ];
  const addFaults: (() => Fault)[] = [
    () => {
      const v = r.pick(BAD_NAMES.filter((x) => x !== "" && x !== null));
      s.conf.args = { cni: { pool: v } };
      return badAsk("args.cni.pool invalid", [7], ["args.cni.pool"]);
    },
    () => {
      s.conf.runtimeConfig = { [CAP]: r.pick<unknown>([5, "ipam.cilium.io/ip-pool=blue", true, ["a"], deepArr(depth(r))]) };
      return badAsk("pod-annotations capability wrong type", [7], [CAP]);
    },
    () => {
      const key = r.pick(["ipam.cilium.io/ip-pool", "ipam.cilium.io/ipv4-pool", "ipam.cilium.io/ipv6-pool"]);
      s.conf.runtimeConfig = { [CAP]: { [key]: r.pick(BAD_NAMES.filter((x) => typeof x === "string" && x !== "")) } };
      return badAsk("a pod annotation that is not a pool name", [7], [key, "is not a pool name"]);
    },
    () => {
      s.conf.runtimeConfig = { [CAP]: { "ipam.cilium.io/require-pool-match": "true" } };
      delete s.env.CNI_ARGS;
      return badAsk("require-pool-match with no pool", [7], ["requires a match"]);
    },
    () => {
      s.env.CNI_ARGS = `IgnoreUnknown=1;K8S_POD_NAMESPACE=fz-ns;K8S_POD_NAME=p${id}`;
      const map = r.pick<unknown>([
        "{",
        "[]",
        '{"namespaces": 5}',
        { namespaces: { "fz-ns": "blue" } },
        { namespaces: { "fz-ns": { "ipam.cilium.io/ip-pool": 5 } } },
      ]);
      return badAsk("a namespaces' map that does not parse", [102], ["the namespaces' pool map"], map);
    },
    () => {
      s.env.CNI_ARGS = `IgnoreUnknown=1;K8S_POD_NAMESPACE=fz-ns;K8S_POD_NAME=p${id}`;
      return badAsk("no namespaces' map", [11], ["the namespaces' pool map"], null);
    },
    () => {
      s.env.CNI_ARGS = `IgnoreUnknown=1;K8S_POD_NAMESPACE=fz-ns;K8S_POD_NAME=p${id}`;
      return badAsk("a namespace's pool that is not a pool name", [7], ["namespace fz-ns's annotation"], {
        namespaces: { "fz-ns": { "ipam.cilium.io/ip-pool": r.pick(["Blue", "a_b", " blue"]) } },
      });
    },
  ];
  return r.gen([...nodeFaults, ...configFaults, ...(add ? addFaults : [])]);
}
