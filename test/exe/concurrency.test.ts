// Many runtimes' calls at once, and calls killed at any instant: the store
// must hand out distinct addresses, stay loadable and leak nothing.
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync, readlinkSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Sandbox, cli, run } from "../helpers/plugin";

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
  // A /24 and an IPv6 /120: 253 and 254 pod addresses.
  sb.writeNode({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name: "n1" }, spec: { ipam: { podCIDRs: ["10.9.0.0/24", "fd00:9::/120"] } } });
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
    expect(readdirSync(join(sb.dataDir, "podnet", "attachments"))).toEqual([]);
  });
});

describe("SIGKILL at any instant", () => {
  it("leaves a store that loads, holds no address twice, and leaks nothing after the runtime's retries", async () => {
    // Kill ADDs and DELs at spread-out instants (from before the lock to after the commit),
    // then do what a runtime does: ADD again (idempotent) and finally DEL every container.
    const rounds = 40;
    const killed: string[] = [];
    for (let i = 0; i < rounds; i++) {
      const id = `k-${i}`;
      const delay = 20 + ((i * 37) % 140);
      const r = await run({ command: "ADD", containerID: id, stdin: sb.conf(), killAfterMs: delay });
      if (r.signal === "SIGKILL") killed.push(id);
      // The store must load after every kill: status reads every file and checks every checksum.
      const st = await statusJson();
      const held = heldAddresses(st);
      expect(new Set(held).size).toBe(held.length);
      if (i % 3 === 0) {
        const d = await run({ command: "DEL", containerID: id, stdin: sb.conf(), killAfterMs: delay });
        if (d.signal === "SIGKILL") killed.push(`del:${id}`);
      }
    }
    // Not every call should have finished before its kill; otherwise this test proves nothing.
    expect(killed.length).toBeGreaterThan(5);
    for (let i = 0; i < rounds; i++) {
      const again = await run({ command: "ADD", containerID: `k-${i}`, stdin: sb.conf() });
      expect(again.code, again.stdout + again.stderr).toBe(0);
    }
    const st = await statusJson();
    const held = heldAddresses(st);
    expect(new Set(held).size).toBe(held.length);
    expect(st.ranges[0].allocated).toBe(rounds);
    for (let i = 0; i < rounds; i++) {
      const d = await run({ command: "DEL", containerID: `k-${i}`, stdin: sb.conf() });
      expect(d.code).toBe(0);
    }
    const end = await statusJson();
    expect(end.ranges.map((r: any) => r.allocated)).toEqual([0, 0]);
    expect(existsSync(join(sb.dataDir, "podnet", "journal.json"))).toBe(false);
  });

  it("recovers a lock left by a killed holder without waiting for the stale timer", async () => {
    // Make the store, then plant the lock of a holder that is dead: a folder `lock`
    // and `lock.owner` naming an exited process, exactly what a SIGKILLed call leaves.
    expect((await run({ command: "ADD", containerID: "first", stdin: sb.conf() })).code).toBe(0);
    const net = join(sb.dataDir, "podnet");
    mkdirSync(join(net, "lock"));
    const dead = spawnSync("true").pid!;
    const owner = { pid: dead, pidns: readlinkSync("/proc/self/ns/pid"), ino: statSync(join(net, "lock")).ino, token: "dead" };
    writeFileSync(join(net, "lock.owner"), JSON.stringify(owner));
    // With a 3 s lock timeout the call could not outlast proper-lockfile's 5 s stale timer:
    // it succeeds only because the dead holder's pid is recognised.
    const r = await run({ command: "ADD", containerID: "second", stdin: sb.conf("1.1.0", { lockTimeout: 3 }) });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.ips[0].address).toBe("10.9.0.3/24");
  });

  it("waits for a live holder and times out with code 11 naming the lock", async () => {
    expect((await run({ command: "ADD", containerID: "first", stdin: sb.conf() })).code).toBe(0);
    const net = join(sb.dataDir, "podnet");
    mkdirSync(join(net, "lock"));
    // Our own (live) pid as the holder: nobody may take the lock away from it.
    const owner = { pid: process.pid, pidns: readlinkSync("/proc/self/ns/pid"), ino: statSync(join(net, "lock")).ino, token: "live" };
    writeFileSync(join(net, "lock.owner"), JSON.stringify(owner));
    const r = await run({ command: "ADD", containerID: "second", stdin: sb.conf("1.1.0", { lockTimeout: 1 }) });
    expect(r.code).not.toBe(0);
    expect(r.json.code).toBe(11);
    expect(r.json.msg).toContain(join(net, "lock"));
    expect(r.json.details).toContain(`pid ${process.pid}`);
  });
});
