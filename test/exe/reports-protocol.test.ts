// The reproductions of the outside report on the CNI protocol surface
// (../shared/reports/adversarial-protocol-d173de3.md, issue #9) that
// test/exe/input-validation.test.ts does not already cover, each a test of its
// own, through the built executable. F1 (a repeated ADD through ptp) needs real
// namespaces and is in test/e2e/reports-ptp.test.ts. Covered elsewhere:
//   F4 (1.1.0 route fields), F5 (node addresses that do not parse), F6 (mistyped
//   CNI_ARGS keys, bad prefixes), F7 (empty, half-written, podCIDRs null), F8
//   (STATUS 50 for a damaged store), F9 (cniVersion null / a number, stdin size):
//   input-validation.test.ts.
// Each asserts what the report says should happen, so it fails on the build the
// report was written against (build it with `git worktree add /tmp/old d173de3` and
// run with PODCIDR_BIN=<that build>) and passes now.

import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { addOk, addrs, call, delOk } from "../helpers/exe";
import { ciliumNode } from "../helpers/node";
import { snapshot } from "../helpers/snapshot";
import { ROOT, Sandbox, cli, run } from "../helpers/plugin";
import { expectCniError, expectSilentSuccess } from "../helpers/protocol";
import { holdings, inPlaceNodeWrites, plantLock, releaseLock, sdir } from "../helpers/reports";
import { checkpointNow, damage, readStore } from "../helpers/store-state";

let sb: Sandbox;
const holders: ReturnType<typeof spawn>[] = [];
beforeEach(() => {
  sb = new Sandbox();
  sb.writeNode(ciliumNode(["10.0.2.0/24"]));
});
afterEach(() => {
  for (const h of holders.splice(0)) h.kill("SIGKILL");
  sb.cleanup();
});

function gc(valid: unknown, extra: Record<string, unknown> = {}): ReturnType<typeof run> {
  return run({ command: "GC", path: "/x", stdin: { ...sb.conf(), "cni.dev/valid-attachments": valid, ...extra } });
}

function first(res: any): string {
  return addrs(res)[0]!;
}

describe("F2: GC with a null list", () => {
  it('protocol F2: GC with "cni.dev/valid-attachments": null (and "cni.dev/attachments": null) is an empty list: it succeeds and releases the stale attachment', async () => {
    await addOk(sb, "c1");
    const r = await gc(null, { "cni.dev/attachments": null });
    expectSilentSuccess(r);
    const h = await holdings(sb);
    expect(h.byContainer.has("c1")).toBe(false);
    expect(h.unowned).toEqual([]);
    expect(first(await addOk(sb, "c2"))).toBe("10.0.2.3");
  });
});

describe("F3: GC and DEL past a damaged store file (best effort)", () => {
  it("protocol F3: GC skips a damaged record, releases the other stale attachments, and reports the damaged file at the end", async () => {
    for (const id of ["g1", "g2", "g3"]) await addOk(sb, id);
    await checkpointNow(sb.dataDir);
    const damaged = damage(sb.dataDir, { record: { containerID: "g3" } });
    const r = await gc([{ containerID: "g1", ifname: "eth0" }]);
    // g2 (stale, healthy) is released; g1 (valid) stays; g3 is left for repair.
    const e = expectCniError(r, 103, "released 1 attachment", "record of podnet/g3/eth0");
    expect(e.details).toContain("repair");
    const after = await readStore(sb.dataDir);
    expect(after.records.map((x) => x.containerID)).toEqual(["g1"]);
    expect(after.damaged.map((d) => d.file)).toEqual([`${damaged.path}: record of podnet/g3/eth0`]);
    // g2's 10.0.2.3 is free again; g3's 10.0.2.4 stays taken (it may be live).
    const h = await holdings(sb);
    expect(h.byAddress.has("10.0.2.3")).toBe(false);
    expect(h.unowned).toEqual(["10.0.2.4"]);
  });

  it("protocol F3: DEL with a damaged range file drops the record and succeeds, leaving the bitmap for repair", async () => {
    for (const id of ["g1", "g2"]) await addOk(sb, id);
    await checkpointNow(sb.dataDir);
    const s = damage(sb.dataDir, { range: "10.0.2.0/24" });
    const damaged = readFileSync(s.path).subarray(s.start, s.start + s.length);
    const r = await call(sb, "DEL", "g1");
    expectSilentSuccess(r);
    expect((await readStore(sb.dataDir)).records.map((x) => x.containerID)).toEqual(["g2"]);
    // The damaged bitmap is left as it was, for repair.
    expect(
      readFileSync(s.path)
        .subarray(s.start, s.start + s.length)
        .equals(damaged),
    ).toBe(true);
    expect(r.stderr).toContain("repair");
    // A second DEL (the runtime's retry) succeeds too.
    expectSilentSuccess(await call(sb, "DEL", "g1"));
  });
});

describe("F7: the README's install snippet", () => {
  it("protocol F7: README's install snippet does not write the node file in place (kubectl ... > temp && mv)", () => {
    // The README is not part of the build: PODCIDR_README=<file> checks another one (git show d173de3:README.md).
    const readme = readFileSync(process.env.PODCIDR_README ?? join(ROOT, "README.md"), "utf8");
    expect(inPlaceNodeWrites(readme)).toEqual([]);
  });
});

describe("F8: STATUS and a held lock", () => {
  it("protocol F8: STATUS with the store lock held answers at once from an unlocked read, instead of timing out with 11", async () => {
    await addOk(sb, "c1");
    const holder = spawn("sleep", ["600"], { stdio: "ignore" });
    holders.push(holder);
    plantLock(sdir(sb), holder.pid!);
    const t0 = Date.now();
    const r = await run({ command: "STATUS", stdin: sb.conf("1.1.0", { lockTimeout: 2 }) });
    const took = Date.now() - t0;
    expectSilentSuccess(r);
    expect(took).toBeLessThan(1900);
    // And once the lock is free again, ADD goes on as usual.
    releaseLock(sdir(sb));
    expect(first(await addOk(sb, "c2"))).toBe("10.0.2.3");
  });
});

