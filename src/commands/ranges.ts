// What ADD, CHECK, STATUS and the status CLI share: which offsets of a podCIDR
// are off limits, and how a held address becomes a result entry.
import { type Candidate, type RangeState, isSet, pruneReleased, release } from "../ipam/allocator.js";
import { type Cidr, type Family, addressAt, formatIp, offsetOf, overlaps, parseCidr, parseIp } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import type { NodeInfo } from "../ipam/node-file.js";
import type { IpamResult } from "../cni/result.js";
import type { AttachmentKey, AttachmentRecord, Tx } from "../store/store.js";

/** Why an offset is off limits: "gateway", "router", "health", "ingress", or a note on an overlapping range. */
export type ReservedWhy = string;

/**
 * Offsets of `cidr` that must not be handed out, and why: its gateway, the node's
 * own addresses, and whatever another stored range that overlaps it still uses (a
 * podCIDR replaced by an overlapping one): that range's live addresses, and while
 * it has any, its gateway, network and broadcast addresses, which its pods still use.
 */
export function reservedOffsets(cidr: Cidr, node: NodeInfo, ipam: IpamConfig, stored: readonly RangeState[]): Map<number, ReservedWhy> {
  const out = new Map<number, ReservedWhy>();
  if (ipam.gateway) out.set(0, "gateway");
  for (const r of node.reserved) {
    const o = offsetOf(cidr, r.family, r.value);
    if (o >= 0 && !out.has(o)) out.set(o, r.role);
  }
  for (const s of overlapping(cidr, stored)) {
    const mark = (value: bigint, why: string): void => {
      const o = offsetOf(cidr, s.cidr.family, value);
      if (o >= 0 && !out.has(o)) out.set(o, why);
    };
    mark(s.cidr.network, `network address of ${s.cidr.text}, which still holds addresses`);
    mark(s.cidr.base, `gateway of ${s.cidr.text}, which still holds addresses`);
    if (s.cidr.family === 4) mark(s.cidr.network + (1n << BigInt(32 - s.cidr.prefix)) - 1n, `broadcast address of ${s.cidr.text}, which still holds addresses`);
    for (let i = 0; i < s.cidr.size; i++) if (isSet(s, i)) mark(s.cidr.base + BigInt(i), `held in ${s.cidr.text}`);
  }
  return out;
}

/**
 * When `cidr`'s own gateway is an address a pod of an overlapping range holds, the
 * address, the range and (if known) the holder; null otherwise. Such a podCIDR gets
 * no new pods until that pod is gone: its gateway must never be a pod's address.
 */
export function gatewayHeld(cidr: Cidr, ipam: IpamConfig, stored: readonly RangeState[]): { address: string; range: string } | null {
  if (!ipam.gateway) return null;
  for (const s of overlapping(cidr, stored)) {
    const o = offsetOf(s.cidr, cidr.family, cidr.base);
    if (o >= 0 && isSet(s, o)) return { address: formatIp(cidr.family, cidr.base), range: s.cidr.text };
  }
  return null;
}

export function candidates(tx: Tx, node: NodeInfo, ipam: IpamConfig, family: Family, stored: readonly RangeState[]): Candidate[] {
  return node.podCIDRs
    .filter((c) => c.family === family && !gatewayHeld(c, ipam, stored))
    .map((c) => ({ range: tx.range(c), excluded: new Set(reservedOffsets(c, node, ipam, stored).keys()) }));
}

/** The families present in the node's podCIDRs, in their listed order. */
export function families(node: NodeInfo): Family[] {
  const out: Family[] = [];
  for (const c of node.podCIDRs) if (!out.includes(c.family)) out.push(c.family);
  return out;
}

/** Build the IPAM result for what an attachment holds. */
export function resultFor(rec: AttachmentRecord, ipam: IpamConfig): IpamResult {
  const ips = rec.ips.map((held) => {
    const p = parseCidr(held.cidr);
    const ip = parseIp(held.address)!;
    const cidr = p.ok ? p.cidr : null;
    return {
      family: ip.family,
      address: `${held.address}/${cidr ? cidr.prefix : ip.family === 4 ? 32 : 128}`,
      ...(ipam.gateway && cidr ? { gateway: addressAt(cidr, 0) } : {}),
    };
  });
  const fams = new Set(ips.map((i) => i.family));
  const routes = ipam.routes.filter((rt) => fams.has(rt.dst.includes(":") ? 6 : 4));
  return { ips, routes, ...(ipam.dns ? { dns: ipam.dns } : {}) };
}

/** Where each address a record holds sits: its podCIDR and offset (-1 when outside the window). */
export function heldOffsets(rec: AttachmentRecord): { cidr: Cidr | null; offset: number; address: string }[] {
  return rec.ips.map((held) => {
    const p = parseCidr(held.cidr);
    const ip = parseIp(held.address);
    if (!p.ok || !ip) return { cidr: null, offset: -1, address: held.address };
    return { cidr: p.cidr, offset: offsetOf(p.cidr, ip.family, ip.value), address: held.address };
  });
}

/**
 * Release what a record holds from the stored bitmaps and drop the record. A bitmap
 * that failed to load is left as it is (the tx refuses to rewrite it): its bit stays
 * set until `repair`, a leak but never a duplicate.
 */
export function releaseRecord(tx: Tx, rec: AttachmentRecord, now: number, cooldownMs: number): void {
  for (const { cidr, offset } of heldOffsets(rec)) {
    if (!cidr) continue;
    const range = tx.range(cidr);
    if (!release(range, offset, now)) continue;
    if (cooldownMs <= 0) range.released.delete(offset);
    pruneReleased(range, now, cooldownMs);
    tx.touch(range);
  }
  tx.deleteAttachment(rec);
}

/**
 * The record DEL and CHECK act on: this network's, or, if it has none, the one
 * record of the same container ID and interface under another network (the network
 * was renamed in the config while its pods ran) whose netns matches.
 */
export function findAttachment(tx: Tx, key: AttachmentKey, netns: string): AttachmentRecord | null {
  const own = tx.attachment(key);
  if (own) return own;
  const others: AttachmentRecord[] = [];
  for (const network of tx.networks()) {
    if (network === key.network) continue;
    try {
      const r = tx.attachment({ ...key, network });
      if (r) others.push(r);
    } catch {
      /* another network's damaged record is not this call's to judge */
    }
  }
  const match = others.filter((r) => !r.netns || !netns || r.netns === netns);
  return match.length === 1 ? match[0]! : null;
}

// --- internal ---

/** Stored ranges other than `cidr` that overlap it and still hold addresses. */
function overlapping(cidr: Cidr, stored: readonly RangeState[]): RangeState[] {
  return stored.filter((s) => s.cidr.text !== cidr.text && s.allocated > 0 && overlaps(s.cidr, cidr));
}
