import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { failure as thrown } from "../helpers/errors";
import { ciliumNode, v1Node } from "../helpers/node";
import { type CniError, Code } from "../../src/errors.js";
import { type NodeInfo, nodeAddressConflicts, nodeAddressProblem, parseNodeFile } from "../../src/ipam/node-file.js";

const FIXTURES = join(__dirname, "../fixtures");
const PATH = "/var/lib/podcidr-ipam/node.json";

function fixture(name: string): NodeInfo {
  return parseNodeFile(readFileSync(join(FIXTURES, name), "utf8"), PATH);
}

function parse(obj: unknown): NodeInfo {
  return parseNodeFile(typeof obj === "string" ? obj : JSON.stringify(obj), PATH);
}

const failure = (obj: unknown): CniError => thrown(() => parse(obj));

const reservedOf = (info: NodeInfo) => info.reserved.map((r) => ({ ip: r.ip, family: r.family, role: r.role }));

describe("parseNodeFile: CiliumNode", () => {
  it("reads the podCIDRs and the router and health addresses of a cluster-pool node", () => {
    const info = fixture("ciliumnode-cluster-pool.json");
    expect(info).toMatchObject({ kind: "CiliumNode", name: "my-cluster-worker2", field: "spec.ipam.podCIDRs", operatorError: "" });
    expect(info.podCIDRs.map((c) => c.text)).toEqual(["10.0.2.0/24", "fd00::200/120"]);
    // InternalIP 172.18.0.3 is the node's own address: reserved too, though outside every podCIDR here.
    expect(reservedOf(info)).toEqual([
      { ip: "172.18.0.3", family: 4, role: "node" },
      { ip: "10.0.2.236", family: 4, role: "router" },
      { ip: "10.0.2.48", family: 4, role: "health" },
    ]);
    expect(info.reserved[1]!.value).toBe(0x0a0002ecn);
    expect(nodeAddressConflicts(info)).toEqual([]);
  });

  it("reserves the ingress addresses and both families of health", () => {
    const info = parse(
      ciliumNode(["10.0.2.0/24", "fd00::200/120"], {
        spec: {
          addresses: [
            { ip: "10.0.2.1", type: "CiliumInternalIP" },
            { ip: "fd00::201", type: "CiliumInternalIP" },
            { ip: "192.0.2.10", type: "ExternalIP" },
          ],
          health: { ipv4: "10.0.2.2", ipv6: "fd00::202" },
          ingress: { ipv4: "10.0.2.3", ipv6: "fd00::203" },
        },
      }),
    );
    expect(reservedOf(info)).toEqual([
      { ip: "10.0.2.1", family: 4, role: "router" },
      { ip: "fd00::201", family: 6, role: "router" },
      { ip: "192.0.2.10", family: 4, role: "node" },
      { ip: "10.0.2.2", family: 4, role: "health" },
      { ip: "fd00::202", family: 6, role: "health" },
      { ip: "10.0.2.3", family: 4, role: "ingress" },
      { ip: "fd00::203", family: 6, role: "ingress" },
    ]);
  });

  it("reads an empty or absent reserved address as none", () => {
    const info = parse(
      ciliumNode(["10.0.2.0/24"], {
        spec: {
          addresses: [
            { ip: "", type: "CiliumInternalIP" },
            { type: "CiliumInternalIP" },
            { ip: null, type: "CiliumInternalIP" },
            "junk",
            { ip: "", type: "InternalIP" },
            { ip: "worker-1", type: "Hostname" },
          ],
          health: { ipv4: "", ipv6: null },
          ingress: "10.0.2.3",
        },
      }),
    );
    expect(info.reserved).toEqual([]);
  });

  // A reserved address that does not parse would otherwise be handed to a pod.
  it.each([
    {
      name: "a router IP with a trailing space",
      spec: {
        addresses: [
          { ip: "172.18.0.9", type: "InternalIP" },
          { ip: "10.0.2.2 ", type: "CiliumInternalIP" },
        ],
      },
      fragment: 'spec.addresses[1].ip "10.0.2.2 " is not an IP address',
    },
    {
      name: "an InternalIP that is not an address",
      spec: { addresses: [{ ip: "nonsense", type: "InternalIP" }] },
      fragment: 'spec.addresses[0].ip (InternalIP) "nonsense" is not an IP address',
    },
    {
      name: "a router IP with a leading zero",
      spec: { addresses: [{ ip: "010.0.2.3", type: "CiliumInternalIP" }] },
      fragment: 'spec.addresses[0].ip "010.0.2.3" is not an IP address',
    },
    {
      name: "a router IP that is a number",
      spec: { addresses: [{ ip: 7, type: "CiliumInternalIP" }] },
      fragment: "spec.addresses[0].ip 7 is not an IP address",
    },
    {
      name: "an IPv6 health address under ipv4",
      spec: { health: { ipv4: "fd00::202" } },
      fragment: 'spec.health.ipv4 "fd00::202" is not an IPv4 address',
    },
    {
      name: "an IPv4 health address under ipv6",
      spec: { health: { ipv6: "10.0.2.48" } },
      fragment: 'spec.health.ipv6 "10.0.2.48" is not an IPv6 address',
    },
    {
      name: "an IPv4-mapped health address under ipv6",
      spec: { health: { ipv6: "::ffff:10.0.2.48" } },
      fragment: 'spec.health.ipv6 "::ffff:10.0.2.48" is not an IPv6 address',
    },
    {
      name: "an ingress address that does not parse",
      spec: { ingress: { ipv4: "10.0.2.300" } },
      fragment: 'spec.ingress.ipv4 "10.0.2.300" is not an IP address',
    },
    {
      name: "an ingress IPv6 address with a zone",
      spec: { ingress: { ipv6: "fd00::203%eth0" } },
      fragment: 'spec.ingress.ipv6 "fd00::203%eth0" is not an IP address',
    },
  ])("refuses $name with 102 naming the field and the value", ({ spec, fragment }) => {
    const err = failure(ciliumNode(["10.0.2.0/24", "fd00::200/120"], { spec }));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${PATH}: ${fragment}`);
    expect(err.details).toContain("could be handed to a pod");
  });

  it("lists the podCIDRs an expanded node gained, in order", () => {
    expect(fixture("ciliumnode-expanded.json").podCIDRs.map((c) => c.text)).toEqual(["10.0.2.0/24", "10.0.77.0/24", "fd00::200/120"]);
  });

  it("returns no podCIDRs and the operator's error for a node still pending", () => {
    const info = fixture("ciliumnode-pending.json");
    expect(info.podCIDRs).toEqual([]);
    expect(info.operatorError).toBe("allocator clusterPoolIPv4PodCIDRList exhausted");
  });

  it("accepts any cilium.io apiVersion", () => {
    expect(parse({ ...ciliumNode(["10.0.2.0/24"]), apiVersion: "cilium.io/v2alpha1" }).kind).toBe("CiliumNode");
  });

  it("returns a frozen value", () => {
    const info = fixture("ciliumnode-cluster-pool.json");
    expect(Object.isFrozen(info)).toBe(true);
    expect(Object.isFrozen(info.podCIDRs)).toBe(true);
    expect(Object.isFrozen(info.reserved)).toBe(true);
  });
});

describe("parseNodeFile: v1 Node", () => {
  it("reads spec.podCIDRs of a dual-stack host-scope node", () => {
    const info = fixture("node-host-scope.json");
    expect(info).toMatchObject({ kind: "Node", name: "my-cluster-worker", field: "spec.podCIDRs", operatorError: "" });
    expect(info.podCIDRs.map((c) => c.text)).toEqual(["10.244.2.0/24", "fd00:10:244:2::/64"]);
    expect(info.podCIDRs[1]).toMatchObject({ size: 65536, truncated: true });
  });

  it.each([
    { name: "podCIDRs is missing", spec: { podCIDR: "10.244.2.0/24" } },
    { name: "podCIDRs is empty", spec: { podCIDR: "10.244.2.0/24", podCIDRs: [] } },
    { name: "podCIDRs is null (as jq or a hand-written copy prints it)", spec: { podCIDR: "10.244.2.0/24", podCIDRs: null } },
  ])("falls back to spec.podCIDR when $name", ({ spec }) => {
    const info = parse(v1Node(spec));
    expect(info.field).toBe("spec.podCIDR");
    expect(info.podCIDRs.map((c) => c.text)).toEqual(["10.244.2.0/24"]);
  });

  it.each([
    { name: "no podCIDR at all", spec: {} },
    { name: "an empty podCIDR", spec: { podCIDR: "" } },
  ])("returns no podCIDRs for $name (not yet assigned)", ({ spec }) => {
    const info = parse(v1Node(spec));
    expect(info.field).toBe("spec.podCIDRs");
    expect(info.podCIDRs).toEqual([]);
  });

  it("names spec.podCIDR in the message when the fallback is bad", () => {
    const err = failure(v1Node({ podCIDR: "10.244.2.5/24" }));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${PATH}: spec.podCIDR[0] "10.244.2.5/24" has host bits set; the network is 10.244.2.0/24`);
  });

  it("reserves the cilium-host, health and ingress annotations of both families", () => {
    const info = parse(
      v1Node(
        { podCIDRs: ["10.244.2.0/24", "fd00::/112"] },
        {
          "io.cilium.network.ipv4-cilium-host": "10.244.2.1",
          "io.cilium.network.ipv6-cilium-host": "fd00::1",
          "io.cilium.network.ipv4-health-ip": "10.244.2.2",
          "io.cilium.network.ipv6-health-ip": "fd00::2",
          "io.cilium.network.ipv4-ingress-ip": "10.244.2.3",
          "io.cilium.network.ipv6-ingress-ip": "fd00::3",
          "node.alpha.kubernetes.io/ttl": "0",
        },
      ),
    );
    expect(reservedOf(info)).toEqual([
      { ip: "10.244.2.1", family: 4, role: "router" },
      { ip: "fd00::1", family: 6, role: "router" },
      { ip: "10.244.2.2", family: 4, role: "health" },
      { ip: "fd00::2", family: 6, role: "health" },
      { ip: "10.244.2.3", family: 4, role: "ingress" },
      { ip: "fd00::3", family: 6, role: "ingress" },
    ]);
  });
});

