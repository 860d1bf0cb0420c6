// The cached node object: what `kubectl get ciliumnode NODE -o json` or
// `kubectl get node NODE -o json` prints. Pure: takes the text, returns a frozen value.
import { Code, CniError, brief } from "../errors.js";
import { type Cidr, type Family, contains, parseIp } from "./cidr.js";
import type { IpamConfig, NodeMode } from "./config.js";
import { type NodePool, type PoolRequest, ciliumIpam, cidrList, isObject } from "./node-pools.js";

/** Cilium's own addresses (router, health, ingress), and the node's (its InternalIP and ExternalIP). */
export type ReservedRole = "router" | "health" | "ingress" | "node";

export interface NodeInfo {
  readonly kind: "CiliumNode" | "Node";
  readonly name: string;
  /** The IPAM mode the node file is read by (a v1 Node: kubernetes). */
  readonly mode: NodeMode;
  /** podCIDRs in the listed order, validated, duplicates dropped (multi-pool: every pool's CIDRs, pool by pool). */
  readonly podCIDRs: readonly Cidr[];
  /** Multi-pool: the node's pools (spec.ipam.pools.allocated); empty in the other modes. */
  readonly pools: readonly NodePool[];
  /** Multi-pool: spec.ipam.pools.requested. */
  readonly requested: readonly PoolRequest[];
  /** Addresses the node says it uses itself; never handed out. `field` is where the file says so. */
  readonly reserved: readonly {
    readonly ip: string;
    readonly family: Family;
    readonly value: bigint;
    readonly role: ReservedRole;
    readonly field: string;
  }[];
  /** status.ipam.operator-status.error of a CiliumNode, when set. */
  readonly operatorError: string;
  /** Where the CIDRs were read from, for messages: "spec.ipam.podCIDRs" or "spec.podCIDRs". */
  readonly field: string;
}

const ANNOTATIONS: Record<string, ReservedRole> = {
  "io.cilium.network.ipv4-cilium-host": "router",
  "io.cilium.network.ipv6-cilium-host": "router",
  "io.cilium.network.ipv4-health-ip": "health",
  "io.cilium.network.ipv6-health-ip": "health",
  "io.cilium.network.ipv4-ingress-ip": "ingress",
  "io.cilium.network.ipv6-ingress-ip": "ingress",
};

export function parseNodeFile(text: string, path: string, mode: IpamConfig["mode"] = "auto"): NodeInfo {
  return nodeFromJson(decodeNodeJson(text, path), path, mode);
}

/** The file's text as JSON, or 102 "is not JSON" (a half-written file, or YAML: then the details say so). */
export function decodeNodeJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const yamlish = /^\s*(apiVersion|kind|metadata|---)/.test(text);
    throw new CniError(
      Code.InvalidNodeFile,
      `node file ${path}: is not JSON`,
      `${(err as Error).message}.${yamlish ? " It looks like YAML:" : ""} write it with \`kubectl get ciliumnode NODE -o json\` (or ` +
        `\`kubectl get node NODE -o json\`), not -o yaml.`,
    );
  }
}

/** A decoded node file to a frozen NodeInfo, or 102 saying what is wrong. */
export function nodeFromJson(obj: unknown, path: string, mode: IpamConfig["mode"] = "auto"): NodeInfo {
  const bad = (msg: string, details: string): CniError => new CniError(Code.InvalidNodeFile, `node file ${path}: ${msg}`, details);
  if (!isObject(obj)) throw bad("is not a JSON object", "expected a CiliumNode or a v1 Node object as printed by kubectl -o json");
  const kind = obj.kind;
  const apiVersion = obj.apiVersion;
  const spec = isObject(obj.spec) ? obj.spec : {};
  const metadata = isObject(obj.metadata) ? obj.metadata : {};
  const name = typeof metadata.name === "string" ? metadata.name : "";
  if (kind === "CiliumNode" && typeof apiVersion === "string" && apiVersion.startsWith("cilium.io/")) {
    const ipam = isObject(spec.ipam) ? spec.ipam : {};
    const reserved: NodeInfo["reserved"][number][] = [];
    if (Array.isArray(spec.addresses)) {
      for (const [i, a] of spec.addresses.entries()) {
        if (!isObject(a)) continue;
        if (a.type === "CiliumInternalIP") pushReserved(reserved, a.ip, "router", `spec.addresses[${i}].ip`, null, bad);
        else if (NODE_ADDRESS.has(a.type)) pushReserved(reserved, a.ip, "node", `spec.addresses[${i}].ip (${a.type})`, null, bad);
      }
    }
    for (const role of ["health", "ingress"] as const) {
      const o = spec[role];
      if (isObject(o)) for (const fam of [4, 6] as const) pushReserved(reserved, o[`ipv${fam}`], role, `spec.${role}.ipv${fam}`, fam, bad);
    }
    const status = isObject(obj.status) && isObject(obj.status.ipam) ? obj.status.ipam : {};
    const opStatus = isObject(status["operator-status"]) ? status["operator-status"] : {};
    return freeze({
      kind: "CiliumNode",
      name,
      ...ciliumIpam(ipam, mode, bad),
      reserved,
      operatorError: typeof opStatus.error === "string" ? opStatus.error : "",
    });
  }
  if (kind === "Node" && apiVersion === "v1") {
    if (mode === "multi-pool" || mode === "crd") {
      throw bad(
        `is a v1 Node, but ipam.mode is ${mode}, which reads a CiliumNode`,
        "write the node's CiliumNode to the file (`kubectl get ciliumnode NODE -o json`), or set ipam.mode to kubernetes",
      );
    }
    let field = "spec.podCIDRs";
    let list = spec.podCIDRs;
    // Absent, null (jq and hand-written copies print it) or empty: the legacy single field.
    if (list === undefined || list === null || (Array.isArray(list) && list.length === 0)) {
      if (spec.podCIDR !== undefined && spec.podCIDR !== "") {
        field = "spec.podCIDR";
        list = [spec.podCIDR];
      }
    }
    const reserved: NodeInfo["reserved"][number][] = [];
    const ann = isObject(metadata.annotations) ? metadata.annotations : {};
    for (const [key, role] of Object.entries(ANNOTATIONS)) {
      pushReserved(reserved, ann[key], role, `metadata.annotations[${JSON.stringify(key)}]`, key.includes(".ipv6-") ? 6 : 4, bad);
    }
    const addresses = isObject(obj.status) ? obj.status.addresses : undefined;
    if (Array.isArray(addresses)) {
      for (const [i, a] of addresses.entries()) {
        if (isObject(a) && NODE_ADDRESS.has(a.type))
          pushReserved(reserved, a.address, "node", `status.addresses[${i}].address (${a.type})`, null, bad);
      }
    }
    return freeze({
      kind: "Node",
      name,
      mode: "kubernetes",
      field,
      podCIDRs: cidrList(list, field, bad),
      pools: [],
      requested: [],
      reserved,
      operatorError: "",
    });
  }
  throw bad(
    `is a ${brief(kind ?? null)} object (apiVersion ${brief(apiVersion ?? null)}), not a CiliumNode or a v1 Node`,
    "write one node object to it: `kubectl get ciliumnode NODE -o json` (cluster-pool IPAM) or `kubectl get node NODE -o json` " +
      "(host-scope); a List, a Pod or another kind will not do",
  );
}

