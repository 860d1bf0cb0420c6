// Many runtimes' calls at once, and calls killed at any instant: the store
// must hand out distinct addresses, stay loadable and leak nothing.
import { existsSync, mkdirSync, statSync, writeFileSync, readlinkSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { prng } from "../helpers/prng";
import { ciliumNode } from "../helpers/node";
import { Sandbox, cli, run } from "../helpers/plugin";
import { logNames, readStore } from "../helpers/store-state";
import { killInstant, measureCall, median } from "../helpers/timing";

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
  // A /24 and an IPv6 /120: 253 and 254 pod addresses.
  sb.writeNode(ciliumNode(["10.9.0.0/24", "fd00:9::/120"]));
});
afterEach(() => sb.cleanup());

async function statusJson(): Promise<any> {
  const r = await cli(["status", "--json", "--all-addresses", "--data-dir", sb.dataDir, "--network", "podnet", "--node-file", sb.nodeFile]);
  expect(r.json, r.stderr).toBeDefined();
  return r.json;
}

function heldAddresses(status: any): string[] {
  return status.ranges.flatMap((r: any) => r.addresses.filter((a: any) => a.owner).map((a: any) => a.ip));
}

describe("concurrent calls", () => {
  it("gives 100 parallel ADDs 100 distinct addresses per family, and parallel DELs release them all", async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `ctr-${i}`);
    const adds = await Promise.all(ids.map((id) => run({ command: "ADD", containerID: id, stdin: sb.conf() })));
    for (const r of adds) expect(r.code, r.stdout + r.stderr).toBe(0);
    const v4 = adds.map((r) => r.json.ips[0].address);
    const v6 = adds.map((r) => r.json.ips[1].address);
    expect(new Set(v4).size).toBe(100);
    expect(new Set(v6).size).toBe(100);
    const st = await statusJson();
    expect(st.ranges[0].allocated).toBe(100);
    expect(st.ranges[1].allocated).toBe(100);
    expect(new Set(heldAddresses(st)).size).toBe(200);

    const dels = await Promise.all(ids.map((id) => run({ command: "DEL", containerID: id, stdin: sb.conf() })));
    for (const r of dels) expect(r.code, r.stdout + r.stderr).toBe(0);
    const after = await statusJson();
    expect(after.ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
    expect((await readStore(sb.dataDir)).records).toEqual([]);
  });
});

