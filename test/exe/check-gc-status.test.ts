// CHECK, GC and STATUS through the executable, and the `status` CLI.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FIXTURES, Sandbox, cli, run } from "../helpers/plugin";
import { addOk, addrs, delOk, rangeOf, statusArgs, statusJson } from "../helpers/exe";
import { checkpointNow, containers, damage, readStore } from "../helpers/store-state";
import { ciliumNode } from "../helpers/node";
import { snapshot } from "../helpers/snapshot";

let sb: Sandbox;
function sandbox(fixture?: string): Sandbox {
  sb = new Sandbox(fixture);
  return sb;
}
afterEach(() => sb?.cleanup());

function check(containerID: string, prevResult: unknown, o: { version?: string; ifname?: string } = {}) {
  return run({ command: "CHECK", containerID, ifname: o.ifname ?? "eth0", stdin: { ...sb.conf(o.version ?? "1.1.0"), prevResult } });
}

function gc(extra: Record<string, unknown>, version = "1.1.0") {
  return run({
    command: "GC",
    containerID: "",
    ifname: "",
    env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined },
    stdin: { ...sb.conf(version), ...extra },
  });
}

function status(version = "1.1.0") {
  return run({
    command: "STATUS",
    env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined },
    stdin: sb.conf(version),
  });
}

/** The network's attachments ("<containerID>@<ifname>"), read through the store's code. */
function attachmentFiles(): Promise<string[]> {
  return containers(sb.dataDir, "podnet");
}

describe("CHECK", () => {
  it("passes right after ADD with prevResult = the ADD result (1.1.0)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a");
    const r = await check("a", res);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe("");
  });

  it("passes right after ADD with prevResult = the ADD result (0.4.0)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a", { version: "0.4.0" });
    expect(res).toEqual({
      cniVersion: "0.4.0",
      ips: [
        { version: "4", address: "10.0.2.2/24", gateway: "10.0.2.1" },
        { version: "6", address: "fd00::202/120", gateway: "fd00::201" },
      ],
      dns: {},
    });
    const r = await check("a", res, { version: "0.4.0" });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe("");
  });

  it("fails with 104 for an unknown attachment", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a");
    const r = await check("b", res);
    expect(r.code).not.toBe(0);
    expect(r.json.code).toBe(104);
    expect(r.json.msg).toBe("podcidr-ipam holds no address for podnet/b/eth0");
  });

  it("fails with 104 for another ifname of a known container", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a");
    const r = await check("a", res, { ifname: "net1" });
    expect(r.json?.code).toBe(104);
    expect(r.json.msg).toBe("podcidr-ipam holds no address for podnet/a/net1");
  });

  it("fails with 104 for an attachment released by DEL", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a");
    await delOk(sb, "a");
    expect((await check("a", res)).json?.code).toBe(104);
  });

  it("fails with 104 when the store does not exist", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const r = await check("a", { cniVersion: "1.1.0", ips: [{ address: "10.0.2.2/24" }] });
    expect(r.json?.code).toBe(104);
  });

  it("fails with 104 when prevResult lists an address in our CIDRs that the attachment does not hold", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a");
    await addOk(sb, "b"); // holds 10.0.2.3
    for (const bad of ["10.0.2.3/24", "10.0.2.99/24", "fd00::2aa/120"]) {
      const r = await check("a", { ...res, ips: [...res.ips, { address: bad }] });
      expect(r.json?.code, bad).toBe(104);
      expect(r.json.msg).toBe(`podnet/a/eth0 does not hold ${bad.replace(/\/\d+$/, "")}`);
      expect(r.json.details).toBe("it holds 10.0.2.2, fd00::202");
    }
  });

  it("fails with 104 for a 0.4.0 prevResult naming another address", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a", { version: "0.4.0" });
    const r = await check(
      "a",
      { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.2.7/24", gateway: "10.0.2.1" }], dns: {} },
      { version: "0.4.0" },
    );
    expect(r.json?.code).toBe(104);
  });

  it("ignores prevResult addresses outside our ranges", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const res = await addOk(sb, "a");
    const prev = { ...res, ips: [...res.ips, { address: "192.168.1.5/24", gateway: "192.168.1.1" }, { address: "2001:db8::5/64" }] };
    const r = await check("a", prev);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe("");
  });
});