/** A podCIDR that holds one of the node's own addresses (InternalIP, ExternalIP). */
export interface NodeAddressConflict {
  readonly cidr: string;
  readonly ip: string;
  readonly field: string;
}

/**
 * The node's own addresses inside its podCIDRs. Such an address is never handed out,
 * but a node whose podCIDR contains its own network loses connectivity to it (Cilium's
 * cluster-pool troubleshooting: the default 10.0.0.0/8 often overlaps the node network).
 */
export function nodeAddressConflicts(node: NodeInfo): NodeAddressConflict[] {
  const out: NodeAddressConflict[] = [];
  for (const r of node.reserved) {
    if (r.role !== "node") continue;
    const c = node.podCIDRs.find((c) => contains(c, r.family, r.value));
    if (c) out.push({ cidr: c.text, ip: r.ip, field: r.field });
  }
  return out;
}

/** What to say of such conflicts, with the fix: the message names each podCIDR and address. */
export function nodeAddressProblem(conflicts: readonly NodeAddressConflict[]): { message: string; details: string } {
  return {
    message: conflicts.map((c) => `podCIDR ${c.cidr} contains the node's own address ${c.ip} (${c.field})`).join("; "),
    details:
      "The address itself is never handed to a pod, but routes to the podCIDR take the node's own network with them and the node " +
      "loses connectivity. Give pods CIDRs that do not overlap the node network: in cluster-pool mode a non-conflicting " +
      "clusterPoolIPv4PodCIDRList (Cilium's default 10.0.0.0/8 often overlaps it), in host-scope mode another --cluster-cidr for " +
      "kube-controller-manager (or another node CIDR); then refresh the node file.",
  };
}

// --- internal ---

/** The address types of the node itself (Kubernetes NodeAddressType; CiliumNode copies them). */
const NODE_ADDRESS = new Set<unknown>(["InternalIP", "ExternalIP"]);

/**
 * Add a router/health/ingress address. Absent, null or "" means none. Anything else
 * must be an address (of `family` when the field names one): one that does not parse
 * would not be reserved and so could be handed to a pod.
 */
function pushReserved(
  out: NodeInfo["reserved"][number][],
  ip: unknown,
  role: ReservedRole,
  field: string,
  family: Family | null,
  bad: (m: string, d: string) => CniError,
): void {
  if (ip === undefined || ip === null || ip === "") return;
  const p = typeof ip === "string" ? parseIp(ip) : null;
  const what = role === "node" ? "node's own" : role;
  const fix =
    `the ${what} address is never handed out, so one that does not parse could be handed to a pod; fix it on the node object ` +
    `(or in the file's sync job) and try again`;
  if (!p) throw bad(`${field} ${brief(ip)} is not an IP address`, fix);
  // An IPv4-mapped IPv6 text parses as IPv4: it is neither a plain IPv4 nor an IPv6 address.
  if (family !== null && (p.family !== family || (family === 4 && (ip as string).includes(":")))) {
    throw bad(`${field} ${brief(ip)} is not an IPv${family} address`, fix);
  }
  out.push({ ip: ip as string, family: p.family, value: p.value, role, field });
}

function freeze(info: NodeInfo): NodeInfo {
  return Object.freeze({
    ...info,
    podCIDRs: Object.freeze([...info.podCIDRs]),
    pools: Object.freeze([...info.pools]),
    requested: Object.freeze([...info.requested]),
    reserved: Object.freeze([...info.reserved]),
  });
}
