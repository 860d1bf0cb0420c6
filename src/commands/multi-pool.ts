// ADD on a multi-pool node: the pool of each family (src/ipam/pool-choice.ts), and the
// part of the node's CIDRs it may draw from. A pool this node has no CIDR of (yet) is
// code 11 naming it: the operator hands a node a pool's CIDRs once the agent asks for
// them in spec.ipam.pools.requested, and the runtime retries.
import type { Request } from "../cni/dispatch.js";
import { Code, CniError } from "../errors.js";
import type { Family } from "../ipam/cidr.js";
import type { NodeInfo } from "../ipam/node-file.js";
import { type PoolChoice, choosePool } from "../ipam/pool-choice.js";
import type { Pool } from "../ipam/pool.js";
import { namespaceAnnotations } from "../node/namespaces.js";

/** The pool each family of the node draws from, chosen once per call. */
export function poolChoices(req: Request, families: readonly Family[]): Map<Family, PoolChoice> {
  const { conf, cmd } = req;
  const hints = {
    argsPool: conf.argsPool,
    configPool: conf.ipam.pool,
    pod: conf.podAnnotations,
    namespace: cmd.args.get("K8S_POD_NAMESPACE") ?? "",
  };
  let read: ReturnType<typeof namespaceAnnotations> | undefined;
  const ns = (name: string) => {
    read ??= namespaceAnnotations(conf.ipam.nodeFile);
    return read(name);
  };
  return new Map(families.map((f) => [f, choosePool(hints, f, ns)]));
}

/** The node's pool `choice` as a Pool of `family`'s CIDRs, or 11 when this node has none of them yet. */
export function familyPool(node: NodeInfo, all: Pool, family: Family, choice: PoolChoice): Pool {
  const np = node.pools.find((p) => p.name === choice.pool);
  const cidrs = np?.cidrs.filter((c) => c.family === family) ?? [];
  if (cidrs.length === 0) {
    const have = node.pools.map((p) => p.name).join(", ") || "none";
    throw new CniError(
      Code.TryAgainLater,
      `pool "${choice.pool}" (from ${choice.source}) has no IPv${family} CIDR on node ${node.name || "(unnamed)"} yet ` +
        `(spec.ipam.pools.allocated has: ${have})`,
      "The operator gives a node a pool's CIDRs once spec.ipam.pools.requested asks for them, which podcidr-ipam agent does for a " +
        "pool in use; the runtime retries. If the pool does not exist (kubectl get ciliumpodippools), fix the pod's or namespace's " +
        "annotation, the network's ipam.pool or its cni-args.",
      // The agent counts these as the pool's pending allocations (spec.ipam.pools.requested).
      { note: `pool=${choice.pool}/${family}` },
    );
  }
  return { ...all, cidrs, field: `spec.ipam.pools.allocated (pool ${choice.pool})` };
}
