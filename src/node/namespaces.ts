// The namespaces' pool annotations on a multi-pool node, which a CNI call is not
// given (the runtime passes only the pod's): a small map beside the node file that
// `podcidr-ipam agent` keeps from the API (written atomically, like the node file):
//   {"namespaces": {"<namespace>": {"ipam.cilium.io/ip-pool": "blue", ...}}}
// A namespace it does not list has none. Read only when a pod's own hints name no pool.
import { readFileSync } from "node:fs";
import { Code, CniError, brief, errno } from "../errors.js";
import type { Annotations } from "../ipam/pool-choice.js";

/** Where the map of `nodeFile` lives. */
export const namespacesFile = (nodeFile: string): string => `${nodeFile}.namespaces.json`;

/** Larger than the map of any cluster's namespaces with pool annotations. */
const MAX_BYTES = 4 << 20;

/** The namespace → annotations lookup of the map beside `nodeFile`: 11 when it is missing, 102 when it does not parse. */
export function namespaceAnnotations(nodeFile: string): (namespace: string) => Annotations {
  const path = namespacesFile(nodeFile);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (errno(err) === "ENOENT") {
      throw new CniError(
        Code.TryAgainLater,
        `the namespaces' pool map ${path} does not exist, so a namespace's ipam.cilium.io pool annotations cannot be honoured`,
        "podcidr-ipam agent --namespace-pools writes it beside the node file; without the agent, write it yourself (" +
          '{"namespaces": {}} when no namespace picks a pool), or give the pod, the network (ipam.pool) or its cni-args a pool',
      );
    }
    throw new CniError(Code.InvalidNodeFile, `the namespaces' pool map ${path} is unreadable: ${errno(err) ?? (err as Error).message}`);
  }
  const map = parse(text, path);
  return (namespace) => map.get(namespace) ?? {};
}

export function parse(text: string, path: string): Map<string, Annotations> {
  const bad = (why: string) =>
    new CniError(
      Code.InvalidNodeFile,
      `the namespaces' pool map ${path} ${why}`,
      'expected {"namespaces": {"<namespace>": {"ipam.cilium.io/ip-pool": "<pool>", ...}}}, as podcidr-ipam agent writes it',
    );
  if (text.length > MAX_BYTES) throw bad(`is larger than ${MAX_BYTES} bytes`);
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw bad(`is not JSON: ${(err as Error).message}`);
  }
  const namespaces = (obj as { namespaces?: unknown } | null)?.namespaces;
  if (typeof namespaces !== "object" || namespaces === null || Array.isArray(namespaces)) throw bad(`has no "namespaces" object`);
  const out = new Map<string, Annotations>();
  for (const [ns, a] of Object.entries(namespaces)) {
    if (typeof a !== "object" || a === null || Array.isArray(a) || !Object.values(a).every((v) => typeof v === "string"))
      throw bad(`lists namespace ${brief(ns)} with ${brief(a)}, not an object of annotation strings`);
    out.set(ns, Object.freeze({ ...(a as Record<string, string>) }));
  }
  return out;
}
