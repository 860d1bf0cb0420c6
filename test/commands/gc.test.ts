// GC in process: dispatch() over makeHandlers(memoryDeps(store)).
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { InProcess } from "../helpers/in-process";
import { release } from "../../src/ipam/allocator.js";

const DUAL = ciliumNode(["10.0.2.0/24", "fd00::200/120"]);
const KEY = (containerID: string, network = "podnet", ifname = "eth0") => ({ network, containerID, ifname });
const att = (containerID: string, ifname = "eth0") => ({ containerID, ifname });

let n: InProcess;
afterEach(() => n.cleanup());

/** podnet: c1, c2, c3 (eth0) and c1/net1; othernet: c2. */
async function populated(): Promise<void> {
  n = new InProcess(DUAL);
  await n.add("c1");
  await n.add("c2");
  await n.add("c3");
  await n.add("c1", { ifname: "net1" });
  await n.add("c2", { network: "othernet" });
}

const held = (): string[] => n.store.records().map((r) => `${r.network}/${r.containerID}/${r.ifname}`);

describe("GC", () => {
  it("releases only this network's attachments that are not in the valid list", async () => {
    await populated();
    const r = await n.gc([att("c1"), att("c3")]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("released 2 attachment(s) of podnet not in the valid list");
    expect(held()).toEqual(["othernet/c2/eth0", "podnet/c1/eth0", "podnet/c3/eth0"]);
    // c2 held .3, c1/net1 held .5; othernet's c2 keeps .6.
    expect(n.store.snapshot().ranges["10.0.2.0/24"]!.offsets).toEqual([1, 3, 5]);
  });

  it("takes a null list as empty: every attachment of this network is released", async () => {
    await populated();
    expect((await n.gc(null)).code).toBe(0);
    expect(held()).toEqual(["othernet/c2/eth0"]);
    expect(n.store.snapshot().ranges["10.0.2.0/24"]!.offsets).toEqual([5]);
  });

  it("releases nothing when the config has no valid list", async () => {
    await populated();
    const before = n.store.snapshot();
    const r = await n.gc(undefined);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("nothing released");
    expect(n.store.snapshot()).toEqual(before);
  });

  it("accepts the older cni.dev/attachments key", async () => {
    await populated();
    await n.call("GC", "", { top: { "cni.dev/attachments": [att("c1"), att("c2"), att("c3")] } });
    expect(held()).toEqual(["othernet/c2/eth0", "podnet/c1/eth0", "podnet/c2/eth0", "podnet/c3/eth0"]);
  });

  it("marks again an address a record holds whose bit is clear, in any network", async () => {
    await populated();
    n.store.editRange("10.0.2.0/24", (r) => {
      release(r, 1, 0);
      release(r, 5, 0);
    });
    const r = await n.gc([att("c1"), att("c2"), att("c3"), att("c1", "net1")]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("re-marked 2 held address(es)");
    expect(n.store.snapshot().ranges["10.0.2.0/24"]!.offsets).toEqual([1, 2, 3, 4, 5]);
  });

  it("skips a damaged record, releases the others, then answers 103 naming it", async () => {
    await populated();
    n.store.damageRecord(KEY("c3"));
    const e = await n.fails("GC", "", { top: { "cni.dev/valid-attachments": [] } });
    expect(e.code).toBe(103);
    expect(e.msg).toBe("GC released 3 attachment(s) but skipped 1 damaged store file(s): memory/attachments/podnet/c3@eth0.json");
    expect(e.details).toBe(
      "store file memory/attachments/podnet/c3@eth0.json is corrupt: its checksum does not match its content. Run `podcidr-ipam repair` (with --dry-run first).",
    );
    expect(held()).toEqual(["othernet/c2/eth0"]);
    const snap = n.store.snapshot();
    expect(snap.damaged).toEqual(["memory/attachments/podnet/c3@eth0.json"]);
    // c3's address (.4) stays taken: its record could not be read.
    expect(snap.ranges["10.0.2.0/24"]!.offsets).toEqual([3, 5]);
  });

  it("never rewrites a damaged range while releasing from the others", async () => {
    await populated();
    n.store.damageRange("fd00::200/120");
    const e = await n.fails("GC", "", { top: { "cni.dev/valid-attachments": [att("c1")] } });
    expect(e.code).toBe(103);
    expect(e.msg).toBe("GC released 3 attachment(s) but skipped 1 damaged store file(s): memory/range-fd00--200_120.json");
    const snap = n.store.snapshot();
    expect(snap.damaged).toEqual(["memory/range-fd00--200_120.json"]);
    expect(snap.ranges["fd00::200/120"]).toBeUndefined();
    expect(snap.ranges["10.0.2.0/24"]!.offsets).toEqual([1, 5]);
  });

  it("on a store that does not exist succeeds and creates nothing", async () => {
    n = new InProcess(DUAL);
    expect((await n.gc([])).code).toBe(0);
    expect(n.store.snapshot().exists).toBe(false);
  });
});
