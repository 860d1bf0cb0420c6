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
import zlib, { brotliCompressSync } from "node:zlib";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** @type {import("esbuild").BuildOptions} */
const common = {
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
  logLevel: "warning",
  absWorkingDir: root,
};
/** What the tool bundle asks for to reach the CNI bundle's modules (never a real module). */
const SHARED = "podcidr-ipam:shared";

/**
 * The two bundles, each one CommonJS script that needs nothing but Node's built-in
 * modules. "cni" is what runtimes start (src/main.ts); "tool" the CLI and the agent
 * (src/tool.ts). The tool bundle does not carry a second copy of the store, the
 * allocator or the node-file reader: every module of the CNI bundle's graph is
 * exported by the CNI bundle (`shared`, by number) and the tool bundle's imports of
 * those modules read them from there. So the tool runs the very code a CNI call runs,
 * and the executable carries it once.
 */
export async function bundles() {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const define = { __VERSION__: JSON.stringify(pkg.version) };
  const main = join(root, "src/main.ts");
  const graph = await meta({ ...common, define, entryPoints: [main] });
  const tooling = await meta({ ...common, define, entryPoints: [join(root, "src/tool.ts")] });
  // Shared: the modules the CNI bundle has that the tool's own code imports (what they
  // import in turn is reached inside the CNI bundle). Exporting only these keeps the
  // CNI bundle, and the code cache of its top level, close to what it would be alone.
  const inCni = new Map(Object.entries(graph.inputs).filter(([path]) => join(root, path) !== main));
  /** @type {{ key: string, path: string, cjs: boolean }[]} */
  const inputs = [];
  for (const [path, input] of Object.entries(tooling.inputs)) {
    if (inCni.has(path)) continue;
    for (const imp of input.imports) {
      if (imp.external || !inCni.has(imp.path) || inputs.some((m) => m.key === imp.path)) continue;
      inputs.push({ key: imp.path, path: join(root, imp.path), cjs: inCni.get(imp.path)?.format === "cjs" });
    }
  }
  const index = new Map(inputs.map((m, i) => [m.path, i]));
  // Each shared module as a plain object of its exports (esbuild's `import * as` would
  // make a getter per export, and every getter costs the code cache a function).
  // Values, not live bindings: src/ exports no `let`.
  const names = await Promise.all(
    inputs.map(async (m) => {
      if (m.cjs) return [];
      const r = await meta({ ...common, define, entryPoints: [m.path], format: "esm", minify: false });
      return Object.values(r.outputs)[0]?.exports ?? [];
    }),
  );
  const entry = [
    `import { main } from ${JSON.stringify(main)};`,
    ...inputs.map((m, i) =>
      m.cjs
        ? `import m${i} from ${JSON.stringify(m.path)};`
        : `import { ${(names[i] ?? []).map((n) => `${n} as m${i}_${n}`).join(", ")} } from ${JSON.stringify(m.path)};`,
    ),
    `export const shared = () => [${inputs.map((m, i) => (m.cjs ? `m${i}` : `{ ${(names[i] ?? []).map((n) => `${n}: m${i}_${n}`).join(", ")} }`)).join(", ")}];`,
    "if (process.env.CNI_COMMAND !== undefined) main();",
  ].join("\n");
  const cni = await build({ ...common, define, stdin: { contents: entry, resolveDir: join(root, "src"), loader: "ts" } });
  const share = {
    name: "shared",
    setup(b) {
      b.onResolve({ filter: /^podcidr-ipam:shared$/ }, () => ({ path: SHARED, external: true }));
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === "inner" || args.kind === "entry-point") return undefined;
        const r = await b.resolve(args.path, {
          kind: args.kind,
          resolveDir: args.resolveDir,
          importer: args.importer,
          pluginData: "inner",
        });
        const i = index.get(r.path);
        return i === undefined ? r : { path: String(i), namespace: "shared" };
      });
      b.onLoad({ filter: /.*/, namespace: "shared" }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(SHARED)})[${args.path}];`,
        loader: "js",
      }));
    },
  };
  const tool = await build({ ...common, define, entryPoints: [join(root, "src/tool.ts")], plugins: [share] });
  return { cni: text(cni), tool: text(tool) };
}

/** @param {import("esbuild").BuildOptions} options */
async function meta(options) {
  const r = await build({ ...options, metafile: true });
  if (!r.metafile) throw new Error("esbuild wrote no metafile");
  return r.metafile;
}

/** @param {import("esbuild").BuildResult} out */
function text(out) {
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

/**
 * The executable's text: a shebang, a few lines that compile the bundles, and the
 * bundles. The CNI bundle is compiled with its code cache (when this Node's V8 made
 * it) and runs the CNI command when CNI_COMMAND is set: that is all a runtime's call
 * does. Without CNI_COMMAND, its modules are then handed to the tool bundle (CLI,
 * agent), which is brotli-compressed, base64, in a function that a CNI call never
 * calls, so there V8 only skims over one string literal.
 */
export function compose(wrapped, { cache, v8 }, version, toolWrapped) {
  const packed = brotliCompressSync(Buffer.from(toolWrapped), {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
      [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: toolWrapped.length,
    },
  });
  return `#!/usr/bin/env node
// podcidr-ipam ${version}: a CNI IPAM plugin (https://www.cni.dev). One file, Node 20 or newer.
// The CNI bundle below is compiled with V8's code cache of a training run when this
// Node's V8 is ${v8}, the one that made it; any other compiles it as usual.
"use strict";
(function () {
  const { Script } = require("node:vm");
  const cache = ${JSON.stringify(cache.toString("base64"))};
  const cachedData = process.versions.v8 === ${JSON.stringify(v8)} ? Buffer.from(cache, "base64") : undefined;
  const source = ${JSON.stringify(wrapped)};
  const cni = { exports: {} };
  new Script(source, { filename: __filename, cachedData }).runInThisContext().call(cni.exports, cni.exports, require, cni, __filename, __dirname);
  if (process.env.CNI_COMMAND === undefined) tool(cni.exports.shared());
})();
function tool(shared) {
  const source = require("node:zlib").brotliDecompressSync(Buffer.from(${JSON.stringify(packed.toString("base64"))}, "base64")).toString();
  const req = (id) => (id === ${JSON.stringify(SHARED)} ? shared : require(id));
  new (require("node:vm").Script)(source, { filename: __filename }).runInThisContext().call(exports, exports, req, module, __filename, __dirname);
}
`;
}