describe("parseNodeFile: v1 Node annotations that do not parse", () => {
  const key = (k: string) => `metadata.annotations["io.cilium.network.${k}"]`;
  it.each<{ name: string; ann: Record<string, string>; fragment: string }>([
    {
      name: "a cilium-host address with a trailing space",
      ann: { "io.cilium.network.ipv4-cilium-host": "10.244.2.1 " },
      fragment: `${key("ipv4-cilium-host")} "10.244.2.1 " is not an IP address`,
    },
    {
      name: "a health address with a leading zero",
      ann: { "io.cilium.network.ipv4-health-ip": "010.244.2.2" },
      fragment: `${key("ipv4-health-ip")} "010.244.2.2" is not an IP address`,
    },
    {
      name: "an IPv6 address under an ipv4- key",
      ann: { "io.cilium.network.ipv4-ingress-ip": "fd00::3" },
      fragment: `${key("ipv4-ingress-ip")} "fd00::3" is not an IPv4 address`,
    },
    {
      name: "an IPv4 address under an ipv6- key",
      ann: { "io.cilium.network.ipv6-cilium-host": "10.244.2.1" },
      fragment: `${key("ipv6-cilium-host")} "10.244.2.1" is not an IPv6 address`,
    },
  ])("refuses $name with 102", ({ ann, fragment }) => {
    const err = failure(v1Node({ podCIDRs: ["10.244.2.0/24", "fd00::/112"] }, ann));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${PATH}: ${fragment}`);
  });

  it("reads an empty annotation as none", () => {
    expect(parse(v1Node({ podCIDRs: ["10.244.2.0/24"] }, { "io.cilium.network.ipv4-health-ip": "" })).reserved).toEqual([]);
  });
});

describe("parseNodeFile: podCIDR list", () => {
  it.each([
    { name: "the same text twice", list: ["10.0.2.0/24", "10.0.2.0/24"], expected: ["10.0.2.0/24"] },
    {
      name: "the same IPv6 network spelt two ways",
      list: ["fd00::200/120", "fd00:0:0::200/120", "10.0.2.0/24"],
      expected: ["fd00::200/120", "10.0.2.0/24"],
    },
  ])("drops duplicates: $name", ({ list, expected }) => {
    expect(parse(ciliumNode(list)).podCIDRs.map((c) => c.text)).toEqual(expected);
  });

  it.each([
    {
      name: "a /16 over an earlier /24",
      list: ["10.0.2.0/24", "10.0.0.0/16"],
      fragment: "spec.ipam.podCIDRs[1] 10.0.0.0/16 overlaps 10.0.2.0/24",
    },
    {
      name: "a /24 inside an earlier /16",
      list: ["10.0.0.0/16", "fd00::/120", "10.0.9.0/24"],
      fragment: "spec.ipam.podCIDRs[2] 10.0.9.0/24 overlaps 10.0.0.0/16",
    },
    {
      name: "IPv6 /120 inside a /64",
      list: ["fd00::/64", "fd00::200/120"],
      fragment: "spec.ipam.podCIDRs[1] fd00::200/120 overlaps fd00::/64",
    },
  ])("rejects overlapping podCIDRs: $name", ({ list, fragment }) => {
    const err = failure(ciliumNode(list));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${PATH}: ${fragment}`);
    expect(err.details).toContain("podCIDRs must not overlap");
  });

  it.each([
    { name: "a /31", list: ["10.0.2.0/31"], fragment: 'spec.ipam.podCIDRs[0] "10.0.2.0/31" is too small to allocate from' },
    { name: "a number", list: ["10.0.2.0/24", 24], fragment: 'spec.ipam.podCIDRs[1] must be a CIDR string such as "10.0.2.0/24", got 24' },
    {
      name: "host bits",
      list: ["10.0.2.7/24"],
      fragment: 'spec.ipam.podCIDRs[0] "10.0.2.7/24" has host bits set; the network is 10.0.2.0/24',
    },
  ])("rejects a bad entry: $name", ({ list, fragment }) => {
    const err = failure(ciliumNode(list));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toContain(fragment);
  });

  it("rejects a podCIDRs that is not a list", () => {
    const err = failure(ciliumNode("10.0.2.0/24"));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${PATH}: spec.ipam.podCIDRs must be a list of CIDR strings`);
    expect(err.details).toBe('got "10.0.2.0/24"');
  });
});

describe("parseNodeFile: not a node", () => {
  it.each([
    { name: "a YAML CiliumNode", text: "apiVersion: cilium.io/v2\nkind: CiliumNode\n", yaml: true },
    { name: "a YAML document marker", text: "---\nkind: Node\n", yaml: true },
    { name: "an empty file", text: "", yaml: false },
    { name: "truncated JSON", text: '{"apiVersion": "v1", "kind": "No', yaml: false },
  ])("reports $name as not JSON", ({ text, yaml }) => {
    const err = failure(text);
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${PATH}: is not JSON`);
    expect(err.details).toContain("kubectl get ciliumnode NODE -o json");
    expect(err.details.includes("It looks like YAML")).toBe(yaml);
  });

  it.each([
    { name: "an array", text: "[]" },
    { name: "null", text: "null" },
    { name: "a string", text: '"CiliumNode"' },
  ])("rejects $name as not an object", ({ text }) => {
    const err = failure(text);
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${PATH}: is not a JSON object`);
  });

  it.each([
    { name: "a Pod", obj: { apiVersion: "v1", kind: "Pod" }, fragment: 'is a "Pod" object (apiVersion "v1")' },
    { name: "a List of nodes", obj: { apiVersion: "v1", kind: "List", items: [] }, fragment: 'is a "List" object (apiVersion "v1")' },
    {
      name: "a CiliumNode with a foreign apiVersion",
      obj: { apiVersion: "v1", kind: "CiliumNode" },
      fragment: 'is a "CiliumNode" object (apiVersion "v1")',
    },
    {
      name: "a Node of another group",
      obj: { apiVersion: "cilium.io/v2", kind: "Node" },
      fragment: 'is a "Node" object (apiVersion "cilium.io/v2")',
    },
    { name: "an object without kind", obj: { spec: {} }, fragment: "is a null object (apiVersion null)" },
  ])("rejects $name as the wrong kind", ({ obj, fragment }) => {
    const err = failure(obj);
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${PATH}: ${fragment}, not a CiliumNode or a v1 Node`);
    expect(err.details).toContain("a List, a Pod or another kind will not do");
  });
});

