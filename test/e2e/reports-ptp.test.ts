// The protocol report's F1 (../shared/reports/adversarial-protocol-d173de3.md,
// issue #9), exactly as it was reproduced: Debian's /usr/lib/cni/ptp run inside a
// host network namespace of its own (`ip netns exec`), with our plugin as its IPAM,
// a /30 so that a freed address is reused at once. ptp calls IPAM ADD before it
// creates the veth and DELs on any later failure, so a repeated ADD that IPAM
// answers "already holds 10.0.2.2; returning them" ends with ptp failing
// ("eth0 already exists"), its rollback DEL freeing the live pod's address, and
// the next pod getting the same address. It must fail before ptp touches anything,
// and the second pod must not get the first pod's address.
// Skipped (loudly) without root, iproute2 or the plugins; PODCIDR_E2E=require fails instead.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { type RunResult, collect } from "../helpers/plugin";
import { World, announceSkip, e2eBlocker, uniq } from "./harness";

const blocker = e2eBlocker();
if (blocker) announceSkip(blocker);
const suite = blocker ? describe.skip : describe;

let w: World | undefined;
const namespaces: string[] = [];
afterEach(() => {
  for (const ns of namespaces.splice(0)) spawnSync("ip", ["netns", "del", ns]);
  w?.cleanup();
  w = undefined;
});

function netns(prefix: string): string {
  const ns = uniq(prefix);
  execFileSync("ip", ["netns", "add", ns]);
  namespaces.push(ns);
  return ns;
}

/** ptp() of the report: ip netns exec <host> env CNI_... /usr/lib/cni/ptp < ptp.json */
function ptp(world: World, host: string, command: string, containerID: string, ns: string, conf: object): Promise<RunResult> {
  const env = {
    PATH: process.env.PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerID,
    CNI_NETNS: `/run/netns/${ns}`,
    CNI_IFNAME: "eth0",
    CNI_PATH: world.cniPath,
  };
  const child = spawn("ip", ["netns", "exec", host, join(world.cniPath, "ptp")], { env, stdio: ["pipe", "pipe", "pipe"] });
  child.stdin!.end(JSON.stringify(conf));
  return collect(child);
}

/** `ip -br -4 a show eth0` inside a namespace: its IPv4 addresses (none when there is no eth0). */
function eth0v4(ns: string): string[] {
  const r = spawnSync("ip", ["-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"], { encoding: "utf8" });
  return r.status === 0 ? [...r.stdout.matchAll(/inet ([0-9.]+\/\d+)/g)].map((m) => m[1]!) : [];
}

suite("protocol F1: a repeated ADD through ptp", () => {
  it("protocol F1: a repeated ADD through ptp fails before ptp sets anything up, and the second pod does not get the first pod's address", async () => {
    w = new World();
    w.writeNode(ciliumNode(["10.0.2.0/30"])); // small pool only to make the reuse immediate
    const conf = {
      cniVersion: "1.0.0",
      name: w.network, // the report's "pt"; the world's name, so that w.status() reads this network on any build
      type: "ptp",
      ipam: { type: "podcidr-ipam", nodeFile: w.nodeFile, dataDir: w.dataDir, waitForPodCIDRs: 0 },
    };
    const [h, a, b] = [netns("f1h"), netns("f1a"), netns("f1b")];

    const first = await ptp(w, h, "ADD", "p1", a, conf);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(eth0v4(a)).toEqual(["10.0.2.2/30"]);

    // The runtime repeats the ADD into the same, live, netns.
    const again = await ptp(w, h, "ADD", "p1", a, conf);
    expect(again.code, "a repeated ADD into a live netns must fail (CNI spec)").not.toBe(0);
    // Refused by IPAM (106), as host-local refuses it: ptp stops there, with no rollback DEL.
    expect.soft(again.json?.code, again.stdout + again.stderr).toBe(106);
    expect(eth0v4(a)).toEqual(["10.0.2.2/30"]);
    const held = w.status().ranges.find((r: any) => r.cidr === "10.0.2.0/30");
    expect.soft(held.addresses.filter((x: any) => x.owner).map((x: any) => [x.ip, x.owner.containerID])).toEqual([["10.0.2.2", "p1"]]);

    // The next pod: the /30 has no other address, so it fails; it must never get 10.0.2.2.
    const second = await ptp(w, h, "ADD", "p2", b, conf);
    expect(eth0v4(b)).not.toContain("10.0.2.2/30");
    expect(second.stdout).not.toContain("10.0.2.2/30");
    expect(second.code, second.stdout + second.stderr).not.toBe(0);
    expect.soft(second.json?.code, second.stdout).toBe(100);

    // Teardown as the runtime does it: both DELs succeed and free everything.
    for (const [id, ns] of [
      ["p2", b],
      ["p1", a],
    ] as const) {
      const d = await ptp(w, h, "DEL", id, ns, conf);
      expect(d.code, d.stdout + d.stderr).toBe(0);
    }
    expect(w.status().ranges.map((r: any) => r.allocated)).toEqual([0]);
  });
});
