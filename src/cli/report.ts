// What `podcidr-ipam status` shows: per podCIDR (and per range no node file
// lists any more) how many addresses are in use, and which attachment (of any
// network sharing the store) holds each one.
import type { CniError } from "../errors.js";
import { type RangeState, freeCount, isSet } from "../ipam/allocator.js";
import { addressAt } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import { type NodeInfo, nodeAddressConflicts, nodeAddressProblem } from "../ipam/node-file.js";
import { poolOfCidr } from "../ipam/node-pools.js";
import { Claims } from "../store/claims.js";
import type { AttachmentRecord } from "../store/store.js";
import { FROM_OVERLAP, gatewayHeld, nodePool, reservedOffsets } from "../ipam/pool.js";
import { notReady, readNode } from "../node/read.js";
import { openStore } from "../store/open.js";

export interface AddressLine {
  readonly ip: string;
  readonly reserved?: string;
  readonly owner?: Omit<AttachmentRecord, "ips">;
}

export interface RangeReport {
  readonly cidr: string;
  readonly family: 4 | 6;
  /** Multi-pool: the pool the node file lists it in (absent in the other modes, and for an orphaned range). */
  readonly pool?: string;
  /** The node file no longer lists it: no new allocations, existing ones still work. False when the node file is unusable. */
  readonly orphaned: boolean;
  readonly size: number;
  /** Pod allocations plus this range's own reserved addresses (gateway, router, health, ingress). */
  readonly used: number;
  readonly allocated: number;
  readonly free: number;
  /** Only the first `size` addresses after the network address are used (IPv6 /64...). */
  readonly truncated: boolean;
  readonly addresses: readonly AddressLine[];
}

export interface StoreReport {
  /** The network asked about ("" when none): every network's attachments are shown, the store being shared. */
  readonly network: string;
  readonly store: string;
  readonly nodeFile: string;
  readonly node: { readonly kind: string; readonly name: string; readonly field: string } | null;
  readonly ranges: readonly RangeReport[];
  readonly problems: readonly string[];
}

export async function collectReport(network: string, ipam: IpamConfig, log: (msg: string) => void = () => {}): Promise<StoreReport> {
  const problems: string[] = [];
  let node: NodeInfo | null = null;
  try {
    node = readNode(ipam.nodeFile, ipam.nodeName, ipam.mode);
    if (!node || node.podCIDRs.length === 0) {
      const e = notReady({ ...ipam, waitForPodCIDRs: 0 }, node);
      problems.push(`${e.message}: ${e.details}`);
    }
    const conflicts = node ? nodeAddressConflicts(node) : [];
    if (conflicts.length > 0) {
      const p = nodeAddressProblem(conflicts);
      problems.push(`${p.message}: ${p.details}`);
    }
  } catch (e) {
    problems.push(`${(e as CniError).message}: ${(e as CniError).details ?? ""}`);
  }
  const known = node !== null;
  const store = openStore(ipam, log);
  const claims = new Claims(ipam.nodeFile, store.location, () => {});
  const { value } = await store.transact({ create: false, readOnly: true, skipDamaged: true }, (tx) => {
    const stored = tx.storedRanges();
    const owners = new Map<string, AttachmentRecord>();
    for (const rec of tx.attachments()) for (const h of rec.ips) owners.set(h.address, rec);
    const active = (node?.podCIDRs ?? []).map((c) => ({ range: tx.range(c), orphaned: false }));
    const rest = stored.filter((r) => !active.some((a) => a.range.cidr.text === r.cidr.text)).map((range) => ({ range, orphaned: known }));
    const ranges = [...active, ...rest].map(({ range, orphaned }) => report(range, orphaned, node, ipam, stored, owners));
    for (const { range } of active) {
      const gw = gatewayHeld(range.cidr, { gateway: ipam.gateway, stored });
      if (gw)
        problems.push(
          `the gateway of ${range.cidr.text}, ${gw.address}, is a pod's address in ${gw.range}: no new pod gets an address of ` +
            `${range.cidr.text} until that pod is deleted`,
        );
      try {
        claims.check(range.cidr);
      } catch (e) {
        problems.push((e as CniError).message);
      }
    }
    return { ranges, damaged: tx.corrupt() };
  });
  for (const d of value.damaged) problems.push(`${d.reason} (run \`podcidr-ipam repair\`)`);
  const ranges = value.ranges;
  for (const r of ranges) {
    if (r.orphaned && r.allocated > 0)
      problems.push(`${r.cidr} is no longer in the node file but ${r.allocated} address(es) in it are still held`);
  }
  if (!known && ranges.length > 0) problems.push("the node file is unusable, so the stored ranges cannot be told active or orphaned");
  for (const fam of [4, 6] as const) {
    const act = ranges.filter((r) => r.family === fam && !r.orphaned && node?.podCIDRs.some((c) => c.text === r.cidr));
    if (act.length > 0 && act.every((r) => r.free <= 0)) problems.push(`every IPv${fam} podCIDR is full`);
  }
  return {
    network,
    store: store.location,
    nodeFile: ipam.nodeFile,
    node: node ? { kind: node.kind, name: node.name, field: node.field } : null,
    ranges,
    problems,
  };
}

