// Bundle src/ into one executable file: bin/podcidr-ipam (Node 20+, no node_modules at
// run time), carrying V8's code cache for the Node that builds it (scripts/code-cache.mjs).
//
//   node scripts/build.mjs [--quiet] [--no-code-cache] [--out FILE]
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { bundle, compose, trainCache, wrap } from "./code-cache.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8"));
const { values: o } = parseArgs({ options: { quiet: { type: "boolean" }, "no-code-cache": { type: "boolean" }, out: { type: "string" } } });
const outfile = o.out ?? `${root}bin/podcidr-ipam`;
const wrapped = wrap(await bundle());
// --no-code-cache: the same executable without the cache (npm run bench measures what the cache saves).
const trained = o["no-code-cache"] ? { cache: Buffer.alloc(0), v8: "none" } : trainCache(process.execPath, wrapped);
mkdirSync(dirname(outfile), { recursive: true });
// Replaced in one rename: a test or runtime running the old file never reads half of the new one.
const tmp = `${outfile}.tmp-${process.pid}`;
writeFileSync(tmp, compose(wrapped, trained, pkg.version));
chmodSync(tmp, 0o755);
renameSync(tmp, outfile);
if (!o.quiet) {
  console.error(
    `built ${outfile} (${statSync(outfile).size} bytes: bundle ${wrapped.length}, code cache ${trained.cache.length} for V8 ${trained.v8})`,
  );
}