describe("GC", () => {
  async function three(): Promise<void> {
    await addOk(sb, "a");
    await addOk(sb, "b");
    await addOk(sb, "a", { ifname: "net1" });
    expect(await attachmentFiles()).toEqual(["a@eth0", "a@net1", "b@eth0"]);
  }

  it("releases every attachment not in cni.dev/valid-attachments", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await three();
    const r = await gc({ "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }] });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(await attachmentFiles()).toEqual(["a@eth0"]);
    const st = await statusJson(sb);
    expect(rangeOf(st, "10.0.2.0/24").allocated).toBe(1);
    expect(rangeOf(st, "fd00::200/120").allocated).toBe(1);
    // a/eth0 still holds its addresses (an ADD into a new netns returns them).
    expect(addrs(await addOk(sb, "a", { netns: "/var/run/netns/a2" }))).toEqual(["10.0.2.2", "fd00::202"]);
  });

  it("accepts the older cni.dev/attachments key", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await three();
    const r = await gc({ "cni.dev/attachments": [{ containerID: "b", ifname: "eth0" }] });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await attachmentFiles()).toEqual(["b@eth0"]);
    expect(rangeOf(await statusJson(sb), "10.0.2.0/24").allocated).toBe(1);
  });

  it("releases nothing when neither key is present", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await three();
    const before = snapshot(sb.dataDir);
    const r = await gc({});
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(snapshot(sb.dataDir)).toEqual(before);
    expect(rangeOf(await statusJson(sb), "10.0.2.0/24").allocated).toBe(3);
  });

  it("releases everything for an empty list", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await three();
    const r = await gc({ "cni.dev/valid-attachments": [] });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await attachmentFiles()).toEqual([]);
    const st = await statusJson(sb);
    expect(rangeOf(st, "10.0.2.0/24").allocated).toBe(0);
    expect(rangeOf(st, "fd00::200/120").allocated).toBe(0);
  });

  it("reads a null list (libcni's nil slice, CRI-O's drained network) as an empty one, under either key", async () => {
    for (const key of ["cni.dev/valid-attachments", "cni.dev/attachments"]) {
      sandbox("ciliumnode-cluster-pool.json");
      await three();
      const r = await gc({ [key]: null, ...(key === "cni.dev/valid-attachments" ? { "cni.dev/attachments": null } : {}) });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(await attachmentFiles()).toEqual([]);
      sb.cleanup();
    }
  });

  it("releases only its own network's attachments: another network sharing the store keeps its pods", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await three();
    const other = await addOk(sb, "o", { top: { name: "othernet" } });
    const r = await gc({ "cni.dev/valid-attachments": [] });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await attachmentFiles()).toEqual([]);
    expect(await containers(sb.dataDir, "othernet")).toEqual(["o@eth0"]);
    const st = await statusJson(sb);
    expect(
      rangeOf(st, "10.0.2.0/24")
        .addresses.filter((a: any) => a.owner)
        .map((a: any) => [a.ip, a.owner.network]),
    ).toEqual([[addrs(other)[0], "othernet"]]);
  });

  it("releases what it can past a damaged record of its network, then reports the damage (103)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await three();
    await checkpointNow(sb.dataDir);
    damage(sb.dataDir, { record: { containerID: "a", ifname: "net1" } });
    const r = await gc({ "cni.dev/valid-attachments": [] });
    expect(r.json?.code, r.stdout).toBe(103);
    expect(r.json.msg).toContain("GC released 2 attachment(s) but skipped 1 damaged store file(s)");
    // The damaged record is left for repair, not released.
    expect(await attachmentFiles()).toEqual([]);
    expect((await readStore(sb.dataDir)).damaged.map((d) => d.file.replace(/^.*: /, ""))).toEqual(["record of podnet/a/net1"]);
  });

  it("succeeds when the store does not exist", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const r = await gc({ "cni.dev/valid-attachments": [] });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe("");
  });

  it("is refused for a config older than 1.1.0 (code 1)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await three();
    const r = await gc({ "cni.dev/valid-attachments": [] }, "1.0.0");
    expect(r.json?.code).toBe(1);
    expect(await attachmentFiles()).toEqual(["a@eth0", "a@net1", "b@eth0"]);
  });
});

