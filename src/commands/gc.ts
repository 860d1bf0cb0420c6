// GC (1.1.0): release every attachment the runtime no longer knows, and mark
// again any address a record holds whose bit is clear.
import type { Request } from "../cni/dispatch.js";
import { take } from "../ipam/allocator.js";
import { DiskStore } from "../store/disk.js";
import { heldOffsets, releaseRecord } from "./ranges.js";

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
    // The records are the truth of who holds what: an address a record holds is marked taken.
    // (Bits no record holds are left alone: after a lost record they may be a live pod's; see `repair`.)
    let repaired = 0;
    for (const rec of tx.attachments()) {
      for (const { cidr, offset } of heldOffsets(rec)) {
        if (!cidr || offset < 0) continue;
        const range = tx.range(cidr);
        if (take(range, offset)) {
          tx.touch(range);
          repaired++;
        }
      }
    }
    return { released, repaired };
  });
  req.log(`released ${report.released} attachment(s) not in the valid list${report.repaired ? `; re-marked ${report.repaired} held address(es)` : ""}`);
}
