// STATUS (1.1.0): ready when the node file lists usable podCIDRs, none of them over the
// node's own addresses, with a free address in every family; code 50 otherwise, saying why. It reads the store
// without the lock (the runtime asks often, and an approximate count is enough).
import type { Request } from "../cni/dispatch.js";
import { Code, CniError } from "../errors.js";
import { nodeAddressConflicts, nodeAddressProblem } from "../ipam/node-file.js";
import { fullFamilies, nodePool } from "../ipam/pool.js";
import { notReady, readNode } from "../node/read.js";
import type { Deps } from "./index.js";

export async function status(req: Request, deps: Deps): Promise<void> {
  try {
    await readiness(req, deps);
  } catch (err) {
    // Any reason ADD would fail (a damaged store 103, a busy lock 11, ...) is "cannot serve ADD".
    if (!(err instanceof CniError) || err.code === Code.PluginNotAvailable || err.code === Code.LimitedConnectivity) throw err;
    throw new CniError(Code.PluginNotAvailable, err.message, `code ${err.code}${err.details ? `: ${err.details}` : ""}`, { cause: err });
  }
}

// --- internal ---

async function readiness(req: Request, deps: Deps): Promise<void> {
  const ipam = req.conf.ipam;
  const node = readNode(ipam.nodeFile, ipam.nodeName, ipam.mode);
  if (!node || node.podCIDRs.length === 0) throw notReady({ ...ipam, waitForPodCIDRs: 0 }, node);
  // A podCIDR over the node's own network: pods would work, the node would not.
  const conflicts = nodeAddressConflicts(node);
  if (conflicts.length > 0) {
    const p = nodeAddressProblem(conflicts);
    throw new CniError(Code.PluginNotAvailable, p.message, p.details);
  }
  const store = deps.openStore(ipam, req.log);
  // A podCIDR served by another store (another dataDir) would refuse every ADD with code 7.
  const claims = deps.claims(ipam, store, req.log);
  for (const c of node.podCIDRs) claims.check(c);
  const { value: full } = await store.transact({ create: false, unlocked: true }, (tx) =>
    fullFamilies(tx, nodePool(node, ipam.gateway, tx.storedRanges())),
  );
  if (full.length > 0) {
    throw new CniError(
      Code.PluginNotAvailable,
      `no free address: every ${full.map((f) => `IPv${f}`).join(" and ")} podCIDR is full (${node.podCIDRs.map((c) => c.text).join(", ")})`,
      "expand the pool (a new podCIDR on the node) or release addresses; see `podcidr-ipam status --all-addresses`",
    );
  }
}
