// `podcidr-ipam install` from the built executable (the bundle, or the standalone
// build under PODCIDR_BIN, as npm run test:standalone runs it): it copies exactly
// itself, the copy runs as a CNI plugin, a reinstall replaces a changed file by a
// rename (never in place), an identical one is left alone, and
// --uninstall removes only what it put there.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BIN, ROOT } from "../helpers/plugin";

let dir: string;
let binDir: string;
let confDir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "podcidr-install-"));
  binDir = join(dir, "opt-cni-bin");
  confDir = join(dir, "etc-cni-net.d");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function install(...args: string[]) {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
  return spawnSync(BIN, ["install", "--cni-bin-dir", binDir, "--cni-conf-dir", confDir, ...args], { encoding: "utf8", env });
}

describe("podcidr-ipam install (the built executable)", () => {
  it("installs exactly itself and a conflist with this node's name; the copy answers as a CNI plugin", () => {
    const r = install("--cni-conf", join(ROOT, "conf/10-podnet.conflist"), "--node-name", "node-a");
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const copy = join(binDir, "podcidr-ipam");
    expect(readFileSync(copy).equals(readFileSync(BIN))).toBe(true);
    expect(statSync(copy).mode & 0o777).toBe(0o755);
    const conf = JSON.parse(readFileSync(join(confDir, "10-podnet.conflist"), "utf8"));
    expect(conf.plugins[0].ipam.nodeName).toBe("node-a");
    const v = spawnSync(copy, [], { input: "{}", encoding: "utf8", env: { PATH: process.env.PATH, CNI_COMMAND: "VERSION" } });
    expect(JSON.parse(v.stdout).supportedVersions).toContain("1.1.0");
    // Only the plugin and the record of what was installed (not among the configs a runtime loads).
    expect(readdirSync(binDir).sort()).toEqual([".podcidr-ipam-installed.json", "podcidr-ipam"]);
    expect(readdirSync(confDir)).toEqual(["10-podnet.conflist"]);
  });

  it("leaves an identical install alone, and replaces a changed file by a rename (a new inode: a runtime running the old file keeps it whole)", async () => {
    expect(install().status).toBe(0);
    const copy = join(binDir, "podcidr-ipam");
    const first = statSync(copy);
    expect(install().status).toBe(0);
    expect(statSync(copy).ino).toBe(first.ino);
    expect(statSync(copy).mtimeMs).toBe(first.mtimeMs);
    writeFileSync(copy, "#!/bin/sh\nexit 9\n"); // an older release, say (the same inode, rewritten)
    const old = statSync(copy).ino;
    expect(install().status).toBe(0);
    expect(statSync(copy).ino).not.toBe(old);
    expect(readFileSync(copy).equals(readFileSync(BIN))).toBe(true);
  });

  it("--uninstall removes what it installed and keeps a file changed since", () => {
    expect(install("--cni-conf", join(ROOT, "conf/10-podnet.conflist")).status).toBe(0);
    writeFileSync(join(confDir, "10-podnet.conflist"), '{"cniVersion":"1.0.0","name":"edited","plugins":[]}');
    const u = install("--uninstall");
    expect(u.status, u.stdout + u.stderr).toBe(0);
    expect(readdirSync(binDir)).toEqual([]);
    expect(readdirSync(confDir)).toEqual(["10-podnet.conflist"]);
    expect(u.stdout + u.stderr).toMatch(/changed|kept/);
  });

  it("refuses a conflist without podcidr-ipam and installs nothing", () => {
    const bad = join(dir, "other.conflist");
    writeFileSync(bad, JSON.stringify({ cniVersion: "1.0.0", name: "x", plugins: [{ type: "bridge", ipam: { type: "host-local" } }] }));
    const r = install("--cni-conf", bad);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("podcidr-ipam");
    expect(() => readdirSync(binDir)).toThrow();
  });

  it("says which --cni-conf it cannot read, and installs nothing", () => {
    const r = install("--cni-conf", join(dir, "missing.conflist"));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`cannot read --cni-conf ${join(dir, "missing.conflist")} (ENOENT); nothing was installed`);
    expect(() => readdirSync(binDir)).toThrow();
  });
});
