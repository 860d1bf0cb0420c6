// How the executable is put together, shared by build.mjs (bin/podcidr-ipam, for
// the Node that builds it) and build-standalone.mjs (the SEA, for its own Node).
//
// A call is short: without help, V8 spends a third of our own time parsing and
// compiling the bundle's functions (lazily, one by one, as the call reaches them).
// So the executable carries the bundle as a string plus V8's code cache of every
// function a run of the CNI commands compiled (scripts/train-cache.cjs), and
// compiles it with vm.Script({ cachedData }): V8 deserializes instead of
// compiling. The cache is only offered to the V8 it was made by; any other Node
// (or one started with flags that change code generation, which V8 detects and
// rejects) compiles the same source the ordinary way, at the ordinary speed.
//
// Why inside the executable rather than a cache folder written at run time: a
// code cache is trusted input to V8, as good as code. One shipped read-only with
// the executable is exactly as trustworthy as the executable; one written later
// to a folder would be a new way in. And the install stays one file.
//
// V8 matches a cache to its source by length, not content: the executable is
// made whole by the build, and an edit to its embedded source without a rebuild
// would run the cached code of the old one. Rebuild; never patch bin/podcidr-ipam.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** The bundle: src/ as one CommonJS script that needs nothing but Node's built-in modules. */
export async function bundle() {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const out = await build({
    entryPoints: [join(root, "src/main.ts")],
    bundle: true,
    write: false,
    platform: "node",
    target: "node20",
    format: "cjs",
    // ASCII only (esbuild escapes the rest): Node reads the executable as UTF-8 and V8 matches
    // a cache by source length, so the embedded source must read back exactly as written.
    charset: "ascii",
    minify: true,
    legalComments: "none",
    define: { __VERSION__: JSON.stringify(pkg.version) },
    logLevel: "warning",
  });
  const [file] = out.outputFiles ?? [];
  if (!file) throw new Error("esbuild wrote no output");
  return file.text;
}

/** The bundle as the executable compiles it, CommonJS's module wrapper made explicit. */
export function wrap(bundleText) {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the class is all of ASCII, control characters included
  const bad = bundleText.search(/[^\x00-\x7f]/);
  if (bad >= 0) throw new Error(`the bundle has a non-ASCII character at ${bad}; it must be ASCII (see charset in bundle())`);
  return `(function (exports, require, module, __filename, __dirname) {${bundleText}\n})`;
}

/**
 * Run the wrapped bundle through the CNI commands under `nodeBin` and return V8's
 * code cache, with that V8's version (the only one that will take it).
 */
export function trainCache(nodeBin, wrapped) {
  const work = mkdtempSync(join(tmpdir(), "podcidr-ipam-train-"));
  try {
    const src = join(work, "bundle.js");
    const cache = join(work, "cache.bin");
    writeFileSync(src, wrapped);
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
    const r = spawnSync(nodeBin, [join(root, "scripts/train-cache.cjs"), src, cache, join(work, "scratch")], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
      encoding: "utf8",
    });
    if (r.status !== 0 || !existsSync(`${cache}.v8`))
      throw new Error(
        `training the code cache under ${nodeBin} failed (exit ${r.status}${existsSync(cache) ? "" : ", no cache written"}):\n${r.stderr}`,
      );
    const v8 = readFileSync(`${cache}.v8`, "utf8").trim();
    if (!/^\d+\.\d+/.test(v8)) throw new Error(`training under ${nodeBin} reported V8 version ${JSON.stringify(v8)}`);
    return { cache: readFileSync(cache), v8 };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The executable's text: a shebang, a few lines that compile the bundle with its cache, the bundle, the cache. */
export function compose(wrapped, { cache, v8 }, version) {
  return `#!/usr/bin/env node
// podcidr-ipam ${version}: a CNI IPAM plugin (https://www.cni.dev). One file, Node 20 or newer.
// The bundle below is compiled with V8's code cache of a training run when this
// Node's V8 is ${v8}, the one that made it; any other compiles it as usual.
"use strict";
(function () {
  const { Script } = require("node:vm");
  const source = ${JSON.stringify(wrapped)};
  const cache = ${JSON.stringify(cache.toString("base64"))};
  const cachedData = process.versions.v8 === ${JSON.stringify(v8)} ? Buffer.from(cache, "base64") : undefined;
  new Script(source, { filename: __filename, cachedData }).runInThisContext().call(exports, exports, require, module, __filename, __dirname);
})();
`;
}
