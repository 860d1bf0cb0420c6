// The node's own addresses (a CiliumNode's spec.addresses InternalIP/ExternalIP, a v1
// Node's status.addresses) through the executable: never handed to a pod, and a podCIDR
// that contains one is reported by STATUS (code 50), by `status`, with the fix.
import { afterEach, describe, expect, it } from "vitest";
import { addErr, addOk, addrs, call, delOk, statusArgs, statusJson } from "../helpers/exe";
import { Sandbox, cli, run } from "../helpers/plugin";
import { snapshot } from "../helpers/snapshot";

let sb: Sandbox;
afterEach(() => sb?.cleanup());

const ciliumNode = (podCIDRs: string[], addresses: { ip: string; type: string }[]) => ({
  apiVersion: "cilium.io/v2",
  kind: "CiliumNode",
  metadata: { name: "worker-1" },
  spec: { addresses, ipam: { podCIDRs } },
});

const v1Node = (podCIDRs: string[], addresses: { address: string; type: string }[]) => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: { name: "worker-1" },
  spec: { podCIDRs },
  status: { addresses },
});

function status() {
  return run({
    command: "STATUS",
    env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined },
    stdin: sb.conf("1.1.0"),
  });
}

describe("the node's own addresses", () => {
  it("are never handed out: a /29 over the node's InternalIP and ExternalIP fills around them", async () => {
    sb = new Sandbox();
    sb.writeNode(
      ciliumNode(
        ["10.0.40.0/29"],
        [
          { ip: "10.0.40.3", type: "InternalIP" },
          { ip: "10.0.40.5", type: "ExternalIP" },
          { ip: "10.0.40.6", type: "CiliumInternalIP" },
        ],
      ),
    );
    // .1 gateway, .3 and .5 the node's, .6 Cilium's router: .2 and .4 are all a pod may get.
    const got = [];
    for (const id of ["a", "b"]) got.push(...addrs(await addOk(sb, id)));
    expect(got).toEqual(["10.0.40.2", "10.0.40.4"]);
    const before = snapshot(sb.dataDir);
    const full = await addErr(sb, "c");
    expect(full.code).toBe(100);
    expect(snapshot(sb.dataDir)).toEqual(before);
    // A request for the node's own address is refused, saying whose it is.
    await delOk(sb, "b");
    const asked = await addErr(sb, "d", { args: "IP=10.0.40.3" });
    expect(asked.code).toBe(101);
    expect(asked.msg).toBe("requested address 10.0.40.3 is not available: it is reserved in 10.0.40.0/29 (node)");
  });

  it("in a CiliumNode's podCIDR: STATUS answers 50 naming the podCIDR, the address and its field, with the fix; ADD still works", async () => {
    sb = new Sandbox();
    sb.writeNode(
      ciliumNode(
        ["10.0.0.0/8", "fd00::/104"],
        [
          { ip: "10.0.7.12", type: "InternalIP" },
          { ip: "192.0.2.7", type: "ExternalIP" },
        ],
      ),
    );
    const r = await status();
    expect(r.code).not.toBe(0);
    expect(r.json).toMatchObject({
      code: 50,
      msg: "podCIDR 10.0.0.0/8 contains the node's own address 10.0.7.12 (spec.addresses[0].ip (InternalIP))",
    });
    expect(r.json.details).toContain("clusterPoolIPv4PodCIDRList");
    expect(r.stderr).not.toContain("\n    at ");
    // Pods still get addresses (none of them the node's).
    const res = await addOk(sb, "a");
    expect(addrs(res)).toEqual(["10.0.0.2", "fd00::2"]);
  });

  it("in a v1 Node's podCIDR (status.addresses): STATUS answers 50 for every such address; Hostname entries are not addresses", async () => {
    sb = new Sandbox();
    sb.writeNode(
      v1Node(
        ["10.244.0.0/16", "fd00:10:244::/64"],
        [
          { address: "10.244.9.9", type: "InternalIP" },
          { address: "fd00:10:244::9", type: "InternalIP" },
          { address: "worker-1", type: "Hostname" },
        ],
      ),
    );
    const r = await status();
    expect(r.json).toMatchObject({
      code: 50,
      msg:
        "podCIDR 10.244.0.0/16 contains the node's own address 10.244.9.9 (status.addresses[0].address (InternalIP)); " +
        "podCIDR fd00:10:244::/64 contains the node's own address fd00:10:244::9 (status.addresses[1].address (InternalIP))",
    });
    expect(r.json.details).toContain("--cluster-cidr");
  });

  it("outside every podCIDR: STATUS is ready", async () => {
    sb = new Sandbox();
    sb.writeNode(v1Node(["10.244.2.0/24"], [{ address: "172.18.0.4", type: "InternalIP" }]));
    const r = await status();
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it("a node address that is not an address is refused (102) by ADD and STATUS, and the store is unchanged", async () => {
    sb = new Sandbox();
    sb.writeNode(v1Node(["10.244.2.0/24"], [{ address: "10.244.2.300", type: "InternalIP" }]));
    const before = snapshot(sb.dataDir);
    const e = await addErr(sb, "a");
    expect(e).toMatchObject({
      code: 102,
      msg: expect.stringContaining('status.addresses[0].address (InternalIP) "10.244.2.300" is not an IP address'),
    });
    expect(e.details).toContain("node's own address is never handed out");
    expect(snapshot(sb.dataDir)).toEqual(before);
    expect((await status()).json?.code).toBe(50);
    expect((await call(sb, "DEL", "a")).code).toBe(0);
  });

  it("`status` reports the conflict and exits 1; `--all-addresses` shows the address as the node's", async () => {
    sb = new Sandbox();
    sb.writeNode(ciliumNode(["10.0.40.0/28"], [{ ip: "10.0.40.9", type: "InternalIP" }]));
    await addOk(sb, "a");
    const text = await cli(["status", ...statusArgs(sb), "--all-addresses"]);
    expect(text.code).toBe(1);
    expect(text.stdout + text.stderr).toContain("podCIDR 10.0.40.0/28 contains the node's own address 10.0.40.9");
    expect(text.stdout).toMatch(/10\.0\.40\.9\s+\(node\)/);
    expect((await statusJson(sb)).problems).toEqual([expect.stringContaining("contains the node's own address 10.0.40.9")]);
  });
});
