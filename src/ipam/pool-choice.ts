// Which pool of a multi-pool node an attachment draws a family from, in this order
// (docs/modes.md), the first that names one:
//   1. args.cni.pool           Multus: the network-selection element's "cni-args"
//   2. ipam.pool               the network config pins this network to one pool
//   3. the pod's annotations   ipam.cilium.io/ipv4-pool or ipv6-pool (per family), else ip-pool
//   4. its namespace's          the same keys, from the map the agent writes beside the node file
//   5. pool "default"; an error instead when ipam.cilium.io/require-pool-match is "true" on
//      the pod or its namespace.
// 3 to 5 are Cilium's own order (pkg/ipam/metadata GetIPPoolForPod). Pure: the
// namespace's annotations come from a function, called only when 1 to 3 name none.
import { Code, CniError, brief } from "../errors.js";
import type { Family } from "./cidr.js";
import { isPoolName } from "./config.js";

export const POOL_ANNOTATION = {
  any: "ipam.cilium.io/ip-pool",
  4: "ipam.cilium.io/ipv4-pool",
  6: "ipam.cilium.io/ipv6-pool",
  require: "ipam.cilium.io/require-pool-match",
} as const;

export const DEFAULT_POOL = "default";

export type Annotations = Readonly<Record<string, string>>;

export interface PoolHints {
  /** args.cni.pool ("" when absent). */
  readonly argsPool: string;
  /** ipam.pool ("" when absent). */
  readonly configPool: string;
  /** The pod's annotations (runtimeConfig "io.kubernetes.cri.pod-annotations"); null when the runtime passed none. */
  readonly pod: Annotations | null;
  /** The pod's namespace ("" when CNI_ARGS has no K8S_POD_NAMESPACE). */
  readonly namespace: string;
}

export interface PoolChoice {
  readonly pool: string;
  /** Where the choice came from, for logs and messages. */
  readonly source: string;
}

/** The pool for `family`. `namespaceAnnotations` is asked only when the pod-level sources name none. */
export function choosePool(h: PoolHints, family: Family, namespaceAnnotations: (ns: string) => Annotations): PoolChoice {
  // Every pool key of the pod is checked, whichever family asks: bad input is refused, not skipped.
  checkNames(h.pod, "the pod's annotation");
  if (h.argsPool) return { pool: h.argsPool, source: "args.cni.pool" };
  if (h.configPool) return { pool: h.configPool, source: "ipam.pool" };
  const fromPod = fromAnnotations(h.pod, family, "the pod's annotation");
  if (fromPod) return fromPod;
  const ns = h.namespace ? namespaceAnnotations(h.namespace) : {};
  checkNames(ns, `namespace ${h.namespace}'s annotation`);
  const fromNs = fromAnnotations(ns, family, `namespace ${h.namespace}'s annotation`);
  if (fromNs) return fromNs;
  for (const [where, a] of [
    ["the pod", h.pod],
    [`namespace ${h.namespace}`, ns],
  ] as const) {
    if (a?.[POOL_ANNOTATION.require] === "true") {
      throw new CniError(
        Code.InvalidNetworkConfig,
        `no pool matches the pod for IPv${family}, and ${where} requires a match (${POOL_ANNOTATION.require}: "true")`,
        `annotate the pod or its namespace with ${POOL_ANNOTATION[family]} or ${POOL_ANNOTATION.any}, or drop ` +
          `${POOL_ANNOTATION.require} to let it have pool "${DEFAULT_POOL}"`,
      );
    }
  }
  return { pool: DEFAULT_POOL, source: "the default: no source names another" };
}

/** Annotations as the runtime passes them: an object of strings. Others are refused (7), naming `where`. */
export function annotationsOf(v: unknown, where: string): Annotations | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "object" || Array.isArray(v))
    throw new CniError(Code.InvalidNetworkConfig, `${where} must be an object of annotations`, `got ${brief(v)}`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === "string") out[k] = val;
  return Object.freeze(out);
}

// --- internal ---

function fromAnnotations(a: Annotations | null, family: Family, where: string): PoolChoice | null {
  if (!a) return null;
  for (const key of [POOL_ANNOTATION[family], POOL_ANNOTATION.any]) {
    const v = a[key];
    if (v !== undefined && v !== "") return { pool: v, source: `${where} ${key}` };
  }
  return null;
}

function checkNames(a: Annotations | null, where: string): void {
  for (const key of [POOL_ANNOTATION[4], POOL_ANNOTATION[6], POOL_ANNOTATION.any]) {
    const v = a?.[key];
    if (v === undefined || v === "" || isPoolName(v)) continue;
    throw new CniError(
      Code.InvalidNetworkConfig,
      `${where} ${key} ${brief(v)} is not a pool name`,
      'a pool is named by its CiliumPodIPPool: lowercase letters, digits, "-" and "."; fix the annotation',
    );
  }
}
