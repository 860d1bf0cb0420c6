// DEL in process: dispatch() over makeHandlers(memoryDeps(store)).
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { InProcess } from "../helpers/in-process";

const DUAL = ciliumNode(["10.0.2.0/24", "fd00::200/120"]);
const KEY = (containerID: string, network = "podnet", ifname = "eth0") => ({ network, containerID, ifname });
const EMPTY = { exists: false, ranges: {}, records: {}, damaged: [], networks: [], quarantined: [] };

let n: InProcess;
afterEach(() => n.cleanup());

describe("DEL", () => {
  it("releases what the attachment holds and drops its record, leaving others alone", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    await n.add("c2");
    const r = await n.ok("DEL", "c1");
    expect(r.stderr).toContain("released 10.0.2.2, fd00::202");
    expect(n.store.record(KEY("c1"))).toBeUndefined();
    expect(n.store.record(KEY("c2"))).toBeDefined();
    const snap = n.store.snapshot();
    expect(snap.ranges["10.0.2.0/24"]).toMatchObject({ offsets: [2], allocated: 1 });
    expect(snap.ranges["fd00::200/120"]).toMatchObject({ offsets: [2], allocated: 1 });
  });

  it("with reuseCooldown 0 leaves no `released` entry; with a cool-down it remembers when", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    await n.add("c2");
    await n.ok("DEL", "c1");
    expect(n.store.snapshot().ranges["10.0.2.0/24"]!.released).toEqual({});
    const before = Date.now();
    await n.ok("DEL", "c2", { ipam: { reuseCooldown: 30 } });
    const released = n.store.snapshot().ranges["10.0.2.0/24"]!.released;
    expect(Object.keys(released)).toEqual(["2"]);
    expect(released[2]).toBeGreaterThanOrEqual(before);
  });

  it("twice: the second succeeds and changes nothing", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    await n.ok("DEL", "c1");
    const before = n.store.snapshot();
    const r = await n.ok("DEL", "c1");
    expect(r.stderr).toContain("nothing to release");
    expect(n.store.snapshot()).toEqual(before);
  });

  it("of an attachment never added succeeds, and creates no store", async () => {
    n = new InProcess(DUAL);
    await n.ok("DEL", "nobody");
    expect(n.store.snapshot()).toEqual(EMPTY);
    await n.add("c1");
    const before = n.store.snapshot();
    await n.ok("DEL", "nobody");
    await n.ok("DEL", "c1", { ifname: "net1" });
    expect(n.store.snapshot()).toEqual(before);
  });

  it("needs neither the node file nor a netns", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    n.removeNode();
    await n.ok("DEL", "c1", { netns: "" });
    expect(n.store.record(KEY("c1"))).toBeUndefined();
  });
});

describe("DEL under a renamed network", () => {
  it("finds the old network's record of the same container and interface when the netns matches", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    const r = await n.ok("DEL", "c1", { network: "podnet-renamed" });
    expect(r.stderr).toContain("released 10.0.2.2, fd00::202 (added under network podnet)");
    expect(n.store.record(KEY("c1"))).toBeUndefined();
    expect(n.store.snapshot().ranges["10.0.2.0/24"]!.offsets).toEqual([]);
  });

  it("matches a DEL that gives no netns", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    await n.ok("DEL", "c1", { network: "podnet-renamed", netns: "" });
    expect(n.store.record(KEY("c1"))).toBeUndefined();
  });

  it("leaves it when the netns differs, or when two other networks hold one", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    const before = n.store.snapshot();
    await n.ok("DEL", "c1", { network: "podnet-renamed", netns: "/var/run/netns/someone-else" });
    expect(n.store.snapshot()).toEqual(before);
    await n.add("c1", { network: "othernet" });
    const two = n.store.snapshot();
    await n.ok("DEL", "c1", { network: "podnet-renamed" });
    expect(n.store.snapshot()).toEqual(two);
  });
});

describe("DEL with damage in the store", () => {
  it("succeeds past another attachment's damaged record", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    await n.add("c2");
    n.store.damageRecord(KEY("c2"));
    await n.ok("DEL", "c1");
    expect(n.store.record(KEY("c1"))).toBeUndefined();
    expect(n.store.snapshot().damaged).toEqual(["memory/attachments/podnet/c2@eth0.json"]);
  });

  it("skips another network's damaged record of the same container while looking for a renamed one", async () => {
    n = new InProcess(DUAL);
    await n.add("c1", { network: "oldnet" });
    await n.add("c1", { network: "brokennet" });
    n.store.damageRecord(KEY("c1", "brokennet"));
    await n.ok("DEL", "c1", { network: "podnet" });
    expect(n.store.record(KEY("c1", "oldnet"))).toBeUndefined();
  });

  it("fails 103 when its own record is damaged, and changes nothing", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    n.store.damageRecord(KEY("c1"));
    const before = n.store.snapshot();
    const e = await n.fails("DEL", "c1");
    expect(e.code).toBe(103);
    expect(e.msg).toBe("store file memory/attachments/podnet/c1@eth0.json is corrupt: its checksum does not match its content");
    expect(e.details).toContain("podcidr-ipam repair");
    expect(n.store.snapshot()).toEqual(before);
  });

  it("drops the record but never rewrites a damaged range: its bit stays for repair", async () => {
    n = new InProcess(DUAL);
    await n.add("c1");
    n.store.damageRange("10.0.2.0/24", { salvaged: "bits" });
    const r = await n.ok("DEL", "c1");
    expect(r.stderr).toContain(
      "skipped a damaged store file, left for `podcidr-ipam repair`: store file memory/range-10.0.2.0_24.json is corrupt",
    );
    const snap = n.store.snapshot();
    expect(snap.records).toEqual({});
    expect(snap.damaged).toEqual(["memory/range-10.0.2.0_24.json"]);
    expect(snap.ranges["10.0.2.0/24"]).toBeUndefined();
    expect(snap.ranges["fd00::200/120"]!.offsets).toEqual([]);
  });
});
