// The store's file names: a range file per podCIDR, a record per attachment.
import { type Cidr, parseCidr } from "../ipam/cidr.js";
import type { AttachmentKey } from "./store.js";

export function rangeFileName(cidrText: string): string {
  return `range-${cidrText.replace(/:/g, "-").replace("/", "_")}.json`;
}

export function attachmentFileName(containerID: string, ifname: string): string {
  // '@' cannot occur in a container ID, so the name is unambiguous.
  return `${containerID}@${ifname}.json`;
}

/** Path of an attachment's record relative to the store folder: attachments/<network>/<containerID>@<ifname>.json. */
export function attachmentPath(key: AttachmentKey): string {
  return `attachments/${key.network}/${attachmentFileName(key.containerID, key.ifname)}`;
}

/** The (container ID, ifname) a record's file name says, or null for a name the store never writes. */
export function parseAttachmentName(name: string): { containerID: string; ifname: string } | null {
  const m = /^([^@/]+)@([^/]+)\.json$/.exec(name);
  return m ? { containerID: m[1]!, ifname: m[2]! } : null;
}

/** The CIDR a range file's name says, or null. */
export function parseRangeName(name: string): Cidr | null {
  const m = /^range-(.+)_(\d+)\.json$/.exec(name);
  const p = m ? parseCidr(`${m[1]!.replace(/-/g, ":")}/${m[2]}`) : null;
  return p?.ok && rangeFileName(p.cidr.text) === name ? p.cidr : null;
}
