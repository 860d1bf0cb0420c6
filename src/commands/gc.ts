// GC (1.1.0): release every attachment the runtime no longer knows, and repair
// the bitmaps from the records (a bit no record holds is freed, a held address
// whose bit is clear is marked again).
import type { Request } from "../cni/dispatch.js";
import { isSet, release, take } from "../ipam/allocator.js";
import { offsetOf, parseCidr, parseIp } from "../ipam/cidr.js";
import { DiskStore } from "../store/disk.js";
import { releaseRecord } from "./ranges.js";

export async function gc(req: Request): Promise<void> {
  const { conf } = req;
  const valid = conf.validAttachments;
  if (valid === null) {
    // Without the list we cannot tell live from dead; releasing anything could hand out an address in use.
    req.log("no cni.dev/valid-attachments in the config: nothing released (send an empty list to release everything)");
    return;
  }
  const keep = new Set(valid.map((a) => `${a.containerID}\u0000${a.ifname}`));
  const store = new DiskStore(conf.ipam.dataDir, conf.name, conf.ipam.lockTimeout * 1000);
  const report = await store.transact({ create: false }, (tx) => {
    const now = Date.now();
    let released = 0;
    for (const rec of tx.attachments()) {
      if (keep.has(`${rec.containerID}\u0000${rec.ifname}`)) continue;
      releaseRecord(tx, rec, now);
      released++;
    }
    // Repair: the records are the truth of who holds what.
    const held = new Map<string, Set<number>>();
    for (const rec of tx.attachments()) {
      for (const h of rec.ips) {
        const p = parseCidr(h.cidr);
        const ip = parseIp(h.address);
        if (!p.ok || !ip) continue;
        const o = offsetOf(p.cidr, ip.family, ip.value);
        if (o < 0) continue;
        const range = tx.range(p.cidr);
        if (take(range, o)) tx.touch(range);
        if (!held.has(p.cidr.text)) held.set(p.cidr.text, new Set());
        held.get(p.cidr.text)!.add(o);
      }
    }
    let repaired = 0;
    for (const range of tx.storedRanges()) {
      const mine = held.get(range.cidr.text) ?? new Set<number>();
      for (let o = 0; o < range.cidr.size; o++) {
        if (isSet(range, o) && !mine.has(o)) {
          release(range, o, now);
          tx.touch(range);
          repaired++;
        }
      }
    }
    return { released, repaired };
  });
  req.log(`released ${report.released} attachment(s) not in the valid list; freed ${report.repaired} address(es) no record held`);
}
