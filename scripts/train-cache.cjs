// Build step, run by the Node that will run the plugin: compile the bundle, run
// it through the CNI commands a node makes (scripts/train-calls.cjs) against a
// throwaway store, then write V8's code
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

const trainCalls = require("./train-calls.cjs");

(async () => {
  // Each call runs the whole bundle again, as a fresh process would.
  await trainCalls(scratch, () => {
    const mod = { exports: {} };
    run.call(mod.exports, mod.exports, require, mod, bundleFile, path.dirname(bundleFile));
  });
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
