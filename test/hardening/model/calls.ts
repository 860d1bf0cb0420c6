// The calls of the model test and how each outcome settles into the model:
// the step context, making a call (plain or killed), checking its exit code,
// checking that a refused call changed nothing, and batches of concurrent calls.
import {
  type Att,
  type Held,
  Holdings,
  type Model,
  type NodeVersion,
  type Pod,
  type Violation,
  attKey,
  parseHeld,
  sameHeld,
  showHeld,
} from "./model";
import type { Ip } from "./net";
import type { Call, Outcome, StoreId, World } from "./world";

export interface Stats {
  ops: Record<string, number>;
  calls: number;
  killsLanded: number;
  killsMissed: number;
  /** ADDs killed the moment they answered (the answer must already be in the store). */
  durable: number;
  stops: number;
  stopsMissed: number;
  stalls: number;
  nodeChanges: number;
  refusedUnchanged: number;
  /** Refused calls that left a claim behind (beside the node file; harmless while the claimant holds nothing there). */
  claimsByRefused: number;
  snapshotsSkipped: number;
  codes: Record<string, number>;
}

export interface Ctx {
  readonly w: World;
  readonly m: Model;
  rng: () => number;
  step: number;
  readonly log: (line: string) => void;
  readonly v: Violation[];
  readonly stats: Stats;
  /** Stores a call went to this step: their status is read again. */
  readonly touched: Set<StoreId>;
  /** Calls this step, and how many of them were verified to change no byte (then status is not read again). */
  calls: number;
  unchangedCalls: number;
  /** ADDs killed after they answered: the store must hold the answer. */
  readonly durable: { att: Att; held: Held[] }[];
  /** Live attachments the runtime aims at (ADD and DEL weights lean towards it). */
  readonly target: number;
  /** Longest stall of one fsync, in µs. */
  readonly maxStallUs: number;
  /** Calls started while a stopped or stalled holder keeps the lock read the node file after this instant. */
  notBefore?: number;
}

export interface Op {
  readonly name: string;
  weight(ctx: Ctx): number;
  run(ctx: Ctx): Promise<void>;
}

// --- helpers ---

export const pick = <T>(ctx: Ctx, xs: readonly T[]): T => xs[Math.floor(ctx.rng() * xs.length)]!;
export const chance = (ctx: Ctx, p: number): boolean => ctx.rng() < p;
export const other = (s: StoreId): StoreId => (s === "A" ? "B" : "A");
const NAMESPACES = ["default", "kube-system", "team-a"];
let podSeq = 0;

/** Start pod numbering afresh (one run after another in a process). */
export function resetIds(): void {
  podSeq = 0;
}

export function newPod(ctx: Ctx, store: StoreId): Pod {
  const n = ++podSeq;
  const pod: Pod = {
    store,
    cid: `${store === "A" ? "c" : "b"}${n.toString(36)}-${Math.floor(ctx.rng() * 1e6).toString(36)}`,
    ns: pick(ctx, NAMESPACES),
    name: `pod-${n}`,
    netns: ctx.w.netns(),
    ifnames: new Set(),
  };
  ctx.m.pods.push(pod);
  return pod;
}

/** A new attachment (not yet in the model): a new pod, or a second interface of a live pod. */
export function newAtt(ctx: Ctx, store: StoreId): Att {
  const livePods = [...new Set(ctx.m.list("live", store).map((a) => a.pod))].filter((p) => p.ifnames.size < 2);
  const pod = livePods.length && chance(ctx, 0.3) ? pick(ctx, livePods) : newPod(ctx, store);
  const ifname = pod.ifnames.size === 0 ? pick(ctx, ["eth0", "net1"]) : pod.ifnames.has("eth0") ? "net1" : "eth0";
  pod.ifnames.add(ifname);
  const network = pick(ctx, ctx.w.networks);
  return {
    key: attKey(store, network, pod.cid, ifname),
    store,
    network,
    pod,
    ifname,
    netns: pod.netns,
    netnsGen: ctx.w.netnsGen(pod.netns),
    state: "dead",
    held: [],
  };
}

export function addCall(a: Att, ip?: string): Call {
  return {
    store: a.store,
    network: a.network,
    command: "ADD",
    cid: a.pod.cid,
    ifname: a.ifname,
    netns: a.netns,
    pod: [a.pod.ns, a.pod.name],
    ...(ip ? { ip } : {}),
  };
}