describe("the node's own addresses", () => {
  it("are a CiliumNode's InternalIP and ExternalIP, and a v1 Node's status.addresses of those types", () => {
    const cn = parse(
      ciliumNode(["10.0.0.0/8"], {
        spec: {
          addresses: [
            { ip: "10.1.2.3", type: "InternalIP" },
            { ip: "2001:db8::7", type: "ExternalIP" },
            { ip: "10.0.2.9", type: "CiliumInternalIP" },
          ],
        },
      }),
    );
    expect(cn.reserved.map((r) => [r.ip, r.role, r.field])).toEqual([
      ["10.1.2.3", "node", "spec.addresses[0].ip (InternalIP)"],
      ["2001:db8::7", "node", "spec.addresses[1].ip (ExternalIP)"],
      ["10.0.2.9", "router", "spec.addresses[2].ip"],
    ]);
    // Only the node's own addresses make a conflict, and only inside a podCIDR.
    expect(nodeAddressConflicts(cn)).toEqual([{ cidr: "10.0.0.0/8", ip: "10.1.2.3", field: "spec.addresses[0].ip (InternalIP)" }]);
    const node = parse({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "n" },
      spec: { podCIDRs: ["10.244.0.0/16", "fd00:10:244::/64"] },
      status: {
        addresses: [
          { type: "InternalIP", address: "172.18.0.2" },
          { type: "InternalIP", address: "fd00:10:244::5" },
          { type: "Hostname", address: "n" },
          { type: "InternalDNS", address: "n.internal" },
        ],
      },
    });
    expect(nodeAddressConflicts(node)).toEqual([
      { cidr: "fd00:10:244::/64", ip: "fd00:10:244::5", field: "status.addresses[1].address (InternalIP)" },
    ]);
    const p = nodeAddressProblem(nodeAddressConflicts(node));
    expect(p.message).toBe(
      "podCIDR fd00:10:244::/64 contains the node's own address fd00:10:244::5 (status.addresses[1].address (InternalIP))",
    );
    expect(p.details).toContain("--cluster-cidr");
  });

  it("refuses (102) a v1 Node's InternalIP that is not an address", () => {
    const e = failure({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "n" },
      spec: { podCIDRs: ["10.244.0.0/16"] },
      status: { addresses: [{ type: "InternalIP", address: "10.244.0.1 " }] },
    });
    expect(e.code).toBe(Code.InvalidNodeFile);
    expect(e.message).toContain('status.addresses[0].address (InternalIP) "10.244.0.1 " is not an IP address');
  });
});
