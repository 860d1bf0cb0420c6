// The stores around a case: the store sandbox byte for byte as the baseline,
// the no-store sandbox still without a data dir; put back after a violation.
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { ROOT } from "../../helpers/plugin";
import { type Entry, changes, entries, snapshot } from "../../helpers/snapshot";
import type { Tally } from "./tally";
import type { Case } from "./types";
import type { World } from "./world";

/** A data dir as it was: its entries, to put it back, and their snapshot, to compare. */
export interface Baseline {
  dir: string;
  entries: Map<string, Entry>;
  snap: Map<string, string>;
}

export function baseline(dir: string): Baseline {
  return { dir, entries: entries(dir), snap: snapshot(dir) };
}

/** What differs in the data dir from its baseline (kind, mode, bytes). */
function changedSince(b: Baseline): string[] {
  return changes(b.snap, snapshot(b.dir));
}

/** Put the data dir back exactly as the baseline has it (after a violation, so the next cases start clean). */
function restore(b: Baseline): void {
  rmSync(b.dir, { recursive: true, force: true });
  for (const [rel, e] of b.entries) {
    const abs = rel === "." ? b.dir : join(b.dir, rel);
    if (e.kind === "dir") mkdirSync(abs, { recursive: true });
    else if (e.kind === "file") writeFileSync(abs, e.data!);
  }
  for (const [rel, e] of [...b.entries].reverse()) chmodSync(rel === "." ? b.dir : join(b.dir, rel), e.mode);
}

/** Both sandboxes back as they were: the store as the baseline, no data dir in the other. */
export function resetStores(w: World): void {
  restore(w.base);
  rmSync(w.noStore.sb.dataDir, { recursive: true, force: true });
}

/** After one case: the store is byte-for-byte the baseline, and the absent one is still absent. Puts them back if not. */
export function checkStores(t: Tally, c: Case, w: World): void {
  const d = changedSince(w.base);
  if (d.length > 0) {
    t.storeChanges++;
    t.violations.push({ c, problems: [`store changed: ${d.slice(0, 6).join(", ")}`] });
    restore(w.base);
  }
  const noStoreDir = w.noStore.sb.dataDir;
  if (existsSync(noStoreDir)) {
    t.dirCreated++;
    t.violations.push({ c, problems: [`data dir created: ${[...snapshot(noStoreDir).keys()].slice(0, 6).join(", ")}`] });
    rmSync(noStoreDir, { recursive: true, force: true });
  }
}

/** After a batch run in parallel: true when either store differs from what it should be. */
export function storesDirty(w: World): boolean {
  return changedSince(w.base).length > 0 || existsSync(w.noStore.sb.dataDir);
}

/** True when the run left the store and the data dir exactly as they were. */
export function unchangedAfter(t: Tally, w: World): boolean {
  return t.storeChanges === 0 && t.dirCreated === 0 && changedSince(w.base).length === 0;
}

export function finalChecks(w: World): void {
  expect(changedSince(w.base), "store after the run").toEqual([]);
  expect(existsSync(w.noStore.sb.dataDir), "no-store sandbox's data dir after the run").toBe(false);
  expect(readdirSync(ROOT).sort(), "nothing created in the repository root (relative paths)").toEqual(w.rootListing);
}