export function formatReport(rep: StoreReport, all: boolean): string {
  const lines = [`Store ${rep.store}${rep.network ? ` (network ${rep.network} and every network sharing it)` : ""}`];
  lines.push(
    rep.node
      ? `Node file ${rep.nodeFile}: ${rep.node.kind} ${rep.node.name || "(unnamed)"}, ${rep.node.field}`
      : `Node file ${rep.nodeFile}: not usable`,
  );
  for (const r of rep.ranges) {
    const tag = r.orphaned ? " (orphaned: no longer in the node file)" : r.truncated ? ` (first ${r.size} addresses used)` : "";
    const head = r.pool !== undefined ? `Pool ${r.pool}: IPv${r.family}` : `IPv${r.family}:`;
    lines.push(`${head} ${r.used}/${r.size} allocated from ${r.cidr}${tag}`);
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
  return `(${o.pod ? `${o.namespace}/${o.pod}` : "no pod name"}) ${o.network} ${o.containerID}/${o.ifname} since ${o.createdAt}`;
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
  const active = node !== null && !orphaned && node.podCIDRs.some((c) => c.text === cidr.text);
  // Reasons that come from another, overlapping range are listed here but counted there.
  const reserved = active ? reservedOffsets(cidr, nodePool(node, ipam.gateway, stored)) : new Map<number, string>();
  const lines: { offset: number; line: AddressLine; counted: boolean }[] = [];
  for (const [o, why] of reserved)
    if (!isSet(range, o)) lines.push({ offset: o, line: { ip: addressAt(cidr, o), reserved: why }, counted: !FROM_OVERLAP.test(why) });
  for (let o = 0; o < cidr.size; o++) {
    if (!isSet(range, o)) continue;
    const ip = addressAt(cidr, o);
    const rec = owners.get(ip);
    const owner = rec
      ? {
          network: rec.network,
          containerID: rec.containerID,
          ifname: rec.ifname,
          netns: rec.netns,
          netnsId: rec.netnsId,
          namespace: rec.namespace,
          pod: rec.pod,
          createdAt: rec.createdAt,
        }
      : undefined;
    lines.push({ offset: o, line: owner ? { ip, owner } : { ip }, counted: true });
  }
  lines.sort((a, b) => a.offset - b.offset);
  const free = active ? freeCount({ range, excluded: new Set(reserved.keys()) }) : 0;
  const pool = active ? poolOfCidr(node, cidr.text) : undefined;
  return {
    cidr: cidr.text,
    family: cidr.family,
    ...(pool !== undefined ? { pool } : {}),
    orphaned,
    size: cidr.size,
    used: lines.filter((l) => l.counted).length,
    allocated: range.allocated,
    free,
    truncated: cidr.truncated,
    addresses: lines.map((l) => l.line),
  };
}
