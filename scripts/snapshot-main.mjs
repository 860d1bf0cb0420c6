// The standalone's main script when it is built with a startup snapshot (Node's SEA
// `useSnapshot`): at build time it loads the CNI bundle, runs the training calls
// (scripts/train-calls.cjs) so that V8 has compiled what a call runs, clears what
// those calls cached about the build process (src/forget.ts), and leaves a main
// function that the snapshot runs at every start: the CNI command when CNI_COMMAND
// is set, else the tool bundle (CLI, agent), decompressed and compiled then.
// A snapshot starts with the modules loaded and their functions compiled, which is
// what the code cache of the plain executable only approaches (docs/performance.md).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import zlib, { brotliCompressSync } from "node:zlib";

const root = fileURLToPath(new URL("..", import.meta.url));

/** @param {string} wrapped the CNI bundle, wrapped (code-cache.mjs: wrap) @param {string} toolWrapped @param {string} version */
export function snapshotMain(wrapped, toolWrapped, version) {
  const packed = brotliCompressSync(Buffer.from(toolWrapped), {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: toolWrapped.length,
    },
  });
  const train = readFileSync(join(root, "scripts/train-calls.cjs"), "utf8");
  return `"use strict";
// podcidr-ipam ${version}, standalone: Node with this script's startup snapshot.
const v8 = require("node:v8");
const cni = { exports: {} };
${wrapped}.call(cni.exports, cni.exports, require, cni, process.execPath, "/");
const trainCalls = (() => {
  const module = { exports: {} };
${train}
  return module.exports;
})();
(async () => {
  const fs = require("node:fs");
  const scratch = fs.mkdtempSync(require("node:path").join(require("node:os").tmpdir(), "podcidr-ipam-snapshot-"));
  try {
    await trainCalls(scratch, () => cni.exports.main());
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  cni.exports.forget();
  v8.startupSnapshot.setDeserializeMainFunction(() => {
    if (process.env.CNI_COMMAND !== undefined) cni.exports.main();
    else tool(cni.exports.shared());
  });
})().catch((err) => {
  require("node:fs").writeSync(2, "snapshot training failed: " + err.stack + "\\n");
  process.exit(1);
});
function tool(shared) {
  const source = require("node:zlib").brotliDecompressSync(Buffer.from(${JSON.stringify(packed.toString("base64"))}, "base64")).toString();
  const req = (id) => (id === "podcidr-ipam:shared" ? shared : require(id));
  const mod = { exports: {} };
  new (require("node:vm").Script)(source, { filename: process.execPath }).runInThisContext().call(mod.exports, mod.exports, req, mod, process.execPath, "/");
}
`;
}
