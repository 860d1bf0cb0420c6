// Guarantees 1-3 under SIGKILL: ADD and DEL calls killed at random instants
// over their measured duration (a third of them), several at a time, then what
// a runtime does for every container (start it again: an ADD into a new netns,
// which returns what a committed ADD holds; then DEL). After every kill
// the store must load and hold no address twice; at the end nothing may be
// held. An ADD killed right after it answered must keep the address it
// answered with.
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { afterEach, describe, expect, it } from "vitest";
import { prng } from "../helpers/prng";
import { ciliumNode } from "../helpers/node";
import { BIN, Sandbox, collect, run } from "../helpers/plugin";
import { killInstant, measureCall, median } from "../helpers/timing";
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
  it(
    "SIGKILL at random instants: the store always loads, never holds an address twice, and leaks nothing after the runtime's retries",
    async () => {
      const seed = 20261124;
      const rand = prng(seed);
      sb = new Sandbox();
      sb.writeNode(ciliumNode(["10.30.0.0/22", "fd00:30::/118"]));
      const containers = size(45, 150);
      const parallel = 3;
      let calls = 0;
      let killed = 0;
      let attempted = 0;
      let checks = 0;
      // Kill instants come from the calls, not from a guess about this machine: time ADDs and DELs
      // run three at a time as the storm runs them, then keep the figure current with every call of
      // the storm that was not killed (an unbiased sample: whether a call is attacked is drawn first).
      // Kills are drawn from 0 to 1.2x the median of the last `window` such durations.
      const window = 15;
      const recent: Record<string, number[]> = { ADD: [], DEL: [] };
      recent.ADD = await measureCall(
        6,
        (i) => run({ command: "ADD", containerID: `m-${i}`, stdin: sb.conf() }).then((r) => expect(r.code, r.stderr).toBe(0)),
        parallel,
      );
      recent.DEL = await measureCall(
        6,
        (i) => run({ command: "DEL", containerID: `m-${i}`, stdin: sb.conf() }).then((r) => expect(r.code, r.stderr).toBe(0)),
        parallel,
      );
      const measured = { ADD: median(recent.ADD), DEL: median(recent.DEL) };
      calls += 12;
      // Go on past `containers` until more than a tenth of that many calls were killed before they
      // answered: about 0.25-0.4 per container come by construction (a third of ~1.5 calls, half to
      // 5 in 6 of those mid-call, less under load where durations spread), so `wanted` is normally
      // met within `containers`; `maxContainers` only bounds a run whose instants are wrong.
      const wanted = Math.floor(containers / 10) + 1;
      const maxContainers = 4 * containers;
      const ids: string[] = [];
      // Each container: ADD (maybe killed), and for half of them a DEL (maybe killed) too.
      while ((ids.length < containers || killed < wanted) && ids.length < maxContainers) {
        const batch = Array.from({ length: parallel }, (_, j) => `k-${ids.length + j}`);
        ids.push(...batch);
        const results = await Promise.all(
          batch.map((id) => {
            const one = async (command: "ADD" | "DEL"): Promise<{ killed: boolean }> => {
              const kill = rand() < 1 / 3;
              const at = kill ? killInstant(rand, median(recent[command]!)) : undefined;
              if (kill) attempted++;
              const t0 = performance.now();
              const r = await run({ command, containerID: id, stdin: sb.conf(), killAfterMs: at });
              calls++;
              // ADD answers before it exits: killed after its answer, it finished its work.
              if (r.signal === "SIGKILL") return { killed: r.stdout === "" };
              expect(r.code, `${command} ${id}: ${r.stdout}${r.stderr}`).toBe(0);
              if (!kill) recent[command] = [...recent[command]!, performance.now() - t0].slice(-window);
              return { killed: false };
            };
            return one("ADD").then(async (a) => {
              if (rand() >= 0.5) return [a];
              return [a, await one("DEL")];
            });
          }),
        );
        killed += results.flat().filter((r) => r.killed).length;
        const v = await loadStore(sb);
        checks++;
        expect(duplicates(v)).toEqual([]);
        expect(unowned(v)).toEqual([]);
      }
      process.stdout.write(
        `[timing] kill storm: ADD ${measured.ADD.toFixed(0)} ms, DEL ${measured.DEL.toFixed(0)} ms measured (last window ${median(recent.ADD).toFixed(0)}/${median(recent.DEL).toFixed(0)}); ` +
          `killed mid-call ${killed} of ${attempted} kills over ${ids.length} containers (wanted ${wanted} within ${containers})\n`,
      );
      // Enough kills landed before their call answered, or this proved nothing.
      expect(killed, `only ${killed} of ${attempted} kills landed mid-call`).toBeGreaterThanOrEqual(wanted);

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

      // The runtime's retry for every container: started again in a new netns, then DEL.
      for (const id of ids) {
        const a = await run({ command: "ADD", containerID: id, netns: "/var/run/netns/restarted", stdin: sb.conf() });
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
        "kills attempted": attempted,
        "SIGKILLs that landed": killed,
        "kills right after an answer": durable,
        "store loads checked": checks + durable + 2,
        duplicates: 0,
        leaks: 0,
      });
      // A bound on a hang, not a speed goal: at full size (150 containers, several calls each, three at
      // a time) a loaded 2-core machine needs minutes.
    },
    size(120_000, 900_000),
  );
});
