// The store's occupancy for the metrics: per podCIDR its capacity and what is
// reserved (gateway, router, health, ingress), per network and podCIDR what is
// allocated, and what ranges the node no longer lists still hold. Read without
// the lock (a scrape must never wait for, or delay, a pod's call).
import { isSet } from "../ipam/allocator.js";
import { addressAt } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import { type NodeInfo, nodeFromJson } from "../ipam/node-file.js";
import { poolOfCidr } from "../ipam/node-pools.js";
import { FROM_OVERLAP, nodePool, reservedOffsets } from "../ipam/pool.js";
import { openStore } from "../store/open.js";
import type { Metrics } from "./metrics.js";

const FAMILIES = [
  "podcidr_ipam_capacity_addresses",
  "podcidr_ipam_reserved_addresses",
  "podcidr_ipam_allocated_addresses",
  "podcidr_ipam_orphaned_addresses",
];

/** Recompute the occupancy gauges from the store and the node file's current object (null: unknown). */
export async function updateOccupancy(m: Metrics, ipam: IpamConfig, nodeObject: unknown, log: (msg: string) => void): Promise<void> {
  let node: NodeInfo | null = null;
  try {
    node = nodeObject === null ? null : nodeFromJson(nodeObject, ipam.nodeFile, ipam.mode);
  } catch {
    node = null;
  }
  const { value } = await openStore(ipam, log).transact({ create: false, unlocked: true, skipDamaged: true }, (tx) => {
    const stored = tx.storedRanges();
    const byAddress = new Map<string, string>();
    for (const rec of tx.attachments()) for (const h of rec.ips) byAddress.set(`${h.cidr} ${h.address}`, rec.network);
    const rows: {
      cidr: string;
      family: string;
      pool: string | undefined;
      capacity: number;
      reserved: number;
      orphaned: number;
      networks: Map<string, number>;
    }[] = [];
    const active = new Set((node?.podCIDRs ?? []).map((c) => c.text));
    for (const c of node?.podCIDRs ?? []) if (!stored.some((r) => r.cidr.text === c.text)) stored.push(tx.range(c));
    for (const r of stored) {
      const networks = new Map<string, number>();
      for (let o = 0; o < r.cidr.size; o++) {
        if (!isSet(r, o)) continue;
        const net = byAddress.get(`${r.cidr.text} ${addressAt(r.cidr, o)}`) ?? "";
        networks.set(net, (networks.get(net) ?? 0) + 1);
      }
      const own = node && active.has(r.cidr.text) ? [...reservedOffsets(r.cidr, nodePool(node, ipam.gateway, stored)).values()] : [];
      rows.push({
        cidr: r.cidr.text,
        family: String(r.cidr.family),
        pool: node ? poolOfCidr(node, r.cidr.text) : undefined,
        capacity: r.cidr.size,
        reserved: own.filter((why) => !FROM_OVERLAP.test(why)).length,
        orphaned: node && !active.has(r.cidr.text) ? r.allocated : 0,
        networks,
      });
    }
    return rows;
  });
  for (const f of FAMILIES) m.clear(f);
  for (const r of value) {
    // Multi-pool: the pool each CIDR belongs to, as a label (absent in the other modes).
    const l = { cidr: r.cidr, family: r.family, ...(r.pool !== undefined ? { pool: r.pool } : {}) };
    m.gauge("podcidr_ipam_capacity_addresses", "Addresses of a podCIDR a pod could be given (its window).", r.capacity, l);
    m.gauge("podcidr_ipam_reserved_addresses", "Addresses of a podCIDR never handed out: gateway, router, health, ingress.", r.reserved, l);
    m.gauge("podcidr_ipam_orphaned_addresses", "Addresses still held in a podCIDR the node no longer lists.", r.orphaned, l);
    for (const [network, n] of r.networks) {
      m.gauge("podcidr_ipam_allocated_addresses", "Addresses held by pods, per network and podCIDR.", n, {
        ...l,
        network: network || "(no record)",
      });
    }
  }
}
