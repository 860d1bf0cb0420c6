// The operations a runtime (and an operator) performs, each with what the
// model expects of it. Every call goes to the built executable. A call that
// must be refused is checked to change nothing (byte snapshot of both data
// dirs). A call killed by us, or by a waiter recovering the lock from it, is in
// doubt until the runtime's follow-up (resolve).
import { type Att, heldText, parseHeld, sameHeld, showHeld } from "./model";
import { type Cidr, type Fam, broadcastOf, fmtIp, gatewayOf, inWindow, key, parseIp, windowEnd } from "./net";
import {
  type Ctx,
  type Op,
  addCall,
  call,
  chance,
  checkCall,
  codeOf,
  delCall,
  describe,
  expectCode,
  holdings,
  liveAtts,
  newAtt,
  pick,
  planBatch,
  runPlans,
  settleAdd,
  settleCheck,
  settleDel,
  settleLog,
  settleRepeat,
  unchanged,
} from "./calls";
import { ALL_CIDRS, V4_CHAIN, V6_CHAIN, applyNode, changeNode } from "./node";
import { stallOp, stopOp } from "./held";
import type { Call, Outcome, StoreId } from "./world";

/** ADD of a new attachment in store A (or B), one call, then the runtime's DEL if it failed. */
async function addOne(ctx: Ctx, store: StoreId, requestedText: string | null, tag: string): Promise<Att> {
  const a = newAtt(ctx, store);
  const requested = requestedText ? parseIp(requestedText) : null;
  const hold = holdings(ctx, store);
  const v = ctx.m.node;
  const exp = hold.expectAdd(v, requested);
  const t0 = Date.now();
  const run = (): Promise<Outcome> => call(ctx, addCall(a, requestedText ?? undefined), tag);
  const o = exp.codes.has(0) ? await run() : await unchanged(ctx, `refused ADD ${a.key}`, run);
  settleAdd(ctx, a, o, hold, 1, ctx.m.versionsDuring(t0, Date.now()), requested);
  if (a.state !== "live" && a.state !== "doubt" && chance(ctx, 0.3)) {
    // The runtime tears the failed sandbox down: a DEL of what holds nothing changes nothing.
    const d = await unchanged(ctx, `DEL after the refused ADD ${a.key}`, () => call(ctx, delCall(ctx, a), "cleanup"));
    expectCode(ctx, `DEL ${a.key} after its refused ADD`, d, new Set([0]));
  }
  return a;
}

function requestedAddress(ctx: Ctx): string {
  const v = ctx.m.node;
  const fam: Fam = chance(ctx, 0.6) ? 4 : 6;
  const specials = (c: Cidr): bigint[] => [
    c.net,
    gatewayOf(c),
    gatewayOf(c) + 1n,
    broadcastOf(c) ?? c.net + 2n,
    (broadcastOf(c) ?? c.net + 3n) - 1n,
  ];
  const r = ctx.rng();
  // The network, gateway and broadcast of a range pods still hold addresses in, that the node file no longer lists.
  const orphans = [...new Map(ctx.m.holders("A").flatMap((a) => a.held.map((h) => [h.cidr.text, h.cidr] as const))).values()].filter(
    (c) => c.fam === fam && !v.cidrs.some((x) => x.text === c.text),
  );
  if (r < 0.25 && orphans.length) return fmtIp(fam, pick(ctx, specials(pick(ctx, orphans))));
  if (r < 0.45)
    return fmtIp(
      fam,
      pick(
        ctx,
        specials(
          pick(
            ctx,
            ALL_CIDRS.filter((x) => x.fam === fam),
          ),
        ),
      ),
    );
  const holders = ctx.m.holders().flatMap((a) => a.held);
  if (r < 0.57 && holders.length) return heldText(pick(ctx, holders));
  if (r < 0.65 && v.special.length) {
    const s = pick(ctx, v.special);
    return fmtIp(s.fam, s.v);
  }
  if (r < 0.7) return fam === 4 ? "10.9.9.9" : "fd01::5";
  const cands = v.cidrs.filter((c) => c.fam === fam);
  if (!cands.length) return fam === 4 ? "10.0.2.77" : "fd00::277";
  const c = pick(ctx, cands);
  const span = windowEnd(c) - c.net;
  const val = c.net + 1n + BigInt(Math.floor(ctx.rng() * Number(span < 1024n ? span : 1024n)));
  const text = fmtIp(fam, val);
  // Now and then a non-canonical spelling (the plugin canonicalises).
  return fam === 6 && chance(ctx, 0.2) ? text.replace("fd00::", "fd00:0::0") : text;
}

