// A lock holder that keeps the lock while other calls queue behind it: stalled
// in one fsync under strace (it must keep the lock for as long as it runs), or
// SIGSTOPped at a random instant of its critical section (the next waiter must
// SIGKILL it once it has not renewed its lease for 5 s). The node file may
// change while the waiters wait: they must read it again under the lock.
import { readFileSync } from "node:fs";
import type { Att, Holdings } from "./model";
import {
  type Ctx,
  type Op,
  chance,
  codeOf,
  delCall,
  describe,
  expectCode,
  holdings,
  liveAtts,
  newAtt,
  addCall,
  outcomeText,
  pick,
  planBatch,
  runPlans,
  settleAdd,
  settleDel,
  settleLog,
} from "./calls";
import { changeNode } from "./node";
import type { Call, Outcome, Stall } from "./world";

async function waitFor(cond: () => boolean, exited: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until && !exited()) {
    if (cond()) return true;
    await new Promise((r) => setImmediate(r));
  }
  return false;
}

/** The victim of a stall or a stop: a new pod's ADD, a DEL of a live one, or a GC that releases nothing. */
interface Victim {
  c: Call;
  tag: string;
  att?: Att;
  kind: "add" | "del" | "gc";
}

function victim(ctx: Ctx, allowGc: boolean): Victim {
  const live = liveAtts(ctx, "A");
  const r = ctx.rng();
  if (live.length && r < 0.25) {
    const a = pick(ctx, live);
    return { c: delCall(ctx, a), tag: "del", att: a, kind: "del" };
  }
  if (allowGc && r < 0.4) {
    const network = pick(ctx, ctx.w.networks);
    const list = ctx.m
      .holders("A")
      .filter((a) => a.network === network)
      .map((a) => ({ containerID: a.pod.cid, ifname: a.ifname }));
    return { c: { store: "A", network, command: "GC", top: { "cni.dev/valid-attachments": list } }, tag: "gc-keep-all", kind: "gc" };
  }
  const a = newAtt(ctx, "A");
  return { c: addCall(a), tag: "add", att: a, kind: "add" };
}

function settleVictim(ctx: Ctx, vic: Victim, o: Outcome, hold: Holdings, concurrent: number, t0: number, stopped: boolean): void {
  if (stopped && codeOf(o) !== 0 && !o.killedByOther) {
    // A stopped holder that failed on waking (reported already): the runtime follows up as after a kill.
    if (vic.att) {
      ctx.m.atts.set(vic.att.key, vic.att);
      vic.att.state = "doubt";
      vic.att.doubt = vic.kind === "add" ? "add" : "del";
    }
    return;
  }
  if (vic.kind === "add") settleAdd(ctx, vic.att!, o, hold, concurrent, ctx.m.versionsDuring(t0, Date.now()), null);
  else if (vic.kind === "del") settleDel(ctx, vic.att!, o);
  else if (!o.killedByUs && !o.killedByOther) expectCode(ctx, "GC keeping every attachment", o, new Set([0]));
}

export const stallOp: Op = {
  name: "stall",
  weight: () => 0, // placed at seeded steps, see run.ts
  run: async (ctx) => {
    if (!ctx.w.strace) {
      ctx.log("  NOTICE: strace is missing (/usr/bin/strace): stalled-fsync step skipped");
      return;
    }
    const vic = victim(ctx, true);
    const plus = chance(ctx, 0.3);
    const delayUs = plus
      ? Math.floor(300_000 + ctx.rng() * Math.min(1_200_000, ctx.maxStallUs / 4))
      : Math.floor(1_000_000 + ctx.rng() * (ctx.maxStallUs - 1_000_000));
    // A call syncs once per commit (its record, or a checkpoint), a first call of a store a few times more.
    const stall: Stall = { delayUs, when: `${1 + Math.floor(ctx.rng() * 2)}${plus ? "+" : ""}` };
    await heldScenario(
      ctx,
      vic,
      `sync #${stall.when} stalled ${(delayUs / 1e6).toFixed(1)} s`,
      stall,
      1 + Math.floor(ctx.rng() * 4),
      chance(ctx, 0.4),
    );
    ctx.stats.stalls++;
  },
};

export const stopOp: Op = {
  name: "stop",
  weight: () => 0, // placed at seeded steps, see run.ts
  run: async (ctx) => {
    for (let attempt = 0; attempt < 6; attempt++) {
      if (await heldScenario(ctx, victim(ctx, true), "SIGSTOP", null, 2 + Math.floor(ctx.rng() * 3), chance(ctx, 0.4))) {
        ctx.stats.stops++;
        return;
      }
      ctx.stats.stopsMissed++;
    }
  },
};

