// Inputs refused at the protocol edge, through the built executable: CNI 1.1.0
// route fields, node-file addresses that do not parse, requested addresses and
// CNI_ARGS keys, node files being written, STATUS, and cniVersion corner cases.
// Every refused call must leave the store byte for byte as it was.
import { symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Sandbox, run } from "../helpers/plugin";
import { SUPPORTED, expectCniError, expectJsonSuccess } from "../helpers/protocol";
import { addOk, addrs, replaceNode } from "../helpers/exe";
import { ciliumNode, v1Node } from "../helpers/node";
import { snapshot } from "../helpers/snapshot";
import { checkpointNow, damage } from "../helpers/store-state";

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox("ciliumnode-cluster-pool.json");
});
afterEach(() => sb.cleanup());

/** One ADD so that a store exists, then its snapshot: what a refused call must leave. */
async function seeded(): Promise<Map<string, string>> {
  await addOk(sb, "seed");
  const before = snapshot(sb.dataDir);
  expect(before.size).toBeGreaterThan(3);
  return before;
}

describe("CNI 1.1.0 route fields (ipam.routes)", () => {
  it.each([
    { name: "an mtu given as text", route: { mtu: "1400" }, fragment: 'ipam.routes[0].mtu must be a non-negative integer, got "1400"' },
    { name: "a negative table", route: { table: -1 }, fragment: "ipam.routes[0].table must be a non-negative integer, got -1" },
    { name: "a fractional advmss", route: { advmss: 1.5 }, fragment: "ipam.routes[0].advmss must be a non-negative integer, got 1.5" },
    {
      name: "a priority given as text",
      route: { priority: "10" },
      fragment: 'ipam.routes[0].priority must be a non-negative integer, got "10"',
    },
    { name: "a scope by name", route: { scope: "link" }, fragment: 'ipam.routes[0].scope must be an integer from 0 to 255, got "link"' },
    { name: "a scope over 255", route: { scope: 256 }, fragment: "ipam.routes[0].scope must be an integer from 0 to 255, got 256" },
  ])("ADD refuses $name with 7 and allocates nothing", async ({ route, fragment }) => {
    const before = await seeded();
    const r = await run({ command: "ADD", containerID: "a", stdin: sb.conf("1.1.0", { routes: [{ dst: "0.0.0.0/0", ...route }] }) });
    expectCniError(r, 7, fragment);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("passes valid 1.1.0 route fields through into the result", async () => {
    const route = { dst: "10.96.0.0/12", gw: "10.0.2.1", mtu: 1400, advmss: 1360, priority: 100, table: 254, scope: 0 };
    const res = await addOk(sb, "a", { ipam: { routes: [route] } });
    expect(res.routes).toEqual([route]);
  });
});

describe("node file: router, health and ingress addresses that do not parse", () => {
  const CIDRS = ["10.0.2.0/24", "fd00::200/120"];
  it.each([
    {
      name: "a router IP with a trailing space",
      node: ciliumNode(CIDRS, { router: ["10.0.2.2 "] }),
      fragment: 'spec.addresses[1].ip "10.0.2.2 " is not an IP address',
    },
    {
      name: "a router IP with a leading zero",
      node: ciliumNode(CIDRS, { router: ["010.0.2.3"] }),
      fragment: 'spec.addresses[1].ip "010.0.2.3" is not an IP address',
    },
    {
      name: "an IPv6 address in spec.health.ipv4",
      node: ciliumNode(CIDRS, { health: { ipv4: "fd00::202" } }),
      fragment: 'spec.health.ipv4 "fd00::202" is not an IPv4 address',
    },
    {
      name: "an IPv4 address in spec.ingress.ipv6",
      node: ciliumNode(CIDRS, { ingress: { ipv6: "10.0.2.2" } }),
      fragment: 'spec.ingress.ipv6 "10.0.2.2" is not an IPv6 address',
    },
    {
      name: "a v1 Node cilium-host annotation with a trailing space",
      node: v1Node({ podCIDRs: CIDRS }, { "io.cilium.network.ipv4-cilium-host": "10.0.2.2 " }),
      fragment: 'metadata.annotations["io.cilium.network.ipv4-cilium-host"] "10.0.2.2 " is not an IP address',
    },
    {
      name: "an IPv6 address under a v1 Node ipv4- annotation",
      node: v1Node({ podCIDRs: CIDRS }, { "io.cilium.network.ipv4-health-ip": "fd00::202" }),
      fragment: 'metadata.annotations["io.cilium.network.ipv4-health-ip"] "fd00::202" is not an IPv4 address',
    },
  ])("ADD refuses $name with 102 instead of handing that address to a pod", async ({ node, fragment }) => {
    const before = await seeded();
    replaceNode(sb, node);
    const r = await run({ command: "ADD", containerID: "a", stdin: sb.conf() });
    expectCniError(r, 102, `node file ${sb.nodeFile}: ${fragment}`);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("STATUS answers 50 with the same message", async () => {
    replaceNode(sb, ciliumNode(CIDRS, { router: ["10.0.2.2 "] }));
    const r = await run({ command: "STATUS", stdin: sb.conf() });
    expectCniError(r, 50, 'spec.addresses[1].ip "10.0.2.2 " is not an IP address');
  });

  it("an empty health address is none: the first pod gets 10.0.2.2", async () => {
    replaceNode(sb, ciliumNode(CIDRS, { health: { ipv4: "", ipv6: "" } }));
    expect(addrs(await addOk(sb, "a"))).toEqual(["10.0.2.2", "fd00::202"]);
  });
});

describe("requested addresses and CNI_ARGS", () => {
  it.each([
    {
      name: "IP= with an IPv4 prefix over 32",
      args: "IP=10.0.2.61/33",
      top: {},
      fragment: 'requested address "10.0.2.61/33" (CNI_ARGS IP=) has prefix /33',
    },
    {
      name: "IP= with a prefix written with a leading zero",
      args: "IP=10.0.2.61/024",
      top: {},
      fragment: 'requested address "10.0.2.61/024" (CNI_ARGS IP=) has prefix /024',
    },
    { name: "IP= with a prefix that is not a number", args: "IP=10.0.2.61/x", top: {}, fragment: "has prefix /x" },
    {
      name: "runtimeConfig.ips with an IPv6 prefix over 128",
      args: "",
      top: { runtimeConfig: { ips: ["fd00::261/129"] } },
      fragment: 'requested address "fd00::261/129" (runtimeConfig.ips[0]) has prefix /129',
    },
    {
      name: "args.cni.ips with an IPv4 prefix over 32",
      args: "",
      top: { args: { cni: { ips: ["10.0.2.61/33"] } } },
      fragment: 'requested address "10.0.2.61/33" (args.cni.ips[0]) has prefix /33',
    },
    {
      name: "two different IPv4 addresses from two sources",
      args: "IP=10.0.2.70",
      top: { args: { cni: { ips: ["10.0.2.71"] } } },
      fragment: "more than one IPv4 address requested (10.0.2.70, 10.0.2.71)",
    },
  ])("ADD refuses $name with 7 and allocates nothing", async ({ args, top, fragment }) => {
    const before = await seeded();
    const r = await run({
      command: "ADD",
      containerID: "a",
      args: `IgnoreUnknown=1;K8S_POD_NAME=web-0${args ? `;${args}` : ""}`,
      stdin: sb.conf("1.1.0", {}, top),
    });
    expectCniError(r, 7, fragment);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it.each(["ip=10.0.2.89", "IP =10.0.2.89", " Ip=10.0.2.89"])(
    "ADD refuses the mistyped key in CNI_ARGS %j with 4 and allocates nothing",
    async (pair) => {
      const before = await seeded();
      const r = await run({
        command: "ADD",
        containerID: "a",
        args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;${pair}`,
        stdin: sb.conf(),
      });
      expectCniError(r, 4, `CNI_ARGS key ${JSON.stringify(pair.split("=")[0])}`, "write IP=");
      expect(snapshot(sb.dataDir)).toEqual(before);
    },
  );

  it("DEL ignores a mistyped key (only ADD reads requested addresses)", async () => {
    await addOk(sb, "a");
    const r = await run({ command: "DEL", containerID: "a", args: "ip=10.0.2.2", stdin: sb.conf() });
    expect(r.code, r.stdout).toBe(0);
  });

  it("ignores other unknown keys, and counts one address from three sources once", async () => {
    const r = await run({
      command: "ADD",
      containerID: "a",
      args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;IPS=x;IP=10.0.2.89/24",
      stdin: sb.conf("1.1.0", {}, { runtimeConfig: { ips: ["10.0.2.89"] }, args: { cni: { ips: ["::ffff:10.0.2.89/120"] } } }),
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(addrs(r.json)).toEqual(["10.0.2.89", "fd00::202"]);
  });
});

describe("node file being written (waitForPodCIDRs)", () => {
  const NODE = JSON.stringify(ciliumNode(["10.0.2.0/24", "fd00::200/120"]));

  it("ADD reports an empty node file as empty (11), not as missing, and allocates nothing", async () => {
    const before = await seeded();
    writeFileSync(sb.nodeFile, "");
    const r = await run({ command: "ADD", containerID: "a", stdin: sb.conf() });
    const e = expectCniError(
      r,
      11,
      `node file ${sb.nodeFile} is empty: the sync job may be writing it in place; write a temp file and mv it`,
    );
    expect(e.details).toContain(`mv ${sb.nodeFile}.tmp ${sb.nodeFile}`);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("STATUS answers 50 for an empty node file, saying it is empty", async () => {
    writeFileSync(sb.nodeFile, "");
    expectCniError(await run({ command: "STATUS", stdin: sb.conf() }), 50, `node file ${sb.nodeFile} is empty`);
  });

  it("ADD waits for a half-written node file to be complete", async () => {
    writeFileSync(sb.nodeFile, NODE.slice(0, 50));
    const pending = run({ command: "ADD", containerID: "a", stdin: sb.conf("1.1.0", { waitForPodCIDRs: 5 }) });
    setTimeout(() => writeFileSync(sb.nodeFile, NODE.slice(0, 100)), 300);
    setTimeout(() => writeFileSync(sb.nodeFile, NODE), 700);
    const r = await pending;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(addrs(r.json)).toEqual(["10.0.2.2", "fd00::202"]);
  });

  it("ADD fails a node file that stays half-written with 102 when the wait ends, and allocates nothing", async () => {
    const before = await seeded();
    writeFileSync(sb.nodeFile, NODE.slice(0, 50));
    const t0 = Date.now();
    const r = await run({ command: "ADD", containerID: "a", stdin: sb.conf("1.1.0", { waitForPodCIDRs: 0.6 }) });
    const e = expectCniError(r, 102, `node file ${sb.nodeFile}: is not JSON`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    expect(e.details).toContain("still not JSON after waiting 0.6s");
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it('a v1 Node with "podCIDRs": null falls back to spec.podCIDR', async () => {
    replaceNode(sb, v1Node({ podCIDRs: null, podCIDR: "10.0.3.0/24" }));
    const res = await addOk(sb, "a");
    expect(res.ips).toEqual([{ address: "10.0.3.2/24", gateway: "10.0.3.1" }]);
  });
});

describe("STATUS: every reason ADD would fail is code 50", () => {
  it("a damaged range: ADD says 103, STATUS 50 with the 103 message, and code 103 in the details", async () => {
    await addOk(sb, "seed");
    await checkpointNow(sb.dataDir);
    damage(sb.dataDir, { range: "10.0.2.0/24" });
    const before = snapshot(sb.dataDir);
    const a = expectCniError(await run({ command: "ADD", containerID: "a", stdin: sb.conf() }), 103, "is corrupt");
    const r = await run({ command: "STATUS", stdin: sb.conf() });
    const e = expectCniError(r, 50, a.msg);
    expect(e.msg).toBe(a.msg);
    expect(e.details).toBe(`code 103: ${a.details}`);
    expect(r.stdout.split("\n")).toHaveLength(2);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("a symbolic link where a store file should be: ADD says 105, STATUS 50", async () => {
    await addOk(sb, "seed");
    const log = join(sb.dataDir, "_store", "log");
    unlinkSync(log);
    symlinkSync(sb.nodeFile, log);
    const before = snapshot(sb.dataDir);
    expectCniError(await run({ command: "ADD", containerID: "a", stdin: sb.conf() }), 105, "ELOOP");
    const e = expectCniError(await run({ command: "STATUS", stdin: sb.conf() }), 50, "ELOOP");
    expect(e.details).toMatch(/^code 105: /);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("a bad config is still refused as such (7), before STATUS looks at anything", async () => {
    expectCniError(await run({ command: "STATUS", stdin: sb.conf("1.1.0", { gateway: "yes" }) }), 7, "ipam.gateway");
  });
});

describe("cniVersion corner cases", () => {
  it('ADD with "cniVersion": null answers in 0.1.0, as skel and host-local do', async () => {
    const r = await run({ command: "ADD", containerID: "a", stdin: sb.conf(null as unknown as string) });
    const res = expectJsonSuccess(r);
    expect(res).toEqual({
      cniVersion: "0.1.0",
      ip4: { ip: "10.0.2.2/24", gateway: "10.0.2.1" },
      ip6: { ip: "fd00::202/120", gateway: "fd00::201" },
    });
  });

  it.each([
    { name: "a number", v: 1, shown: "1" },
    { name: "an object", v: {}, shown: "{}" },
    { name: "a boolean", v: true, shown: "true" },
  ])("ADD with a cniVersion that is $name: code 6, and the store is unchanged", async ({ v, shown }) => {
    const before = await seeded();
    const r = await run({ command: "ADD", containerID: "a", stdin: sb.conf(v as unknown as string) });
    expectCniError(r, 6, `cniVersion must be a version string such as "1.1.0", got ${shown}`);
    expect(snapshot(sb.dataDir)).toEqual(before);
  });

  it("VERSION still ignores a null or non-string cniVersion on stdin", async () => {
    for (const stdin of ['{"cniVersion":null}', '{"cniVersion":1}', '{"cniVersion":{}}']) {
      expect(expectJsonSuccess(await run({ command: "VERSION", stdin }))).toEqual({ cniVersion: "1.1.0", supportedVersions: SUPPORTED });
    }
  });

  it("stdin over 1 MiB is code 6 saying it is more than the limit, and the store is unchanged", async () => {
    const before = await seeded();
    const r = await run({ command: "ADD", containerID: "a", stdin: { ...sb.conf(), padding: "p".repeat(3 << 20) } });
    expectCniError(r, 6, "network config on stdin is more than 1048576 bytes");
    expect(snapshot(sb.dataDir)).toEqual(before);
  });
});
