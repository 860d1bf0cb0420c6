// ADD: one address per family the node's podCIDRs cover, for one attachment
// (network, container ID, interface). Nothing is written unless every family succeeds.
import { statSync } from "node:fs";
import type { Request } from "../cni/dispatch.js";
import type { IpamResult } from "../cni/result.js";
import { Code, CniError } from "../errors.js";
import { allocateNext, freeCount, isSet, pruneReleased, take, type RangeState } from "../ipam/allocator.js";
import { type Cidr, type Family, addressAt, contains, offsetOf, parseIp } from "../ipam/cidr.js";
import type { NodeInfo } from "../ipam/node-file.js";
import { Claims } from "../store/claims.js";
import type { AttachmentRecord, Tx } from "../store/store.js";
import { currentNode, loadNodeStamped } from "./node-stamp.js";
import { candidates, families, gatewayHeld, reservedOffsets, resultFor } from "./ranges.js";
import { openStore } from "./store.js";

export async function add(req: Request): Promise<IpamResult> {
  const { cmd, conf } = req;
  const ipam = conf.ipam;
  const requested = requestedByFamily(req);
  // Wait for the node file outside the lock; read it again under the lock if it changed meanwhile.
  const loaded = await loadNodeStamped(ipam);
  const store = openStore(ipam, req.log);
  const claims = new Claims(ipam.nodeFile, store.dir, req.log);
  const { value: result, waitedMs } = await store.transact({ create: true }, (tx) => {
    const node = currentNode(ipam, loaded);
    const key = { network: conf.name, containerID: cmd.containerID, ifname: cmd.ifname };
    const existing = tx.attachment(key);
    if (existing) return again(req, tx, existing, requested);
    const now = Date.now();
    const stored = tx.storedRanges();
    const ips: { cidr: string; address: string }[] = [];
    const used: Cidr[] = [];
    for (const family of families(node)) {
      const want = requested.get(family);
      const got = want ? takeRequested(tx, node, req, stored, want) : takeNext(tx, node, req, stored, family, now);
      used.push(got.range.cidr);
      ips.push({ cidr: got.range.cidr.text, address: addressAt(got.range.cidr, got.offset) });
      tx.touch(got.range);
      pruneReleased(got.range, now, ipam.reuseCooldown * 1000);
    }
    for (const [family, want] of requested) {
      if (!families(node).includes(family)) throw unavailable(want.text, `the node has no IPv${family} podCIDR (${node.field}: ${cidrList(node)})`);
    }
    // Last, once nothing else can refuse this ADD: a refused call leaves no claim behind.
    for (const c of used) claims.ensure(c);
    const rec: AttachmentRecord = {
      ...key,
      netns: cmd.netns,
      netnsId: netnsIdOf(cmd.netns),
      namespace: cmd.args.get("K8S_POD_NAMESPACE") ?? "",
      pod: cmd.args.get("K8S_POD_NAME") ?? "",
      createdAt: new Date(now).toISOString(),
      ips,
    };
    tx.putAttachment(rec);
    return resultFor(rec, ipam);
  });
  req.log(`holds ${result.ips.map((i) => i.address).join(", ")} (waited ${waitedMs} ms for the lock)`);
  return result;
}

export function describeOwner(a: { network: string; containerID: string; ifname: string; namespace: string; pod: string }): string {
  const id = `${a.network}/${a.containerID}/${a.ifname}`;
  return a.pod ? `${a.namespace}/${a.pod} (${id})` : id;
}

// --- internal ---

interface Wanted {
  readonly text: string;
  readonly family: Family;
  readonly value: bigint;
}

/**
 * ADD for an attachment that exists. Into the same netns it is refused, as
 * host-local refuses it: the interface is there, so the main plugin fails anyway,
 * and ptp, which calls IPAM before it creates the veth, would then DEL and free
 * the live pod's address. Into another netns (a container restarted without a
 * DEL, or a netns made again at the same path: another inode) it returns the
 * same addresses. A record that does not know its netns
 * (migrated from an older store) counts as the same netns: refusing is safe.
 */
function again(req: Request, tx: Tx, existing: AttachmentRecord, requested: Map<Family, Wanted>): IpamResult {
  const { cmd, conf } = req;
  const held = existing.ips.map((h) => h.address).join(", ");
  const id = netnsIdOf(cmd.netns);
  const recreated = existing.netnsId !== "" && id !== "" && existing.netnsId !== id;
  if (!existing.netns || (existing.netns === cmd.netns && !recreated)) {
    throw new CniError(
      Code.AttachmentExists,
      `${conf.name}/${cmd.containerID}/${cmd.ifname} already holds ${held} in netns ${existing.netns || "(unknown)"}`,
      "an ADD for an interface that exists must fail (CNI spec); the runtime DELs the attachment before it adds it again",
    );
  }
  const missing = [...requested.values()].filter((want) => !existing.ips.some((h) => parseIp(h.address)!.value === want.value));
  if (missing.length) {
    throw new CniError(
      Code.RequestedAddressUnavailable,
      `${cmd.containerID}/${cmd.ifname} already holds ${held}, not the requested ${missing.map((m) => m.text).join(", ")}`,
      "an ADD into a new netns returns what the attachment holds; DEL it first to ask for other addresses",
    );
  }
  req.log(`already holds ${held} (netns was ${existing.netns}); returning them`);
  const moved = { ...existing, netns: cmd.netns, netnsId: id };
  tx.putAttachment(moved);
  return resultFor(moved, conf.ipam);
}

