// Guarantees 1-3 under SIGKILL: ADD and DEL calls killed at random instants
// (a third of them), several at a time, then what a runtime does for every
// container (ADD again, then DEL). After every kill the store must load and hold
// no address twice; at the end nothing may be held. An ADD killed right after
// it answered must keep the address it answered with.
import { spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { prng } from "../helpers/errors";
import { BIN, Sandbox, collect, run } from "../helpers/plugin";
import { duplicates, loadStore, recordsByContainer, unowned } from "./invariants";
import { record, size } from "./report";

let sb: Sandbox;
afterEach(() => sb?.cleanup());

/** ADD that is killed the moment its answer arrives: the answer must already be durable. */
function addKilledAfterAnswer(id: string): Promise<{ stdout: string }> {
  const child = spawn(BIN, [], {
    env: { PATH: process.env.PATH, CNI_COMMAND: "ADD", CNI_CONTAINERID: id, CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: "/x" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdout!.once("data", () => child.kill("SIGKILL"));
  child.stdin!.end(JSON.stringify(sb.conf()));
  return collect(child);
}

describe("kill storm", () => {
  it("SIGKILL at random instants: the store always loads, never holds an address twice, and leaks nothing after the runtime's retries", async () => {
    const seed = 20261124;
    const rand = prng(seed);
    sb = new Sandbox();
    sb.writeNode({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name: "n" }, spec: { ipam: { podCIDRs: ["10.30.0.0/22", "fd00:30::/118"] } } });
    const containers = size(45, 150);
    const parallel = 3;
    let calls = 0;
    let killed = 0;
    let checks = 0;
    const ids = Array.from({ length: containers }, (_, i) => `k-${i}`);
    // Each container: ADD (maybe killed), and for half of them a DEL (maybe killed) too.
    for (let i = 0; i < ids.length; i += parallel) {
      const batch = ids.slice(i, i + parallel);
      const results = await Promise.all(
        batch.flatMap((id) => {
          const steps: Promise<{ killed: boolean }>[] = [];
          const one = async (command: string): Promise<{ killed: boolean }> => {
            const kill = rand() < 1 / 3;
            const r = await run({ command, containerID: id, stdin: sb.conf(), killAfterMs: kill ? Math.floor(rand() * 70) : undefined });
            calls++;
            if (r.signal === "SIGKILL") return { killed: true };
            expect(r.code, `${command} ${id}: ${r.stdout}${r.stderr}`).toBe(0);
            return { killed: false };
          };
          steps.push(one("ADD").then(async (a) => (rand() < 0.5 ? one("DEL").then((d) => ({ killed: a.killed || d.killed })) : a)));
          return steps;
        }),
      );
      killed += results.filter((r) => r.killed).length;
      const v = await loadStore(sb);
      checks++;
      expect(duplicates(v)).toEqual([]);
      expect(unowned(v)).toEqual([]);
    }
    // Not every kill should have landed after the call finished, or this proved nothing.
    expect(killed).toBeGreaterThan(containers / 10);

    // Durability: answers received just before a SIGKILL are in the store.
    const durable = size(6, 20);
    for (let i = 0; i < durable; i++) {
      const id = `durable-${i}`;
      const r = await addKilledAfterAnswer(id);
      calls++;
      const answered = JSON.parse(r.stdout).ips.map((x: any) => x.address.split("/")[0]);
      const v = await loadStore(sb);
      expect(recordsByContainer(v).get(`${id}/eth0`)?.sort()).toEqual(answered.sort());
      ids.push(id);
    }

    // The runtime's retry for every container: ADD again (idempotent), then DEL.
    for (const id of ids) {
      const a = await run({ command: "ADD", containerID: id, stdin: sb.conf() });
      expect(a.code, a.stdout + a.stderr).toBe(0);
      calls++;
    }
    const full = await loadStore(sb);
    expect(duplicates(full)).toEqual([]);
    expect(recordsByContainer(full).size).toBe(ids.length);
    for (const id of ids) {
      const d = await run({ command: "DEL", containerID: id, stdin: sb.conf() });
      expect(d.code, d.stdout + d.stderr).toBe(0);
      calls++;
    }
    const end = await loadStore(sb);
    expect(Object.values(end.allocated)).toEqual([0, 0]);
    expect(unowned(end)).toEqual([]);
    record("kill storm: ADD/DEL SIGKILLed at random instants", "2. nothing leaks", {
      seed,
      calls,
      "SIGKILLs that landed": killed,
      "kills right after an answer": durable,
      "store loads checked": checks + durable + 2,
      duplicates: 0,
      leaks: 0,
    });
  });
});
