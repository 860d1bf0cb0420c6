// Sizes and figures for the hardening tests. `npm test` runs them at CI size;
// `npm run hardening` runs them at full size and prints the figures table that
// the README's "Guarantees" section quotes.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const FULL = process.env.HARDENING_SIZE === "full";

/** The CI size or the full size of a test's workload. */
export function size<T>(ci: T, full: T): T {
  return FULL ? full : ci;
}

export type Figures = Record<string, number | string>;

/**
 * Record what a hardening test did: calls made, faults injected, duplicates and
 * leaks found, times. Printed as one line, and written as JSON for the table
 * when HARDENING_REPORT_DIR is set.
 */
export function record(test: string, guarantee: string, figures: Figures): void {
  process.stdout.write(
    `[hardening] ${test}: ${Object.entries(figures)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")}\n`,
  );
  const dir = process.env.HARDENING_REPORT_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `${test.replace(/[^a-z0-9]+/gi, "-")}.json`),
    JSON.stringify({ test, guarantee, size: FULL ? "full" : "ci", figures }),
  );
}
