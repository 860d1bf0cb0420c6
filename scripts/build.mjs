// Bundle src/ into one executable file: bin/podcidr-ipam (Node 20+, no node_modules at run time).
import { build } from "esbuild";
import { chmodSync, readFileSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8"));
const outfile = `${root}bin/podcidr-ipam`;
await build({
  entryPoints: [`${root}src/main.ts`],
  outfile,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  minify: true,
  legalComments: "none",
  banner: { js: "#!/usr/bin/env node" },
  define: { __VERSION__: JSON.stringify(pkg.version) },
  // proper-lockfile loads graceful-fs, which patches fs and loads streams at start-up (ms on
  // every call); the lock gets its own fs object from us, so plain node:fs does the job.
  // signal-exit: see src/shims/signal-exit.cjs.
  alias: { "graceful-fs": "node:fs", "signal-exit": `${root}src/shims/signal-exit.cjs` },
  logLevel: "warning",
});
chmodSync(outfile, 0o755);
if (!process.argv.includes("--quiet")) console.error(`built ${outfile} (${statSync(outfile).size} bytes)`);