export function delCall(ctx: Ctx, a: Att, netns: "keep" | "maybe-gone" = "maybe-gone"): Call {
  return {
    store: a.store,
    network: a.network,
    command: "DEL",
    cid: a.pod.cid,
    ifname: a.ifname,
    netns: netns === "maybe-gone" && chance(ctx, 0.2) ? null : a.netns,
    pod: [a.pod.ns, a.pod.name],
  };
}

export function checkCall(a: Att, prevResult: unknown): Call {
  return {
    store: a.store,
    network: a.network,
    command: "CHECK",
    cid: a.pod.cid,
    ifname: a.ifname,
    netns: a.netns,
    pod: [a.pod.ns, a.pod.name],
    top: { prevResult },
  };
}

/** The holdings an ADD starts from: every holder of its store except those a concurrent call releases. */
export function holdings(ctx: Ctx, store: StoreId, releasing: ReadonlySet<string> = new Set()): Holdings {
  return new Holdings(
    store,
    ctx.m.holders(store).filter((a) => !releasing.has(a.key)),
    ctx.m.holders(other(store)),
  );
}

export const codeOf = (o: Outcome): number => (o.r.code === 0 ? 0 : typeof o.r.json?.code === "number" ? o.r.json.code : -1);

export function describe(c: Call): string {
  const who = c.command === "GC" ? `${c.store}/${c.network}` : `${c.store}/${c.network}/${c.cid}/${c.ifname}`;
  const ns = c.command === "GC" ? "" : c.netns ? ` netns=${c.netns.slice(c.netns.lastIndexOf("/") + 1)}` : " netns=-";
  return `${c.command} ${who}${ns}${c.ip ? ` IP=${c.ip}` : ""}`;
}

export function outcomeText(o: Outcome): string {
  if (o.killedByUs) return `killed by us after ${o.ms} ms${o.r.stdout ? " (after answering)" : ""}`;
  if (o.killedByOther) return `SIGKILLed by another process after ${o.ms} ms`;
  const code = codeOf(o);
  if (code === 0) return `ok${o.r.json?.ips ? ` ${o.r.json.ips.map((i: any) => i.address).join(" ")}` : ""} (${o.ms} ms)`;
  return `code ${code}: ${String(o.r.json?.msg ?? o.r.stdout + o.r.stderr).slice(0, 160)} (${o.ms} ms)`;
}

/** Make a call, log it and count it. */
export async function call(ctx: Ctx, c: Call, tag: string, killAfterMs?: number): Promise<Outcome> {
  ctx.touched.add(c.store);
  ctx.calls++;
  const o = await ctx.w.call(c, killAfterMs);
  settleLog(ctx, c, tag, o);
  return o;
}

export function settleLog(ctx: Ctx, c: Call, tag: string, o: Outcome): void {
  ctx.stats.calls++;
  const code = o.killedByUs || o.killedByOther ? "killed" : String(codeOf(o));
  ctx.stats.codes[`${c.command}:${code}`] = (ctx.stats.codes[`${c.command}:${code}`] ?? 0) + 1;
  ctx.log(`  ${tag} ${describe(c)} -> ${outcomeText(o)}`);
}

export function expectCode(ctx: Ctx, what: string, o: Outcome, codes: ReadonlySet<number>, why: readonly string[] = []): boolean {
  const code = codeOf(o);
  if (codes.has(code)) {
    if (code !== 0 && (o.r.code !== 1 || !o.r.json))
      ctx.v.push({
        kind: "protocol",
        msg: `${what}: an error must be one JSON object and exit status 1; got status ${o.r.code}, stdout ${o.r.stdout.slice(0, 200)}`,
      });
    return true;
  }
  ctx.v.push({
    kind: "protocol",
    msg: `${what}: exited with ${code === 0 ? "success" : `code ${code}`} (${String(o.r.json?.msg ?? o.r.stderr).slice(0, 300)}); expected ${[...codes].map((c) => (c === 0 ? "success" : c)).join(" or ")}${why.length ? ` (${why.join("; ")})` : ""}`,
  });
  return false;
}

