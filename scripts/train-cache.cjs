// Build step, run by the Node that will run the plugin: compile the bundle, run
// it through the CNI commands a node makes (VERSION, ADD, CHECK, DEL, GC,
// STATUS, and a refused ADD) against a throwaway store, then write V8's code
// cache of everything those calls compiled. The executable hands that cache back
// to V8, so a call deserializes its functions instead of parsing and compiling
// them (see scripts/code-cache.mjs).
//
//   node scripts/train-cache.cjs <wrapped-bundle.js> <cache-out> <scratch-dir>
//
// Writes the cache to <cache-out> and this V8's version to <cache-out>.v8.
//
// The bundle comes wrapped as the executable compiles it, `(function (exports,
// require, module, __filename, __dirname) {...})`: V8 takes a cache only for the
// very source it was made from.
//
// Each command re-runs the whole bundle, as a fresh process would; its stdin and
// stdout are files put on fds 0 and 1 (Linux hands out the lowest free fd).
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

const [bundleArg, cacheOut, scratchArg] = process.argv.slice(2);
const scratch = path.resolve(scratchArg ?? "");
if (!bundleArg || !cacheOut || !scratchArg) throw new Error("usage: train-cache.cjs <wrapped-bundle.js> <cache-out> <scratch-dir>");
const bundleFile = bundleArg;
const source = fs.readFileSync(bundleFile, "utf8");
const script = new vm.Script(source, { filename: bundleFile });
const run = script.runInThisContext();

fs.mkdirSync(scratch, { recursive: true });
const nodeFile = path.join(scratch, "node.json");
fs.writeFileSync(
  nodeFile,
  JSON.stringify({
    apiVersion: "cilium.io/v2",
    kind: "CiliumNode",
    metadata: { name: "train" },
    spec: { ipam: { podCIDRs: ["10.244.0.0/24", "fd00:10:244::/120"] }, addresses: [{ type: "CiliumInternalIP", ip: "10.244.0.1" }] },
  }),
);
const conf = {
  cniVersion: "1.0.0",
  name: "train",
  type: "bridge",
  ipam: { type: "podcidr-ipam", nodeFile, dataDir: path.join(scratch, "data") },
};
const stdinFile = path.join(scratch, "stdin.json");
// In CNI mode the plugin ends with process.exit(code) once its answer is written; here the
// same process runs the next command, so exit only records the code.
const exit = process.exit;
process.exit = /** @type {(code?: string | number | null) => never} */ (
  (code) => {
    process.exitCode = code ?? 0;
    return /** @type {never} */ (undefined);
  }
);
const stdoutFile = path.join(scratch, "stdout.json");

async function call(command, input, extraEnv = {}) {
  fs.writeFileSync(stdinFile, typeof input === "string" ? input : JSON.stringify(input));
  fs.closeSync(0);
  if (fs.openSync(stdinFile, "r") !== 0) throw new Error("stdin did not land on fd 0");
  fs.closeSync(1);
  if (fs.openSync(stdoutFile, "w") !== 1) throw new Error("stdout did not land on fd 1");
  Object.assign(
    process.env,
    { CNI_COMMAND: command, CNI_CONTAINERID: "train-1", CNI_NETNS: "/var/run/netns/train", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" },
    extraEnv,
  );
  process.exitCode = undefined;
  const mod = { exports: {} };
  run.call(mod.exports, mod.exports, require, mod, bundleFile, path.dirname(bundleFile));
  for (let i = 0; process.exitCode === undefined; i++) {
    if (i > 500) throw new Error(`${command} did not finish`);
    await new Promise((r) => setTimeout(r, 2));
  }
  return { code: process.exitCode, out: fs.readFileSync(stdoutFile, "utf8") };
}

(async () => {
  const expect = (what, r, code) => {
    if (r.code !== code) throw new Error(`training ${what} exited ${r.code}, expected ${code}: ${r.out}`);
    return r.out;
  };
  expect("VERSION", await call("VERSION", conf), 0);
  const added = JSON.parse(expect("ADD", await call("ADD", conf), 0));
  expect("CHECK", await call("CHECK", { ...conf, prevResult: added }), 0);
  expect("STATUS", await call("STATUS", { ...conf, cniVersion: "1.1.0" }), 0);
  expect(
    "GC",
    await call("GC", { ...conf, cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: "train-1", ifname: "eth0" }] }),
    0,
  );
  expect("DEL", await call("DEL", conf), 0);
  expect(
    "a refused ADD",
    await call("ADD", { ...conf, ipam: { ...conf.ipam, nodeFile: path.join(scratch, "missing.json"), waitForPodCIDRs: 0 } }),
    1,
  );
  process.exit = exit;
  process.exitCode = 0;
  const cache = script.createCachedData();
  // The cache must be one this V8 takes back for this source, or it is dead weight.
  if (new vm.Script(source, { filename: bundleFile, cachedData: cache }).cachedDataRejected !== false)
    throw new Error("V8 rejects the cache it just made");
  fs.writeFileSync(cacheOut, cache);
  fs.writeFileSync(`${cacheOut}.v8`, process.versions.v8);
})().catch((err) => {
  fs.writeSync(2, `train-cache: ${err.stack}\n`);
  process.exit(1);
});
