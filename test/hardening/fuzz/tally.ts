// What a run of cases did: counts, codes, times, and the violations, summed up
// as one line per kind of violation with a reproducer; and the figures recorded.
import type { Judged, Outcome } from "./run";
import type { Case } from "./types";

export interface Violation {
  c: Case;
  problems: string[];
}

export interface Tally {
  cases: number;
  errors: number;
  accepted: number;
  maxMs: number;
  totalMs: number;
  storeChanges: number;
  dirCreated: number;
  killed: number;
  codes: Map<number, number>;
  families: Map<string, number>;
  violations: Violation[];
  maxStdin: number;
}

export function newTally(): Tally {
  return {
    cases: 0,
    errors: 0,
    accepted: 0,
    maxMs: 0,
    totalMs: 0,
    storeChanges: 0,
    dirCreated: 0,
    killed: 0,
    codes: new Map(),
    families: new Map(),
    violations: [],
    maxStdin: 0,
  };
}

function show(s: string, max = 160): string {
  const j = JSON.stringify(s);
  return j.length > max ? `${j.slice(0, max)}..." (${s.length} chars)` : j;
}

function repro(c: Case): string {
  const env = Object.entries(c.env)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${show(v!, 80)}`)
    .join(" ");
  const text = c.stdin.toString("utf8");
  const stdin = Buffer.from(text, "utf8").equals(c.stdin)
    ? show(text, 400)
    : `bytes ${c.stdin.subarray(0, 200).toString("hex")}${c.stdin.length > 200 ? "..." : ""} (${c.stdin.length} bytes)`;
  const node = c.node
    ? ` node file: ${c.node.setup.kind === "bytes" ? show(c.node.setup.bytes.toString("utf8"), 300) : c.node.setup.kind}`
    : "";
  return `${env} stdin=${stdin}${node}`;
}

/** One line per kind of violation (family, variant, first problem), with the commands and stores it hit and one reproducer. */
export function summary(violations: Violation[]): string {
  const groups = new Map<string, Violation[]>();
  for (const v of violations) {
    const k = `${v.c.family} / ${v.c.variant.replace(/\[\d+\]/g, "[i]")}: ${v.problems[0]!.replace(/ \(.*|:.*$/, "")}`;
    groups.set(k, [...(groups.get(k) ?? []), v]);
  }
  return [...groups]
    .sort((a, b) => b[1].length - a[1].length)
    .map(([k, vs]) => {
      const where = [...new Set(vs.map((v) => `${v.c.target}@${v.c.ctx.name}`))].sort().join(", ");
      const ex = vs.reduce((a, b) => (b.c.stdin.length < a.c.stdin.length ? b : a));
      return `${vs.length} x ${k}\n    in ${where}\n    e.g. case ${ex.c.id}: ${ex.problems.join("; ")}\n    ${repro(ex.c)}`;
    })
    .join("\n");
}

export function note(t: Tally, c: Case, o: Outcome, j: Judged): void {
  t.cases++;
  t.maxMs = Math.max(t.maxMs, o.ms);
  t.totalMs += o.ms;
  t.maxStdin = Math.max(t.maxStdin, c.stdin.length);
  t.families.set(c.family, (t.families.get(c.family) ?? 0) + 1);
  if (o.signal) t.killed++;
  if (o.exit === 0) t.accepted++;
  else if (j.code !== undefined) {
    t.errors++;
    t.codes.set(j.code, (t.codes.get(j.code) ?? 0) + 1);
  }
  if (j.problems.length > 0) t.violations.push({ c, problems: j.problems });
}

/** The figures both fuzz tiers report first: what the cases did to the plugin and the store. */
export function outcomeFigures(t: Tally, unchanged: boolean, seed: number): Record<string, string | number> {
  return {
    cases: t.cases,
    seed,
    errors: t.errors,
    accepted: t.accepted,
    violations: t.violations.length,
    unchanged: unchanged ? "yes" : "no",
    storeChanges: t.storeChanges,
    dataDirCreated: t.dirCreated,
    maxMs: Math.round(t.maxMs),
  };
}

/** The figures both tiers report last: how long, how big, which codes. */
export function runFigures(t: Tally, started: number): Record<string, string | number> {
  return { totalS: Number(((performance.now() - started) / 1000).toFixed(1)), maxStdinBytes: t.maxStdin, codes: codesText(t) };
}

function codesText(t: Tally): string {
  return [...t.codes]
    .sort((a, b) => a[0] - b[0])
    .map(([k, v]) => `${k}:${v}`)
    .join(" ");
}