describe("SIGKILL at any instant", () => {
  it("leaves a store that loads, holds no address twice, and leaks nothing after the runtime's retries", async () => {
    // Kill ADDs and DELs at instants spread over the call (from before the lock to after the
    // commit), then do what a runtime does: start the container again (an ADD into a new netns,
    // which returns what a committed ADD holds) and finally DEL every container.
    // The instants come from this machine and this build: time identical calls first (their own
    // containers, removed again), then draw each kill uniformly from 0 to 1.2x the median, so
    // about 5 in 6 kills land before the call ends however fast or slow the calls are.
    const seed = 20260309;
    const rand = prng(seed);
    const ok = async (command: string, id: string): Promise<void> => {
      const r = await run({ command, containerID: id, stdin: sb.conf() });
      expect(r.code, `${command} ${id}: ${r.stdout}${r.stderr}`).toBe(0);
    };
    const addMs = median(await measureCall(5, (i) => ok("ADD", `m-${i}`)));
    const delMs = median(await measureCall(5, (i) => ok("DEL", `m-${i}`)));

    // Go on until `wanted` calls were killed before they answered, `wantedInLock` of them inside
    // the critical section (a killed holder leaves its lock folder; the next call reaps it): that
    // section is a share of the call's own duration (about a seventh here), not of a fixed span,
    // so both counts come on any machine. The bound on attempts only stops a run whose instants
    // are wrong: the expected need is about 20 attempts for the first count and 30 for the second.
    const wanted = 16;
    const wantedInLock = 3;
    const maxAttempts = 150;
    const net = join(sb.dataDir, "_store");
    const ids: string[] = [];
    const midCall: string[] = [];
    let afterAnswer = 0;
    let inLock = 0;
    let written = 0;
    let attempts = 0;
    const attack = async (command: "ADD" | "DEL", id: string, spanMs: number): Promise<void> => {
      attempts++;
      const r = await run({ command, containerID: id, stdin: sb.conf(), killAfterMs: killInstant(rand, spanMs) });
      if (r.signal === "SIGKILL") {
        // ADD answers on stdout before it exits: a kill after the answer is not mid-call.
        if (r.stdout === "") midCall.push(`${command} ${id}`);
        else afterAnswer++;
        if (existsSync(join(net, "lock"))) inLock++;
        // Killed after its record's pwrite but before its answer: applied, not acknowledged.
        if (command === "ADD" && r.stdout === "" && logNames(sb.dataDir, id)) written++;
      } else {
        expect(r.code, `${command} ${id}: ${r.stdout}${r.stderr}`).toBe(0);
      }
      // The store must load after every kill: status reads every file and checks every checksum.
      const st = await statusJson();
      const held = heldAddresses(st);
      expect(new Set(held).size).toBe(held.length);
    };
    for (let i = 0; (midCall.length < wanted || inLock < wantedInLock) && attempts < maxAttempts; i++) {
      const id = `k-${i}`;
      ids.push(id);
      await attack("ADD", id, addMs);
      if (i % 3 === 0) await attack("DEL", id, delMs);
    }
    process.stdout.write(
      `[timing] SIGKILL at any instant: seed=${seed} ADD median ${addMs.toFixed(0)} ms, DEL median ${delMs.toFixed(0)} ms; ` +
        `killed mid-call ${midCall.length} of ${attempts} attempts, ${inLock} holding the lock, ${written} after their record was written; ${afterAnswer} after the answer\n`,
    );
    // Enough calls were killed before they answered, and inside the lock, or this test proved nothing.
    expect(midCall.length, `only ${midCall.length} of ${attempts} kills landed mid-call`).toBeGreaterThanOrEqual(wanted);
    expect(inLock, `only ${inLock} of ${attempts} kills landed while the call held the lock`).toBeGreaterThanOrEqual(wantedInLock);

    for (const id of ids) {
      const again = await run({ command: "ADD", containerID: id, netns: "/var/run/netns/restarted", stdin: sb.conf() });
      expect(again.code, again.stdout + again.stderr).toBe(0);
    }
    const st = await statusJson();
    const held = heldAddresses(st);
    expect(new Set(held).size).toBe(held.length);
    expect(st.ranges[0].allocated).toBe(ids.length);
    for (const id of ids) {
      const d = await run({ command: "DEL", containerID: id, stdin: sb.conf() });
      expect(d.code).toBe(0);
    }
    const end = await statusJson();
    expect(end.ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
    expect((await readStore(sb.dataDir)).damaged).toEqual([]);
  });

  it("recovers a lock left by a killed holder without waiting for the stale timer", async () => {
    // Make the store, then plant the lock of a holder that is dead: a folder `lock`
    // and `lock.owner` naming an exited process, exactly what a SIGKILLed call leaves.
    expect((await run({ command: "ADD", containerID: "first", stdin: sb.conf() })).code).toBe(0);
    const net = join(sb.dataDir, "_store");
    mkdirSync(join(net, "lock"));
    const dead = spawnSync("true").pid!;
    const owner = { pid: dead, pidns: readlinkSync("/proc/self/ns/pid"), ino: statSync(join(net, "lock")).ino, token: "dead" };
    writeFileSync(join(net, "lock.owner"), JSON.stringify(owner));
    // With a 3 s lock timeout the call could not outlast a 5 s lease:
    // it succeeds only because the dead holder's pid is recognised.
    const r = await run({ command: "ADD", containerID: "second", stdin: sb.conf("1.1.0", { lockTimeout: 3 }) });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.ips[0].address).toBe("10.9.0.3/24");
  });

  it("waits for a live holder and times out with code 11 naming the lock", async () => {
    expect((await run({ command: "ADD", containerID: "first", stdin: sb.conf() })).code).toBe(0);
    const net = join(sb.dataDir, "_store");
    mkdirSync(join(net, "lock"));
    // Our own (live) pid as the holder: nobody may take the lock away from it.
    const owner = { pid: process.pid, pidns: readlinkSync("/proc/self/ns/pid"), ino: statSync(join(net, "lock")).ino, token: "live" };
    writeFileSync(join(net, "lock.owner"), JSON.stringify(owner));
    // The live holder never lets go, so the timeout is the outcome on any machine.
    const r = await run({ command: "ADD", containerID: "second", stdin: sb.conf("1.1.0", { lockTimeout: 1 }) });
    expect(r.code).not.toBe(0);
    expect(r.json.code).toBe(11);
    expect(r.json.msg).toContain(join(net, "lock"));
    expect(r.json.details).toContain(`pid ${process.pid}`);
  });
});