const addOp: Op = {
  name: "add",
  weight: (ctx) => (liveAtts(ctx, "A").length < ctx.target ? 34 : 14),
  run: async (ctx) => {
    await addOne(ctx, "A", null, "add");
  },
};

const addIpOp: Op = {
  name: "addIp",
  weight: () => 5,
  run: async (ctx) => {
    await addOne(ctx, "A", requestedAddress(ctx), "add-ip");
  },
};

const secondOp: Op = {
  name: "second",
  weight: () => 3,
  run: async (ctx) => {
    await addOne(ctx, "B", chance(ctx, 0.2) ? requestedAddress(ctx) : null, "second-datadir");
  },
};

const repeatOp: Op = {
  name: "repeat",
  weight: (ctx) => (liveAtts(ctx, "A").length ? 5 : 0),
  run: async (ctx) => {
    // Same netns: ptp's repeated ADD, whose veth then exists: must be refused (106) and change nothing.
    const a = pick(ctx, liveAtts(ctx, "A"));
    if (ctx.w.netnsGen(a.netns) !== a.netnsGen) {
      // Another attachment's restart made the sandbox's netns again at this path: this netns is new to it.
      const o = await call(ctx, addCall(a), "repeat-into-remade-netns");
      settleRepeat(ctx, a, o, a.netns);
      return;
    }
    const o = await unchanged(ctx, `repeated ADD ${a.key} into its own netns`, () => call(ctx, addCall(a), "repeat-same-netns"));
    expectCode(ctx, `repeated ADD ${a.key} into its own netns`, o, new Set([106]), [
      "the interface exists: ptp fails and rolls back with DEL",
    ]);
    if (codeOf(o) === 0 && !o.killedByUs) {
      // What ptp does next: its veth exists, so it fails and rolls back with IPAM DEL.
      await call(ctx, delCall(ctx, a, "keep"), "ptp-rollback");
    }
  },
};

/** A container restarted without a DEL: the same attachment ADDed from a new netns gets the same addresses. */
function restartOp(name: string, sameInodePath: boolean, weight: number): Op {
  return {
    name,
    weight: (ctx) => (liveAtts(ctx, "A").length ? weight : 0),
    run: async (ctx) => {
      const a = pick(ctx, liveAtts(ctx, "A"));
      // A new netns file; or a new one at the same path (new inode), which is another netns too.
      const netns = ctx.w.netns(sameInodePath ? a.netns : undefined);
      const o = await call(ctx, { ...addCall(a), netns }, name);
      settleRepeat(ctx, a, o, netns);
    },
  };
}

const rollbackOp: Op = {
  name: "rollback",
  weight: () => 4,
  run: async (ctx) => {
    // bridge/ptp got addresses, then failed on their own: their rollback DEL follows at once.
    const a = await addOne(ctx, "A", null, "rollback-add");
    if (a.state !== "live") return;
    const o = await call(ctx, delCall(ctx, a, "keep"), "rollback-del");
    settleDel(ctx, a, o);
  },
};

const delOp: Op = {
  name: "del",
  weight: (ctx) =>
    (liveAtts(ctx, "B").length ? 12 : 0) + (liveAtts(ctx, "A").length ? (liveAtts(ctx, "A").length > ctx.target ? 30 : 12) : 0),
  run: async (ctx) => {
    const b = liveAtts(ctx, "B");
    const a = b.length && chance(ctx, 0.5) ? pick(ctx, b) : pick(ctx, liveAtts(ctx, "A").length ? liveAtts(ctx, "A") : b);
    settleDel(ctx, a, await call(ctx, delCall(ctx, a), "del"));
  },
};

const delUnknownOp: Op = {
  name: "delUnknown",
  weight: () => 2,
  run: async (ctx) => {
    const store: StoreId = chance(ctx, 0.8) ? "A" : "B";
    const pods = ctx.m.pods.filter((p) => p.store === store && p.ifnames.size < 2);
    let c: Call;
    if (pods.length && chance(ctx, 0.5)) {
      // A known sandbox, an interface it never had.
      const p = pick(ctx, pods);
      const ifname = p.ifnames.has("eth0") ? "net1" : "eth0";
      c = { store, network: pick(ctx, ctx.w.networks), command: "DEL", cid: p.cid, ifname, netns: p.netns, pod: [p.ns, p.name] };
    } else {
      c = {
        store,
        network: pick(ctx, ctx.w.networks),
        command: "DEL",
        cid: `unknown-${Math.floor(ctx.rng() * 1e9).toString(36)}`,
        ifname: "eth0",
        netns: chance(ctx, 0.5) ? ctx.w.netns() : null,
      };
    }
    const o = await unchanged(ctx, `DEL of unknown ${describe(c)}`, () => call(ctx, c, "del-unknown"));
    expectCode(ctx, `DEL of unknown ${describe(c)}`, o, new Set([0]));
  },
};

