// The one place a handler gets its store: from the parsed config, logging through the request.
import type { IpamConfig } from "../ipam/config.js";
import { DiskStore } from "./disk.js";

export function openStore(ipam: IpamConfig, log: (msg: string) => void): DiskStore {
  return new DiskStore(ipam.dataDir, ipam.lockTimeout * 1000, (line) => log(line.replace(/^podcidr-ipam: /, "").trimEnd()));
}
