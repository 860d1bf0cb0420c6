// CHECK: the attachment must still hold every address of prevResult that lies
// in one of our ranges (the node's podCIDRs, or a range we still store).
import type { Request } from "../cni/dispatch.js";
import { Code, CniError } from "../errors.js";
import { isSet } from "../ipam/allocator.js";
import { type Cidr, contains, parseIp } from "../ipam/cidr.js";
import { heldOffsets } from "../ipam/pool.js";
import { readNode } from "../node/read.js";
import { findAttachment } from "../store/attachments.js";
import type { Deps } from "./index.js";

export async function check(req: Request, deps: Deps): Promise<void> {
  const { cmd, conf } = req;
  const expected = prevResultAddresses(req.conf.prevResult);
  let nodeCidrs: readonly Cidr[] = [];
  try {
    nodeCidrs = readNode(conf.ipam.nodeFile, conf.ipam.nodeName, conf.ipam.mode)?.podCIDRs ?? [];
  } catch (err) {
    req.log(`ignoring the node file for CHECK: ${(err as Error).message}`);
  }
  const store = deps.openStore(conf.ipam, req.log);
  const key = { network: conf.name, containerID: cmd.containerID, ifname: cmd.ifname };
  await store.transact({ create: false, readOnly: true }, (tx) => {
    const rec = findAttachment(tx, key, cmd.netns);
    const who = `${conf.name}/${cmd.containerID}/${cmd.ifname}`;
    if (!rec) {
      throw new CniError(
        Code.CheckFailed,
        `podcidr-ipam holds no address for ${who}`,
        `the store ${store.location} has no record of this attachment; it was never added, or was released by DEL or GC`,
      );
    }
    const ours = [...nodeCidrs, ...tx.storedRanges().map((r) => r.cidr)];
    for (const text of expected) {
      const ip = parseIp(text);
      if (!ip || !ours.some((c) => contains(c, ip.family, ip.value))) continue;
      if (!rec.ips.some((h) => parseIp(h.address)?.value === ip.value)) {
        throw new CniError(
          Code.CheckFailed,
          `${who} does not hold ${text}`,
          `it holds ${rec.ips.map((h) => h.address).join(", ") || "nothing"}`,
        );
      }
    }
    for (const held of heldOffsets(rec)) {
      if (!held.cidr || held.offset < 0 || !isSet(tx.range(held.cidr), held.offset)) {
        throw new CniError(
          Code.CheckFailed,
          `${held.address} of ${who} is not marked allocated in its podCIDR`,
          "the store is inconsistent; run GC (it marks held addresses again) or DEL and ADD the pod again",
        );
      }
    }
  });
}

// --- internal ---

/** Bare addresses of prevResult.ips[].address (1.x / 0.3+) or ip4/ip6.ip (0.1/0.2). */
function prevResultAddresses(prev: unknown): string[] {
  if (typeof prev !== "object" || prev === null) return [];
  const p = prev as { ips?: unknown; ip4?: { ip?: unknown }; ip6?: { ip?: unknown } };
  const out: string[] = [];
  if (Array.isArray(p.ips)) for (const e of p.ips) if (typeof e?.address === "string") out.push(e.address);
  for (const v of [p.ip4?.ip, p.ip6?.ip]) if (typeof v === "string") out.push(v);
  return out.map((a) => a.replace(/\/\d+$/, ""));
}
