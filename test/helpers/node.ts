// Node objects as a sync job writes them into the node file (`kubectl get ... -o json`),
// for every test that needs one: a CiliumNode or a v1 Node with the given podCIDRs.

export interface CiliumNodeExtra {
  /** metadata.name (default "test-node"). */
  name?: string;
  /** CiliumInternalIP router addresses, after an InternalIP 172.18.0.9 as Cilium lists them. */
  router?: string[];
  health?: { ipv4?: string; ipv6?: string };
  ingress?: { ipv4?: string; ipv6?: string };
  /** status.ipam.operator-status.error, as the operator sets it for a node it cannot serve. */
  operatorError?: string;
  /** Other spec fields, as written (spec.ipam always comes from podCIDRs). */
  spec?: Record<string, unknown>;
}

/**
 * A CiliumNode whose spec.ipam.podCIDRs is `podCIDRs` (any value, for the tests of
 * a bad one; undefined leaves spec.ipam empty).
 */
export function ciliumNode(podCIDRs: unknown, extra: CiliumNodeExtra = {}): Record<string, unknown> {
  const spec: Record<string, unknown> = { ...extra.spec };
  if (extra.router)
    spec.addresses = [{ ip: "172.18.0.9", type: "InternalIP" }, ...extra.router.map((ip) => ({ ip, type: "CiliumInternalIP" }))];
  if (extra.health) spec.health = extra.health;
  if (extra.ingress) spec.ingress = extra.ingress;
  spec.ipam = podCIDRs === undefined ? {} : { podCIDRs };
  return {
    apiVersion: "cilium.io/v2",
    kind: "CiliumNode",
    metadata: { name: extra.name ?? "test-node" },
    spec,
    ...(extra.operatorError !== undefined ? { status: { ipam: { "operator-status": { error: extra.operatorError } } } } : {}),
  };
}

/** A v1 Node with spec.podCIDRs / spec.podCIDR (any values) and optional annotations. */
export function v1Node(
  spec: { podCIDRs?: unknown; podCIDR?: unknown },
  annotations?: Record<string, string>,
  name = "test-node",
): Record<string, unknown> {
  return { apiVersion: "v1", kind: "Node", metadata: { name, ...(annotations ? { annotations } : {}) }, spec };
}
