// The agent against the real control plane: first sync of a v1 Node whose podCIDRs
// kube-controller-manager assigned, and of a CiliumNode written as Cilium's operator would.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN } from "../helpers/plugin";
import { type Cluster, announceClusterSkip, clusterBlocker, startCluster, waitFor } from "./harness";

const blocker = clusterBlocker();
if (blocker) announceClusterSkip(blocker);
const suite = blocker ? describe.skip : describe;

let c: Cluster;
let dir: string;
beforeAll(async () => {
  if (blocker) return;
  c = await startCluster();
  dir = mkdtempSync(join(tmpdir(), "podcidr-agent-"));
}, 300_000);
afterAll(async () => {
  await c?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function startAgent(args: string[]) {
  const child = spawn(
    BIN,
    [
      "agent",
      "--kubeconfig",
      c.kubeconfig,
      "--health-addr",
      "127.0.0.1:0",
      "--metrics-addr",
      "",
      "--calls-log",
      join(dir, "calls.log"),
      ...args,
    ],
    {
      env: { PATH: process.env.PATH },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let log = "";
  child.stderr!.on("data", (d) => (log += d));
  return { child, log: () => log };
}

suite("agent", () => {
  it("writes the v1 Node with the podCIDRs kube-controller-manager assigned", async () => {
    await c.createNode("smoke-1");
    const cidrs = await c.waitForPodCIDRs("smoke-1");
    const nodeFile = join(dir, "smoke-1.json");
    const a = startAgent(["--node-name", "smoke-1", "--source", "auto", "--node-file", nodeFile]);
    try {
      await waitFor(() => existsSync(nodeFile), "the node file", 30_000);
      const obj = JSON.parse(readFileSync(nodeFile, "utf8"));
      expect(obj.kind).toBe("Node");
      expect(obj.spec.podCIDRs).toEqual(cidrs);
      expect(a.log()).toContain("using the v1 Node");
    } finally {
      a.child.kill("SIGTERM");
      await new Promise((r) => a.child.on("close", r));
    }
    expect(a.child.exitCode, a.log()).toBe(0);
  });
});
