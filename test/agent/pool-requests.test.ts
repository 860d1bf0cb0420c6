// Cilium's `needed` rule for spec.ipam.pools.requested (pkg/ipam/multipool_manager.go
// neededIPCeil): the next multiple of preAllocate above inUse + pending, and the requests
// of every pool with demand, sorted by name.
import { describe, expect, it } from "vitest";
import { needed, parsePreAllocate, requests } from "../../src/agent/pool-requests.js";

describe("the pools' requests", () => {
  it.each([
    [0, 0, 16, 16],
    [1, 0, 16, 32],
    [16, 0, 16, 32],
    [17, 0, 16, 48],
    [3, 2, 8, 16],
    [5, 1, 0, 6],
    [0, 0, 0, 0],
  ])("needed(inUse %i, pending %i, preAllocate %i) = %i", (inUse, pending, pre, want) => {
    expect(needed(inUse, pending, pre)).toBe(want);
  });

  it("lists every pool with demand, sorted, each family it needs; pools with none are left out", () => {
    const got = requests(
      ["default", "blue", "idle"],
      new Map([
        ["blue/4", 3],
        ["default/4", 10],
      ]),
      new Map([
        ["red/6", 2],
        ["blue/6", 1],
      ]),
      new Map([["default", 8]]),
      [4, 6],
    );
    expect(got).toEqual([
      { pool: "blue", needed: { "ipv4-addrs": 3, "ipv6-addrs": 1 } },
      { pool: "default", needed: { "ipv4-addrs": 24, "ipv6-addrs": 8 } },
      { pool: "red", needed: { "ipv6-addrs": 2 } },
    ]);
  });

  it("reads --pre-allocate, and refuses a bad entry naming it", () => {
    expect([...parsePreAllocate("default=8,blue.a=0")]).toEqual([
      ["default", 8],
      ["blue.a", 0],
    ]);
    expect(() => parsePreAllocate("default=8,Blue=2")).toThrow('--pre-allocate "Blue=2" must be POOL=COUNT');
    expect(() => parsePreAllocate("default=-1")).toThrow("must be POOL=COUNT");
  });
});