/** Run a call that must change nothing, comparing both stores byte for byte. */
export async function unchanged(ctx: Ctx, what: string, fn: () => Promise<Outcome>): Promise<Outcome> {
  const before = ctx.w.snapshotStores();
  const pending = ctx.w.pendingCheckpoint();
  const claims = ctx.w.claims();
  const o = await fn();
  const after = ctx.w.snapshotStores();
  const claimsAfter = ctx.w.claims();
  const claimed = [...claimsAfter.keys()].filter((k) => k !== "." && claimsAfter.get(k) !== claims.get(k));
  if (claimed.length) {
    ctx.stats.claimsByRefused++;
    ctx.log(`  NOTICE: ${what} wrote the claim(s) ${claimed.join(", ")}`);
  }
  if (pending) {
    ctx.stats.snapshotsSkipped++; // a killed compaction's checkpoint is confirmed by whichever call comes next
    return o;
  }
  const ignore = (k: string): boolean => /\/(lock|lock\.owner|lock\.reap|queue)(\/|$)/.test(`/${k}`);
  const changed = [...new Set([...before.keys(), ...after.keys()])].filter((k) => !ignore(k) && before.get(k) !== after.get(k));
  if (changed.length)
    ctx.v.push({
      kind: "changed",
      msg: `${what} changed the store: ${changed.slice(0, 6).join(", ")}${changed.length > 6 ? ` and ${changed.length - 6} more` : ""}`,
    });
  else {
    ctx.stats.refusedUnchanged++;
    ctx.unchangedCalls++;
  }
  return o;
}

// --- settling the outcome of each kind of call into the model ---

/** An ADD of a new attachment (or a retry of one in doubt that held nothing) has ended. */
export function settleAdd(
  ctx: Ctx,
  a: Att,
  o: Outcome,
  hold: Holdings,
  concurrent: number,
  versions: readonly NodeVersion[],
  requested: Ip | null,
  before?: Holdings,
): void {
  // `hold` leaves out what concurrent DELs release; `before` (when given) still has it: either may be what the ADD saw.
  const exp = hold.expectAddDuring(versions, requested, concurrent);
  if (before) {
    const e = before.expectAddDuring(versions, requested, concurrent);
    for (const c of e.codes) exp.codes.add(c);
    exp.why.push(...e.why.filter((w) => !exp.why.includes(w)).map((w) => `before the concurrent DELs: ${w}`));
  }
  ctx.m.atts.set(a.key, a);
  if (o.killedByUs || o.killedByOther) {
    a.state = "doubt";
    a.doubt = "add";
    const answered = o.r.json && codeOf(o) === 0 && o.r.stdout.trim() ? parseHeld(o.r.json) : null;
    if (answered) ctx.durable.push({ att: a, held: answered });
    return;
  }
  const okCode = expectCode(ctx, `ADD ${a.key}`, o, exp.codes, exp.why);
  if (codeOf(o) === 0) {
    const held = parseHeld(o.r.json);
    ctx.v.push(...hold.checkAnswer(o.r.json, versions, requested).map((x) => ({ ...x, msg: `ADD ${a.key}: ${x.msg}` })));
    a.state = "live";
    a.held = held ?? [];
    a.result = o.r.json;
    return;
  }
  // Refused as expected: nothing held. Unexpected: the runtime does not know either (its DEL follows).
  a.state = okCode ? "dead" : "doubt";
  if (!okCode) a.doubt = "add";
}

export function settleDel(ctx: Ctx, a: Att, o: Outcome): void {
  if (o.killedByUs || o.killedByOther) {
    a.state = "doubt";
    a.doubt = "del";
    return;
  }
  if (expectCode(ctx, `DEL ${a.key}`, o, new Set([0]))) {
    if (o.r.stdout !== "") ctx.v.push({ kind: "protocol", msg: `DEL ${a.key} printed ${o.r.stdout.slice(0, 100)}` });
    a.state = "dead";
    a.held = [];
    a.doubt = undefined;
  } else {
    a.state = "doubt";
    a.doubt = "del";
  }
}

export function settleCheck(ctx: Ctx, a: Att, o: Outcome): void {
  if (o.killedByUs || o.killedByOther) return;
  expectCode(ctx, `CHECK ${a.key} (${a.state})`, o, new Set([a.state === "live" ? 0 : 104]));
}

