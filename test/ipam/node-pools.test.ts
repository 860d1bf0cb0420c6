// The node file's IPAM mode: cluster-pool's spec.ipam.podCIDRs, multi-pool's
// spec.ipam.pools, CRD-backed's spec.ipam.pool; detected, or set by ipam.mode; a node
// object that mixes them refused (102) naming the fields.
import { describe, expect, it } from "vitest";
import { type CniError, Code } from "../../src/errors.js";
import type { IpamConfig } from "../../src/ipam/config.js";
import { nodeFromJson } from "../../src/ipam/node-file.js";
import { failure as thrown } from "../helpers/errors";

const PATH = "/var/lib/podcidr-ipam/node.json";
const cn = (ipam: Record<string, unknown>) => ({
  apiVersion: "cilium.io/v2",
  kind: "CiliumNode",
  metadata: { name: "w1" },
  spec: { ipam },
});
const read = (obj: unknown, mode: IpamConfig["mode"] = "auto") => nodeFromJson(obj, PATH, mode);
const failure = (obj: unknown, mode: IpamConfig["mode"] = "auto"): CniError => thrown(() => read(obj, mode));

const POOLS = {
  allocated: [
    { pool: "blue", cidrs: ["10.20.0.0/27", "fd00:20::/120", "10.20.0.32/27"] },
    { pool: "default", cidrs: ["10.10.0.0/27"] },
  ],
  requested: [
    { pool: "blue", needed: { "ipv4-addrs": 40, "ipv6-addrs": 8 } },
    { pool: "default", needed: { "ipv4-addrs": 16 } },
  ],
};

