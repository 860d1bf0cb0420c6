// npm run hardening [-- --size ci|full]: run test/hardening at the given size
// (default full) and print the figures as the README's Guarantees table.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { size: { type: "string", default: "full" } } });
const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-hardening-"));
spawnSync(process.execPath, [join(root, "scripts/build.mjs"), "--quiet"], { stdio: "inherit" });
const started = Date.now();
const r = spawnSync("npx", ["vitest", "run", "test/hardening"], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, HARDENING_SIZE: values.size, HARDENING_REPORT_DIR: dir },
});
const rows = readdirSync(dir).map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));
rows.sort((a, b) => a.guarantee.localeCompare(b.guarantee) || a.test.localeCompare(b.test));
console.log(
  `\nHardening figures, size ${values.size}, ${new Date().toISOString().slice(0, 10)}, node ${process.version}, ${((Date.now() - started) / 1000).toFixed(0)} s`,
);
console.log("| guarantee | test | figures |");
console.log("|---|---|---|");
for (const row of rows)
  console.log(
    `| ${row.guarantee} | ${row.test} | ${Object.entries(row.figures)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")} |`,
  );
rmSync(dir, { recursive: true, force: true });
process.exitCode = r.status ?? 1;
