// DEL: release what the attachment (network, container ID, interface) holds.
// Needs neither the node file nor the netns; succeeds when there is nothing to
// release, and when another file of the store is damaged.
import type { Request } from "../cni/dispatch.js";
import { bootId } from "../node/boot.js";
import { findAttachment, releaseAttachment, sweepReboot } from "../store/attachments.js";
import { logSwept } from "./add.js";
import type { Deps } from "./index.js";

export async function del(req: Request, deps: Deps): Promise<void> {
  const { cmd, conf } = req;
  const store = deps.openStore(conf.ipam, req.log);
  const key = { network: conf.name, containerID: cmd.containerID, ifname: cmd.ifname };
  const cooldown = conf.ipam.reuseCooldown * 1000;
  const { value, waitedMs } = await store.transact({ create: false, skipDamaged: true, frees: true }, (tx) => {
    const swept = conf.ipam.releaseOnReboot ? sweepReboot(tx, conf.name, bootId(), Date.now(), cooldown) : [];
    const rec = findAttachment(tx, key, cmd.netns);
    if (!rec) return { released: null, damaged: tx.corrupt(), swept };
    releaseAttachment(tx, rec, Date.now(), cooldown);
    return { released: rec, damaged: tx.corrupt(), swept };
  });
  logSwept(req, value.swept);
  const rec = value.released;
  const other = rec && rec.network !== conf.name ? ` (added under network ${rec.network})` : "";
  req.log(
    `${rec ? `released ${rec.ips.map((h) => h.address).join(", ")}${other}` : "nothing to release"} (waited ${waitedMs} ms for the lock)`,
  );
  for (const d of value.damaged) req.log(`skipped a damaged store file, left for \`podcidr-ipam repair\`: ${d.reason}`);
}
