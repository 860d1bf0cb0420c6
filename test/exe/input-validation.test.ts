// Inputs refused at the protocol edge, through the built executable: CNI 1.1.0
// route fields, node-file addresses that do not parse, requested addresses and
// CNI_ARGS keys, node files being written, STATUS, and cniVersion corner cases.
// Every refused call must leave the store byte for byte as it was.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Sandbox, run } from "../helpers/plugin";
import { expectCniError, expectJsonSuccess } from "../helpers/protocol";
import { addOk, addrs, ciliumNode, snapshot } from "../helpers/exe";

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
    { name: "a priority given as text", route: { priority: "10" }, fragment: 'ipam.routes[0].priority must be a non-negative integer, got "10"' },
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