/** A repeated ADD of a live attachment from a new netns (container restarted): the same addresses. */
export function settleRepeat(ctx: Ctx, a: Att, o: Outcome, netns: string): void {
  if (o.killedByUs || o.killedByOther) return; // it holds what it held, in either netns
  if (!expectCode(ctx, `repeated ADD ${a.key} from a new netns`, o, new Set([0]))) return;
  const held = parseHeld(o.r.json);
  if (!held || !sameHeld(held, a.held))
    ctx.v.push({
      kind: "lost",
      msg: `repeated ADD ${a.key} from a new netns answered ${held ? showHeld(held) : o.r.stdout}; it holds ${showHeld(a.held)}`,
    });
  a.netns = netns;
  a.netnsGen = ctx.w.netnsGen(netns);
  a.pod.netns = netns;
  a.result = o.r.json;
}

export function liveAtts(ctx: Ctx, store?: StoreId): Att[] {
  return ctx.m.list("live", store);
}

// --- several calls at once ---

export interface Planned {
  c: Call;
  tag: string;
  att?: Att;
  /** Settle the outcome of the call started at t0. */
  settle: (o: Outcome, t0: number) => void;
}

/** A few calls the runtime makes at once: new pods, deletions, checks, restarts; on distinct attachments. */
export function planBatch(
  ctx: Ctx,
  n: number,
  exclude: readonly string[] = [],
  firstAdd = false,
  released: readonly string[] = [],
  /** ADDs already under way that the batch's ADDs share the free addresses with (a lock holder's). */
  aheadAdds = 0,
): { plans: Planned[]; releasing: Set<string> } {
  const store: StoreId = "A";
  const used = new Set<string>(exclude);
  const releasing = new Set<string>(released);
  const adds: Att[] = [];
  const plans: Planned[] = [];
  for (let i = 0; i < n; i++) {
    const free = liveAtts(ctx, store).filter((a) => !used.has(a.key));
    // (A call that needs the lock: behind a stopped holder, one of them must be there to recover it.)
    const r = firstAdd && i === 0 ? 1 : ctx.rng();
    if (free.length && r < 0.3) {
      const a = pick(ctx, free);
      used.add(a.key);
      releasing.add(a.key);
      plans.push({ c: delCall(ctx, a), tag: "del", att: a, settle: (o) => settleDel(ctx, a, o) });
    } else if (free.length && r < 0.42) {
      const a = pick(ctx, free);
      used.add(a.key);
      const prev = a.result;
      plans.push({ c: checkCall(a, prev), tag: "check", att: a, settle: (o) => settleCheck(ctx, a, o) });
    } else if (free.length && r < 0.5) {
      const a = pick(ctx, free);
      used.add(a.key);
      const netns = ctx.w.netns();
      plans.push({ c: { ...addCall(a), netns }, tag: "repeat-new-netns", att: a, settle: (o) => settleRepeat(ctx, a, o, netns) });
    } else {
      const a = newAtt(ctx, store);
      adds.push(a);
      plans.push({ c: addCall(a), tag: "add", att: a, settle: () => {} });
    }
  }
  const hold = holdings(ctx, store, releasing);
  const before = releasing.size ? holdings(ctx, store) : undefined;
  for (const p of plans) {
    if (p.tag !== "add") continue;
    const a = p.att!;
    // Calls queued behind a holder while the node file changed read it after the change (ctx.notBefore).
    p.settle = (o, t0) =>
      settleAdd(ctx, a, o, hold, adds.length + aheadAdds, ctx.m.versionsDuring(Math.max(ctx.notBefore ?? 0, t0), Date.now()), null, before);
  }
  return { plans, releasing };
}

/** Start the planned calls at once; `during` runs while they are under way. */
export async function runPlans(ctx: Ctx, plans: Planned[], tagPrefix: string, during?: () => Promise<void>): Promise<void> {
  const t0 = Date.now();
  const all = Promise.all(
    plans.map(async (p) => {
      ctx.touched.add(p.c.store);
      ctx.calls++;
      const o = await ctx.w.call(p.c);
      return { p, o };
    }),
  );
  if (during) await during();
  const outs = await all;
  for (const { p, o } of outs) {
    settleLog(ctx, p.c, `${tagPrefix}${p.tag}`, o);
    p.settle(o, t0);
  }
}
