// Guarantee 4, "nothing is lost by a bad input": thousands of generated bad
// inputs (truncated and deeply nested JSON, wrong types for every config field,
// huge strings, invalid and overlapping CIDRs, non-UTF-8 bytes, hostile CNI_*
// values, broken node files up to 100 MB, FIFOs, folders) from a fixed seed.
// Each must get one CNI error object with the expected code and a message that
// names the problem, a non-zero exit, within a bounded time, with no stack trace
// on stdout, and must leave the store byte-for-byte as it was (or absent, when
// there was none).
//
// Two tiers: in process through dispatch() with the real handlers (fast, many
// cases) and through the built executable with run() (fewer cases).
//
// Every generated input is bad by construction: each case is a valid request
// (its "twin") with exactly one fault applied, and the generators check their own
// output (a value inside the allowed range, a name matching the README's rule, a
// mutation that still parses) and retry. The "controls" tests run the twins of a
// sample of cases and require them to succeed, so an error seen in the fuzz loop
// comes from the fault and not from a broken base request.
//
// A failing case does not stop the run: the violation is recorded, the store is
// restored from the snapshot, and the test fails at the end with one line per
//
// The harness is in ./fuzz/: the generators (bytes, values, node-file,
// families, cases), running and judging one case (run), the stores around it
// (store), the sandboxes (world), the runners (batch) and the tally.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { BIN, run } from "../helpers/plugin";
import { problemsOf, runBatches, runEach } from "./fuzz/batch";
import { Rng, deepArr, deepObj, encode } from "./fuzz/bytes";
import { type Targeted, makeCase, targetedCase } from "./fuzz/cases";
import { YAML, cleanupNode, prepareNode } from "./fuzz/node-file";
import { BOUND_MS, runExe, runInProcess } from "./fuzz/run";
import { finalChecks, resetStores, unchangedAfter } from "./fuzz/store";
import { newTally, outcomeFigures, runFigures, summary } from "./fuzz/tally";
import type { Case, NodeSetup } from "./fuzz/types";
import { type World, makeWorld, pickCtx, twinControl } from "./fuzz/world";
import { record, size } from "./report";

const SEED = Number(process.env.FUZZ_SEED ?? 0x9e3779b9) >>> 0 || 1;
process.stdout.write(`[fuzz] seed=${SEED} (set FUZZ_SEED to replay another)\n`);

/** vitest's own limit for the long tests (the full size runs for minutes). */
const TEST_TIMEOUT = size(60_000, 1_200_000);

// ---------------------------------------------------------------------------
// Targeted cases: the message names the problem
// ---------------------------------------------------------------------------

const node = (obj: unknown): NodeSetup => ({ kind: "bytes", bytes: encode(obj) });
const cn = (podCIDRs: unknown): Record<string, unknown> => ciliumNode(podCIDRs, { name: "n" });

