// DEL: release what (container ID, interface) holds. Needs neither the node
// file nor the netns; succeeds when there is nothing to release.
import type { Request } from "../cni/dispatch.js";
import { DiskStore } from "../store/disk.js";
import { releaseRecord } from "./ranges.js";

export async function del(req: Request): Promise<void> {
  const { cmd, conf } = req;
  const store = new DiskStore(conf.ipam.dataDir, conf.name, conf.ipam.lockTimeout * 1000);
  const released = await store.transact({ create: false }, (tx) => {
    const rec = tx.attachment(cmd.containerID, cmd.ifname);
    if (!rec) return null;
    releaseRecord(tx, rec, Date.now());
    return rec.ips.map((h) => h.address);
  });
  req.log(`${released ? `released ${released.join(", ")}` : "nothing to release"} (waited ${store.lastWaitMs} ms for the lock)`);
}
