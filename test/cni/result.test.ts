import { describe, expect, it } from "vitest";
import { type IpamResult, familyOf, formatResult } from "../../src/cni/result.js";
import { type CniVersion, SUPPORTED_VERSIONS } from "../../src/cni/version.js";

const DUAL: IpamResult = {
  ips: [
    { family: 4, address: "10.0.2.5/24", gateway: "10.0.2.1" },
    { family: 6, address: "fd00::205/120", gateway: "fd00::201" },
  ],
  routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00::201", mtu: 1400, priority: 5 }],
  dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
};

const BARE: IpamResult = { ips: [{ family: 4, address: "10.0.2.5/24" }], routes: [] };

describe("formatResult", () => {
  it.each([
    {
      name: "0.1.0",
      version: "0.1.0",
      expected: {
        cniVersion: "0.1.0",
        ip4: { ip: "10.0.2.5/24", gateway: "10.0.2.1", routes: [{ dst: "0.0.0.0/0" }] },
        ip6: { ip: "fd00::205/120", gateway: "fd00::201", routes: [{ dst: "::/0", gw: "fd00::201" }] },
        dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      },
    },
    {
      name: "0.2.0",
      version: "0.2.0",
      expected: {
        cniVersion: "0.2.0",
        ip4: { ip: "10.0.2.5/24", gateway: "10.0.2.1", routes: [{ dst: "0.0.0.0/0" }] },
        ip6: { ip: "fd00::205/120", gateway: "fd00::201", routes: [{ dst: "::/0", gw: "fd00::201" }] },
        dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      },
    },
    ...(["0.3.0", "0.3.1", "0.4.0"] as const).map((v) => ({
      name: v,
      version: v,
      expected: {
        cniVersion: v,
        ips: [
          { version: "4", address: "10.0.2.5/24", gateway: "10.0.2.1" },
          { version: "6", address: "fd00::205/120", gateway: "fd00::201" },
        ],
        routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00::201" }],
        dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      },
    })),
    {
      name: "1.0.0",
      version: "1.0.0",
      expected: {
        cniVersion: "1.0.0",
        ips: [
          { address: "10.0.2.5/24", gateway: "10.0.2.1" },
          { address: "fd00::205/120", gateway: "fd00::201" },
        ],
        routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00::201" }],
        dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      },
    },
    {
      name: "1.1.0 (route mtu and priority kept)",
      version: "1.1.0",
      expected: {
        cniVersion: "1.1.0",
        ips: [
          { address: "10.0.2.5/24", gateway: "10.0.2.1" },
          { address: "fd00::205/120", gateway: "fd00::201" },
        ],
        routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00::201", mtu: 1400, priority: 5 }],
        dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      },
    },
  ])("shapes a dual-stack result for $name", ({ version, expected }) => {
    expect(formatResult(DUAL, version as CniVersion)).toEqual(expected);
  });

  it.each([
    { name: "0.1.0", version: "0.1.0", expected: { cniVersion: "0.1.0", ip4: { ip: "10.0.2.5/24" } } },
    {
      name: "0.3.1 (empty dns kept, as types/040 does)",
      version: "0.3.1",
      expected: { cniVersion: "0.3.1", ips: [{ version: "4", address: "10.0.2.5/24" }], dns: {} },
    },
    { name: "0.4.0", version: "0.4.0", expected: { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.2.5/24" }], dns: {} } },
    { name: "1.0.0", version: "1.0.0", expected: { cniVersion: "1.0.0", ips: [{ address: "10.0.2.5/24" }] } },
    { name: "1.1.0", version: "1.1.0", expected: { cniVersion: "1.1.0", ips: [{ address: "10.0.2.5/24" }] } },
  ])("leaves out empty gateway, routes and dns for $name", ({ version, expected }) => {
    expect(formatResult(BARE, version as CniVersion)).toEqual(expected);
  });

  it("drops an empty dns object from a 1.x result", () => {
    expect(formatResult({ ...BARE, dns: {} }, "1.1.0")).toEqual({ cniVersion: "1.1.0", ips: [{ address: "10.0.2.5/24" }] });
  });

  it.each(SUPPORTED_VERSIONS.map((v) => ({ v })))("[$v] labels the result with the requested cniVersion", ({ v }) => {
    expect(formatResult(DUAL, v).cniVersion).toBe(v);
  });
});

describe("familyOf", () => {
  it.each([
    { text: "0.0.0.0/0", family: 4 },
    { text: "10.0.2.1", family: 4 },
    { text: "::/0", family: 6 },
    { text: "fd00::1", family: 6 },
  ])("says $text is IPv$family", ({ text, family }) => {
    expect(familyOf(text)).toBe(family);
  });
});