const delTwiceOp: Op = {
  name: "delTwice",
  weight: (ctx) => (ctx.m.list("dead").length ? 2 : 0),
  run: async (ctx) => {
    const a = pick(ctx, ctx.m.list("dead"));
    const o = await unchanged(ctx, `DEL again of ${a.key}`, () => call(ctx, delCall(ctx, a), "del-again"));
    expectCode(ctx, `DEL again of ${a.key}`, o, new Set([0]));
  },
};

const checkOp: Op = {
  name: "check",
  weight: (ctx) => (liveAtts(ctx).length ? 6 : 0) + (ctx.m.list("dead").some((a) => a.result) ? 2 : 0),
  run: async (ctx) => {
    const dead = ctx.m.list("dead").filter((a) => a.result);
    const live = liveAtts(ctx);
    const a = dead.length && (!live.length || chance(ctx, 0.25)) ? pick(ctx, dead) : pick(ctx, live);
    const o = await unchanged(ctx, `CHECK ${a.key}`, () =>
      call(ctx, checkCall(a, a.result), a.state === "live" ? "check" : "check-deleted"),
    );
    settleCheck(ctx, a, o);
  },
};

/** GC of one network: the runtime's list is what it knows of that network, minus what it forgot. */
function gcPlan(ctx: Ctx, network: string): { top: Record<string, unknown>; releases: Att[]; label: string } {
  const mine = ctx.m.holders("A").filter((a) => a.network === network);
  const r = ctx.rng();
  if (r < 0.04) return { top: { "cni.dev/valid-attachments": null }, releases: mine, label: "gc-null-list" };
  if (r < 0.08) return { top: {}, releases: [], label: "gc-no-list" };
  const keep = mine.filter((a) => (a.state === "live" ? !chance(ctx, 0.08) : chance(ctx, 0.5)));
  const list = keep.map((a) => ({ containerID: a.pod.cid, ifname: a.ifname }));
  // Entries the runtime still lists that hold nothing here (other networks' interfaces, gone pods).
  for (const x of ctx.m
    .holders("A")
    .filter((a) => a.network !== network)
    .slice(0, 3))
    list.push({ containerID: x.pod.cid, ifname: x.ifname });
  list.push({ containerID: "gone-pod", ifname: "eth0" });
  const key = chance(ctx, 0.15) ? "cni.dev/attachments" : "cni.dev/valid-attachments";
  return {
    top: { [key]: list },
    releases: mine.filter((a) => !keep.includes(a)),
    label: `gc(${key === "cni.dev/attachments" ? "old key, " : ""}keeps ${keep.length}/${mine.length})`,
  };
}

const gcOp: Op = {
  name: "gc",
  weight: () => 2,
  run: async (ctx) => {
    const network = pick(ctx, ctx.w.networks);
    const plan = gcPlan(ctx, network);
    const c: Call = { store: "A", network, command: "GC", top: plan.top };
    const o = plan.releases.length
      ? await call(ctx, c, plan.label)
      : await unchanged(ctx, `${plan.label} releasing nothing`, () => call(ctx, c, plan.label));
    if (expectCode(ctx, `GC of ${network}`, o, new Set([0]))) {
      for (const a of plan.releases) {
        a.state = "dead";
        a.held = [];
      }
    }
  },
};

const nodeOp: Op = {
  name: "node",
  weight: () => 4,
  run: async (ctx) => {
    changeNode(ctx);
  },
};

const gatewayTrapOp: Op = {
  name: "gatewayTrap",
  weight: () => 1.5,
  run: async (ctx) => {
    const v = ctx.m.node;
    const hold = holdings(ctx, "A");
    const fam: Fam = chance(ctx, 0.6) ? 4 : 6;
    const chain = fam === 4 ? V4_CHAIN : V6_CHAIN;
    const at = v.cidrs.findIndex((c) => chain.some((x) => x.text === c.text));
    const cur = v.cidrs[at];
    const traps = cur
      ? chain.filter((c) => {
          const g = gatewayOf(c);
          return (
            c.text !== cur.text &&
            inWindow(cur, fam, g) &&
            g !== gatewayOf(cur) &&
            !hold.byIp.has(key(fam, g)) &&
            !hold.reservedIn(cur, v).has(key(fam, g))
          );
        })
      : [];
    if (!cur || !traps.length) {
      ctx.log(`  no IPv${fam} CIDR of the chain has its gateway free in ${cur?.text ?? "(none listed)"}: nothing to set up`);
      return;
    }
    const trap = pick(ctx, traps);
    const a = await addOne(ctx, "A", fmtIp(fam, gatewayOf(trap)), "gateway-trap");
    if (a.state !== "live") return;
    const cidrs = [...v.cidrs];
    cidrs[at] = trap;
    applyNode(ctx, cidrs, [...v.special], v.kind, `${cur.text} -> ${trap.text}, whose gateway ${a.key} holds`);
    await addOne(ctx, "A", null, "after-trap");
  },
};

