// GC (1.1.0): release every attachment of this network that the runtime no
// longer knows, and mark again any address a record holds whose bit is clear.
// A damaged file does not stop it (the spec asks GC to complete): it is skipped
// and reported once everything else is released.
import type { Request } from "../cni/dispatch.js";
import { Code, CniError } from "../errors.js";
import { take } from "../ipam/allocator.js";
import { heldOffsets } from "../ipam/pool.js";
import { bootId } from "../node/boot.js";
import { releaseAttachment, sweepReboot } from "../store/attachments.js";
import type { Deps } from "./index.js";

export async function gc(req: Request, deps: Deps): Promise<void> {
  const { conf } = req;
  const valid = conf.validAttachments;
  if (valid === null) {
    // Without the list we cannot tell live from dead; releasing anything could hand out an address in use.
    req.log("no cni.dev/valid-attachments in the config: nothing released (send an empty list to release everything)");
    return;
  }
  const keep = new Set(valid.map((a) => `${a.containerID}\u0000${a.ifname}`));
  const store = deps.openStore(conf.ipam, req.log);
  const { value: report } = await store.transact({ create: false, skipDamaged: true, frees: true }, (tx) => {
    const now = Date.now();
    const swept = conf.ipam.releaseOnReboot ? sweepReboot(tx, conf.name, bootId(), now, conf.ipam.reuseCooldown * 1000) : [];
    let released = swept.length;
    for (const rec of tx.attachments(conf.name)) {
      if (keep.has(`${rec.containerID}\u0000${rec.ifname}`)) continue;
      releaseAttachment(tx, rec, now, conf.ipam.reuseCooldown * 1000);
      released++;
    }
    // The records are the truth of who holds what: an address any record holds is marked taken.
    // (Bits no record holds are left alone: after a lost record they may be a live pod's; see `repair`.)
    let repaired = 0;
    for (const rec of tx.attachments()) {
      for (const { cidr, offset } of heldOffsets(rec)) {
        if (!cidr || offset < 0) continue;
        const range = tx.range(cidr);
        if (take(range, offset) && tx.touch(range)) repaired++;
      }
    }
    return { released, repaired, damaged: tx.corrupt() };
  });
  req.log(
    `released ${report.released} attachment(s) of ${conf.name} not in the valid ` +
      `list${report.repaired ? `; re-marked ${report.repaired} held address(es)` : ""}`,
  );
  if (report.damaged.length > 0) {
    throw new CniError(
      Code.StoreCorrupt,
      `GC released ${report.released} attachment(s) but skipped ${report.damaged.length} damaged store file(s): ` +
        `${report.damaged.map((d) => d.file).join(", ")}`,
      `${report.damaged[0]!.reason}. Run \`podcidr-ipam repair\` (with --dry-run first).`,
    );
  }
}