describe("confirmed known issue: several networks and data dirs over one node file", () => {
  it("known issue: two networks reading one node file hand out distinct addresses", async () => {
    const a = await addOk(sb, "c1");
    const b = await addOk(sb, "c2", { top: { name: "podnet2" } });
    expect(first(a)).toBe("10.0.2.2");
    expect(first(b)).toBe("10.0.2.3");
    // GC of one network releases only its own attachments.
    expectSilentSuccess(await gc([]));
    const c = await addOk(sb, "c3", { top: { name: "podnet2" } });
    expect(first(c)).not.toBe(first(b));
  });

  it("known issue: a second dataDir over the same node file is refused with code 7 while the first holds addresses", async () => {
    await addOk(sb, "c1");
    const other = join(sb.dir, "data2");
    const before = snapshot(sb.dataDir);
    const r = await call(sb, "ADD", "c3", { ipam: { dataDir: other } });
    const e = expectCniError(r, 7, "podCIDR 10.0.2.0/24 is served by another store");
    expect(e.msg).toContain(join(sb.dataDir, "_store"));
    expect(e.msg).toContain(join(other, "_store"));
    expect(e.details).toContain("same ipam.dataDir");
    expect(snapshot(sb.dataDir)).toEqual(before);
    // Once the first store holds nothing there, the second may take the podCIDR over.
    await delOk(sb, "c1");
    expect(first(await addOk(sb, "c3", { ipam: { dataDir: other } }))).toMatch(/^10\.0\.2\./);
    expectCniError(await call(sb, "ADD", "c4"), 7, "is served by another store");
  });

  it("a second dataDir refused on one podCIDR claims none of the others (the model test's step 2092: a claim was left on the free one)", async () => {
    // The first store holds an address only in the IPv6 podCIDR; then the node gains an IPv4 one nobody claims yet.
    sb.writeNode(ciliumNode(["fd00::200/120"]));
    await addOk(sb, "c1");
    sb.writeNode(ciliumNode(["10.0.6.0/28", "fd00::200/120"]));
    const claims = `${sb.nodeFile}.claims`;
    const before = snapshot(claims);
    expectCniError(
      await call(sb, "ADD", "c3", { ipam: { dataDir: join(sb.dir, "data2") } }),
      7,
      "podCIDR fd00::200/120 is served by another store",
    );
    expect(snapshot(claims)).toEqual(before);
    // The first store then claims the IPv4 podCIDR itself with its next ADD.
    expect(addrs(await addOk(sb, "c4"))).toHaveLength(2);
    expect(existsSync(join(claims, "range-10.0.6.0_28.json"))).toBe(true);
  });

  it("known issue: STATUS of a config whose dataDir is refused (a second store over the podCIDR) answers 50, as ADD would fail", async () => {
    await addOk(sb, "c1");
    const other = join(sb.dir, "data2");
    expectCniError(await call(sb, "ADD", "c3", { ipam: { dataDir: other } }), 7, "is served by another store");
    expectCniError(await run({ command: "STATUS", stdin: sb.conf("1.1.0", { dataDir: other }) }), 50, "is served by another store");
  });

  it("known issue: a Multus-like secondary network that copies the ipam block gives the same container a distinct address on net1", async () => {
    const eth0 = await addOk(sb, "c1");
    const net1 = await addOk(sb, "c1", { ifname: "net1", top: { name: "secondary" } });
    expect(first(net1)).not.toBe(first(eth0));
    const other = await addOk(sb, "c2");
    expect(new Set([first(eth0), first(net1), first(other)]).size).toBe(3);
    // Deleting one attachment leaves the other.
    await delOk(sb, "c1", { ifname: "net1", top: { name: "secondary" } });
    expect((await holdings(sb)).byAddress.get(first(eth0))).toEqual(["podnet/c1/eth0"]);
  });

  it("known issue: a renamed network keeps its pods' addresses until they are DELed under the new name", async () => {
    const old = await addOk(sb, "c1"); // network podnet
    const renamed = { top: { name: "podnet-v2" } };
    const fresh = await addOk(sb, "c2", renamed);
    expect(first(fresh)).not.toBe(first(old));
    // The runtime tears c1 down with the config it has now, which carries the new name.
    await delOk(sb, "c1", renamed);
    const h = await holdings(sb);
    expect(h.byAddress.has(first(old))).toBe(false);
    expect(h.unowned).toEqual([]);
    // c1's address is free: a request for it is granted.
    expect(first(await addOk(sb, "c3", { ...renamed, args: `IP=${first(old)}` }))).toBe(first(old));
  });

  it("known issue: status shows every network that shares the store, so a duplicate would be visible", async () => {
    await addOk(sb, "c1");
    await addOk(sb, "c2", { top: { name: "podnet2" } });
    const path = join(sb.dir, "podnet.conf");
    writeFileSync(path, JSON.stringify(sb.conf()));
    const r = await cli(["status", "--all-addresses", "--conf", path]);
    // The other network's pod is listed at all (on the old build each network had its own store)...
    expect(r.stdout).toContain("c2/eth0");
    // ...with the network it belongs to.
    expect(r.stdout).toMatch(/10\.0\.2\.2 .*podnet c1\/eth0/);
    expect(r.stdout).toMatch(/10\.0\.2\.3 .*podnet2 c2\/eth0/);
  });
});