const killOp: Op = {
  name: "kill",
  weight: () => 6,
  run: async (ctx) => {
    const live = liveAtts(ctx, "A");
    const mode = ctx.rng();
    if (live.length && chance(ctx, 0.35)) {
      const a = pick(ctx, live);
      const c = delCall(ctx, a);
      const o = mode < 0.8 ? await call(ctx, c, "del-kill", killDelay(ctx)) : await killedOn(ctx, c, "commit");
      countKill(ctx, o);
      settleDel(ctx, a, o);
      return;
    }
    const a = newAtt(ctx, "A");
    const hold = holdings(ctx, "A");
    const t0 = Date.now();
    const c = addCall(a);
    const o = mode < 0.7 ? await call(ctx, c, "add-kill", killDelay(ctx)) : await killedOn(ctx, c, mode < 0.85 ? "commit" : "answer");
    countKill(ctx, o);
    settleAdd(ctx, a, o, hold, 1, ctx.m.versionsDuring(t0, Date.now()), null);
  },
};

function killDelay(ctx: Ctx): number {
  return Math.floor(ctx.rng() * 1.5 * ctx.w.callMs);
}

async function killedOn(ctx: Ctx, c: Call, mode: "commit" | "answer"): Promise<Outcome> {
  ctx.touched.add(c.store);
  ctx.calls++;
  const o = await ctx.w.callKilledOn(c, mode);
  settleLog(ctx, c, `kill-on-${mode}`, o);
  return o;
}

function countKill(ctx: Ctx, o: Outcome): void {
  if (o.killedByUs) ctx.stats.killsLanded++;
  else ctx.stats.killsMissed++;
}

const resolveOp: Op = {
  name: "resolve",
  weight: (ctx) => {
    const n = ctx.m.list("doubt").length;
    return n ? 4 + 4 * n : 0;
  },
  run: async (ctx) => {
    const a = pick(ctx, ctx.m.list("doubt"));
    await resolve(ctx, a, chance(ctx, 0.5));
  },
};

/** What the runtime does after a call it lost track of: DEL it, or (a killed ADD) ADD again from a new sandbox netns. */
async function resolve(ctx: Ctx, a: Att, retryAdd: boolean): Promise<void> {
  if (a.doubt === "add" && retryAdd) {
    const netns = ctx.w.netns();
    a.netns = netns;
    a.netnsGen = ctx.w.netnsGen(netns);
    a.pod.netns = netns;
    if (a.held.length) {
      // It committed before it died: the retry must get what it holds.
      const o = await call(ctx, addCall(a), "retry-add");
      if (expectCode(ctx, `retried ADD ${a.key}`, o, new Set([0]))) {
        const held = parseHeld(o.r.json);
        if (!held || !sameHeld(held, a.held))
          ctx.v.push({
            kind: "lost",
            msg: `retried ADD ${a.key} answered ${held ? showHeld(held) : "?"}; the killed ADD had committed ${showHeld(a.held)}`,
          });
        a.state = "live";
        a.doubt = undefined;
        a.result = o.r.json;
      }
      return;
    }
    const hold = holdings(ctx, a.store, new Set([a.key]));
    const t0 = Date.now();
    const o = await call(ctx, addCall(a), "retry-add");
    settleAdd(ctx, a, o, hold, 1, ctx.m.versionsDuring(t0, Date.now()), null);
    return;
  }
  settleDel(ctx, a, await call(ctx, delCall(ctx, a), "runtime-del"));
}

const batchOp: Op = {
  name: "batch",
  weight: () => 5,
  run: async (ctx) => {
    const { plans } = planBatch(ctx, 3 + Math.floor(ctx.rng() * 4));
    await runPlans(ctx, plans, "batch:");
  },
};

export const OPS: readonly Op[] = [
  addOp,
  addIpOp,
  gatewayTrapOp,
  secondOp,
  repeatOp,
  restartOp("restart", false, 3),
  restartOp("restartInode", true, 1),
  rollbackOp,
  delOp,
  delUnknownOp,
  delTwiceOp,
  checkOp,
  gcOp,
  nodeOp,
  killOp,
  resolveOp,
  batchOp,
  stallOp,
  stopOp,
];
