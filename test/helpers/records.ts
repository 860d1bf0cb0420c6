import type { AttachmentRecord } from "../../src/store/store";

/**
 * An attachment record of network "podnet", interface eth0, holding `address` of `cidr`
 * (none when address is omitted), netns /var/run/netns/<id>; `over` sets any other field.
 */
export function attachmentRecord(
  containerID: string,
  address?: string,
  cidr = "10.0.2.0/24",
  over: Partial<AttachmentRecord> = {},
): AttachmentRecord {
  return {
    network: "podnet",
    containerID,
    ifname: "eth0",
    netns: `/var/run/netns/${containerID}`,
    netnsId: "",
    namespace: "",
    pod: "",
    createdAt: "2026-01-01T00:00:00.000Z",
    ips: address === undefined ? [] : [{ cidr, address }],
    ...over,
  };
}
