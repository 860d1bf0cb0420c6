// ADD: one address per family the node's podCIDRs cover, idempotent per
// (container ID, interface). Nothing is written unless every family succeeds.
import type { Request } from "../cni/dispatch.js";
import type { IpamResult } from "../cni/result.js";
import { Code, CniError } from "../errors.js";
import { allocateNext, freeCount, isSet, pruneReleased, take, type RangeState } from "../ipam/allocator.js";
import { type Family, addressAt, contains, offsetOf, parseIp } from "../ipam/cidr.js";
import type { NodeInfo } from "../ipam/node-file.js";
import { DiskStore } from "../store/disk.js";
import type { Tx } from "../store/store.js";
import { loadNode } from "./node.js";
import { candidates, families, reservedOffsets, resultFor } from "./ranges.js";

export async function add(req: Request): Promise<IpamResult> {
  const { cmd, conf } = req;
  const ipam = conf.ipam;
  const requested = requestedByFamily(req);
  const node = await loadNode(ipam, true);
  const store = new DiskStore(ipam.dataDir, conf.name, ipam.lockTimeout * 1000);
  const result = await store.transact({ create: true }, (tx) => {
    const existing = tx.attachment(cmd.containerID, cmd.ifname);
    if (existing) {
      const missing = [...requested.values()].filter((want) => !existing.ips.some((h) => parseIp(h.address)!.value === want.value));
      if (missing.length) {
        throw new CniError(
          Code.RequestedAddressUnavailable,
          `${cmd.containerID}/${cmd.ifname} already holds ${existing.ips.map((h) => h.address).join(", ")}, not the requested ${missing.map((m) => m.text).join(", ")}`,
          "a repeated ADD returns what the attachment holds; DEL it first to ask for other addresses",
        );
      }
      req.log(`already holds ${existing.ips.map((h) => h.address).join(", ")}; returning them`);
      return resultFor(existing, ipam);
    }
    const now = Date.now();
    const stored = tx.storedRanges();
    const ips: { cidr: string; address: string }[] = [];
    for (const family of families(node)) {
      const want = requested.get(family);
      const got = want ? takeRequested(tx, node, req, stored, want) : takeNext(tx, node, req, stored, family, now);
      ips.push({ cidr: got.range.cidr.text, address: addressAt(got.range.cidr, got.offset) });
      tx.touch(got.range);
      pruneReleased(got.range, now, ipam.reuseCooldown * 1000);
    }
    for (const [family, want] of requested) {
      if (!families(node).includes(family)) throw unavailable(want.text, `the node has no IPv${family} podCIDR (${node.field}: ${cidrList(node)})`);
    }
    const rec = {
      containerID: cmd.containerID,
      ifname: cmd.ifname,
      namespace: cmd.args.get("K8S_POD_NAMESPACE") ?? "",
      pod: cmd.args.get("K8S_POD_NAME") ?? "",
      createdAt: new Date(now).toISOString(),
      ips,
    };
    tx.putAttachment(rec);
    return resultFor(rec, ipam);
  });
  req.log(`holds ${result.ips.map((i) => i.address).join(", ")} (waited ${store.lastWaitMs} ms for the lock)`);
  return result;
}

// --- internal ---

interface Wanted {
  readonly text: string;
  readonly family: Family;
  readonly value: bigint;
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
  const cands = candidates(tx, node, req.conf.ipam, family, stored);
  const pick = allocateNext(cands, now, req.conf.ipam.reuseCooldown * 1000);
  if (pick) return pick;
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

function cidrList(node: NodeInfo): string {
  return node.podCIDRs.map((c) => c.text).join(", ");
}

export function describeOwner(a: { containerID: string; ifname: string; namespace: string; pod: string }): string {
  return a.pod ? `${a.namespace}/${a.pod} (${a.containerID}/${a.ifname})` : `${a.containerID}/${a.ifname}`;
}
