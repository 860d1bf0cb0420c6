// The executable as npm run build ships it: one file, a shebang, the bundle plus
// V8's code cache of a training run (scripts/code-cache.mjs). The cache must be
// one this Node accepts (or it buys nothing), and a Node that cannot use it
// (other flags, another V8) must still run the plugin correctly.
import { spawnSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { isBuiltin } from "node:module";
import { Script } from "node:vm";
import { describe, expect, it } from "vitest";
import { BIN, Sandbox } from "../helpers/plugin";

const text = readFileSync(BIN, "latin1");
// The standalone build (PODCIDR_BIN) is a Node binary, not a script: these checks are the bundle's.
const isScript = text.startsWith("#!/usr/bin/env node\n");

/** The string literal assigned to `name` in the executable's few outer lines. */
function literal(name: string): string {
  const m = new RegExp(`\\n  const ${name} = ("(?:[^"\\\\]|\\\\.)*");\\n`).exec(text);
  if (!m) throw new Error(`no ${name} literal in ${BIN}`);
  return JSON.parse(m[1]!) as string;
}

describe.runIf(isScript)("the bundled executable", () => {
  it("is one executable file that starts with Node's shebang and loads nothing outside Node", () => {
    expect(statSync(BIN).mode & 0o111).toBe(0o111);
    const source = literal("source");
    const required = [...source.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]!);
    expect(required.length).toBeGreaterThan(0);
    expect(required.filter((r) => !isBuiltin(r))).toEqual([]);
  });

  it("carries a code cache that this Node's V8 accepts for the bundle it carries", () => {
    const v8 = /process\.versions\.v8 === ("[^"]+")/.exec(text);
    expect(v8 && JSON.parse(v8[1]!)).toBe(process.versions.v8);
    const cache = Buffer.from(literal("cache"), "base64");
    expect(cache.length).toBeGreaterThan(50_000);
    const script = new Script(literal("source"), { filename: BIN, cachedData: cache });
    expect(script.cachedDataRejected).toBe(false);
    // The cache was made for this source: another (one byte longer) is refused.
    expect(new Script(`${literal("source")} `, { filename: BIN, cachedData: cache }).cachedDataRejected).toBe(true);
  });

  it("still allocates correctly when V8 refuses the cache (a Node started with other flags)", () => {
    const sb = new Sandbox("ciliumnode-cluster-pool.json");
    try {
      const env = { PATH: process.env.PATH, CNI_CONTAINERID: "c1", CNI_NETNS: "/var/run/netns/x", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" };
      const conf = JSON.stringify(sb.conf("1.0.0"));
      // --no-opt changes V8's flag hash, so V8 rejects the cache and compiles the bundle itself.
      const add = spawnSync(process.execPath, ["--no-opt", BIN], { env: { ...env, CNI_COMMAND: "ADD" }, input: conf, encoding: "utf8" });
      expect(add.status, add.stdout + add.stderr).toBe(0);
      const ips = (JSON.parse(add.stdout) as { ips: { address: string }[] }).ips.map((i) => i.address);
      const same = spawnSync(BIN, [], { env: { ...env, CNI_COMMAND: "ADD" }, input: conf, encoding: "utf8" });
      expect(same.status, same.stdout + same.stderr).toBe(0);
      expect((JSON.parse(same.stdout) as { ips: { address: string }[] }).ips.map((i) => i.address)).toEqual(ips);
      const del = spawnSync(process.execPath, ["--no-opt", BIN], { env: { ...env, CNI_COMMAND: "DEL" }, input: conf, encoding: "utf8" });
      expect(del.status, del.stdout + del.stderr).toBe(0);
    } finally {
      sb.cleanup();
    }
  });
});