/** IP= in CNI_ARGS, runtimeConfig.ips and args.cni.ips, merged as host-local does; one per family. */
function requestedByFamily(req: Request): Map<Family, Wanted> {
  return new Map(req.conf.requested.map((want) => [want.family, want]));
}

function takeRequested(tx: Tx, node: NodeInfo, req: Request, stored: RangeState[], want: Wanted): { range: RangeState; offset: number } {
  const cidr = node.podCIDRs.find((c) => contains(c, want.family, want.value));
  if (!cidr) throw unavailable(want.text, `it is outside every podCIDR of the node (${cidrList(node)})`);
  const offset = offsetOf(cidr, want.family, want.value);
  if (offset < 0) {
    const why = cidr.family === 4 ? "the network or broadcast address" : cidr.truncated ? "the anycast address or beyond the allocatable window" : "the subnet-router anycast address";
    throw unavailable(want.text, `it is ${why} of ${cidr.text}`);
  }
  const gw = gatewayHeld(cidr, req.conf.ipam, stored);
  if (gw) throw unavailable(want.text, `the gateway of ${cidr.text}, ${gw.address}, is a pod's address in ${gw.range}; no pod gets an address of ${cidr.text} until that pod is deleted`);
  const reserved = reservedOffsets(cidr, node, req.conf.ipam, stored).get(offset);
  if (reserved) throw unavailable(want.text, `it is reserved in ${cidr.text} (${reserved})`);
  const range = tx.range(cidr);
  if (isSet(range, offset)) {
    const owner = tx.attachments().find((a) => a.ips.some((h) => h.address === addressAt(cidr, offset)));
    throw unavailable(want.text, `it is held by ${owner ? describeOwner(owner) : "another attachment"}`);
  }
  take(range, offset);
  return { range, offset };
}

function takeNext(tx: Tx, node: NodeInfo, req: Request, stored: RangeState[], family: Family, now: number): { range: RangeState; offset: number } {
  const ipam = req.conf.ipam;
  const cands = candidates(tx, node, ipam, family, stored);
  const pick = allocateNext(cands, now, ipam.reuseCooldown * 1000);
  if (pick) return pick;
  const blocked = node.podCIDRs.filter((c) => c.family === family).map((c) => ({ c, gw: gatewayHeld(c, ipam, stored) }));
  const gwBlocked = blocked.filter((b) => b.gw);
  if (gwBlocked.length > 0 && cands.every((c) => freeCount(c) <= 0)) {
    throw new CniError(
      Code.TryAgainLater,
      `no usable IPv${family} podCIDR: ${gwBlocked.map((b) => `the gateway of ${b.c.text}, ${b.gw!.address}, is a pod's address in ${b.gw!.range}`).join("; ")}`,
      "The node's podCIDR was replaced by one that overlaps the old one, and a pod of the old one holds the new one's gateway. " +
        "New pods get addresses there once that pod is deleted (`podcidr-ipam status --all-addresses` names it).",
    );
  }
  const sizes = cands.map((c) => `${c.range.cidr.text}: ${c.range.allocated} allocated, ${c.range.cidr.size - c.range.allocated - freeCount(c)} reserved`);
  throw new CniError(
    Code.PoolExhausted,
    `no free IPv${family} address in the node's podCIDRs (${sizes.join("; ")})`,
    `Every IPv${family} podCIDR in ${node.field} is full. Expand the pool: in cluster-pool mode add a CIDR to the cluster pool ` +
      "(clusterPoolIPv4PodCIDRList / clusterPoolIPv6PodCIDRList) so the operator appends one to the CiliumNode, or in host-scope mode give " +
      "nodes a larger --node-cidr-mask-size; then refresh the node file. Or free addresses: run `podcidr-ipam status --all-addresses` to see who holds them.",
  );
}

function unavailable(text: string, why: string): CniError {
  return new CniError(Code.RequestedAddressUnavailable, `requested address ${text} is not available: ${why}`, "request an address inside the node's podCIDRs that no pod holds, or drop the request");
}

/** The netns file's identity, "<dev>:<inode>", or "" when it cannot be read (DEL-time paths, tests). */
function netnsIdOf(path: string): string {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return "";
  }
}

function cidrList(node: NodeInfo): string {
  return node.podCIDRs.map((c) => c.text).join(", ");
}
