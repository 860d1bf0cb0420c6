// repair (src/cli/repair.ts) over the memory store: the records are the truth.
import { afterEach, describe, expect, it } from "vitest";
import { type RepairReport, repair } from "../../src/cli/repair.js";
import { release } from "../../src/ipam/allocator.js";
import { ciliumNode } from "../helpers/node";
import { InProcess } from "../helpers/in-process";

const V4 = "10.0.2.0/24";
const KEY = (containerID: string, network = "podnet", ifname = "eth0") => ({ network, containerID, ifname });
const KEEP = { releaseUnowned: false, dryRun: false };

let n: InProcess;
afterEach(() => n.cleanup());

async function withPods(...ids: string[]): Promise<void> {
  n = new InProcess(ciliumNode([V4]));
  for (const id of ids) await n.add(id);
}

const rangeOf = (rep: RepairReport, cidr = V4) => rep.ranges.find((r) => r.cidr === cidr)!;
const offsets = (cidr = V4): number[] | undefined => n.store.snapshot().ranges[cidr]?.offsets;

describe("repair", () => {
  it("finds nothing to do in a consistent store, and writes nothing", async () => {
    await withPods("c1", "c2");
    const before = n.store.snapshot();
    const rep = await repair(n.store, KEEP);
    expect(rep).toMatchObject({ store: "memory", dryRun: false, quarantined: [], lostRecords: [] });
    expect(rep.ranges).toEqual([{ cidr: V4, records: 2, marked: [], unowned: [], released: 0, conflicts: [] }]);
    expect(n.store.snapshot()).toEqual(before);
  });

  it("marks again the bits the records hold", async () => {
    await withPods("c1", "c2", "c3");
    n.store.editRange(V4, (r) => {
      release(r, 1, 0);
      release(r, 3, 0);
    });
    expect(offsets()).toEqual([2]);
    const rep = await repair(n.store, KEEP);
    expect(rangeOf(rep)).toMatchObject({ records: 3, marked: ["10.0.2.2", "10.0.2.4"], unowned: [] });
    expect(offsets()).toEqual([1, 2, 3]);
  });

  it("dry run: reports the same, writes nothing", async () => {
    await withPods("c1");
    n.store.editRange(V4, (r) => release(r, 1, 0));
    const before = n.store.snapshot();
    const rep = await repair(n.store, { releaseUnowned: false, dryRun: true });
    expect(rep.dryRun).toBe(true);
    expect(rangeOf(rep).marked).toEqual(["10.0.2.2"]);
    expect(n.store.snapshot()).toEqual(before);
  });

  it("keeps bits no record holds, or releases them with releaseUnowned", async () => {
    await withPods("c1");
    n.store.setBits(V4, [9, 20]);
    let rep = await repair(n.store, KEEP);
    expect(rangeOf(rep)).toMatchObject({ records: 1, marked: [], unowned: ["10.0.2.10", "10.0.2.21"], released: 0 });
    expect(offsets()).toEqual([1, 9, 20]);
    rep = await repair(n.store, { releaseUnowned: true, dryRun: false });
    expect(rangeOf(rep)).toMatchObject({ unowned: ["10.0.2.10", "10.0.2.21"], released: 2 });
    expect(offsets()).toEqual([1]);
  });

  it("reports two records on one address as a conflict, keeping both", async () => {
    await withPods("c1");
    const rec = n.store.record(KEY("c1"))!;
    n.store.putRecord({ ...rec, containerID: "c9" });
    const rep = await repair(n.store, KEEP);
    expect(rangeOf(rep)).toMatchObject({ records: 1, conflicts: ["10.0.2.2"] });
    expect(n.store.records().map((r) => r.containerID)).toEqual(["c1", "c9"]);
    expect(offsets()).toEqual([1]);
  });

  it("quarantines a damaged range and rebuilds it from the records and what it still marks", async () => {
    await withPods("c1", "c2");
    n.store.setBits(V4, [30]);
    n.store.damageRange(V4, { salvaged: "bits" });
    expect((await n.fails("ADD", "c3")).code).toBe(103);
    const rep = await repair(n.store, KEEP);
    expect(rep.quarantined).toEqual([
      {
        file: "memory/range-10.0.2.0_24.json",
        reason: "store file memory/range-10.0.2.0_24.json is corrupt: its checksum does not match its content",
      },
    ]);
    expect(rangeOf(rep)).toMatchObject({ records: 2, marked: ["10.0.2.2", "10.0.2.3"], unowned: ["10.0.2.31"] });
    const snap = n.store.snapshot();
    expect(snap.damaged).toEqual([]);
    expect(snap.quarantined).toEqual(["memory/range-10.0.2.0_24.json"]);
    expect(snap.ranges[V4]!.offsets).toEqual([1, 2, 30]);
    // The store serves ADD again (the rebuilt range's scan starts over).
    expect((await n.add("c3")).ips[0].address).toBe("10.0.2.4/24");
  });

  it("quarantines a damaged record and names it as lost; its address stays taken as unowned", async () => {
    await withPods("c1", "c2");
    n.store.damageRecord(KEY("c2"));
    const rep = await repair(n.store, KEEP);
    expect(rep.lostRecords).toEqual(["podnet/c2/eth0"]);
    expect(rep.quarantined.map((q) => q.file)).toEqual(["memory/attachments/podnet/c2@eth0.json"]);
    expect(rangeOf(rep)).toMatchObject({ records: 1, unowned: ["10.0.2.3"] });
    const snap = n.store.snapshot();
    expect(snap.damaged).toEqual([]);
    expect(Object.keys(snap.records)).toEqual(["attachments/podnet/c1@eth0.json"]);
    expect(snap.ranges[V4]!.offsets).toEqual([1, 2]);
  });

  it("on a store that does not exist reports nothing and creates nothing", async () => {
    n = new InProcess(ciliumNode([V4]));
    const rep = await repair(n.store, KEEP);
    expect(rep.ranges).toEqual([]);
    expect(n.store.snapshot().exists).toBe(false);
  });
});
