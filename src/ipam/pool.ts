// The allocation policy, host-local's allocator.Get: which offsets of a podCIDR
// are off limits, which podCIDRs a family may draw from, and how an address is
// picked (next-fit with cool-down) or granted (a requested one). Pure: ranges
// come from a RangeSource (the store's transaction), nothing touches the disk.
//
// A Pool is what one allocation draws from: an ordered list of CIDRs (filled in
// order, as Cilium fills its podCIDRs), the node's own addresses that are never
// handed out, and every stored range, whose live addresses an overlapping CIDR
// must not hand out again. Cluster-pool and host-scope nodes have one pool, the
// node's podCIDRs; multi-pool gives each named pool its own list of CIDRs.
import { Code, CniError } from "../errors.js";
import { type Candidate, type RangeState, allocateNext, freeCount, isSet, take } from "./allocator.js";
import { type Cidr, type Family, addressAt, contains, formatIp, offsetOf, overlaps, parseCidr, parseIp } from "./cidr.js";
import type { NodeInfo } from "./node-file.js";

export interface Pool {
  /** The CIDRs to allocate from, in fill order. */
  readonly cidrs: readonly Cidr[];
  /** The node's own addresses (router, health, ingress): never handed out. */
  readonly reserved: NodeInfo["reserved"];
  /** Reserve each CIDR's first address as its gateway. */
  readonly gateway: boolean;
  /** Every range the store holds: an overlapping one's live addresses stay taken. */
  readonly stored: readonly RangeState[];
  /** Where the CIDRs come from, for messages ("spec.ipam.podCIDRs"). */
  readonly field: string;
  /** Multi-pool: the last address of each CIDR is reserved too (IPv4's broadcast always is). */
  readonly lastReserved?: boolean;
}

/** Where the bitmaps come from (the store's transaction). */
export interface RangeSource {
  range(cidr: Cidr): RangeState;
}

/** An address asked for (IP= in CNI_ARGS, runtimeConfig.ips, args.cni.ips), parsed at the protocol edge. */
export interface Wanted {
  readonly text: string;
  readonly family: Family;
  readonly value: bigint;
}

/** An address taken: its range and offset. */
export interface Taken {
  readonly range: RangeState;
  readonly offset: number;
}

/** The pool of a node whose podCIDRs are all one pool (cluster-pool, host-scope). */
export function nodePool(node: NodeInfo, gateway: boolean, stored: readonly RangeState[]): Pool {
  return { cidrs: node.podCIDRs, reserved: node.reserved, gateway, stored, field: node.field, lastReserved: node.mode === "multi-pool" };
}

/** The families present in a pool, in their listed order. */
export function families(pool: Pick<Pool, "cidrs">): Family[] {
  const out: Family[] = [];
  for (const c of pool.cidrs) if (!out.includes(c.family)) out.push(c.family);
  return out;
}

/**
 * Offsets of `cidr` that must not be handed out, and why: its gateway, the node's
 * own addresses, and whatever another stored range that overlaps it still uses (a
 * podCIDR replaced by an overlapping one): that range's live addresses, and while
 * it has any, its gateway, network and broadcast addresses, which its pods still use.
 */
export function reservedOffsets(cidr: Cidr, pool: Omit<Pool, "cidrs" | "field">): Map<number, string> {
  const out = new Map<number, string>();
  if (pool.gateway) out.set(0, "gateway");
  if (pool.lastReserved && cidr.family === 6) {
    const last = offsetOf(cidr, 6, cidr.network + (1n << BigInt(128 - cidr.prefix)) - 1n);
    if (last >= 0 && !out.has(last)) out.set(last, "last address");
  }
  for (const r of pool.reserved) {
    const o = offsetOf(cidr, r.family, r.value);
    if (o >= 0 && !out.has(o)) out.set(o, r.role);
  }
  for (const s of overlapping(cidr, pool.stored)) {
    const mark = (value: bigint, why: string): void => {
      const o = offsetOf(cidr, s.cidr.family, value);
      if (o >= 0 && !out.has(o)) out.set(o, why);
    };
    mark(s.cidr.network, `network address of ${s.cidr.text}, which still holds addresses`);
    mark(s.cidr.base, `gateway of ${s.cidr.text}, which still holds addresses`);
    if (s.cidr.family === 4)
      mark(s.cidr.network + (1n << BigInt(32 - s.cidr.prefix)) - 1n, `broadcast address of ${s.cidr.text}, which still holds addresses`);
    for (let i = 0; i < s.cidr.size; i++) if (isSet(s, i)) mark(s.cidr.base + BigInt(i), `held in ${s.cidr.text}`);
  }
  return out;
}

/** Reasons reservedOffsets gives for what another, overlapping range uses. */
export const FROM_OVERLAP = /^(held in |network address of |gateway of |broadcast address of )/;

/**
 * When `cidr`'s own gateway is an address a pod of an overlapping range holds: that
 * address and range; null otherwise. Such a CIDR gets no new pods until that pod is
 * gone: its gateway must never be a pod's address.
 */
export function gatewayHeld(cidr: Cidr, pool: Pick<Pool, "gateway" | "stored">): { address: string; range: string } | null {
  if (!pool.gateway) return null;
  for (const s of overlapping(cidr, pool.stored)) {
    const o = offsetOf(s.cidr, cidr.family, cidr.base);
    if (o >= 0 && isSet(s, o)) return { address: formatIp(cidr.family, cidr.base), range: s.cidr.text };
  }
  return null;
}

/** The ranges of one family a new address may come from, each with the offsets it must skip. */
export function candidates(src: RangeSource, pool: Pool, family: Family): Candidate[] {
  return pool.cidrs
    .filter((c) => c.family === family && !gatewayHeld(c, pool))
    .map((c) => ({ range: src.range(c), excluded: new Set(reservedOffsets(c, pool).keys()) }));
}