/** Busy-wait (the holder's critical section lasts milliseconds: timers are too coarse). */
function spinUs(us: number): void {
  const end = process.hrtime.bigint() + BigInt(Math.floor(us * 1000));
  while (process.hrtime.bigint() < end);
}

/**
 * A holder that keeps the lock (stalled in an fsync under strace, or SIGSTOPped
 * at a random instant of its critical section) while other calls queue behind
 * it; the node file may change while they wait. Returns false when a stop
 * missed (the call was not holding the lock when it stopped).
 */
async function heldScenario(
  ctx: Ctx,
  vic: Victim,
  label: string,
  stall: Stall | null,
  waiters: number,
  changeNodeToo: boolean,
): Promise<boolean> {
  // The victim holds the lock first: what it sees is the store before the waiters.
  const hold = holdings(ctx, "A");
  const t0 = Date.now();
  ctx.touched.add("A");
  ctx.calls++;
  const { child, done } = ctx.w.spawn(vic.c, stall ?? undefined);
  let exited = false;
  child.on("exit", () => (exited = true));
  // Under strace the plugin is strace's child.
  const holds = (): boolean => {
    const pid = ctx.w.lockHolder("A", vic.c.network);
    return !exited && pid !== null && (pid === child.pid || (stall !== null && parentOf(pid) === child.pid));
  };
  const caught = await waitFor(holds, () => exited, stall ? 8000 : 3000);
  const finish = async (tag: string, stopped: boolean): Promise<Outcome> => {
    const r = await done;
    const o: Outcome = { r, ms: Date.now() - t0, killedByUs: false, killedByOther: r.signal === "SIGKILL" };
    settleLog(ctx, vic.c, `${tag}:${vic.tag}`, o);
    settleVictim(ctx, vic, o, hold, 1 + waiters, t0, stopped);
    return o;
  };
  let stoppedAt = 0;
  if (!stall) {
    if (caught) {
      spinUs(ctx.rng() * 2500);
      child.kill("SIGSTOP");
      stoppedAt = Date.now();
      await new Promise((r) => setTimeout(r, 15));
    }
    if (!caught || !holds() || procState(child.pid!) !== "T") {
      child.kill("SIGCONT");
      await finish("stop-missed", false);
      return false;
    }
  }
  ctx.log(
    `  ${label}: ${vic.tag} pid ${child.pid} ${caught ? "holds the lock" : "was not seen holding the lock"}; ${waiters} call(s) queue behind it`,
  );
  // The holder's own ADD, not yet in the model, may take the last free address before the waiters get the lock.
  const { plans } = planBatch(
    ctx,
    waiters,
    vic.att ? [vic.att.key] : [],
    true,
    vic.kind === "del" ? [vic.att!.key] : [],
    vic.kind === "add" ? 1 : 0,
  );
  await runPlans(ctx, plans, stall ? "behind-stall:" : "behind-stop:", async () => {
    if (!changeNodeToo || !caught) return;
    // Let the waiters read the node file and queue for the lock, then change the file under them.
    await new Promise((r) => setTimeout(r, 400));
    if (!holds()) return;
    changeNode(ctx);
    // Only if the holder still has the lock after the rename must the waiters use the new file.
    if (holds()) {
      ctx.notBefore = Date.now();
      ctx.log(`  node v${ctx.m.node.seq} written while pid ${child.pid} holds the lock: the ADDs queued behind it must read it`);
    } else ctx.log(`  node v${ctx.m.node.seq} written as the holder let go: the ADDs queued may read either version`);
  });
  ctx.notBefore = undefined;
  if (stall) {
    await finish("stalled", false);
    return true;
  }
  const stoppedFor = Date.now() - stoppedAt;
  if (!exited && stoppedFor < 5500) await new Promise((r) => setTimeout(r, 5500 - stoppedFor));
  const wasRunning = !exited;
  child.kill("SIGCONT");
  const o = await finish("stopped", true);
  if (!o.killedByOther) {
    ctx.v.push({
      kind: "protocol",
      msg: `${describe(vic.c)}: SIGSTOPped holding the lock for ${Date.now() - stoppedAt} ms while ${waiters} call(s) waited; the next waiter should have SIGKILLed it past 5 s (${wasRunning ? "it was still stopped" : "it exited"}: ${outcomeText(o)})`,
    });
  }
  return true;
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return -1;
  }
}

function procState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return "?";
  }
}
