// The shape the code keeps (issue #10): no file in src/ over 250 lines and no line
// over 140 characters, so each file stays one idea a reader can hold.
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { expect, it } from "vitest";
import { ROOT } from "./helpers/plugin";

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

it("keeps every file in src/ at most 250 lines, and every line at most 140 characters", () => {
  const src = files(join(ROOT, "src"));
  expect(src.length).toBeGreaterThan(40);
  const long = src.map((f) => [relative(ROOT, f), readFileSync(f, "utf8").split("\n")] as const);
  expect(long.filter(([, lines]) => lines.length - 1 > 250).map(([f, l]) => `${f}: ${l.length - 1} lines`)).toEqual([]);
  expect(long.flatMap(([f, lines]) => lines.flatMap((l, i) => (l.length > 140 ? [`${f}:${i + 1}`] : [])))).toEqual([]);
});
