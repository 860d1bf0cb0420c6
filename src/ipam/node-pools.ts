// The IPAM fields of a CiliumNode, by Cilium's mode: cluster-pool's spec.ipam.podCIDRs,
// multi-pool's spec.ipam.pools ({allocated, requested}), CRD-backed's spec.ipam.pool. Which
// one a node file is read by: ipam.mode, or (auto) the one field it has; Cilium gives a node
// one mode, so an object that has two is refused, naming them. Pure, like node-file.ts.
import { type CniError, brief } from "../errors.js";
import { type Cidr, overlaps, parseCidr } from "./cidr.js";
import { type IpamConfig, type NodeMode, isPoolName } from "./config.js";

/** One pool of a multi-pool node: its name and the CIDRs the operator gave this node, in fill order. */
export interface NodePool {
  readonly name: string;
  readonly cidrs: readonly Cidr[];
}

/** What the agent asked the operator for (spec.ipam.pools.requested), per pool. */
export interface PoolRequest {
  readonly pool: string;
  readonly ipv4: number;
  readonly ipv6: number;
}

export interface CiliumIpam {
  readonly mode: NodeMode;
  readonly field: string;
  readonly podCIDRs: readonly Cidr[];
  /** Multi-pool: the pools, in the order spec.ipam.pools.allocated lists them; empty otherwise. */
  readonly pools: readonly NodePool[];
  readonly requested: readonly PoolRequest[];
}

type Bad = (msg: string, details: string) => CniError;

/** The IPAM fields of a CiliumNode's spec.ipam, read as `wanted` says (or as the object says, for auto). */
export function ciliumIpam(ipam: Record<string, unknown>, wanted: IpamConfig["mode"], bad: Bad): CiliumIpam {
  const present = presentModes(ipam);
  let mode: NodeMode;
  if (wanted !== "auto") mode = wanted;
  else if (present.length > 1) {
    throw bad(
      `mixes Cilium IPAM modes: ${present.map((p) => `${p.field} (${p.mode})`).join(" and ")}`,
      "Cilium gives a node one IPAM mode, so one of them is stale or hand-written: fix the node object, or set ipam.mode to the " +
        "mode this network uses (its fields are then the only ones read)",
    );
  } else mode = present[0]?.mode ?? "cluster-pool";
  if (mode === "crd") {
    throw bad(
      wanted === "crd"
        ? "is read as CRD-backed (ipam.mode crd: spec.ipam.pool), which this release does not serve"
        : "is a CRD-backed node (spec.ipam.pool), which this release does not serve",
      "CRD-backed IPAM hands out the single addresses of spec.ipam.pool; use Cilium's own agent for it, or cluster-pool / multi-pool",
    );
  }
  if (mode !== "multi-pool") {
    return { mode, field: "spec.ipam.podCIDRs", podCIDRs: cidrList(ipam.podCIDRs, "spec.ipam.podCIDRs", bad), pools: [], requested: [] };
  }
  const pools = allocated(ipam.pools, bad);
  return {
    mode,
    field: "spec.ipam.pools.allocated",
    podCIDRs: pools.flatMap((p) => p.cidrs),
    pools,
    requested: requested(ipam.pools, bad),
  };
}

/** The pool a CIDR (by its text) belongs to on a multi-pool node; undefined in the other modes or when none lists it. */
export function poolOfCidr(node: { readonly pools: readonly NodePool[] }, cidr: string): string | undefined {
  return node.pools.find((p) => p.cidrs.some((c) => c.text === cidr))?.name;
}

/**
 * A list of CIDRs in listed order, validated, duplicates dropped; one that overlaps
 * another (of `before` too: the CIDRs of earlier pools) is refused.
 */
export function cidrList(list: unknown, field: string, bad: Bad, before: readonly Cidr[] = []): Cidr[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw bad(`${field} must be a list of CIDR strings`, `got ${brief(list, 200)}`);
  const out: Cidr[] = [];
  for (const [i, entry] of list.entries()) {
    const p = parseCidr(entry);
    if (!p.ok) throw bad(`${field}[${i}] ${p.reason}`, "fix the CIDR on the node object (or in the file's sync job) and try again");
    if (out.some((c) => c.text === p.cidr.text)) continue;
    const clash = [...before, ...out].find((c) => overlaps(c, p.cidr));
    if (clash) {
      throw bad(
        `${field}[${i}] ${p.cidr.text} overlaps ${clash.text}`,
        before.length > 0
          ? "the CIDRs of a node's pools must not overlap, within a pool or across pools: an address in both could be handed out twice"
          : "podCIDRs must not overlap: an address in both could be handed out twice",
      );
    }
    out.push(p.cidr);
  }
  return out;
}

