// Guarantee 1 with a frozen lock holder: a real GC call is stopped (SIGSTOP)
// while it holds the lock, past the stale threshold, while ADDs proceed; then
// woken (SIGCONT). It must not commit over their work: it fails with code 11
// and the store holds exactly what the ADDs and the untouched pods hold.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { dispatch } from "../../src/cni/dispatch";
import { handlers } from "../../src/commands/index";
import { STALE_MS } from "../../src/store/lock";
import { BIN, Sandbox, collect, run } from "../helpers/plugin";
import { duplicates, loadStore, recordsByContainer, unowned } from "./invariants";
import { record, size } from "./report";

let sb: Sandbox;
afterEach(() => sb?.cleanup());

/** Make n allocations through the real ADD handler, in process (fast). */
async function seed(n: number): Promise<void> {
  const stdin = Buffer.from(JSON.stringify(sb.conf()));
  for (let i = 0; i < n; i++) {
    let out = "";
    const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: `seed-${i}`, CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: "/x" };
    const code = await dispatch({ env, readStdin: async () => stdin, stdout: (s) => (out += s), stderr: () => {} }, handlers);
    expect(code, out).toBe(0);
  }
}

function lockHolder(): number | null {
  try {
    return JSON.parse(readFileSync(join(sb.dataDir, "podnet", "lock.owner"), "utf8")).pid;
  } catch {
    return null;
  }
}

describe("frozen lock holder", () => {
  it("a GC stopped inside its critical section past the stale threshold does not commit over the ADDs that ran meanwhile", async () => {
    sb = new Sandbox();
    sb.writeNode({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name: "n" }, spec: { ipam: { podCIDRs: ["10.40.0.0/20"] } } });
    const seeded = size(1200, 3000);
    await seed(seeded);

    // GC that keeps only the three pods about to start would release every seeded pod:
    // reading their records makes a long critical section to stop it in.
    const ids = ["new-a", "new-b", "new-c"];
    const gc = spawn(BIN, [], { env: { PATH: process.env.PATH, CNI_COMMAND: "GC", CNI_PATH: "/x" }, stdio: ["pipe", "pipe", "pipe"] });
    const gcDone = collect(gc);
    gc.stdin!.end(JSON.stringify({ ...sb.conf(), "cni.dev/valid-attachments": ids.map((containerID) => ({ containerID, ifname: "eth0" })) }));
    let stopped = false;
    const until = Date.now() + 20_000;
    while (Date.now() < until && gc.exitCode === null) {
      if (lockHolder() === gc.pid) {
        // Past taking the lock (microseconds), well inside reading the records (over 100 ms).
        await new Promise((r) => setTimeout(r, 30));
        gc.kill("SIGSTOP");
        stopped = lockHolder() === gc.pid;
        break;
      }
      await new Promise((r) => setImmediate(r));
    }
    expect(stopped, "the GC was not caught holding the lock").toBe(true);

    // Meanwhile three pods start. They wait for the frozen holder's lock to go stale, then proceed.
    const t0 = Date.now();
    const adds = await Promise.all(ids.map((id) => run({ command: "ADD", containerID: id, stdin: sb.conf("1.1.0", { lockTimeout: 30 }) })));
    const waited = Date.now() - t0;
    for (const r of adds) expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(waited).toBeGreaterThanOrEqual(STALE_MS - 1000);

    gc.kill("SIGCONT");
    const g = await gcDone;
    expect(g.code).not.toBe(0);
    expect(g.json.code, JSON.stringify(g.json)).toBe(11);
    expect(g.json.msg).toContain("lost the store lock");

    const v = await loadStore(sb);
    expect(duplicates(v)).toEqual([]);
    expect(unowned(v)).toEqual([]);
    const held = recordsByContainer(v);
    // Every seeded pod still holds its address (the GC committed nothing) and the new pods hold theirs.
    expect(held.size).toBe(seeded + 3);
    ids.forEach((id, i) => expect(held.get(`${id}/eth0`)).toEqual([adds[i]!.json.ips[0].address.split("/")[0]]));
    record("frozen holder: GC SIGSTOPped inside the lock", "1. no address held twice", {
      "stopped past stale threshold ms": waited,
      "calls that proceeded meanwhile": 3,
      "frozen commit refused": "yes (code 11)",
      duplicates: 0,
    });
  });
});
