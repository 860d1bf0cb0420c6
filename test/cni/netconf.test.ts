import { describe, expect, it } from "vitest";
import { failure } from "../helpers/errors";
import { Code } from "../../src/errors.js";
import { parseCniArgs } from "../../src/cni/env.js";
import { type NetConf, decodeStdin, parseNetConf } from "../../src/cni/netconf.js";

const base = (top: Record<string, unknown> = {}): Record<string, unknown> => ({
  cniVersion: "1.1.0",
  name: "podnet",
  type: "bridge",
  ipam: { type: "podcidr-ipam" },
  ...top,
});

/** parseNetConf for ADD with CNI_ARGS as the runtime sends it. */
const add = (cniArgs = "", top: Record<string, unknown> = {}): NetConf => parseNetConf(base(top), "ADD", parseCniArgs(cniArgs));
const requested = (cniArgs = "", top: Record<string, unknown> = {}) =>
  add(cniArgs, top).requested.map((r) => ({ family: r.family, value: r.value, text: r.text }));

describe("parseNetConf: requested addresses", () => {
  it("reads IP= in CNI_ARGS, one address per family, with its value", () => {
    expect(requested("IgnoreUnknown=1;K8S_POD_NAME=web-0;IP=10.0.2.53,fd00::253")).toEqual([
      { family: 4, value: 0x0a000235n, text: "10.0.2.53" },
      { family: 6, value: 0xfd000000000000000000000000000253n, text: "fd00::253" },
    ]);
  });

  it("reads args.cni.ips and runtimeConfig.ips", () => {
    expect(requested("", { args: { cni: { ips: ["10.0.2.52"] } } })).toEqual([{ family: 4, value: 0x0a000234n, text: "10.0.2.52" }]);
    expect(requested("", { runtimeConfig: { ips: ["fd00::251/120"] } })).toEqual([
      { family: 6, value: 0xfd000000000000000000000000000251n, text: "fd00::251/120" },
    ]);
  });

  it("counts the same address from several sources once, however it is written", () => {
    const got = requested("IP=10.0.2.50", {
      args: { cni: { ips: ["10.0.2.50/24"] } },
      runtimeConfig: { ips: ["::ffff:10.0.2.50", " 10.0.2.50 "] },
    });
    expect(got).toEqual([{ family: 4, value: 0x0a000232n, text: "10.0.2.50" }]);
  });

  it("skips empty entries (an empty IP= asks for nothing)", () => {
    expect(requested("IP=", { runtimeConfig: { ips: [""] } })).toEqual([]);
    expect(requested("IP=10.0.2.5,")).toEqual([{ family: 4, value: 0x0a000205n, text: "10.0.2.5" }]);
  });

  it("returns a frozen list of frozen entries", () => {
    const conf = add("IP=10.0.2.53,fd00::253");
    expect(Object.isFrozen(conf.requested)).toBe(true);
    for (const r of conf.requested) expect(Object.isFrozen(r)).toBe(true);
  });

  it("reads requested addresses only for ADD", () => {
    for (const command of ["DEL", "CHECK"] as const) {
      expect(parseNetConf(base({ runtimeConfig: { ips: ["10.0.2.50"] } }), command, parseCniArgs("IP=10.0.2.51;ip=x")).requested).toEqual(
        [],
      );
    }
  });

  it.each([
    {
      name: "an IPv4 prefix over 32",
      args: "IP=10.0.2.61/33",
      fragment: 'requested address "10.0.2.61/33" (CNI_ARGS IP=) has prefix /33, expected /0 to /32',
    },
    {
      name: "an IPv6 prefix over 128",
      args: "IP=fd00::5/129",
      fragment: 'requested address "fd00::5/129" (CNI_ARGS IP=) has prefix /129, expected /0 to /128',
    },
    {
      name: "a prefix with a leading zero",
      args: "IP=10.0.2.61/024",
      fragment: 'requested address "10.0.2.61/024" (CNI_ARGS IP=) has prefix /024',
    },
    { name: "a prefix with a sign", args: "IP=10.0.2.61/+8", fragment: "has prefix /+8" },
    { name: "an empty prefix", args: "IP=10.0.2.61/", fragment: 'requested address "10.0.2.61/" (CNI_ARGS IP=) has prefix /,' },
    { name: "two prefixes", args: "IP=10.0.2.61/24/24", fragment: "has prefix /24/24" },
    {
      name: "a second, bad address",
      args: "IP=fd00::5,10.0.2.300",
      fragment: 'requested address "10.0.2.300" (CNI_ARGS IP=) is not an IP address',
    },
  ])("refuses $name with 7", ({ args, fragment }) => {
    const err = failure(() => add(args));
    expect(err.code).toBe(Code.InvalidNetworkConfig);
    expect(err.message).toContain(fragment);
    expect(err.details).toContain("10.0.2.50/24");
  });

  it.each([
    {
      name: "runtimeConfig.ips",
      top: { runtimeConfig: { ips: ["10.0.2.61/33"] } },
      fragment: 'requested address "10.0.2.61/33" (runtimeConfig.ips[0]) has prefix /33',
    },
    {
      name: "args.cni.ips",
      top: { args: { cni: { ips: ["10.0.2.5", "fd00::5/0129"] } } },
      fragment: 'requested address "fd00::5/0129" (args.cni.ips[1]) has prefix /0129',
    },
    {
      name: "runtimeConfig.ips with a zone",
      top: { runtimeConfig: { ips: ["fd00::5%eth0"] } },
      fragment: 'requested address "fd00::5%eth0" (runtimeConfig.ips[0]) is not an IP address',
    },
  ])("applies the same rule to $name", ({ top, fragment }) => {
    const err = failure(() => add("", top));
    expect(err.code).toBe(Code.InvalidNetworkConfig);
    expect(err.message).toContain(fragment);
  });

  it.each([
    { name: "an IPv4 prefix of 0 or 32", args: "IP=10.0.2.61/32", value: 0x0a00023dn },
    { name: "an IPv4-mapped address with an IPv6 prefix", args: "IP=::ffff:10.0.2.61/120", value: 0x0a00023dn },
    { name: "a prefix of 0", args: "IP=10.0.2.61/0", value: 0x0a00023dn },
  ])("accepts $name (the prefix is ignored)", ({ args, value }) => {
    expect(add(args).requested.map((r) => r.value)).toEqual([value]);
  });

  it("refuses two different addresses of one family, in any mix of sources, with 7", () => {
    const err = failure(() => add("IP=10.0.2.70", { runtimeConfig: { ips: ["10.0.2.71"] } }));
    expect(err.code).toBe(Code.InvalidNetworkConfig);
    expect(err.message).toBe("more than one IPv4 address requested (10.0.2.70, 10.0.2.71)");
  });

  it.each(["ip=10.0.2.89", "IP =10.0.2.89", " Ip=10.0.2.89", "iP=10.0.2.89", "IgnoreUnknown=1; IP=10.0.2.89", "IP\t=10.0.2.89"])(
    "refuses the mistyped key in %j with 4, naming it and saying to write IP=",
    (args) => {
      const key = args.split(";").pop()!.split("=")[0]!;
      const err = failure(() => add(args));
      expect(err.code).toBe(Code.InvalidEnvironmentVariables);
      expect(err.message).toContain(`CNI_ARGS key ${JSON.stringify(key)}`);
      expect(err.message).toContain("write IP=");
    },
  );

  it("ignores other unknown CNI_ARGS keys", () => {
    expect(
      add("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;IPS=1;IP_ADDR=10.0.2.9;MAC=x")
        .requested,
    ).toEqual([]);
  });
});

describe("decodeStdin", () => {
  it("reports a config over 1 MiB as more than the limit, not as the size read", () => {
    const err = failure(() => decodeStdin(Buffer.alloc((1 << 20) + 4096, 0x20)));
    expect(err.code).toBe(Code.DecodingFailure);
    expect(err.message).toBe("network config on stdin is more than 1048576 bytes");
  });
});
