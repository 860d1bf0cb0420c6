// One control plane and one scratch folder per test file: the suite to declare
// tests with (skipped, with the reason said once, when this machine has no
// control plane; PODCIDR_CLUSTER=require makes that a failure), and the cluster and
// folder handed to `ready` once beforeAll has started them. Agents a file starts
// go in `agents`: they are stopped before the cluster is.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe } from "vitest";
import { type Cluster, type ClusterOptions, announceClusterSkip, clusterBlocker, startCluster } from "./harness";

export interface PerFile {
  readonly suite: typeof describe | typeof describe.skip;
  readonly blocker: string | null;
  /** Stopped (SIGTERM, 5 s grace) before the cluster stops. */
  readonly agents: { stop(graceMs?: number): Promise<unknown> }[];
}

export function clusterPerFile(
  prefix: string,
  ready: (c: Cluster, dir: string) => void,
  options: (dir: string) => ClusterOptions = () => ({}),
): PerFile {
  const blocker = clusterBlocker();
  if (blocker) announceClusterSkip(blocker);
  const agents: PerFile["agents"] = [];
  let c: Cluster | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    if (blocker) return;
    dir = mkdtempSync(join(tmpdir(), prefix));
    c = await startCluster(options(dir));
    ready(c, dir);
  }, 300_000);
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop(5000)));
    await c?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return { suite: blocker ? describe.skip : describe, blocker, agents };
}