describe("the node file's IPAM mode", () => {
  it("detects multi-pool from spec.ipam.pools: each pool's CIDRs in listed order, and the requests", () => {
    const n = read(cn({ pools: POOLS }));
    expect(n.mode).toBe("multi-pool");
    expect(n.field).toBe("spec.ipam.pools.allocated");
    expect(n.pools.map((p) => [p.name, p.cidrs.map((c) => c.text)])).toEqual([
      ["blue", ["10.20.0.0/27", "fd00:20::/120", "10.20.0.32/27"]],
      ["default", ["10.10.0.0/27"]],
    ]);
    // Every pool's CIDRs are the node's: claims, status and orphans work on them as on podCIDRs.
    expect(n.podCIDRs.map((c) => c.text)).toEqual(["10.20.0.0/27", "fd00:20::/120", "10.20.0.32/27", "10.10.0.0/27"]);
    expect(n.requested).toEqual([
      { pool: "blue", ipv4: 40, ipv6: 8 },
      { pool: "default", ipv4: 16, ipv6: 0 },
    ]);
  });

  it("is multi-pool with no CIDR yet when only requested is there (the operator has not delivered)", () => {
    const n = read(cn({ pools: { requested: [{ pool: "default", needed: { "ipv4-addrs": 8 } }] } }));
    expect(n.mode).toBe("multi-pool");
    expect(n.podCIDRs).toEqual([]);
  });

  it("is cluster-pool from spec.ipam.podCIDRs, and for an empty spec.ipam; a v1 Node is kubernetes", () => {
    expect(read(cn({ podCIDRs: ["10.0.2.0/24"] })).mode).toBe("cluster-pool");
    expect(read(cn({ podCIDRs: [], pools: { allocated: [] } })).mode).toBe("cluster-pool");
    const node = read({ apiVersion: "v1", kind: "Node", metadata: { name: "n" }, spec: { podCIDRs: ["10.244.0.0/24"] } });
    expect([node.mode, node.pools]).toEqual(["kubernetes", []]);
  });

  it.each([
    {
      name: "podCIDRs and pools",
      ipam: { podCIDRs: ["10.0.2.0/24"], pools: POOLS },
      fields: "spec.ipam.podCIDRs (cluster-pool) and spec.ipam.pools (multi-pool)",
    },
    {
      name: "pools and a pool map",
      ipam: { pools: POOLS, pool: { "10.1.0.5": {} } },
      fields: "spec.ipam.pools (multi-pool) and spec.ipam.pool (crd)",
    },
  ])("refuses (102) a node object that mixes modes: $name", ({ ipam, fields }) => {
    const e = failure(cn(ipam));
    expect(e.code).toBe(Code.InvalidNodeFile);
    expect(e.message).toBe(`node file ${PATH}: mixes Cilium IPAM modes: ${fields}`);
    expect(e.details).toContain("ipam.mode");
  });

  it("with ipam.mode set, reads only that mode's fields", () => {
    const mixed = cn({ podCIDRs: ["10.0.2.0/24"], pools: POOLS });
    expect(read(mixed, "cluster-pool").podCIDRs.map((c) => c.text)).toEqual(["10.0.2.0/24"]);
    expect(read(mixed, "multi-pool").pools.map((p) => p.name)).toEqual(["blue", "default"]);
    expect(read(mixed, "kubernetes").mode).toBe("kubernetes");
  });

  it("refuses a CRD-backed node (this release does not serve it), and a v1 Node read as multi-pool or crd", () => {
    expect(failure(cn({ pool: { "10.1.0.5": {} } })).message).toContain(
      "is a CRD-backed node (spec.ipam.pool), which this release does not serve",
    );
    const node = { apiVersion: "v1", kind: "Node", metadata: { name: "n" }, spec: { podCIDRs: ["10.244.0.0/24"] } };
    for (const mode of ["multi-pool", "crd"] as const) {
      const e = failure(node, mode);
      expect([e.code, e.message]).toEqual([
        Code.InvalidNodeFile,
        `node file ${PATH}: is a v1 Node, but ipam.mode is ${mode}, which reads a CiliumNode`,
      ]);
    }
  });

  it.each([
    { name: "pools that is a list", pools: ["blue"], msg: "spec.ipam.pools must be an object {allocated, requested}" },
    {
      name: "allocated that is an object",
      pools: { allocated: { blue: ["10.1.0.0/24"] } },
      msg: "spec.ipam.pools.allocated must be a list of {pool, cidrs}",
    },
    {
      name: "an entry that is a string",
      pools: { allocated: ["blue"] },
      msg: 'spec.ipam.pools.allocated[0] must be {"pool": NAME, "cidrs": [CIDR, ...]}',
    },
    {
      name: "a pool name in capitals",
      pools: { allocated: [{ pool: "Blue", cidrs: [] }] },
      msg: 'spec.ipam.pools.allocated[0].pool "Blue" is not a pool name',
    },
    {
      name: "a pool listed twice",
      pools: {
        allocated: [
          { pool: "a", cidrs: ["10.1.0.0/24"] },
          { pool: "a", cidrs: ["10.2.0.0/24"] },
        ],
      },
      msg: 'spec.ipam.pools.allocated[1].pool "a" is listed twice',
    },
    {
      name: "a CIDR that does not parse",
      pools: { allocated: [{ pool: "a", cidrs: ["10.1.0.0/24", "10.1.1.0/33"] }] },
      msg: 'spec.ipam.pools.allocated[0].cidrs[1] "10.1.1.0/33" has prefix /33, longer than an IPv4 address',
    },
    {
      name: "two pools over one CIDR",
      pools: {
        allocated: [
          { pool: "a", cidrs: ["10.1.0.0/24"] },
          { pool: "b", cidrs: ["10.1.0.128/25"] },
        ],
      },
      msg: "spec.ipam.pools.allocated[1].cidrs[0] 10.1.0.128/25 overlaps 10.1.0.0/24",
    },
    {
      name: "a malformed request",
      pools: { requested: [{ pool: "a", needed: { "ipv4-addrs": -1 } }] },
      msg: "spec.ipam.pools.requested[0].needed.ipv4-addrs must be a count, got -1",
    },
    {
      name: "a request without a pool",
      pools: { requested: [{ needed: {} }] },
      msg: "spec.ipam.pools.requested[0].pool undefined is not a pool name",
    },
  ])("refuses (102) $name, saying what to fix", ({ pools, msg }) => {
    const e = failure(cn({ pools }));
    expect(e.code).toBe(Code.InvalidNodeFile);
    expect(e.message).toBe(`node file ${PATH}: ${msg}`);
  });
});
