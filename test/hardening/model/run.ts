// The model test's loop: a seeded sequence of operations against the built
// executable, the invariants after every step, and the runtime's cleanup at the
// end. Each step draws from its own PRNG, prng(seed, step), so a run replays
// from its seed; what a kill or a stop hits depends on timing and can differ.
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prng } from "../../helpers/prng";
import { Sandbox, run } from "../../helpers/plugin";
import { checkClaims, checkDurable, checkStores } from "./checks";
import { Model, showHeld } from "./model";
import { fmtIp } from "./net";
import { type Ctx, type Op, type Stats, checkCall, delCall, resetIds, settleCheck, settleDel, settleLog } from "./calls";
import { initialNode, writeNode } from "./node";
import { OPS } from "./ops";
import { type StoreId, type StoreView, World, readStatus } from "./world";

export interface RunConfig {
  seed: number;
  steps: number;
  /** SIGSTOPs of a lock holder (each costs over 5 s), placed at seeded steps. */
  stops: number;
  /** Calls stalled in an fsync under strace, placed at seeded steps. */
  stalls: number;
  maxStallUs: number;
  /** Live attachments the runtime aims at. */
  target: number;
  /** CHECK every live attachment every this many steps (one sampled CHECK every third step besides). */
  sweepEvery: number;
  /** MODEL_OPS: "add,del" runs only those; "-gc,-second" leaves those out. */
  ops?: string;
  /** MODEL_NETWORKS: 2 (default) or 1. */
  networks?: number;
}

export interface RunReport {
  stats: Stats;
  steps: number;
  seconds: number;
  callMs: number;
  strace: boolean;
  finalReleased: number;
  /** Stops and stalls placed (what the run could do with the operations it was given). */
  planned: { stops: number; stalls: number };
  /** The operations this run could choose from (MODEL_OPS). */
  ops: string[];
}

export class ModelFailure extends Error {}

