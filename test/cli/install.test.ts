// `podcidr-ipam install --node-name`: one ConfigMap conflist for every node, with the
// node's own name written into ipam.nodeName on the way to /etc/cni/net.d (the plugin
// then refuses a node file of another node with 102).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { install } from "../../src/cli/install";

const CONFLIST = {
  cniVersion: "1.0.0",
  name: "podnet",
  plugins: [
    { type: "bridge", bridge: "cni0", ipam: { type: "podcidr-ipam", nodeFile: "/var/lib/podcidr-ipam/node.json" } },
    { type: "portmap", capabilities: { portMappings: true } },
  ],
};

let dir: string;
let self: string;
let src: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "podcidr-install-"));
  self = join(dir, "self");
  writeFileSync(self, "#!/bin/sh\necho fake executable\n");
  mkdirSync(join(dir, "cm"));
  src = join(dir, "cm", "10-podnet.conflist");
  writeFileSync(src, `${JSON.stringify(CONFLIST)}\n`);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string | undefined> = {}): { code: number; out: string; err: string } {
  let out = "";
  let err = "";
  const code = install(
    ["--cni-bin-dir", join(dir, "bin"), "--cni-conf-dir", join(dir, "net.d"), ...args],
    (s) => {
      out += s;
    },
    (s) => {
      err += s;
    },
    self,
    env,
  );
  return { code, out, err };
}

const installed = (): any => JSON.parse(readFileSync(join(dir, "net.d", "10-podnet.conflist"), "utf8"));

describe("install --node-name", () => {
  it("writes ipam.nodeName into the podcidr-ipam plugin and leaves everything else as it was", () => {
    const r = run(["--cni-conf", src, "--node-name", "node-a.example"]);
    expect(r.code, r.err).toBe(0);
    const conf = installed();
    expect(conf.plugins[0].ipam.nodeName).toBe("node-a.example");
    const rest = structuredClone(conf);
    delete rest.plugins[0].ipam.nodeName;
    expect(rest).toEqual(CONFLIST);
    expect(conf.plugins[1]).toEqual(CONFLIST.plugins[1]);
  });

  it("a single-plugin .conf gets it too", () => {
    const one = join(dir, "cm", "05-one.conf");
    writeFileSync(one, JSON.stringify({ cniVersion: "0.4.0", name: "one", type: "ptp", ipam: { type: "podcidr-ipam" } }));
    expect(run(["--cni-conf", one, "--node-name", "n1"]).code).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, "net.d", "05-one.conf"), "utf8")).ipam).toEqual({ type: "podcidr-ipam", nodeName: "n1" });
  });

  it("takes $NODE_NAME when the flag is absent; the flag wins over it", () => {
    expect(run(["--cni-conf", src], { NODE_NAME: "from-env" }).code).toBe(0);
    expect(installed().plugins[0].ipam.nodeName).toBe("from-env");
    expect(run(["--cni-conf", src, "--node-name", "from-flag"], { NODE_NAME: "from-env" }).code).toBe(0);
    expect(installed().plugins[0].ipam.nodeName).toBe("from-flag");
  });

  it("replaces a nodeName already in the conflist, and says so", () => {
    const c = structuredClone(CONFLIST) as any;
    c.plugins[0].ipam.nodeName = "old-node";
    writeFileSync(src, JSON.stringify(c));
    const r = run(["--cni-conf", src, "--node-name", "new-node"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('ipam.nodeName "old-node" replaced by "new-node"');
    expect(installed().plugins[0].ipam.nodeName).toBe("new-node");
  });

  it("without a node name the conflist is copied byte for byte", () => {
    expect(run(["--cni-conf", src]).code).toBe(0);
    expect(readFileSync(join(dir, "net.d", "10-podnet.conflist"), "utf8")).toBe(readFileSync(src, "utf8"));
  });

  it("is idempotent: a second install with the same name changes nothing", () => {
    expect(run(["--cni-conf", src, "--node-name", "n1"]).code).toBe(0);
    const r = run(["--cni-conf", src, "--node-name", "n1"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`${join(dir, "net.d", "10-podnet.conflist")}: up to date`);
  });

  it("uninstall removes the conflist it wrote with the name in it", () => {
    expect(run(["--cni-conf", src, "--node-name", "n1"]).code).toBe(0);
    const r = run(["--uninstall"]);
    expect(r.code).toBe(0);
    expect(existsSync(join(dir, "net.d", "10-podnet.conflist"))).toBe(false);
    expect(existsSync(join(dir, "bin", "podcidr-ipam"))).toBe(false);
  });

  it("refuses a name that is not a Kubernetes node name, and installs nothing", () => {
    const r = run(["--cni-conf", src, "--node-name", "Node_A"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("--node-name (or $NODE_NAME): must be a Kubernetes node name");
    expect(r.err).toContain('"Node_A"');
    expect(existsSync(join(dir, "net.d", "10-podnet.conflist"))).toBe(false);
    expect(existsSync(join(dir, "bin", "podcidr-ipam"))).toBe(false);
  });

  it("a conflist without podcidr-ipam is refused before the executable is copied", () => {
    writeFileSync(src, JSON.stringify({ cniVersion: "1.0.0", name: "x", plugins: [{ type: "bridge", ipam: { type: "host-local" } }] }));
    const r = run(["--cni-conf", src, "--node-name", "n1"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('has no plugin whose ipam.type is "podcidr-ipam"');
    expect(existsSync(join(dir, "bin"))).toBe(false);
  });

  it("--node-name without --cni-conf is a usage error", () => {
    const r = run(["--node-name", "n1"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--node-name sets ipam.nodeName in the --cni-conf conflist");
  });
});
