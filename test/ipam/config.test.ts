import { describe, expect, it } from "vitest";
import { failure as thrown } from "../helpers/errors";
import { type CniError, Code } from "../../src/errors.js";
import { DEFAULTS, parseIpamConfig } from "../../src/ipam/config.js";

const failure = (ipam: unknown): CniError => thrown(() => parseIpamConfig(ipam));

describe("parseIpamConfig", () => {
  it("fills every default for a bare ipam section", () => {
    expect(parseIpamConfig({ type: "podcidr-ipam" })).toEqual({
      nodeFile: "/var/lib/podcidr-ipam/node.json",
      dataDir: "/var/lib/cni/podcidr-ipam",
      waitForPodCIDRs: 10,
      gateway: true,
      reuseCooldown: 0,
      lockTimeout: 60,
      releaseOnReboot: false,
      mode: "auto",
      pool: "",
      routes: [],
      nodeName: "",
    });
    expect(DEFAULTS.lockTimeout).toBe(60);
  });

  it("keeps every valid setting and returns a frozen value", () => {
    const cfg = parseIpamConfig({
      type: "podcidr-ipam",
      nodeFile: "/run/node.json",
      dataDir: "/tmp/store/",
      waitForPodCIDRs: 0,
      gateway: false,
      reuseCooldown: 30,
      lockTimeout: 0.5,
      releaseOnReboot: true,
      mode: "multi-pool",
      pool: "blue.team-a",
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00::1", mtu: 1400 }],
      dns: { nameservers: ["10.96.0.10"], domain: "cluster.local", search: ["svc.cluster.local"], options: ["ndots:5"], extra: 1 },
      nodeName: "node-7.example",
    });
    expect(cfg).toEqual({
      nodeFile: "/run/node.json",
      dataDir: "/tmp/store",
      waitForPodCIDRs: 0,
      gateway: false,
      reuseCooldown: 30,
      lockTimeout: 0.5,
      releaseOnReboot: true,
      mode: "multi-pool",
      pool: "blue.team-a",
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00::1", mtu: 1400 }],
      dns: { nameservers: ["10.96.0.10"], domain: "cluster.local", search: ["svc.cluster.local"], options: ["ndots:5"] },
      nodeName: "node-7.example",
    });
    expect(Object.isFrozen(cfg)).toBe(true);
  });

  it.each([
    { name: "one trailing slash", dataDir: "/data/", expected: "/data" },
    { name: "several trailing slashes", dataDir: "/data///", expected: "/data" },
    { name: "the root", dataDir: "/", expected: "/" },
    { name: "the root with slashes", dataDir: "///", expected: "/" },
  ])("normalises a path with $name", ({ dataDir, expected }) => {
    expect(parseIpamConfig({ dataDir }).dataDir).toBe(expected);
  });

  it.each([
    { name: "no ipam section", ipam: undefined },
    { name: "a null ipam section", ipam: null },
    { name: "an ipam list", ipam: [] },
    { name: "an ipam string", ipam: "podcidr-ipam" },
  ])("rejects $name with code 7", ({ ipam }) => {
    const err = failure(ipam);
    expect(err.code).toBe(Code.InvalidNetworkConfig);
    expect(err.message).toBe("IPAM config missing 'ipam' key");
  });

  it.each([
    { name: "a relative nodeFile", ipam: { nodeFile: "node.json" }, msg: 'ipam.nodeFile must be an absolute path, got "node.json"' },
    { name: "a numeric dataDir", ipam: { dataDir: 5 }, msg: "ipam.dataDir must be an absolute path, got 5" },
    { name: "a path with a newline", ipam: { dataDir: "/a\nb" }, msg: 'ipam.dataDir must be an absolute path, got "/a\\nb"' },
    { name: "a path with a NUL", ipam: { nodeFile: "/a\u0000b" }, msg: 'ipam.nodeFile must be an absolute path, got "/a\\u0000b"' },
    {
      name: "a negative wait",
      ipam: { waitForPodCIDRs: -1 },
      msg: "ipam.waitForPodCIDRs must be a number of seconds from 0 to 600, got -1",
    },
    {
      name: "a wait over the limit",
      ipam: { waitForPodCIDRs: 601 },
      msg: "ipam.waitForPodCIDRs must be a number of seconds from 0 to 600, got 601",
    },
    {
      name: "a wait given as text",
      ipam: { waitForPodCIDRs: "10" },
      msg: 'ipam.waitForPodCIDRs must be a number of seconds from 0 to 600, got "10"',
    },
    {
      name: "a zero lock timeout",
      ipam: { lockTimeout: 0 },
      msg: "ipam.lockTimeout must be a number of seconds from 0.001 to 3600, got 0",
    },
    {
      name: "a cool-down over a day",
      ipam: { reuseCooldown: 86401 },
      msg: "ipam.reuseCooldown must be a number of seconds from 0 to 86400, got 86401",
    },
    { name: "a gateway given as text", ipam: { gateway: "true" }, msg: 'ipam.gateway must be true or false, got "true"' },
    {
      name: "an unknown mode",
      ipam: { mode: "eni" },
      msg: 'ipam.mode must be one of auto, cluster-pool, multi-pool, crd, kubernetes, got "eni"',
    },
    {
      name: "a pool name in capitals",
      ipam: { pool: "Blue" },
      msg: 'ipam.pool must be a pool name (a CiliumPodIPPool\'s name: lowercase letters, digits, "-" and "."), got "Blue"',
    },
    {
      name: "an empty pool name",
      ipam: { pool: "" },
      msg: 'ipam.pool must be a pool name (a CiliumPodIPPool\'s name: lowercase letters, digits, "-" and "."), got ""',
    },
    {
      name: "routes as an object",
      ipam: { routes: { dst: "0.0.0.0/0" } },
      msg: 'ipam.routes must be a list of {"dst": CIDR, "gw": IP}, got {"dst":"0.0.0.0/0"}',
    },
    { name: "a route as a string", ipam: { routes: ["0.0.0.0/0"] }, msg: 'ipam.routes[0] must be an object, got "0.0.0.0/0"' },
    {
      name: "a route without dst",
      ipam: { routes: [{ gw: "10.0.0.1" }] },
      msg: 'ipam.routes[0].dst must be a CIDR such as "0.0.0.0/0" or "::/0", got undefined',
    },
    {
      name: "a route dst without prefix",
      ipam: { routes: [{ dst: "0.0.0.0/0" }, { dst: "10.0.0.0" }] },
      msg: 'ipam.routes[1].dst must be a CIDR such as "0.0.0.0/0" or "::/0", got "10.0.0.0"',
    },
    {
      name: "a route dst with prefix /33",
      ipam: { routes: [{ dst: "10.0.0.0/33" }] },
      msg: 'ipam.routes[0].dst must be a CIDR such as "0.0.0.0/0" or "::/0", got "10.0.0.0/33"',
    },
    {
      name: "a route with a bad gw",
      ipam: { routes: [{ dst: "::/0", gw: "fd00::zz" }] },
      msg: 'ipam.routes[0].gw must be an IP address, got "fd00::zz"',
    },
    // CNI 1.1.0 route fields, as Go's types.Route decodes them (MTU, AdvMSS, Priority int; Table, Scope *int).
    {
      name: "a route mtu given as text",
      ipam: { routes: [{ dst: "0.0.0.0/0", mtu: "1400" }] },
      msg: 'ipam.routes[0].mtu must be a non-negative integer, got "1400"',
    },
    {
      name: "a negative route table",
      ipam: { routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", table: -1 }] },
      msg: "ipam.routes[1].table must be a non-negative integer, got -1",
    },
    {
      name: "a fractional route advmss",
      ipam: { routes: [{ dst: "0.0.0.0/0", advmss: 1460.5 }] },
      msg: "ipam.routes[0].advmss must be a non-negative integer, got 1460.5",
    },
    {
      name: "a route priority given as a boolean",
      ipam: { routes: [{ dst: "0.0.0.0/0", priority: true }] },
      msg: "ipam.routes[0].priority must be a non-negative integer, got true",
    },
    {
      name: "a null route mtu",
      ipam: { routes: [{ dst: "0.0.0.0/0", mtu: null }] },
      msg: "ipam.routes[0].mtu must be a non-negative integer, got null",
    },
    {
      name: "a route mtu past 2^53",
      ipam: { routes: [{ dst: "0.0.0.0/0", mtu: 2 ** 53 }] },
      msg: "ipam.routes[0].mtu must be a non-negative integer, got 9007199254740992",
    },
    {
      name: "a route scope given by name",
      ipam: { routes: [{ dst: "0.0.0.0/0", scope: "link" }] },
      msg: 'ipam.routes[0].scope must be an integer from 0 to 255, got "link"',
    },
    {
      name: "a route scope over 255",
      ipam: { routes: [{ dst: "0.0.0.0/0", scope: 256 }] },
      msg: "ipam.routes[0].scope must be an integer from 0 to 255, got 256",
    },
    {
      name: "a negative route scope",
      ipam: { routes: [{ dst: "0.0.0.0/0", scope: -1 }] },
      msg: "ipam.routes[0].scope must be an integer from 0 to 255, got -1",
    },
    { name: "dns as a list", ipam: { dns: [] }, msg: "ipam.dns must be an object, got []" },
    {
      name: "dns nameservers as a string",
      ipam: { dns: { nameservers: "10.96.0.10" } },
      msg: 'ipam.dns.nameservers must be a list of strings, got "10.96.0.10"',
    },
    { name: "a numeric dns domain", ipam: { dns: { domain: 1 } }, msg: "ipam.dns.domain must be a string, got 1" },
  ])("rejects $name, naming the key and the value", ({ ipam, msg }) => {
    const err = failure(ipam);
    expect(err.code).toBe(Code.InvalidNetworkConfig);
    expect(err.message).toBe(msg);
  });

  it("keeps valid CNI 1.1.0 route fields as they are", () => {
    const route = { dst: "10.96.0.0/12", gw: "10.0.2.1", mtu: 1400, advmss: 0, priority: 100, table: 4294967295, scope: 253 };
    expect(parseIpamConfig({ routes: [route, { dst: "::/0", scope: 0 }, { dst: "0.0.0.0/0", scope: 255, table: 0 }] }).routes).toEqual([
      route,
      { dst: "::/0", scope: 0 },
      { dst: "0.0.0.0/0", scope: 255, table: 0 },
    ]);
  });

  it("says in the details how the main plugin reads the route fields", () => {
    expect(failure({ routes: [{ dst: "0.0.0.0/0", table: "main" }] }).details).toContain("the main plugin reads");
  });

  it("shortens a long bad value in the message", () => {
    const err = failure({ nodeFile: "x".repeat(300) });
    expect(err.message).toBe(`ipam.nodeFile must be an absolute path, got "${"x".repeat(99)}...`);
  });

  it("suggests the default path when a path is wrong", () => {
    expect(failure({ dataDir: "data" }).details).toBe('for example "/var/lib/cni/podcidr-ipam"');
  });
});