const TARGETED: Targeted[] = [
  {
    name: "ipam.routes[0].dst not a CIDR",
    ctx: "store",
    target: "ADD-new",
    conf: (_c, i) => (i.routes = [{ dst: "0.0.0.0/33" }]),
    codes: [7],
    mentions: ["ipam.routes[0].dst", "0.0.0.0/33"],
  },
  {
    name: "ipam.routes[2].gw not an IP",
    ctx: "store",
    target: "DEL",
    conf: (_c, i) => (i.routes = [{ dst: "0.0.0.0/0" }, { dst: "::/0" }, { dst: "10.96.0.0/12", gw: "10.0.2.1/24" }]),
    codes: [7],
    mentions: ["ipam.routes[2].gw"],
  },
  {
    name: "ipam.waitForPodCIDRs -1",
    ctx: "store",
    target: "ADD-new",
    conf: (_c, i) => (i.waitForPodCIDRs = -1),
    codes: [7],
    mentions: ["ipam.waitForPodCIDRs", "-1"],
  },
  {
    name: "ipam.dataDir relative",
    ctx: "no-store",
    target: "ADD-new",
    conf: (_c, i) => (i.dataDir = "../data"),
    codes: [7],
    mentions: ["ipam.dataDir", "../data"],
  },
  {
    name: "ipam.nodeFile with a NUL",
    ctx: "store",
    target: "ADD-existing",
    conf: (_c, i) => (i.nodeFile = "/tmp/a\u0000b"),
    codes: [7],
    mentions: ["ipam.nodeFile"],
  },
  {
    name: "network name with ../",
    ctx: "store",
    target: "DEL",
    conf: (c) => (c.name = "../podnet"),
    codes: [7],
    mentions: ["network name", "../podnet"],
  },
  {
    name: "node CIDR /33",
    ctx: "store",
    target: "ADD-new",
    node: node(cn(["fd00::200/120", "10.0.2.0/33"])),
    codes: [102],
    mentions: ["spec.ipam.podCIDRs[1]", "10.0.2.0/33"],
  },
  {
    name: "node CIDR /129",
    ctx: "store",
    target: "ADD-new",
    node: node(cn(["fd00::/129"])),
    codes: [102],
    mentions: ["spec.ipam.podCIDRs[0]", "/129"],
  },
  {
    name: "node CIDR /-1",
    ctx: "store",
    target: "ADD-existing",
    node: node(cn(["10.0.2.0/-1"])),
    codes: [102],
    mentions: ["spec.ipam.podCIDRs[0]", "10.0.2.0/-1"],
  },
  {
    name: "node CIDR with host bits",
    ctx: "store",
    target: "ADD-new",
    node: node(cn(["10.0.2.5/24"])),
    codes: [102],
    mentions: ["spec.ipam.podCIDRs[0]", "the network is 10.0.2.0/24"],
  },
  {
    name: "node CIDRs overlapping",
    ctx: "no-store",
    target: "ADD-new",
    node: node(cn(["10.0.0.0/16", "10.0.2.0/24"])),
    codes: [102],
    mentions: ["spec.ipam.podCIDRs[1]", "overlaps 10.0.0.0/16"],
  },
  {
    name: "node CIDR /0 with host bits",
    ctx: "store",
    target: "ADD-new",
    node: node(cn(["10.0.0.0/0"])),
    codes: [102],
    mentions: ["spec.ipam.podCIDRs[0]", "host bits"],
  },
  {
    name: "node CIDR 10.0.0.0/08 (leading zero)",
    ctx: "store",
    target: "ADD-new",
    node: node(cn(["10.0.0.0/08"])),
    codes: [102],
    mentions: ["spec.ipam.podCIDRs[0]", "10.0.0.0/08"],
  },
  {
    name: "node file in YAML",
    ctx: "store",
    target: "ADD-new",
    node: { kind: "bytes", bytes: Buffer.from(YAML[0]!) },
    codes: [102],
    mentions: ["not JSON", "details:YAML", "details:-o json"],
  },
  {
    name: "node file of 100 MB",
    ctx: "store",
    target: "ADD-new",
    node: { kind: "huge", prefix: encode(cn(["10.0.2.0/24"])) },
    codes: [102],
    mentions: ["104857600 bytes"],
  },
  { name: "node file is a FIFO", ctx: "store", target: "ADD-new", node: { kind: "fifo" }, codes: [102], mentions: ["not a regular file"] },
  {
    name: "node file is a directory",
    ctx: "no-store",
    target: "ADD-new",
    node: { kind: "dir" },
    codes: [102],
    mentions: ["not a regular file"],
  },
  {
    name: "node podCIDRs deeply nested",
    ctx: "store",
    target: "ADD-new",
    node: { kind: "bytes", bytes: encode(cn(deepObj(50_000))) },
    codes: [102],
    mentions: ["spec.ipam.podCIDRs"],
  },
  {
    name: "CNI_IFNAME with a slash",
    ctx: "store",
    target: "ADD-new",
    env: { CNI_IFNAME: "../eth0" },
    codes: [4],
    mentions: ["CNI_IFNAME", "../eth0"],
  },
  {
    name: "CNI_IFNAME 16 characters",
    ctx: "store",
    target: "DEL",
    env: { CNI_IFNAME: "eth0123456789abc" },
    codes: [4],
    mentions: ["CNI_IFNAME"],
  },
  {
    name: "CNI_CONTAINERID with ../",
    ctx: "store",
    target: "DEL",
    env: { CNI_CONTAINERID: "../seed-a" },
    codes: [4],
    mentions: ["CNI_CONTAINERID", "../seed-a"],
  },
  {
    name: "CNI_CONTAINERID with a newline",
    ctx: "store",
    target: "CHECK",
    env: { CNI_CONTAINERID: "seed-a\n" },
    codes: [4],
    mentions: ["CNI_CONTAINERID"],
  },
  {
    name: "CNI_ARGS pair without =",
    ctx: "store",
    target: "ADD-new",
    env: { CNI_ARGS: "IgnoreUnknown=1;../etc" },
    codes: [4],
    mentions: ["CNI_ARGS", "../etc"],
  },
  {
    name: "CNI_ARGS IP= not an address",
    ctx: "store",
    target: "ADD-new",
    env: { CNI_ARGS: "IP=../etc" },
    codes: [7],
    mentions: ["requested address", "../etc"],
  },
  {
    name: "cniVersion 1.2.0",
    ctx: "store",
    target: "ADD-new",
    conf: (c) => (c.cniVersion = "1.2.0"),
    codes: [1],
    mentions: ["incompatible CNI versions"],
  },
  {
    name: "stdin truncated",
    ctx: "store",
    target: "DEL",
    stdin: Buffer.from('{"cniVersion":"1.1.0","name":"pod'),
    codes: [6],
    mentions: ["not valid JSON"],
  },
  {
    name: "stdin not UTF-8",
    ctx: "store",
    target: "ADD-new",
    stdin: Buffer.from([0xff, 0xfe, 0x7b, 0x7d]),
    codes: [6],
    mentions: ["stdin"],
  },
  {
    name: "ipam.gateway deeply nested",
    ctx: "store",
    target: "ADD-new",
    conf: (_c, i) => (i.gateway = deepArr(50_000)),
    codes: [7],
    mentions: ["ipam.gateway"],
  },
  {
    name: "ipam.routes[0].dst deeply nested",
    ctx: "store",
    target: "ADD-new",
    conf: (_c, i) => (i.routes = [{ dst: deepArr(50_000) }]),
    codes: [7],
    mentions: ["ipam.routes[0].dst"],
  },
  {
    name: "cniVersion deeply nested",
    ctx: "store",
    target: "DEL",
    conf: (c) => (c.cniVersion = deepArr(50_000)),
    codes: [6],
    mentions: ["version"],
  },
  {
    name: "runtimeConfig a number",
    ctx: "store",
    target: "ADD-new",
    conf: (c) => (c.runtimeConfig = 5),
    codes: [7],
    mentions: ["runtimeConfig"],
  },
  { name: "args a list", ctx: "store", target: "ADD-new", conf: (c) => (c.args = ["IP=10.0.2.50"]), codes: [7], mentions: ["args"] },
  {
    name: "CHECK with prevResult a number",
    ctx: "store",
    target: "CHECK",
    conf: (c) => (c.prevResult = 5),
    codes: [7],
    mentions: ["prevResult"],
  },
  {
    name: "requested address outside the podCIDRs, no store yet",
    ctx: "no-store",
    target: "ADD-new",
    env: { CNI_ARGS: "IP=192.168.9.9" },
    codes: [101],
    mentions: ["requested address 192.168.9.9"],
  },
  {
    name: "requested address reserved (router), no store yet",
    ctx: "no-store",
    target: "ADD-new",
    conf: (c) => (c.runtimeConfig = { ips: ["10.0.2.236"] }),
    codes: [101],
    mentions: ["10.0.2.236", "reserved"],
  },
];