export async function runModel(cfg: RunConfig): Promise<RunReport> {
  const started = Date.now();
  const w = new World(cfg.networks ?? 2);
  const lines: string[] = [];
  const log = (s: string): void => {
    lines.push(s);
  };
  const stats: Stats = {
    ops: {},
    calls: 0,
    killsLanded: 0,
    killsMissed: 0,
    durable: 0,
    stops: 0,
    stopsMissed: 0,
    stalls: 0,
    nodeChanges: 0,
    refusedUnchanged: 0,
    claimsByRefused: 0,
    snapshotsSkipped: 0,
    codes: {},
  };
  const m = new Model();
  const ctx: Ctx = {
    w,
    m,
    rng: prng(cfg.seed),
    step: 0,
    log,
    v: [],
    stats,
    touched: new Set(),
    calls: 0,
    unchangedCalls: 0,
    durable: [],
    target: cfg.target,
    maxStallUs: cfg.maxStallUs,
  };
  const views: Record<StoreId, StoreView | null> = { A: null, B: null };
  resetIds();
  const fail = (what: string): never => {
    const file = join(tmpdir(), `podcidr-model-${cfg.seed}.log`);
    // What the model and the stores held when it failed.
    log("--- model: attachments holding (or in doubt) ---");
    for (const a of m.holders())
      log(
        `  ${a.state}${a.doubt ? `(${a.doubt})` : ""} ${a.key} ${a.held.map((h) => `${fmtIp(h.fam, h.v)} in ${h.cidr.text}`).join(", ") || "-"}`,
      );
    for (const view of Object.values(views)) {
      if (!view) continue;
      log(`--- status of store ${view.store} (${view.layout}), as last read ---`);
      for (const r of view.ranges)
        log(
          `  ${r.cidr.text}${r.orphaned ? " (orphaned)" : ""} allocated ${r.allocated}: ${r.lines.map((l) => `${l.text}${l.reserved ? `(${l.reserved})` : ""}${l.owner ? `=${l.owner.network}/${l.owner.containerID}/${l.owner.ifname}` : ""}`).join(" ")}`,
        );
    }
    writeFileSync(file, `${lines.join("\n")}\n`);
    const replay = `MODEL_SEED=${cfg.seed} MODEL_STEPS=${cfg.steps}${cfg.ops ? ` MODEL_OPS=${cfg.ops}` : ""}${cfg.networks === 1 ? " MODEL_NETWORKS=1" : ""} npx vitest run test/hardening/model.test.ts`;
    throw new ModelFailure(
      `model test failed ${what}, seed ${cfg.seed}\nreplay: ${replay}\n${ctx.v.map((x) => `  [${x.kind}] ${x.msg}`).join("\n")}\n` +
        `--- last steps (full log: ${file}) ---\n${lines.slice(-70).join("\n")}`,
    );
  };
  try {
    w.callMs = await measureCallMs();
    log(`seed ${cfg.seed}, ${cfg.steps} steps, call ${w.callMs} ms, strace ${w.strace ? w.strace.join(" ") : "missing"}`);
    m.versions.push(initialNode(ctx));
    writeNode(ctx, m.node);
    log(
      `  node v0: ${m.node.cidrs.map((c) => c.text).join(", ")}; ${m.node.special.map((s) => `${s.role}=${fmtIp(s.fam, s.v)}`).join(" ")}`,
    );

    const ops = selectOps(cfg.ops);
    const planRng = prng(cfg.seed ^ 0x5eed);
    const scheduled = new Map<number, Op>();
    const place = (n: number, op: Op | undefined): void => {
      if (!op) return;
      for (let i = 0; i < n && scheduled.size < cfg.steps; i++) {
        let at = 1 + Math.floor(planRng() * cfg.steps);
        while (scheduled.has(at)) at = (at % cfg.steps) + 1;
        scheduled.set(at, op);
      }
    };
    place(
      cfg.stops,
      ops.find((o) => o.name === "stop"),
    );
    const stops = scheduled.size;
    place(
      cfg.stalls,
      ops.find((o) => o.name === "stall"),
    );
    const planned = { stops, stalls: scheduled.size - stops };

    for (let step = 1; step <= cfg.steps; step++) {
      ctx.step = step;
      ctx.rng = prng((cfg.seed ^ Math.imul(step, 0x9e3779b1)) >>> 0);
      ctx.v.length = 0;
      ctx.touched.clear();
      ctx.calls = 0;
      ctx.unchangedCalls = 0;
      ctx.durable.length = 0;
      const nodeSeq = m.node.seq;
      const op = scheduled.get(step) ?? choose(ctx, ops);
      stats.ops[op.name] = (stats.ops[op.name] ?? 0) + 1;
      log(`#${String(step).padStart(5, "0")} ${op.name}`);
      const t0 = Date.now();
      await op.run(ctx);
      const t1 = Date.now();
      // Every call of the step left the stores byte for byte as they were: their status is the one already read.
      if (ctx.calls > 0 && ctx.calls === ctx.unchangedCalls && m.node.seq === nodeSeq) ctx.touched.clear();
      if (m.node.seq !== nodeSeq) ctx.touched.add("A");
      await observe(ctx, views, step % cfg.sweepEvery === 0 ? "all" : step % 3 === 0 ? "one" : "none");
      log(`  (${t1 - t0} ms + ${Date.now() - t1} ms checks)`);
      if (ctx.v.length) fail(`at step ${step} (${op.name})`);
      if (step % 50 === 0) m.prune(200);
      if (step % 1000 === 0)
        process.stdout.write(
          `[model] step ${step}/${cfg.steps}: ${m.list("live").length} live, ${stats.calls} calls, ${Math.round((Date.now() - started) / 1000)} s\n`,
        );
    }

    // The runtime's retries are done: DEL everything it knows of or lost track of.
    log(`#end cleanup: DEL of ${m.holders().length} attachment(s)`);
    const left = m.holders();
    for (const a of left) {
      const c = delCall(ctx, a, "keep");
      const o = await ctx.w.call(c);
      settleLog(ctx, c, "final-del", o);
      settleDel(ctx, a, o);
      ctx.touched.add(a.store);
    }
    ctx.touched.add("A");
    if (views.B || left.some((a) => a.store === "B")) ctx.touched.add("B");
    await observe(ctx, views, "none");
    for (const view of Object.values(views)) {
      if (!view) continue;
      for (const r of view.ranges) {
        const held = r.lines.filter((l) => l.owner || !l.reserved);
        if (r.allocated !== 0 || held.length)
          ctx.v.push({
            kind: "leak",
            msg: `after every DEL, store ${view.store}: ${r.cidr.text} has allocated ${r.allocated}, holding ${held.map((l) => l.text).join(", ")}`,
          });
      }
    }
    for (const store of ["A", "B"] as const) {
      const recs = await w.recordFiles(store);
      if (recs.length) ctx.v.push({ kind: "leak", msg: `after every DEL, store ${store} keeps attachment records ${recs.join(", ")}` });
    }
    if (m.holders().length)
      ctx.v.push({
        kind: "leak",
        msg: `DEL did not release ${m
          .holders()
          .map((a) => `${a.key} (${showHeld(a.held)})`)
          .join(", ")}`,
      });
    if (ctx.v.length) fail("after the final DELs");
    return {
      stats,
      steps: cfg.steps,
      seconds: Math.round((Date.now() - started) / 1000),
      callMs: w.callMs,
      strace: Boolean(w.strace),
      finalReleased: left.length,
      planned,
      ops: ops.map((o) => o.name),
    };
  } finally {
    if (process.env.MODEL_LOG) writeFileSync(process.env.MODEL_LOG, `${lines.join("\n")}\n`);
    w.cleanup();
  }
}

