// ADD: one address per family the node's podCIDRs cover, for one attachment
// (network, container ID, interface). Nothing is written unless every family succeeds.
import { statSync } from "node:fs";
import type { Request } from "../cni/dispatch.js";
import { type IpamResult, resultFor } from "../cni/result.js";
import { Code, CniError } from "../errors.js";
import { pruneReleased } from "../ipam/allocator.js";
import { type Cidr, type Family, addressAt, parseIp } from "../ipam/cidr.js";
import { type Wanted, checkRequestedFamilies, families, nodePool, takeNext, takeRequested } from "../ipam/pool.js";
import { bootId } from "../node/boot.js";
import { currentNode, loadNodeStamped } from "../node/stamp.js";
import { familyPool, poolChoices } from "./multi-pool.js";
import { sweepReboot } from "../store/attachments.js";
import type { AttachmentRecord, Tx } from "../store/store.js";
import type { Deps } from "./index.js";

export async function add(req: Request, deps: Deps): Promise<IpamResult> {
  const { cmd, conf } = req;
  const ipam = conf.ipam;
  const requested = new Map<Family, Wanted>(conf.requested.map((want) => [want.family, want]));
  // Wait for the node file outside the lock; read it again under the lock if it changed meanwhile.
  const loaded = await loadNodeStamped(ipam);
  const store = deps.openStore(ipam, req.log);
  const claims = deps.claims(ipam, store, req.log);
  const boot = bootId();
  const early = loaded.node.mode === "multi-pool" ? poolChoices(req, families({ cidrs: loaded.node.podCIDRs })) : null;
  let swept: AttachmentRecord[] = [];
  const { value: result, waitedMs } = await store.transact({ create: true }, (tx) => {
    const node = currentNode(ipam, loaded);
    const now = Date.now();
    swept = ipam.releaseOnReboot ? sweepReboot(tx, conf.name, boot, now, ipam.reuseCooldown * 1000) : [];
    const key = { network: conf.name, containerID: cmd.containerID, ifname: cmd.ifname };
    const existing = tx.attachment(key);
    if (existing) return again(req, tx, existing, requested);
    const pool = nodePool(node, ipam.gateway, tx.storedRanges());
    const ips: { cidr: string; address: string }[] = [];
    const used: Cidr[] = [];
    // Multi-pool: each family from the pool chosen for it (chosen before the lock, unless the node file changed since).
    const fams = families(pool);
    const choices = node.mode !== "multi-pool" ? null : early && fams.every((f) => early.has(f)) ? early : poolChoices(req, fams);
    for (const family of fams) {
      const want = requested.get(family);
      const from = choices ? familyPool(node, pool, family, choices.get(family)!) : pool;
      const got = want
        ? takeRequested(tx, from, want, (address) => holderOf(tx, address))
        : takeNext(tx, from, family, now, ipam.reuseCooldown * 1000);
      used.push(got.range.cidr);
      ips.push({ cidr: got.range.cidr.text, address: addressAt(got.range.cidr, got.offset) });
      tx.touch(got.range);
      pruneReleased(got.range, now, ipam.reuseCooldown * 1000);
    }
    checkRequestedFamilies(pool, requested.values());
    // Last, once nothing else can refuse this ADD: a refused call leaves no claim behind.
    claims.ensure(used);
    const rec: AttachmentRecord = {
      ...key,
      netns: cmd.netns,
      netnsId: netnsIdOf(cmd.netns),
      namespace: cmd.args.get("K8S_POD_NAMESPACE") ?? "",
      pod: cmd.args.get("K8S_POD_NAME") ?? "",
      createdAt: new Date(now).toISOString(),
      ips,
      ...(boot ? { boot } : {}),
    };
    tx.putAttachment(rec);
    return resultFor(rec.ips, ipam);
  });
  logSwept(req, swept);
  req.log(`holds ${result.ips.map((i) => i.address).join(", ")} (waited ${waitedMs} ms for the lock)`);
  return result;
}

/** What a releaseOnReboot sweep released, said once. */
export function logSwept(req: Request, swept: readonly AttachmentRecord[]): void {
  if (swept.length === 0) return;
  req.log(`first call since a reboot: released ${swept.length} attachment(s) of an earlier boot: ${swept.map(describeOwner).join(", ")}`);
}

export function describeOwner(a: { network: string; containerID: string; ifname: string; namespace: string; pod: string }): string {
  const id = `${a.network}/${a.containerID}/${a.ifname}`;
  return a.pod ? `${a.namespace}/${a.pod} (${id})` : id;
}

// --- internal ---

/**
 * ADD for an attachment that exists. Into the same netns it is refused, as
 * host-local refuses it: the interface is there, so the main plugin fails anyway,
 * and ptp, which calls IPAM before it creates the veth, would then DEL and free
 * the live pod's address. Into another netns (a container restarted without a
 * DEL, or a netns made again at the same path: another inode) it returns the
 * same addresses. A record that does not know its netns (migrated from an older
 * store) counts as the same netns: refusing is safe.
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
  return resultFor(moved.ips, conf.ipam);
}

/** Who holds an address, for the message refusing a request for it (reads every record: a rare path). */
function holderOf(tx: Tx, address: string): string | null {
  const owner = tx.attachments().find((a) => a.ips.some((h) => h.address === address));
  return owner ? describeOwner(owner) : null;
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
