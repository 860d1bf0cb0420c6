// Reading the node file, and waiting for its podCIDRs to appear.
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { Code, CniError, errno } from "../errors.js";
import type { IpamConfig } from "../ipam/config.js";
import { type NodeInfo, decodeNodeJson, nodeFromJson } from "../ipam/node-file.js";
import { readAll } from "../store/io.js";

/** Larger than any node object kubectl prints (a busy v1 Node is ~100 KiB). */
export const MAX_NODE_FILE = 4 << 20;
const POLL_MS = 200;

/** What one read of the node file found. */
export type NodeRead =
  | { readonly state: "missing" }
  /** Empty: a sync job writing in place (`kubectl ... > file` truncates first). */
  | { readonly state: "empty" }
  /** Not JSON: most likely half-written for the same reason; `error` is the 102 to report if it stays so. */
  | { readonly state: "partial"; readonly error: CniError }
  | { readonly state: "ok"; readonly node: NodeInfo };

/** Read the node file once. Null when it does not exist; an empty file is code 11, one that is not JSON 102. */
export function readNode(path: string, nodeName = "", mode: IpamConfig["mode"] = "auto"): NodeInfo | null {
  const r = readNodeState(path, nodeName, mode);
  if (r.state === "empty") throw emptyFile(path, "");
  if (r.state === "partial") throw r.error;
  return r.state === "ok" ? r.node : null;
}

/** Read the node file once, telling a missing, empty or half-written file apart from a bad one (which throws 102). */
export function readNodeState(path: string, nodeName = "", mode: IpamConfig["mode"] = "auto"): NodeRead {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (errno(err) === "ENOENT") return { state: "missing" };
    throw new CniError(
      Code.InvalidNodeFile,
      `node file ${path} is unreadable: ${errno(err) ?? (err as Error).message}`,
      "check ipam.nodeFile and the file's permissions (the plugin runs as root)",
    );
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile())
      throw new CniError(
        Code.InvalidNodeFile,
        `node file ${path} is not a regular file`,
        "point ipam.nodeFile at the JSON file your sync job writes",
      );
    if (st.size > MAX_NODE_FILE) {
      throw new CniError(
        Code.InvalidNodeFile,
        `node file ${path} is ${st.size} bytes, larger than the ${MAX_NODE_FILE}-byte limit`,
        "it should hold one node object from kubectl get ... -o json",
      );
    }
    if (st.size === 0) return { state: "empty" };
    let obj: unknown;
    try {
      obj = decodeNodeJson(readAll(fd, st.size), path);
    } catch (err) {
      if (err instanceof CniError) return { state: "partial", error: err };
      throw err;
    }
    const node = nodeFromJson(obj, path, mode);
    if (nodeName && node.name !== nodeName) {
      throw new CniError(
        Code.InvalidNodeFile,
        `node file ${path} is the ${node.kind} of node ${JSON.stringify(node.name)}, ` +
          `not of this node ${JSON.stringify(nodeName)} (ipam.nodeName)`,
        "a node file copied from another node would hand out that node's addresses; the sync job must write this node's object",
      );
    }
    return { state: "ok", node };
  } catch (err) {
    if (err instanceof CniError) throw err;
    throw new CniError(
      Code.InvalidNodeFile,
      `node file ${path} is unreadable: ${errno(err) ?? (err as Error).message}`,
      "check the file and its permissions",
    );
  } finally {
    closeSync(fd);
  }
}

/**
 * Read the node file, waiting up to ipam.waitForPodCIDRs for it and its podCIDRs to
 * appear. A missing, empty or half-written (not JSON) file is re-read every poll.
 */
export async function loadNode(ipam: IpamConfig, wait: boolean): Promise<NodeInfo> {
  const deadline = Date.now() + (wait ? ipam.waitForPodCIDRs * 1000 : 0);
  for (;;) {
    const r = readNodeState(ipam.nodeFile, ipam.nodeName, ipam.mode);
    if (r.state === "ok" && r.node.podCIDRs.length > 0) return r.node;
    if (Date.now() >= deadline) {
      const waited = waitedText(ipam);
      if (r.state === "empty") throw emptyFile(ipam.nodeFile, waited);
      if (r.state === "partial") {
        throw waited
          ? new CniError(r.error.code, r.error.message, `still not JSON${waited}, re-read every ${POLL_MS} ms: ${r.error.details}`)
          : r.error;
      }
      throw notReady(ipam, r.state === "ok" ? r.node : null);
    }
    await new Promise((res) => setTimeout(res, Math.min(POLL_MS, Math.max(1, deadline - Date.now()))));
  }
}

function waitedText(ipam: IpamConfig): string {
  return ipam.waitForPodCIDRs > 0 ? ` after waiting ${ipam.waitForPodCIDRs}s` : "";
}

function emptyFile(path: string, waited: string): CniError {
  return new CniError(
    Code.TryAgainLater,
    `node file ${path} is empty${waited}: the sync job may be writing it in place; write a temp file and mv it`,
    `e.g. \`kubectl get ciliumnode $NODE -o json > ${path}.tmp && mv ${path}.tmp ${path}\`: a rename replaces the file in one step, so ` +
      `a call never reads it half-written`,
  );
}

export function notReady(ipam: IpamConfig, node: NodeInfo | null): CniError {
  const waited = waitedText(ipam);
  if (!node) {
    return new CniError(
      Code.TryAgainLater,
      `node file ${ipam.nodeFile} does not exist${waited}`,
      `the sync job writes it, e.g. \`kubectl get ciliumnode $NODE -o json > ${ipam.nodeFile}.tmp && mv ${ipam.nodeFile}.tmp ` +
        `${ipam.nodeFile}\`; check that it runs and that ipam.nodeFile names the same path`,
    );
  }
  const why = node.operatorError ? ` The operator reports: "${node.operatorError}".` : "";
  return new CniError(
    Code.TryAgainLater,
    `node file ${ipam.nodeFile} lists no podCIDRs in ${node.field}${waited}`,
    `${node.kind} ${node.name || "(unnamed)"} has not been given a pod CIDR yet.${why} Cluster-pool IPAM: check the cilium-operator and ` +
      `its cluster pool; host-scope: kube-controller-manager --allocate-node-cidrs.`,
  );
}