// --- internal ---

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Absent, null, [] or {}: a field as Go's omitempty-less encoders leave it when it holds nothing. */
const empty = (v: unknown): boolean =>
  v === undefined || v === null || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);

/** The modes whose fields the object has (anything but empty: a malformed field counts, to be refused by its mode). */
function presentModes(ipam: Record<string, unknown>): { mode: NodeMode; field: string }[] {
  const out: { mode: NodeMode; field: string }[] = [];
  if (!empty(ipam.podCIDRs)) out.push({ mode: "cluster-pool", field: "spec.ipam.podCIDRs" });
  const pools = ipam.pools;
  if (!empty(pools) && !(isObject(pools) && empty(pools.allocated) && empty(pools.requested)))
    out.push({ mode: "multi-pool", field: "spec.ipam.pools" });
  if (!empty(ipam.pool)) out.push({ mode: "crd", field: "spec.ipam.pool" });
  return out;
}

function allocated(pools: unknown, bad: Bad): NodePool[] {
  if (pools !== undefined && pools !== null && !isObject(pools))
    throw bad("spec.ipam.pools must be an object {allocated, requested}", `got ${brief(pools, 200)}`);
  const list = isObject(pools) ? pools.allocated : undefined;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw bad("spec.ipam.pools.allocated must be a list of {pool, cidrs}", `got ${brief(list, 200)}`);
  const out: NodePool[] = [];
  const seen: Cidr[] = [];
  for (const [i, entry] of list.entries()) {
    const field = `spec.ipam.pools.allocated[${i}]`;
    if (!isObject(entry)) throw bad(`${field} must be {"pool": NAME, "cidrs": [CIDR, ...]}`, `got ${brief(entry, 200)}`);
    if (!isPoolName(entry.pool)) throw bad(`${field}.pool ${brief(entry.pool)} is not a pool name`, POOL_NAME_FIX);
    if (out.some((p) => p.name === entry.pool))
      throw bad(`${field}.pool ${brief(entry.pool)} is listed twice`, "Cilium lists each pool of a node once, with all its CIDRs");
    const cidrs = cidrList(entry.cidrs, `${field}.cidrs`, bad, seen);
    seen.push(...cidrs);
    out.push(Object.freeze({ name: entry.pool, cidrs: Object.freeze(cidrs) }));
  }
  return out;
}

function requested(pools: unknown, bad: Bad): PoolRequest[] {
  const list = isObject(pools) ? pools.requested : undefined;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw bad("spec.ipam.pools.requested must be a list of {pool, needed}", `got ${brief(list, 200)}`);
  return list.map((entry, i) => {
    const field = `spec.ipam.pools.requested[${i}]`;
    if (!isObject(entry)) throw bad(`${field} must be {"pool": NAME, "needed": {...}}`, `got ${brief(entry, 200)}`);
    if (!isPoolName(entry.pool)) throw bad(`${field}.pool ${brief(entry.pool)} is not a pool name`, POOL_NAME_FIX);
    const needed = entry.needed ?? {};
    if (!isObject(needed)) throw bad(`${field}.needed must be {"ipv4-addrs": N, "ipv6-addrs": N}`, `got ${brief(needed, 200)}`);
    const count = (key: string): number => {
      const n = needed[key] ?? 0;
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0)
        throw bad(`${field}.needed.${key} must be a count, got ${brief(n)}`, "");
      return n;
    };
    return Object.freeze({ pool: entry.pool, ipv4: count("ipv4-addrs"), ipv6: count("ipv6-addrs") });
  });
}

const POOL_NAME_FIX =
  'a pool is named by its CiliumPodIPPool: lowercase letters, digits, "-" and "."; fix the node object (or the file\'s sync job)';
