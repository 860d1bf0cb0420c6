// The executable as npm run build ships it: one file, a shebang, the bundle plus
// V8's code cache of a training run (scripts/code-cache.mjs). The cache must be
// one this Node accepts (or it buys nothing), and a Node that cannot use it
// (other flags, another V8) must still run the plugin correctly.
import { spawnSync } from "node:child_process";
import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isBuiltin } from "node:module";
import { Script } from "node:vm";
import { brotliDecompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { BIN, Sandbox } from "../helpers/plugin";

// As Node reads it: V8 matches a cache to its source by length, so the encoding must be Node's.
const text = readFileSync(BIN, "utf8");
// The standalone build (PODCIDR_BIN) is a Node binary, not a script: these checks are the bundle's.
const isScript = text.startsWith("#!/usr/bin/env node\n");

/** The string literal assigned to `name` in the executable's few outer lines (the CNI bundle is the `source` taken in CNI mode). */
function literal(name: string): string {
  const m = new RegExp(`\\n  const ${name} = (?:cni \\? )?("(?:[^"\\\\]|\\\\.)*")(?: : tool\\(\\))?;\\n`).exec(text);
  if (!m) throw new Error(`no ${name} literal in ${BIN}`);
  return JSON.parse(m[1]!) as string;
}

/** The tool bundle (CLI, agent): brotli, base64, in the function a CNI call never calls. */
function toolBundle(): string {
  const m =
    /\nfunction tool\(shared\) \{\n {2}const source = require\("node:zlib"\)\.brotliDecompressSync\(Buffer\.from\(("[^"]*"), "base64"\)\)/.exec(
      text,
    );
  if (!m) throw new Error(`no tool bundle in ${BIN}`);
  return brotliDecompressSync(Buffer.from(JSON.parse(m[1]!) as string, "base64")).toString();
}

describe.runIf(isScript)("the bundled executable", () => {
  it("is one executable file that starts with Node's shebang and loads nothing outside Node", () => {
    expect(statSync(BIN).mode & 0o111).toBe(0o111);
    const source = literal("source");
    const required = [...source.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]!);
    expect(required.length).toBeGreaterThan(0);
    expect(required.filter((r) => !isBuiltin(r))).toEqual([]);
  });

  it("keeps the CLI and the agent out of what a CNI call compiles: they are a second bundle, loading nothing outside Node either", () => {
    const cni = literal("source");
    const tool = toolBundle();
    for (const only of ["--release-unowned", "Usage:"]) {
      expect(tool).toContain(only);
      expect(cni).not.toContain(only);
    }
    // The tool reaches the store, the allocator and the node-file reader through the CNI bundle
    // (the one "podcidr-ipam:shared"), not through copies of its own.
    const required = [...tool.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]!);
    expect([...new Set(required.filter((r) => !isBuiltin(r)))]).toEqual(["podcidr-ipam:shared"]);
    for (const once of ["lost the store lock before committing", "lists no podCIDRs in", "is not a CIDR; expected the form"]) {
      expect(cni).toContain(once);
      expect(tool).not.toContain(once);
    }
    // Both are compiled from this one file: the CLI answers without CNI_COMMAND, the CNI bundle with it.
    const help = spawnSync(BIN, ["--help"], { encoding: "utf8", env: { PATH: process.env.PATH } });
    expect(help.stdout).toContain("Usage:");
    const version = spawnSync(BIN, [], { encoding: "utf8", input: "{}", env: { PATH: process.env.PATH, CNI_COMMAND: "VERSION" } });
    expect(JSON.parse(version.stdout).supportedVersions).toContain("1.1.0");
  });

  it("carries a code cache that this Node's V8 accepts for the bundle it carries", () => {
    const v8 = /process\.versions\.v8 === ("[^"]+")/.exec(text);
    expect(v8 && JSON.parse(v8[1]!)).toBe(process.versions.v8);
    const cache = Buffer.from(literal("cache"), "base64");
    expect(cache.length).toBeGreaterThan(50_000);
    const script = new Script(literal("source"), { filename: BIN, cachedData: cache });
    expect(script.cachedDataRejected).toBe(false);
    // V8 matches a cache to its source by length (not content): a longer source is refused.
    expect(new Script(`${literal("source")} `, { filename: BIN, cachedData: cache }).cachedDataRejected).toBe(true);
  });

  it("holds only ASCII, so the source Node reads back is the one the cache was made for", () => {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the class is all of ASCII, control characters included
    expect(text.search(/[^\x00-\x7f]/)).toBe(-1);
  });

  /** ADD then DEL of one container with `cmd args`, against the cluster-pool fixture; returns ADD's addresses. */
  function addDel(cmd: string, args: string[]): string[] {
    const sb = new Sandbox("ciliumnode-cluster-pool.json");
    try {
      const env = {
        PATH: process.env.PATH,
        CNI_CONTAINERID: "c1",
        CNI_NETNS: "/var/run/netns/x",
        CNI_IFNAME: "eth0",
        CNI_PATH: "/opt/cni/bin",
      };
      const conf = JSON.stringify(sb.conf("1.0.0"));
      const add = spawnSync(cmd, args, { env: { ...env, CNI_COMMAND: "ADD" }, input: conf, encoding: "utf8" });
      expect(add.status, add.stdout + add.stderr).toBe(0);
      // The same container in a new netns (a restart) gets the same addresses back: the store was read and written.
      const again = spawnSync(cmd, args, {
        env: { ...env, CNI_COMMAND: "ADD", CNI_NETNS: "/var/run/netns/y" },
        input: conf,
        encoding: "utf8",
      });
      expect(again.stdout).toBe(add.stdout);
      const del = spawnSync(cmd, args, { env: { ...env, CNI_COMMAND: "DEL" }, input: conf, encoding: "utf8" });
      expect(del.status, del.stdout + del.stderr).toBe(0);
      return (JSON.parse(add.stdout) as { ips: { address: string }[] }).ips.map((i) => i.address);
    } finally {
      sb.cleanup();
    }
  }

  it("loads no Node module for ADD and DEL beyond a bare start's and vm, even on a store with a long log", () => {
    // Each built-in module a call loads is compiled and run in that call: node:zlib alone brings
    // Node's 20 stream modules (1 to 2 ms). Counted from Node's own list, against an empty script.
    const sb = new Sandbox("ciliumnode-cluster-pool.json");
    try {
      const out = join(sb.dir, "modules.json");
      const preload = join(sb.dir, "preload.cjs");
      writeFileSync(
        preload,
        `const seen = new Set(process.moduleLoadList);
process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.moduleLoadList.filter((m) => !seen.has(m)))));`,
      );
      writeFileSync(join(sb.dir, "empty.js"), "");
      const loaded = (args: string[], env: Record<string, string>, input = ""): string[] => {
        const r = spawnSync(process.execPath, ["--require", preload, ...args], {
          env: { PATH: process.env.PATH ?? "", ...env },
          input,
          encoding: "utf8",
        });
        expect(r.status, r.stdout + r.stderr).toBe(0);
        return (JSON.parse(readFileSync(out, "utf8")) as string[]).filter((m) => m.startsWith("NativeModule "));
      };
      const bare = new Set(loaded([join(sb.dir, "empty.js")], {}));
      const conf = JSON.stringify(sb.conf("1.0.0"));
      const cni = (command: string, id: string): Record<string, string> => ({
        CNI_COMMAND: command,
        CNI_CONTAINERID: id,
        CNI_NETNS: `/var/run/netns/${id}`,
        CNI_IFNAME: "eth0",
        CNI_PATH: "/opt/cni/bin",
      });
      // 40 ADDs: far more log than the CRC's table covers (4 KiB), so the native CRC is in use.
      for (let i = 0; i < 40; i++) expect(spawnSync(BIN, [], { env: cni("ADD", `c${i}`), input: conf }).status).toBe(0);
      expect(statSync(join(sb.dataDir, "_store", "log")).size).toBeGreaterThan(4096);
      for (const command of ["ADD", "DEL"]) {
        const extra = loaded([BIN], cni(command, "c-probe"), conf).filter((m) => !bare.has(m));
        expect(extra, `${command} loaded ${extra.join(", ")}`).toEqual(["NativeModule vm"]);
      }
    } finally {
      sb.cleanup();
    }
  });

  it("still allocates correctly when V8 refuses the cache (a Node started with other flags)", () => {
    // --no-opt changes V8's flag hash: under it, V8 refuses the cache...
    const sb = new Sandbox();
    let probe: { stdout: string; stderr: string } | undefined;
    try {
      writeFileSync(join(sb.dir, "source.js"), literal("source"));
      writeFileSync(join(sb.dir, "cache.bin"), Buffer.from(literal("cache"), "base64"));
      const js =
        'const fs = require("node:fs"); const { Script } = require("node:vm"); const [src, cache] = process.argv.slice(1);' +
        "process.stdout.write(String(new Script(fs.readFileSync(src, 'utf8'), { cachedData: fs.readFileSync(cache) }).cachedDataRejected));";
      probe = spawnSync(process.execPath, ["--no-opt", "-e", js, join(sb.dir, "source.js"), join(sb.dir, "cache.bin")], {
        encoding: "utf8",
      });
      // (the same probe without the flag: accepted, so it is the flag that makes the difference)
      const plain = spawnSync(process.execPath, ["-e", js, join(sb.dir, "source.js"), join(sb.dir, "cache.bin")], { encoding: "utf8" });
      expect(plain.stdout, plain.stderr).toBe("false");
    } finally {
      sb.cleanup();
    }
    expect(probe.stdout, probe.stderr).toBe("true");
    // ...and the executable compiles the bundle itself, with the same answers.
    expect(addDel(process.execPath, ["--no-opt", BIN])).toEqual(addDel(BIN, []));
  });

  it("runs without its cache under another Node's V8 (the version check's other branch)", () => {
    const sb = new Sandbox();
    try {
      const other = join(sb.dir, "podcidr-ipam");
      const v8 = JSON.stringify(process.versions.v8);
      expect(text.split(`process.versions.v8 === ${v8}`).length).toBe(2);
      writeFileSync(other, text.replace(`process.versions.v8 === ${v8}`, `process.versions.v8 === "0.0.0-another-node"`));
      chmodSync(other, 0o755);
      expect(addDel(other, [])).toEqual(addDel(BIN, []));
    } finally {
      sb.cleanup();
    }
  });
});
