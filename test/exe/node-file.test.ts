// The node file: missing, late, malformed, pending, CiliumNode vs v1 Node.
import { writeFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { Sandbox, run } from "../helpers/plugin";
import { addErr, addOk, addrs, replaceNode } from "../helpers/exe";
import { ciliumNode, v1Node } from "../helpers/node";
import { snapshot } from "../helpers/snapshot";
import { measureCall } from "../helpers/timing";

let sb: Sandbox;
function sandbox(fixture?: string): Sandbox {
  sb = new Sandbox(fixture);
  return sb;
}
afterEach(() => sb?.cleanup());

/**
 * When to write the node file under an ADD that waits for it, from the call rather than a
 * guess: three times the longest of three identical ADDs that find the node file as it is now
 * (unusable) and fail at once. They reach the node file and exit within that span, so by
 * then the waiting ADD has looked and is polling, on a fast machine and a slow one alike.
 * And a waitForPodCIDRs that outlasts that instant plus a poll or two by far, so the write
 * always lands inside the wait.
 */
async function lateWrite(): Promise<{ atMs: number; wait: number }> {
  const ms = await measureCall(3, async (i) => expect((await addErr(sb, `probe-${i}`)).code).toBe(11));
  const atMs = Math.ceil(3 * ms[ms.length - 1]!);
  const wait = Math.max(3, Math.ceil((4 * atMs + 1000) / 1000));
  process.stdout.write(
    `[timing] node file: failing ADDs took ${ms.map((m) => m.toFixed(0)).join("/")} ms; written at ${atMs} ms, waitForPodCIDRs ${wait}\n`,
  );
  return { atMs, wait };
}

describe("missing or late node file", () => {
  it("fails with 11 naming the file when it does not exist (waitForPodCIDRs 0)", async () => {
    sandbox();
    const e = await addErr(sb, "a");
    expect(e.code).toBe(11);
    expect(e.msg).toBe(`node file ${sb.nodeFile} does not exist`);
    expect(e.details).toContain(sb.nodeFile);
    // Nothing was written to the store.
    expect([...snapshot(sb.dataDir).values()].filter((v) => v.startsWith("file"))).toEqual([]);
  });

  it("treats an empty file (a sync job's `>` redirect mid-write) as not written yet", async () => {
    sandbox();
    writeFileSync(sb.nodeFile, "");
    const e = await addErr(sb, "a");
    expect(e.code).toBe(11);
    expect(e.msg).toBe(`node file ${sb.nodeFile} is empty: the sync job may be writing it in place; write a temp file and mv it`);
    const late = await lateWrite();
    const pending = run({ command: "ADD", containerID: "b", stdin: sb.conf("1.1.0", { waitForPodCIDRs: late.wait }) });
    setTimeout(() => writeFileSync(sb.nodeFile, JSON.stringify(ciliumNode(["10.0.2.0/24"]))), late.atMs);
    const r = await pending;
    expect(r.code, r.stdout).toBe(0);
    expect(r.json.ips[0].address).toBe("10.0.2.2/24");
  });

  it("says how long it waited when waitForPodCIDRs is set", async () => {
    sandbox();
    const e = await addErr(sb, "a", { ipam: { waitForPodCIDRs: 0.3 } });
    expect(e.code).toBe(11);
    expect(e.msg).toBe(`node file ${sb.nodeFile} does not exist after waiting 0.3s`);
  });

  it("waits for a node file written after the ADD has looked for it", async () => {
    sandbox();
    const late = await lateWrite();
    const pending = run({ command: "ADD", containerID: "a", stdin: sb.conf("1.1.0", { waitForPodCIDRs: late.wait }) });
    const timer = new Promise<void>((r) =>
      setTimeout(() => {
        replaceNode(sb, ciliumNode(["10.0.2.0/24", "fd00::200/120"]));
        r();
      }, late.atMs),
    );
    const [r] = await Promise.all([pending, timer]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.ips).toEqual([
      { address: "10.0.2.2/24", gateway: "10.0.2.1" },
      { address: "fd00::202/120", gateway: "fd00::201" },
    ]);
  });

  it("waits for podCIDRs to appear in a pending CiliumNode", async () => {
    sandbox("ciliumnode-pending.json");
    const late = await lateWrite();
    const pending = run({ command: "ADD", containerID: "a", stdin: sb.conf("1.1.0", { waitForPodCIDRs: late.wait }) });
    const timer = new Promise<void>((r) =>
      setTimeout(() => {
        replaceNode(sb, ciliumNode(["10.0.3.0/24"]));
        r();
      }, late.atMs),
    );
    const [r] = await Promise.all([pending, timer]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.ips).toEqual([{ address: "10.0.3.2/24", gateway: "10.0.3.1" }]);
  });
});

describe("malformed node files (102)", () => {
  it("YAML text: 102 and the message says JSON", async () => {
    sandbox();
    sb.writeNode("apiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata:\n  name: n1\nspec:\n  ipam:\n    podCIDRs:\n    - 10.0.2.0/24\n");
    const e = await addErr(sb, "a");
    expect(e.code).toBe(102);
    expect(e.msg).toBe(`node file ${sb.nodeFile}: is not JSON`);
    expect(e.details).toContain("YAML");
    expect(e.details).toContain("-o json");
  });

  it("a Pod: 102 naming the kind", async () => {
    sandbox();
    sb.writeNode({ apiVersion: "v1", kind: "Pod", metadata: { name: "nginx" }, spec: { containers: [] } });
    const e = await addErr(sb, "a");
    expect(e.code).toBe(102);
    expect(e.msg).toBe(`node file ${sb.nodeFile}: is a "Pod" object (apiVersion "v1"), not a CiliumNode or a v1 Node`);
  });

  it("a List of nodes: 102", async () => {
    sandbox();
    sb.writeNode({ apiVersion: "v1", kind: "List", items: [ciliumNode(["10.0.2.0/24"])] });
    expect((await addErr(sb, "a")).code).toBe(102);
  });

  it("a JSON array: 102", async () => {
    sandbox();
    sb.writeNode("[]");
    const e = await addErr(sb, "a");
    expect(e.code).toBe(102);
    expect(e.msg).toBe(`node file ${sb.nodeFile}: is not a JSON object`);
  });

  const bad: [string, string[], string][] = [
    ["not a CIDR", ["10.0.2.0/24", "banana"], 'spec.ipam.podCIDRs[1] "banana" is not a CIDR'],
    ["an IPv4 prefix over 32", ["10.0.2.0/33"], 'spec.ipam.podCIDRs[0] "10.0.2.0/33" has prefix /33'],
    ["host bits set", ["10.0.2.5/24"], 'spec.ipam.podCIDRs[0] "10.0.2.5/24" has host bits set; the network is 10.0.2.0/24'],
    ["an IPv4 /31", ["10.0.2.0/31"], 'spec.ipam.podCIDRs[0] "10.0.2.0/31" is too small to allocate from'],
    ["an IPv4 /32", ["10.0.2.0/24", "10.0.3.1/32"], 'spec.ipam.podCIDRs[1] "10.0.3.1/32" is too small to allocate from'],
    ["IPv6 host bits set", ["fd00::201/120"], 'spec.ipam.podCIDRs[0] "fd00::201/120" has host bits set; the network is fd00::200/120'],
    ["overlapping CIDRs", ["10.0.0.0/16", "10.0.2.0/24"], "spec.ipam.podCIDRs[1] 10.0.2.0/24 overlaps 10.0.0.0/16"],
    ["overlapping IPv6 CIDRs", ["fd00::200/120", "fd00::280/121"], "spec.ipam.podCIDRs[1] fd00::280/121 overlaps fd00::200/120"],
  ];
  for (const [what, cidrs, fragment] of bad) {
    it(`${what}: 102 naming the entry`, async () => {
      sandbox();
      sb.writeNode(ciliumNode(cidrs));
      const e = await addErr(sb, "a");
      expect(e.code).toBe(102);
      expect(e.msg).toContain(`node file ${sb.nodeFile}: `);
      expect(e.msg).toContain(fragment);
    });
  }

  it("a bad CIDR in a v1 Node names spec.podCIDRs", async () => {
    sandbox();
    sb.writeNode(v1Node({ podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64", "10.244.2.7/24"] }));
    const e = await addErr(sb, "a");
    expect(e.code).toBe(102);
    expect(e.msg).toContain('spec.podCIDRs[2] "10.244.2.7/24" has host bits set');
  });

  it("podCIDRs that is not a list: 102", async () => {
    sandbox();
    sb.writeNode(ciliumNode("10.0.2.0/24"));
    const e = await addErr(sb, "a");
    expect(e.code).toBe(102);
    expect(e.msg).toContain("spec.ipam.podCIDRs must be a list of CIDR strings");
  });

  it("a duplicate CIDR is not an overlap", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.2.0/24", "10.0.2.0/24"]));
    expect(addrs(await addOk(sb, "a"))).toEqual(["10.0.2.2"]);
  });
});

describe("pending CiliumNode", () => {
  it("fails with 11 and quotes the operator's error", async () => {
    sandbox("ciliumnode-pending.json");
    const e = await addErr(sb, "a");
    expect(e.code).toBe(11);
    expect(e.msg).toBe(`node file ${sb.nodeFile} lists no podCIDRs in spec.ipam.podCIDRs`);
    expect(e.details).toContain('"allocator clusterPoolIPv4PodCIDRList exhausted"');
    expect(e.details).toContain("my-cluster-worker3");
  });

  it("an empty podCIDRs list without an operator error is 11 as well", async () => {
    sandbox();
    sb.writeNode(ciliumNode([]));
    const e = await addErr(sb, "a");
    expect(e.code).toBe(11);
    expect(e.msg).toBe(`node file ${sb.nodeFile} lists no podCIDRs in spec.ipam.podCIDRs`);
  });
});

describe("v1 Node", () => {
  it("dual stack: 10.244.2.2/24 and fd00:10:244:2::2/64", async () => {
    sandbox("node-host-scope.json");
    const res = await addOk(sb, "a");
    expect(res.ips).toEqual([
      { address: "10.244.2.2/24", gateway: "10.244.2.1" },
      { address: "fd00:10:244:2::2/64", gateway: "fd00:10:244:2::1" },
    ]);
    expect(addrs(await addOk(sb, "b"))).toEqual(["10.244.2.3", "fd00:10:244:2::3"]);
  });

  it("IPv6-only /64", async () => {
    sandbox();
    sb.writeNode(v1Node({ podCIDRs: ["fd00:10:244:2::/64"] }));
    const res = await addOk(sb, "a");
    expect(res.ips).toEqual([{ address: "fd00:10:244:2::2/64", gateway: "fd00:10:244:2::1" }]);
  });

  it("with only the legacy spec.podCIDR", async () => {
    sandbox();
    sb.writeNode(v1Node({ podCIDR: "10.244.3.0/24" }));
    const res = await addOk(sb, "a");
    expect(res.ips).toEqual([{ address: "10.244.3.2/24", gateway: "10.244.3.1" }]);
  });

  it("with an empty spec.podCIDRs list and spec.podCIDR set", async () => {
    sandbox();
    sb.writeNode(v1Node({ podCIDRs: [], podCIDR: "10.244.3.0/24" }));
    expect(addrs(await addOk(sb, "a"))).toEqual(["10.244.3.2"]);
  });

  it("a Node without any podCIDR: 11 naming spec.podCIDRs", async () => {
    sandbox();
    sb.writeNode(v1Node({}));
    const e = await addErr(sb, "a");
    expect(e.code).toBe(11);
    expect(e.msg).toBe(`node file ${sb.nodeFile} lists no podCIDRs in spec.podCIDRs`);
    expect(e.details).toContain("--allocate-node-cidrs");
  });

  it("a bad legacy spec.podCIDR: 102 naming spec.podCIDR", async () => {
    sandbox();
    sb.writeNode(v1Node({ podCIDR: "10.244.3.1/24" }));
    const e = await addErr(sb, "a");
    expect(e.code).toBe(102);
    expect(e.msg).toContain('spec.podCIDR[0] "10.244.3.1/24" has host bits set');
  });
});

describe("node file read on every call", () => {
  it("a node file that turns bad after an ADD makes the next ADD fail with 102, and DEL still works", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    writeFileSync(sb.nodeFile, "{");
    expect((await addErr(sb, "b")).code).toBe(102);
    const d = await run({ command: "DEL", containerID: "a", stdin: sb.conf() });
    expect(d.code, d.stdout).toBe(0);
    expect(d.stdout).toBe("");
  });
});
