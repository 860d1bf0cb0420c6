// STATUS in process over the memory store (status.test.ts drives the disk store).
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { InProcess } from "../helpers/in-process";

let n: InProcess;
afterEach(() => n.cleanup());

describe("STATUS over the memory store", () => {
  it("is ready when every family has a free address, before any ADD, and creates no store", async () => {
    n = new InProcess(ciliumNode(["10.0.2.0/24", "fd00::200/120"]));
    await n.ok("STATUS", "");
    expect(n.store.snapshot().exists).toBe(false);
    expect(n.claims.checked).toEqual(["10.0.2.0/24", "fd00::200/120"]);
    await n.add("c1");
    const before = n.store.snapshot();
    await n.ok("STATUS", "");
    expect(n.store.snapshot()).toEqual(before);
  });

  it("answers 50 when a family is full, and is ready again after a DEL", async () => {
    n = new InProcess(ciliumNode(["10.0.2.0/24", "fd00::200/126"]));
    await n.add("c1");
    await n.ok("STATUS", "");
    await n.add("c2");
    const e = await n.fails("STATUS", "");
    expect(e.code).toBe(50);
    expect(e.msg).toBe("no free address: every IPv6 podCIDR is full (10.0.2.0/24, fd00::200/126)");
    expect(e.details).toContain("expand the pool");
    await n.ok("DEL", "c1");
    await n.ok("STATUS", "");
  });

  it("counts the addresses an overlapping orphaned range still uses as taken", async () => {
    n = new InProcess(ciliumNode(["10.0.2.0/30"]));
    await n.add("old");
    // 10.0.2.0/29: .1 gateway, .2 held in the old /30 and .3 its broadcast: .4-.6 are free.
    n.setNode(ciliumNode(["10.0.2.0/29"]));
    for (const c of ["c1", "c2"]) await n.add(c);
    await n.ok("STATUS", "");
    await n.add("c3");
    const e = await n.fails("STATUS", "");
    expect(e.code).toBe(50);
    expect(e.msg).toBe("no free address: every IPv4 podCIDR is full (10.0.2.0/29)");
  });

  it("answers 50 with the code 11 in the details when the node file is missing", async () => {
    n = new InProcess();
    const e = await n.fails("STATUS", "");
    expect(e.code).toBe(50);
    expect(e.msg).toBe(`node file ${n.nodeFile} does not exist`);
    expect(e.details).toMatch(/^code 11: the sync job writes it/);
  });

  it("answers 50 with the code 11 when the node has no podCIDR yet", async () => {
    n = new InProcess(ciliumNode(undefined));
    const e = await n.fails("STATUS", "");
    expect(e.code).toBe(50);
    expect(e.msg).toBe(`node file ${n.nodeFile} lists no podCIDRs in spec.ipam.podCIDRs`);
    expect(e.details).toMatch(/^code 11: CiliumNode test-node has not been given a pod CIDR yet/);
  });

  it("answers 50 with the code 103 when a range ADD needs is damaged", async () => {
    n = new InProcess(ciliumNode(["10.0.2.0/24"]));
    await n.add("c1");
    n.store.damageRange("10.0.2.0/24");
    const add = await n.fails("ADD", "c2");
    expect(add.code).toBe(103);
    const e = await n.fails("STATUS", "");
    expect(e.code).toBe(50);
    expect(e.msg).toBe(add.msg);
    expect(e.details).toBe(`code 103: ${add.details}`);
  });
});
