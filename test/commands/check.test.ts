// CHECK in process: dispatch() over makeHandlers(memoryDeps(store)).
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { InProcess } from "../helpers/in-process";
import { release } from "../../src/ipam/allocator.js";

const DUAL = ciliumNode(["10.0.2.0/24", "fd00::200/120"]);

let n: InProcess;
afterEach(() => n.cleanup());

describe("CHECK", () => {
  it("passes for the prevResult of the ADD, and changes nothing", async () => {
    n = new InProcess(DUAL);
    const prevResult = await n.add("c1");
    const before = n.store.snapshot();
    await n.ok("CHECK", "c1", { top: { prevResult } });
    expect(n.store.snapshot()).toEqual(before);
  });

  it("passes for a 0.4.0 prevResult, and ignores addresses outside our ranges (another plugin's)", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    const prevResult = {
      cniVersion: "0.4.0",
      ips: [
        { version: "4", address: "10.0.2.2/24" },
        { version: "4", address: "192.168.7.7/24" },
      ],
    };
    await n.ok("CHECK", "c1", { version: "0.4.0", top: { prevResult } });
  });

  it("fails 104 when prevResult names an address of ours the attachment does not hold", async () => {
    n = new InProcess(DUAL);
    const prevResult = await n.add("c1");
    await n.add("c2");
    const wrong = { ...prevResult, ips: [prevResult.ips[0], { address: "fd00::203/120", gateway: "fd00::201" }] };
    const e = await n.fails("CHECK", "c1", { top: { prevResult: wrong } });
    expect(e.code).toBe(104);
    expect(e.msg).toBe("podnet/c1/eth0 does not hold fd00::203");
    expect(e.details).toBe("it holds 10.0.2.2, fd00::202");
  });

  it("fails 104 for an attachment it holds nothing for (and a missing store stays missing)", async () => {
    n = new InProcess(DUAL);
    const prevResult = { cniVersion: "1.1.0", ips: [{ address: "10.0.2.2/24" }] };
    let e = await n.fails("CHECK", "c1", { top: { prevResult } });
    expect(e.code).toBe(104);
    expect(e.msg).toBe("podcidr-ipam holds no address for podnet/c1/eth0");
    expect(e.details).toContain("the store memory has no record of this attachment");
    expect(n.store.snapshot().exists).toBe(false);
    await n.add("c2");
    e = await n.fails("CHECK", "c1", { top: { prevResult } });
    expect(e.code).toBe(104);
    expect(e.msg).toBe("podcidr-ipam holds no address for podnet/c1/eth0");
  });

  it("fails 104 when a held address is not marked in its podCIDR", async () => {
    n = new InProcess(DUAL);
    const prevResult = await n.add("c1");
    n.store.editRange("fd00::200/120", (r) => release(r, 1, 0));
    const e = await n.fails("CHECK", "c1", { top: { prevResult } });
    expect(e.code).toBe(104);
    expect(e.msg).toBe("fd00::202 of podnet/c1/eth0 is not marked allocated in its podCIDR");
  });

  it("finds the record of a renamed network", async () => {
    n = new InProcess(DUAL);
    const prevResult = await n.add("c1");
    await n.ok("CHECK", "c1", { network: "podnet-renamed", top: { prevResult } });
    const e = await n.fails("CHECK", "c1", { network: "podnet-renamed", netns: "/var/run/netns/other", top: { prevResult } });
    expect(e.code).toBe(104);
    expect(e.msg).toBe("podcidr-ipam holds no address for podnet-renamed/c1/eth0");
  });
});
