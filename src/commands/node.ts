// Reading the node file, and waiting for its podCIDRs to appear.
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { Code, CniError, errno } from "../errors.js";
import type { IpamConfig } from "../ipam/config.js";
import { type NodeInfo, parseNodeFile } from "../ipam/node-file.js";
import { readAll } from "../store/io.js";

/** Larger than any node object kubectl prints (a busy v1 Node is ~100 KiB). */
export const MAX_NODE_FILE = 4 << 20;
const POLL_MS = 200;

/** Read the node file once. Null when it does not exist or is empty. */
export function readNode(path: string): NodeInfo | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (errno(err) === "ENOENT") return null;
    throw new CniError(Code.InvalidNodeFile, `node file ${path} is unreadable: ${errno(err) ?? (err as Error).message}`, "check ipam.nodeFile and the file's permissions (the plugin runs as root)");
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new CniError(Code.InvalidNodeFile, `node file ${path} is not a regular file`, "point ipam.nodeFile at the JSON file your sync job writes");
    if (st.size > MAX_NODE_FILE) {
      throw new CniError(Code.InvalidNodeFile, `node file ${path} is ${st.size} bytes, larger than the ${MAX_NODE_FILE}-byte limit`, "it should hold one node object from kubectl get ... -o json");
    }
    // An empty file is one being written right now (`kubectl ... > file` truncates first): not there yet.
    if (st.size === 0) return null;
    return parseNodeFile(readAll(fd, st.size), path);
  } catch (err) {
    if (err instanceof CniError) throw err;
    throw new CniError(Code.InvalidNodeFile, `node file ${path} is unreadable: ${errno(err) ?? (err as Error).message}`, "check the file and its permissions");
  } finally {
    closeSync(fd);
  }
}

/** Read the node file, waiting up to ipam.waitForPodCIDRs for it and its podCIDRs to appear. */
export async function loadNode(ipam: IpamConfig, wait: boolean): Promise<NodeInfo> {
  const deadline = Date.now() + (wait ? ipam.waitForPodCIDRs * 1000 : 0);
  for (;;) {
    const node = readNode(ipam.nodeFile);
    if (node && node.podCIDRs.length > 0) return node;
    if (Date.now() >= deadline) throw notReady(ipam, node);
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(1, deadline - Date.now()))));
  }
}

export function notReady(ipam: IpamConfig, node: NodeInfo | null): CniError {
  const waited = ipam.waitForPodCIDRs > 0 ? ` after waiting ${ipam.waitForPodCIDRs}s` : "";
  if (!node) {
    return new CniError(
      Code.TryAgainLater,
      `node file ${ipam.nodeFile} does not exist${waited}`,
      `the sync job writes it, e.g. \`kubectl get ciliumnode $NODE -o json > ${ipam.nodeFile}.tmp && mv ${ipam.nodeFile}.tmp ${ipam.nodeFile}\`; check that it runs and that ipam.nodeFile names the same path`,
    );
  }
  const why = node.operatorError ? ` The operator reports: "${node.operatorError}".` : "";
  return new CniError(
    Code.TryAgainLater,
    `node file ${ipam.nodeFile} lists no podCIDRs in ${node.field}${waited}`,
    `${node.kind} ${node.name || "(unnamed)"} has not been given a pod CIDR yet.${why} Cluster-pool IPAM: check the cilium-operator and its cluster pool; host-scope: kube-controller-manager --allocate-node-cidrs.`,
  );
}
