// npm run bench:agent: the agent's figures against the real control plane
// (test/cluster/agent-bench.ts: API change to node file over 50 changes, idle CPU,
// RSS and API requests over 5 minutes). The TypeScript is bundled with esbuild into
// a file beside it (so that its __dirname is test/cluster's, as the harness
// expects), run with this Node, and removed.
//   npm run bench:agent            BENCH_CHANGES=50 BENCH_IDLE_S=300 by default
// Needs bin/podcidr-ipam (npm run build) and the control plane (bash scripts/cluster-build.sh).
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const out = join(root, "test/cluster", `.agent-bench-${process.pid}.cjs`);
try {
  await build({
    entryPoints: [join(root, "test/cluster/agent-bench.ts")],
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    outfile: out,
    packages: "external",
    logLevel: "warning",
  });
  const r = spawnSync(process.execPath, [out], { stdio: "inherit" });
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(out, { force: true });
}