/** Read the status of the stores touched, CHECK one (or every) live attachment, and check the invariants. */
async function observe(ctx: Ctx, views: Record<StoreId, StoreView | null>, checks: "one" | "all" | "none"): Promise<void> {
  const live = ctx.m.list("live");
  const sample = checks === "all" ? live : checks === "one" && live.length ? [live[Math.floor(ctx.rng() * live.length)]!] : [];
  const readers = [...ctx.touched].map(async (s) => {
    views[s] = await readStatus(ctx.w, s);
  });
  const checkers = (async () => {
    for (let i = 0; i < sample.length; i += 2) {
      await Promise.all(
        sample.slice(i, i + 2).map(async (a) => {
          const c = checkCall(a, a.result);
          const o = await ctx.w.call(c);
          settleLog(ctx, c, checks === "all" ? "sweep" : "sample", o);
          settleCheck(ctx, a, o);
        }),
      );
    }
  })();
  await Promise.all([...readers, checkers]);
  for (const d of ctx.durable) {
    ctx.stats.durable++;
    ctx.v.push(...checkDurable(d.att, d.held, views[d.att.store]!));
  }
  const present = (["A", "B"] as const).map((s) => views[s]).filter((x): x is StoreView => x !== null);
  ctx.v.push(...checkStores(ctx.m, present, { A: await ctx.w.recordFiles("A"), B: await ctx.w.recordFiles("B") }));
  ctx.v.push(...checkClaims(present, ctx.w.claimOwners(), { A: ctx.w.storeFolder("A"), B: ctx.w.storeFolder("B") }));
}

function choose(ctx: Ctx, ops: readonly Op[]): Op {
  const ws = ops.map((o) => Math.max(0, o.weight(ctx)));
  const total = ws.reduce((a, b) => a + b, 0);
  let r = ctx.rng() * total;
  for (let i = 0; i < ops.length; i++) {
    r -= ws[i]!;
    if (r < 0) return ops[i]!;
  }
  return ops.find((o) => o.name === "add")!;
}

function selectOps(spec: string | undefined): Op[] {
  if (!spec) return [...OPS];
  const names = spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.map((n) => n.replace(/^-/, "")).filter((n) => !OPS.some((o) => o.name === n));
  if (unknown.length)
    throw new Error(`MODEL_OPS names unknown operations ${unknown.join(", ")}; known: ${OPS.map((o) => o.name).join(", ")}`);
  const excl = names.filter((n) => n.startsWith("-")).map((n) => n.slice(1));
  const only = names.filter((n) => !n.startsWith("-"));
  return OPS.filter((o) => (only.length ? only.includes(o.name) || o.name === "add" : true) && !excl.includes(o.name));
}

/** Median wall time of a plain ADD in a throwaway sandbox: the scale of the kill delays. */
async function measureCallMs(): Promise<number> {
  const sb = new Sandbox();
  try {
    sb.writeNode({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNode",
      metadata: { name: "n" },
      spec: { ipam: { podCIDRs: ["10.9.0.0/24", "fd09::/120"] } },
    });
    const ms: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = Date.now();
      const r = await run({ command: "ADD", containerID: `measure-${i}`, stdin: sb.conf() });
      if (r.code !== 0) throw new Error(`the executable does not work: ${r.stdout}${r.stderr}`);
      ms.push(Date.now() - t0);
    }
    return ms.sort((a, b) => a - b)[3]!;
  } finally {
    sb.cleanup();
  }
}
