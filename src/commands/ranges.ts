// What ADD, CHECK, STATUS and the status CLI share: which offsets of a podCIDR
// are off limits, and how a held address becomes a result entry.
import { type Candidate, type RangeState, isSet, release } from "../ipam/allocator.js";
import { type Cidr, type Family, addressAt, contains, offsetOf, parseCidr, parseIp } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import type { NodeInfo } from "../ipam/node-file.js";
import type { IpamResult } from "../cni/result.js";
import type { AttachmentRecord, Tx } from "../store/store.js";

export type ReservedWhy = "gateway" | "router" | "health" | "ingress" | "orphaned range";

/** Offsets of `cidr` that must not be handed out, and why. */
export function reservedOffsets(cidr: Cidr, node: NodeInfo, ipam: IpamConfig, stored: readonly RangeState[]): Map<number, ReservedWhy> {
  const out = new Map<number, ReservedWhy>();
  if (ipam.gateway) out.set(0, "gateway");
  for (const r of node.reserved) {
    const o = offsetOf(cidr, r.family, r.value);
    if (o >= 0 && !out.has(o)) out.set(o, r.role);
  }
  // A range the node file no longer lists may overlap a new one: its live addresses stay taken.
  for (const s of stored) {
    if (s.cidr.text === cidr.text || s.allocated === 0 || (!contains(cidr, s.cidr.family, s.cidr.network) && !contains(s.cidr, cidr.family, cidr.network))) continue;
    if (node.podCIDRs.some((c) => c.text === s.cidr.text)) continue;
    for (let i = 0; i < s.cidr.size; i++) {
      if (!isSet(s, i)) continue;
      const o = offsetOf(cidr, s.cidr.family, s.cidr.base + BigInt(i));
      if (o >= 0 && !out.has(o)) out.set(o, "orphaned range");
    }
  }
  return out;
}

export function candidates(tx: Tx, node: NodeInfo, ipam: IpamConfig, family: Family, stored: readonly RangeState[]): Candidate[] {
  return node.podCIDRs
    .filter((c) => c.family === family)
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

/** Release what a record holds from the stored bitmaps. */
export function releaseRecord(tx: Tx, rec: AttachmentRecord, now: number): void {
  for (const { cidr, offset } of heldOffsets(rec)) {
    if (!cidr) continue;
    const range = tx.range(cidr);
    if (release(range, offset, now)) tx.touch(range);
  }
  tx.deleteAttachment(rec.containerID, rec.ifname);
}