describe("STATUS", () => {
  it("exits 0 with empty stdout when the CIDRs have free addresses", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    const r = await status();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe("");
  });

  it("exits 0 before any ADD (no store yet)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    const r = await status();
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it("fails with 50 when the node file is missing", async () => {
    sandbox();
    const r = await status();
    expect(r.code).not.toBe(0);
    expect(r.json?.code).toBe(50);
    expect(r.json.msg).toBe(`node file ${sb.nodeFile} does not exist`);
  });

  it("fails with 50 when the node file lists no podCIDRs", async () => {
    sandbox("ciliumnode-pending.json");
    const r = await status();
    expect(r.json?.code).toBe(50);
    expect(r.json.msg).toBe(`node file ${sb.nodeFile} lists no podCIDRs in spec.ipam.podCIDRs`);
    expect(r.json.details).toContain("allocator clusterPoolIPv4PodCIDRList exhausted");
  });

  it("fails with 50 when the node file is invalid", async () => {
    sandbox();
    sb.writeNode("kind: CiliumNode\n");
    const r = await status();
    expect(r.json?.code).toBe(50);
    expect(r.json.msg).toContain("is not JSON");
  });

  it("fails with 50 when the pool is full, and passes again after a DEL", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.30.0/30", "fd00::/120"]));
    await addOk(sb, "a");
    const r = await status();
    expect(r.json?.code).toBe(50);
    expect(r.json.msg).toBe("no free address: every IPv4 podCIDR is full (10.0.30.0/30, fd00::/120)");
    await delOk(sb, "a");
    expect((await status()).code).toBe(0);
  });

  it("is refused for a config older than 1.1.0 (code 1)", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    expect((await status("1.0.0")).json?.code).toBe(1);
  });
});

