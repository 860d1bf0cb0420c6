// The node file as ADD uses it: read (and waited for) before the lock, then
// checked again under the lock, so that a CIDR removed while the call waited
// for the lock is never used.
import { statSync } from "node:fs";
import type { IpamConfig } from "../ipam/config.js";
import type { NodeInfo } from "../ipam/node-file.js";
import { loadNode, notReady, readNode } from "./read.js";

export interface StampedNode {
  readonly node: NodeInfo;
  /** The file's identity and times when it was read: inode, size, mtime, ctime. */
  readonly stamp: string;
}

/** loadNode (waiting up to waitForPodCIDRs), with the stamp of the content it returned. */
export async function loadNodeStamped(ipam: IpamConfig): Promise<StampedNode> {
  for (;;) {
    const before = stampOf(ipam.nodeFile);
    const node = await loadNode(ipam, true);
    if (stampOf(ipam.nodeFile) === before) return { node, stamp: before };
  }
}

/** The node file as it is now: the loaded one if unchanged (a stat), else read again (no waiting: the lock is held). */
export function currentNode(ipam: IpamConfig, loaded: StampedNode): NodeInfo {
  if (stampOf(ipam.nodeFile) === loaded.stamp) return loaded.node;
  const node = readNode(ipam.nodeFile, ipam.nodeName, ipam.mode);
  if (!node || node.podCIDRs.length === 0) throw notReady({ ...ipam, waitForPodCIDRs: 0 }, node);
  return node;
}

function stampOf(path: string): string {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return "none";
  }
}
