// The agent against the real control plane: first sync of a v1 Node whose podCIDRs
// kube-controller-manager assigned, and of a CiliumNode written as Cilium's operator would.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { BIN } from "../helpers/plugin";
import { type Cluster, waitFor } from "./harness";
import { clusterPerFile } from "./per-file";

let c: Cluster;
let dir: string;
const { suite } = clusterPerFile("podcidr-agent-", (cl, d) => {
  c = cl;
  dir = d;
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
