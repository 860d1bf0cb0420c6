// The model-based test of issue #9: a seeded random sequence of what runtimes
// and operators do (ADD, repeated ADD through ptp, rollbacks, DEL, CHECK, GC,
// node-file changes, a second data dir, SIGKILLs, stalled fsyncs, a SIGSTOPped
// lock holder, concurrent batches) against the built executable, checked after
// every step against a reference model. On failure it prints the seed, the
// broken invariant and the step log. The harness, in test/hardening/model/:
//   net.ts     address math of its own (not src/'s)
//   model.ts   the reference model: attachments, node versions, what an ADD may answer
//   checks.ts  the invariants checked against `status` after every step
//   world.ts   the sandbox, the calls (plain, killed, under strace) and the status adapter
//   node.ts    the node files written; calls.ts  making calls and settling their outcome
//   ops.ts     the operations and their weights; held.ts  stalled and stopped lock holders
//   run.ts     the loop, the final DELs and the leak check
//
//   MODEL_SEED=n        the seed (default below; printed either way)
//   MODEL_STEPS=n       the number of steps (default: the size's)
//   MODEL_OPS=a,b|-a,-b only these operations / all but these (names in model/ops.ts)
//   MODEL_NETWORKS=1    one network only (to look past the cross-network duplicates of old builds)
//   MODEL_STOPS=n, MODEL_STALLS=n, MODEL_MAX_STALL_S=s   SIGSTOPs, strace-stalled fsyncs, the longest stall
//   MODEL_LOG=file      write the full step log there
import { describe, expect, it } from "vitest";
import { record, size } from "./report";
import { runModel } from "./model/run";

const SEED = Number(process.env.MODEL_SEED ?? 20261201);
const STEPS = Number(process.env.MODEL_STEPS ?? size(200, 10_000));

describe("model-based test", () => {
  it(
    `${STEPS} random steps against the reference model (seed ${SEED})`,
    async () => {
      process.stdout.write(`[model] seed ${SEED}, ${STEPS} steps${process.env.MODEL_OPS ? `, ops ${process.env.MODEL_OPS}` : ""}\n`);
      const rep = await runModel({
        seed: SEED,
        steps: STEPS,
        stops: Number(process.env.MODEL_STOPS ?? size(1, Math.round(STEPS / 400))),
        stalls: Number(process.env.MODEL_STALLS ?? size(2, Math.round(STEPS / 250))),
        maxStallUs: Number(process.env.MODEL_MAX_STALL_S ?? size(2, 8)) * 1e6,
        target: size(24, 60),
        sweepEvery: size(100, 500),
        ops: process.env.MODEL_OPS,
        networks: Number(process.env.MODEL_NETWORKS ?? 2),
      });
      const s = rep.stats;
      if (!rep.strace)
        process.stdout.write(`[model] NOTICE: /usr/bin/strace is missing: ${rep.planned.stalls} stalled-fsync step(s) skipped\n`);
      // What was planned happened, or the run proved less than it says.
      if (rep.ops.includes("kill")) expect(s.killsLanded).toBeGreaterThan(0);
      if (rep.planned.stops > 0) expect(s.stops, "no SIGSTOP caught a holder inside the lock").toBeGreaterThan(0);
      if (rep.strace) expect(s.stalls).toBe(rep.planned.stalls);
      record("model: random runtime and operator steps against a reference model", "1. no address held twice", {
        seed: SEED,
        steps: rep.steps,
        seconds: rep.seconds,
        calls: s.calls,
        ops: Object.entries(s.ops)
          .sort()
          .map(([k, v]) => `${k}:${v}`)
          .join(" "),
        "kills landed": s.killsLanded,
        "kills after the call ended": s.killsMissed,
        "killed right after answering": s.durable,
        stops: s.stops,
        stalls: rep.strace ? s.stalls : "skipped (no strace)",
        "node-file changes": s.nodeChanges,
        "exit codes": Object.entries(s.codes)
          .sort()
          .map(([k, v]) => `${k}:${v}`)
          .join(" "),
        "refused calls unchanged": s.refusedUnchanged,
        "claims left by refused calls": s.claimsByRefused,
        "released at the end": rep.finalReleased,
        duplicates: 0,
        "reserved held": 0,
        lost: 0,
        leaks: 0,
      });
    },
    // About 0.3 s a step on two cores, and every stop and stall on top; generous, as the machine is shared.
    120_000 + STEPS * 1500,
  );
});
