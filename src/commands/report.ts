// What `podcidr-ipam status` shows: per podCIDR (and per range the node file no
// longer lists) how many addresses are in use, and who holds each one.
import { NAME_RE } from "../cni/env.js";
import { Code, CniError } from "../errors.js";
import { type RangeState, freeCount, isSet } from "../ipam/allocator.js";
import { addressAt } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import type { NodeInfo } from "../ipam/node-file.js";
import { DiskStore } from "../store/disk.js";
import type { AttachmentRecord } from "../store/store.js";
import { readNode, notReady } from "./node.js";
import { reservedOffsets } from "./ranges.js";

export interface AddressLine {
  readonly ip: string;
  readonly reserved?: string;
  readonly owner?: Omit<AttachmentRecord, "ips">;
}

export interface RangeReport {
  readonly cidr: string;
  readonly family: 4 | 6;
  /** The node file no longer lists it: no new allocations, existing ones still work. */
  readonly orphaned: boolean;
  readonly size: number;
  /** Pod allocations plus reserved addresses (gateway, router, health, ingress). */
  readonly used: number;
  readonly allocated: number;
  readonly free: number;
  /** Only the first `size` addresses after the network address are used (IPv6 /64...). */
  readonly truncated: boolean;
  readonly addresses: readonly AddressLine[];
}

export interface StatusReport {
  readonly network: string;
  readonly store: string;
  readonly nodeFile: string;
  readonly node: { readonly kind: string; readonly name: string; readonly field: string } | null;
  readonly ranges: readonly RangeReport[];
  readonly problems: readonly string[];
}

export async function collectStatus(network: string, ipam: IpamConfig): Promise<StatusReport> {
  if (!NAME_RE.test(network)) throw new CniError(Code.InvalidNetworkConfig, `invalid network name ${JSON.stringify(network)}`);
  const problems: string[] = [];
  let node: NodeInfo | null = null;
  try {
    node = readNode(ipam.nodeFile);
    if (!node || node.podCIDRs.length === 0) {
      const e = notReady({ ...ipam, waitForPodCIDRs: 0 }, node);
      problems.push(`${e.message}: ${e.details}`);
    }
  } catch (e) {
    problems.push(`${(e as CniError).message}: ${(e as CniError).details ?? ""}`);
  }
  const store = new DiskStore(ipam.dataDir, network, ipam.lockTimeout * 1000);
  const ranges = await store.transact({ create: false, readOnly: true }, (tx) => {
    const stored = tx.storedRanges();
    const owners = new Map<string, AttachmentRecord>();
    for (const rec of tx.attachments()) for (const h of rec.ips) owners.set(h.address, rec);
    const active = (node?.podCIDRs ?? []).map((c) => ({ range: tx.range(c), orphaned: false }));
    const orphans = stored.filter((r) => !active.some((a) => a.range.cidr.text === r.cidr.text)).map((range) => ({ range, orphaned: true }));
    return [...active, ...orphans].map(({ range, orphaned }) => report(range, orphaned, node, ipam, stored, owners));
  });
  for (const r of ranges) {
    if (r.orphaned && r.allocated > 0) problems.push(`${r.cidr} is no longer in the node file but ${r.allocated} address(es) in it are still held`);
  }
  for (const fam of [4, 6] as const) {
    const act = ranges.filter((r) => r.family === fam && !r.orphaned);
    if (act.length > 0 && act.every((r) => r.free <= 0)) problems.push(`every IPv${fam} podCIDR is full`);
  }
  return { network, store: store.dir, nodeFile: ipam.nodeFile, node: node ? { kind: node.kind, name: node.name, field: node.field } : null, ranges, problems };
}

export function formatStatus(rep: StatusReport, all: boolean): string {
  const lines = [`Network ${rep.network}, store ${rep.store}`];
  lines.push(rep.node ? `Node file ${rep.nodeFile}: ${rep.node.kind} ${rep.node.name || "(unnamed)"}, ${rep.node.field}` : `Node file ${rep.nodeFile}: not usable`);
  for (const r of rep.ranges) {
    const tag = r.orphaned ? " (orphaned: no longer in the node file)" : r.truncated ? ` (first ${r.size} addresses used)` : "";
    lines.push(`IPv${r.family}: ${r.used}/${r.size} allocated from ${r.cidr}${tag}`);
    if (all) for (const a of r.addresses) lines.push(`  ${a.ip} ${addressLabel(a)}`);
  }
  if (rep.ranges.length === 0) lines.push("No podCIDRs and no stored ranges.");
  for (const p of rep.problems) lines.push(`Problem: ${p}`);
  return `${lines.join("\n")}\n`;
}

// --- internal ---

function addressLabel(a: AddressLine): string {
  if (a.reserved) return `(${a.reserved})`;
  if (!a.owner) return "(no owner record: see `podcidr-ipam repair`)";
  const o = a.owner;
  return `(${o.pod ? `${o.namespace}/${o.pod}` : "no pod name"}) ${o.containerID}/${o.ifname} since ${o.createdAt}`;
}

function report(
  range: RangeState,
  orphaned: boolean,
  node: NodeInfo | null,
  ipam: IpamConfig,
  stored: RangeState[],
  owners: Map<string, AttachmentRecord>,
): RangeReport {
  const cidr = range.cidr;
  const reserved = node && !orphaned ? reservedOffsets(cidr, node, ipam, stored) : new Map<number, string>();
  const lines: { offset: number; line: AddressLine }[] = [];
  for (const [o, why] of reserved) if (!isSet(range, o)) lines.push({ offset: o, line: { ip: addressAt(cidr, o), reserved: why } });
  for (let o = 0; o < cidr.size; o++) {
    if (!isSet(range, o)) continue;
    const ip = addressAt(cidr, o);
    const rec = owners.get(ip);
    const owner = rec ? { containerID: rec.containerID, ifname: rec.ifname, namespace: rec.namespace, pod: rec.pod, createdAt: rec.createdAt } : undefined;
    lines.push({ offset: o, line: owner ? { ip, owner } : { ip } });
  }
  lines.sort((a, b) => a.offset - b.offset);
  const free = orphaned ? 0 : freeCount({ range, excluded: new Set(reserved.keys()) });
  return {
    cidr: cidr.text,
    family: cidr.family,
    orphaned,
    size: cidr.size,
    used: lines.length,
    allocated: range.allocated,
    free,
    truncated: cidr.truncated,
    addresses: lines.map((l) => l.line),
  };
}
