// Bundle src/ into one executable file: bin/podcidr-ipam (Node 20+, no node_modules at
// run time), carrying V8's code cache for the Node that builds it (scripts/code-cache.mjs).
//
//   node scripts/build.mjs [--quiet] [--no-code-cache]
import { chmodSync, mkdirSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { bundle, compose, trainCache, wrap } from "./code-cache.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8"));
const outfile = `${root}bin/podcidr-ipam`;
const wrapped = wrap(await bundle());
const trained = process.argv.includes("--no-code-cache") ? { cache: Buffer.alloc(0), v8: "none" } : trainCache(process.execPath, wrapped);
mkdirSync(`${root}bin`, { recursive: true });
writeFileSync(outfile, compose(wrapped, trained, pkg.version));
chmodSync(outfile, 0o755);
if (!process.argv.includes("--quiet")) {
  console.error(`built ${outfile} (${statSync(outfile).size} bytes: bundle ${wrapped.length}, code cache ${trained.cache.length} for V8 ${trained.v8})`);
}