// ---------------------------------------------------------------------------
// Tier (a): in process
// ---------------------------------------------------------------------------

describe("fuzz (in process): bad inputs through dispatch() and the real handlers", () => {
  let w: World;
  beforeAll(async () => {
    w = await makeWorld(false);
  });
  afterAll(() => {
    w?.store.sb.cleanup();
    w?.noStore.sb.cleanup();
  });

  it(
    "generator control: the un-faulted twin of sampled cases succeeds",
    () => twinControl(w, SEED ^ 0xc0ffee, size(150, 1000), 900_000, runInProcess),
    TEST_TIMEOUT,
  );

  it.each(TARGETED.map((t, i) => ({ ...t, i })))("names the problem: $name", async (t) => {
    const c = targetedCase(t, w, 800_000 + t.i, SEED);
    prepareNode(c);
    try {
      const twin = await runInProcess(c.twin.env, c.twin.stdin);
      expect(twin.exit, `the twin must succeed: ${twin.stdout}`).toBe(0);
      resetStores(w);
      const { problems, stdout } = await problemsOf(c, w, runInProcess);
      expect(problems, stdout).toEqual([]);
    } finally {
      cleanupNode(c);
    }
  });

  it(
    `${size(2000, 20000)} generated bad inputs: each an error naming the problem, the store unchanged`,
    async () => {
      const r = new Rng(SEED);
      const n = size(2000, 20000);
      const t = newTally();
      const started = performance.now();
      await runEach(w, t, n, (i) => makeCase(r, i, pickCtx(r, w)), runInProcess);
      record("fuzz (in process)", "4. bad input changes nothing", {
        ...outcomeFigures(t, unchangedAfter(t, w), SEED),
        meanMs: Number((t.totalMs / t.cases).toFixed(2)),
        ...runFigures(t, started),
      });
      expect(t.violations.length, `violations (seed ${SEED}):\n${summary(t.violations)}`).toBe(0);
      expect(t.maxMs).toBeLessThan(BOUND_MS);
      finalChecks(w);
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------
// Tier (b): the built executable
// ---------------------------------------------------------------------------

describe("fuzz (executable): bad inputs through bin/podcidr-ipam", () => {
  let w: World;
  beforeAll(async () => {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run node scripts/build.mjs first`);
    w = await makeWorld(true);
  });
  afterAll(() => {
    w?.store.sb.cleanup();
    w?.noStore.sb.cleanup();
  });

  it("a NUL cannot be passed in an env var at all: spawn refuses it", () => {
    for (const k of ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_ARGS", "CNI_COMMAND"]) {
      expect(() => run({ command: "ADD", env: { [k]: "a\u0000b" }, stdin: "{}" })).toThrow(/null bytes/);
    }
  });

  it(
    "generator control: the un-faulted twin of sampled cases succeeds",
    () => twinControl(w, SEED ^ 0xbadf00d, size(12, 60), 700_000, runExe),
    TEST_TIMEOUT,
  );

  const EXE_TARGETED = TARGETED.filter((t) =>
    /100 MB|FIFO|directory|YAML|CNI_IFNAME with|\/33|deeply nested|not UTF-8|outside the podCIDRs/.test(t.name),
  );
  it.each(EXE_TARGETED.map((t) => ({ ...t, i: TARGETED.indexOf(t) })))("names the problem: $name", async (t) => {
    const c = targetedCase(t, w, 600_000 + t.i, SEED);
    prepareNode(c);
    try {
      const { problems, stdout } = await problemsOf(c, w, runExe);
      expect(problems, stdout).toEqual([]);
    } finally {
      cleanupNode(c);
    }
  });

  it(
    `${size(150, 1500)} generated bad inputs: bounded, one error object on stdout, the store unchanged`,
    async () => {
      const r = new Rng(SEED ^ 0x5a5a5a5a);
      const n = size(150, 1500);
      const t = newTally();
      const started = performance.now();
      // Always include the special node files, then random cases; 3 processes at a time.
      const forced: { family: string; variant: RegExp }[] = [
        /100 MB/,
        /FIFO/,
        /directory/,
        /symlink loop/,
        /YAML/,
        /truncated/,
        /not an object/,
      ].map((v) => ({ family: "node file", variant: v }));
      const cases: Case[] = [];
      for (let i = 0; i < n; i++) {
        const ctx = pickCtx(r, w);
        const only = forced[i];
        cases.push(makeCase(r, i, only ? w.store : ctx, only));
      }
      await runBatches(w, t, cases, 3, runExe);
      record("fuzz (executable)", "4. bad input changes nothing", {
        ...outcomeFigures(t, unchangedAfter(t, w), SEED),
        meanMs: Math.round(t.totalMs / t.cases),
        boundMs: BOUND_MS,
        killed: t.killed,
        ...runFigures(t, started),
      });
      expect(t.violations.length, `violations (seed ${SEED}):\n${summary(t.violations)}`).toBe(0);
      expect(t.maxMs).toBeLessThan(BOUND_MS);
      finalChecks(w);
    },
    TEST_TIMEOUT,
  );
});
