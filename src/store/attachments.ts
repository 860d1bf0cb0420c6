// What DEL, CHECK and GC do with a record: find it (a renamed network's too),
// and release what it holds.
import { pruneReleased, release } from "../ipam/allocator.js";
import { heldOffsets } from "../ipam/pool.js";
import type { AttachmentKey, AttachmentRecord, Tx } from "./store.js";

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

/**
 * Release what a record holds from the stored bitmaps and drop the record. A bitmap
 * that failed to load is left as it is (the tx refuses to rewrite it): its bit stays
 * set until `repair`, a leak but never a duplicate.
 */
export function releaseAttachment(tx: Tx, rec: AttachmentRecord, now: number, cooldownMs: number): void {
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
 * releaseOnReboot: the first call of `network` in boot `boot` releases every attachment of that network made in
 * another boot, and notes the boot so that it is done once. A record that does not know its boot (made by a
 * release before the log store) is kept: it may be a live pod's. Returns what was released.
 */
export function sweepReboot(tx: Tx, network: string, boot: string, now: number, cooldownMs: number): AttachmentRecord[] {
  if (!boot || !tx.sweep || !tx.sweptAt || tx.sweptAt(network) === boot) return [];
  const stale = tx.attachments(network).filter((r) => r.boot && r.boot !== boot);
  for (const r of stale) releaseAttachment(tx, r, now, cooldownMs);
  tx.sweep(network, boot);
  return stale;
}