describe("status CLI", () => {
  it("lists each address with its owner pod", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "ctr-nginx", { pod: ["default", "nginx"] });
    await addOk(sb, "ctr-dns", { pod: ["kube-system", "coredns-abc"] });
    await addOk(sb, "ctr-bare");
    const r = await cli(["status", "--all-addresses", ...statusArgs(sb)]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toContain("IPv4: 6/254 allocated from 10.0.2.0/24");
    expect(lines).toContain("IPv6: 4/255 allocated from fd00::200/120");
    expect(r.stdout).toContain("  10.0.2.2 (default/nginx) podnet ctr-nginx/eth0 since ");
    expect(r.stdout).toContain("  10.0.2.3 (kube-system/coredns-abc) podnet ctr-dns/eth0 since ");
    expect(r.stdout).toContain("  fd00::202 (default/nginx) podnet ctr-nginx/eth0 since ");
    expect(r.stdout).toContain("  10.0.2.4 (no pod name) podnet ctr-bare/eth0 since ");
    expect(lines).toContain("  10.0.2.1 (gateway)");
    expect(lines).toContain("  10.0.2.48 (health)");
    expect(lines).toContain("  10.0.2.236 (router)");
  });

  it("counts pods plus reserved addresses: IPv4: 4/254 after one pod", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    const r = await cli(["status", ...statusArgs(sb)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split("\n")).toContain("IPv4: 4/254 allocated from 10.0.2.0/24");
    expect(r.stdout).not.toContain("10.0.2.2 "); // no per-address lines without --all-addresses
  });

  it("--json output parses and carries owners", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "ctr-nginx", { pod: ["default", "nginx"] });
    const r = await cli(["status", "--json", "--all-addresses", ...statusArgs(sb)]);
    expect(r.code, r.stderr).toBe(0);
    const st = JSON.parse(r.stdout);
    expect(st.network).toBe("podnet");
    expect(st.nodeFile).toBe(sb.nodeFile);
    expect(st.node).toEqual({ kind: "CiliumNode", name: "my-cluster-worker2", field: "spec.ipam.podCIDRs" });
    expect(st.problems).toEqual([]);
    const v4 = rangeOf(st, "10.0.2.0/24");
    expect(v4).toMatchObject({ family: 4, orphaned: false, size: 254, used: 4, allocated: 1, free: 250 });
    const line = v4.addresses.find((a: any) => a.ip === "10.0.2.2");
    expect(line.owner).toMatchObject({ containerID: "ctr-nginx", ifname: "eth0", namespace: "default", pod: "nginx" });
    expect(rangeOf(st, "fd00::200/120")).toMatchObject({ family: 6, size: 255, allocated: 1, free: 253 });
  });

  it("--conf with a conflist", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "ctr-nginx", { pod: ["default", "nginx"] });
    const conflist = JSON.parse(readFileSync(join(FIXTURES, "10-podnet.conflist"), "utf8"));
    conflist.plugins[0].ipam.nodeFile = sb.nodeFile;
    conflist.plugins[0].ipam.dataDir = sb.dataDir;
    const confPath = join(sb.dir, "10-podnet.conflist");
    writeFileSync(confPath, JSON.stringify(conflist, null, 2));
    const r = await cli(["status", "--all-addresses", "--conf", confPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Store ${join(sb.dataDir, "_store")} (network podnet and every network sharing it)`);
    expect(r.stdout.split("\n")).toContain("IPv4: 4/254 allocated from 10.0.2.0/24");
    expect(r.stdout).toContain("  10.0.2.2 (default/nginx) podnet ctr-nginx/eth0");
    const j = await cli(["status", "--json", "--conf", confPath]);
    expect(j.json?.network).toBe("podnet");
    expect(rangeOf(j.json, "10.0.2.0/24").allocated).toBe(1);
  });

  it("exits 1 and reports the problem when the node file is missing", async () => {
    sandbox("ciliumnode-cluster-pool.json");
    await addOk(sb, "a");
    rmSync(sb.nodeFile);
    const r = await cli(["status", ...statusArgs(sb)]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`Problem: node file ${sb.nodeFile} does not exist`);
  });

  it("exits 1 and reports a full pool", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.30.0/30"]));
    await addOk(sb, "a");
    const r = await cli(["status", ...statusArgs(sb)]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("Problem: every IPv4 podCIDR is full");
  });

  it("marks a range the node file no longer lists as orphaned", async () => {
    sandbox();
    sb.writeNode(ciliumNode(["10.0.9.0/29", "10.0.10.0/29"]));
    await addOk(sb, "a", { args: "IP=10.0.10.3", pod: ["default", "old"] });
    sb.writeNode(ciliumNode(["10.0.9.0/29"]));
    const r = await cli(["status", "--all-addresses", ...statusArgs(sb)]);
    expect(r.code).toBe(1);
    expect(r.stdout.split("\n")).toContain("IPv4: 1/6 allocated from 10.0.10.0/29 (orphaned: no longer in the node file)");
    expect(r.stdout).toContain("  10.0.10.3 (default/old) podnet a/eth0");
    expect(r.stdout).toContain("Problem: 10.0.10.0/29 is no longer in the node file but 1 address(es) in it are still held");
  });
});