/** Grant a requested address, or throw 101 saying why not. `holder` names who holds an address, if known. */
export function takeRequested(src: RangeSource, pool: Pool, want: Wanted, holder: (address: string) => string | null): Taken {
  const cidr = pool.cidrs.find((c) => contains(c, want.family, want.value));
  if (!cidr) throw unavailable(want.text, `it is outside every podCIDR of the node (${cidrList(pool)})`);
  const offset = offsetOf(cidr, want.family, want.value);
  if (offset < 0) {
    const why =
      cidr.family === 4
        ? "the network or broadcast address"
        : cidr.truncated
          ? "the anycast address or beyond the allocatable window"
          : "the subnet-router anycast address";
    throw unavailable(want.text, `it is ${why} of ${cidr.text}`);
  }
  const gw = gatewayHeld(cidr, pool);
  if (gw)
    throw unavailable(
      want.text,
      `the gateway of ${cidr.text}, ${gw.address}, is a pod's address in ${gw.range}; no pod gets an address of ${cidr.text} until that ` +
        `pod is deleted`,
    );
  const reserved = reservedOffsets(cidr, pool).get(offset);
  if (reserved) throw unavailable(want.text, `it is reserved in ${cidr.text} (${reserved})`);
  const range = src.range(cidr);
  if (isSet(range, offset)) throw unavailable(want.text, `it is held by ${holder(addressAt(cidr, offset)) ?? "another attachment"}`);
  take(range, offset);
  return { range, offset };
}

/** Refuse (101) a requested address of a family the pool has no CIDR of. */
export function checkRequestedFamilies(pool: Pool, requested: Iterable<Wanted>): void {
  for (const want of requested) {
    if (!families(pool).includes(want.family))
      throw unavailable(want.text, `the node has no IPv${want.family} podCIDR (${pool.field}: ${cidrList(pool)})`);
  }
}

/** Pick the next free address of a family (next-fit, cool-down), or throw: 100 when full, 11 when blocked by an overlap. */
export function takeNext(src: RangeSource, pool: Pool, family: Family, now: number, cooldownMs: number): Taken {
  const cands = candidates(src, pool, family);
  const pick = allocateNext(cands, now, cooldownMs);
  if (pick) return pick;
  const blocked = pool.cidrs
    .filter((c) => c.family === family)
    .flatMap((c) => {
      const gw = gatewayHeld(c, pool);
      return gw ? [`the gateway of ${c.text}, ${gw.address}, is a pod's address in ${gw.range}`] : [];
    });
  if (blocked.length > 0) {
    throw new CniError(
      Code.TryAgainLater,
      `no usable IPv${family} podCIDR: ${blocked.join("; ")}`,
      "The node's podCIDR was replaced by one that overlaps the old one, and a pod of the old one holds the new one's gateway. " +
        "New pods get addresses there once that pod is deleted (`podcidr-ipam status --all-addresses` names it).",
    );
  }
  const sizes = cands.map(
    (c) => `${c.range.cidr.text}: ${c.range.allocated} allocated, ${c.range.cidr.size - c.range.allocated - freeCount(c)} reserved`,
  );
  throw new CniError(
    Code.PoolExhausted,
    `no free IPv${family} address in the node's podCIDRs (${sizes.join("; ")})`,
    `Every IPv${family} podCIDR in ${pool.field} is full. Expand the pool: in cluster-pool mode add a CIDR to the cluster pool ` +
      "(clusterPoolIPv4PodCIDRList / clusterPoolIPv6PodCIDRList) so the operator appends one to the CiliumNode, or in host-scope mode " +
      "give " +
      "nodes a larger --node-cidr-mask-size; then refresh the node file. Or free addresses: run `podcidr-ipam status --all-addresses` " +
      "to see who holds them.",
  );
}

/** The families of a pool with no free address left (STATUS). */
export function fullFamilies(src: RangeSource, pool: Pool): Family[] {
  return families(pool).filter((f) => candidates(src, pool, f).every((c) => freeCount(c) <= 0));
}

/** Where each address an attachment holds sits: its CIDR and offset (-1 when outside the window). */
export function heldOffsets(held: {
  readonly ips: readonly { readonly cidr: string; readonly address: string }[];
}): { cidr: Cidr | null; offset: number; address: string }[] {
  return held.ips.map((h) => {
    const p = parseCidr(h.cidr);
    const ip = parseIp(h.address);
    if (!p.ok || !ip) return { cidr: null, offset: -1, address: h.address };
    return { cidr: p.cidr, offset: offsetOf(p.cidr, ip.family, ip.value), address: h.address };
  });
}

/** Rebuild a bitmap to hold exactly `offsets` (repair). */
export function resetRange(range: RangeState, offsets: Iterable<number>): void {
  range.bits.fill(0);
  range.allocated = 0;
  for (const o of offsets) take(range, o);
}

// --- internal ---

/** Stored ranges other than `cidr` that overlap it and still hold addresses. */
function overlapping(cidr: Cidr, stored: readonly RangeState[]): RangeState[] {
  return stored.filter((s) => s.cidr.text !== cidr.text && s.allocated > 0 && overlaps(s.cidr, cidr));
}

function unavailable(text: string, why: string): CniError {
  return new CniError(
    Code.RequestedAddressUnavailable,
    `requested address ${text} is not available: ${why}`,
    "request an address inside the node's podCIDRs that no pod holds, or drop the request",
  );
}

function cidrList(pool: Pick<Pool, "cidrs">): string {
  return pool.cidrs.map((c) => c.text).join(", ");
}
