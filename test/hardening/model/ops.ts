// The operations a runtime (and an operator) performs, each with what the
// model expects of it. Every call goes to the built executable. A call that
// must be refused is checked to change nothing (byte snapshot of both data dirs
// and the claims beside the node file). A call killed by us, or by a waiter
// recovering the lock from it, is in doubt until the runtime's follow-up.
import { readFileSync } from "node:fs";
import { type Att, type Held, Holdings, type Model, type NodeVersion, type Pod, type Special, type Violation, attKey, heldText, parseHeld, sameHeld, showHeld } from "./model";
import { type Cidr, type Fam, type Ip, broadcastOf, fmtIp, gatewayOf, inWindow, key, parseCidr, parseIp, windowEnd } from "./net";
import { type Call, type Outcome, type Stall, type StoreId, type World } from "./world";

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

// --- the node file ---

const V4_CHAIN = ["10.0.2.0/24", "10.0.0.0/22", "10.0.2.0/25", "10.0.2.0/26", "10.0.2.0/23", "10.0.2.128/25"].map(parseCidr);
const V4_EXTRA = ["10.0.5.0/26", "10.0.6.0/28", "10.0.7.0/30"].map(parseCidr);
const V6_CHAIN = ["fd00::200/120", "fd00::/64", "fd00::280/121", "fd00::/118"].map(parseCidr);
const ALL_CIDRS = [...V4_CHAIN, ...V4_EXTRA, ...V6_CHAIN];

export function initialNode(ctx: Ctx): NodeVersion {
  const cidrs = [V4_CHAIN[0]!, V6_CHAIN[0]!];
  const special: Special[] = [];
  const taken = new Set<string>();
  for (const c of cidrs) for (const role of ["router", "health"] as const) special.push({ fam: c.fam, v: freeAddress(ctx, c, taken)!, role });
  return { seq: 0, at: Date.now(), kind: "CiliumNode", cidrs, special };
}

export function writeNode(ctx: Ctx, v: NodeVersion): void {
  const ip = (s: Special): string => fmtIp(s.fam, s.v);
  const one = (role: string, fam: Fam): string | undefined => {
    const s = v.special.find((x) => x.role === role && x.fam === fam);
    return s ? ip(s) : undefined;
  };
  let obj: object;
  if (v.kind === "CiliumNode") {
    const spec: Record<string, unknown> = {
      addresses: [{ ip: "172.18.0.9", type: "InternalIP" }, ...v.special.filter((s) => s.role === "router").map((s) => ({ ip: ip(s), type: "CiliumInternalIP" }))],
      ipam: { podCIDRs: v.cidrs.map((c) => c.text) },
    };
    for (const role of ["health", "ingress"]) {
      const e = { ipv4: one(role, 4), ipv6: one(role, 6) };
      if (e.ipv4 || e.ipv6) spec[role] = JSON.parse(JSON.stringify(e));
    }
    obj = { apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name: "model-node" }, spec };
  } else {
    const annotations: Record<string, string> = {};
    const names = { router: "cilium-host", health: "health-ip", ingress: "ingress-ip" } as const;
    for (const s of v.special) annotations[`io.cilium.network.ipv${s.fam}-${names[s.role]}`] = ip(s);
    obj = { apiVersion: "v1", kind: "Node", metadata: { name: "model-node", annotations }, spec: { podCIDRs: v.cidrs.map((c) => c.text), ...(v.cidrs[0] ? { podCIDR: v.cidrs[0].text } : {}) } };
  }
  ctx.w.writeNode(obj);
}

/** A random address of `c` that no pod holds (either data dir) and that is nothing special. */
function freeAddress(ctx: Ctx, c: Cidr, avoid: Set<string>): bigint | null {
  const held = new Set<string>();
  for (const a of ctx.m.holders()) for (const h of a.held) held.add(key(h.fam, h.v));
  const span = windowEnd(c) - c.net;
  const limit = span < 1024n ? span : 1024n;
  for (let i = 0; i < 40; i++) {
    const v = c.net + 1n + BigInt(Math.floor(ctx.rng() * Number(limit)));
    const k = key(c.fam, v);
    if (v === gatewayOf(c) || held.has(k) || avoid.has(k) || ALL_CIDRS.some((x) => x.fam === c.fam && (x.net === v || gatewayOf(x) === v || broadcastOf(x) === v))) continue;
    avoid.add(k);
    return v;
  }
  return null;
}

// --- helpers ---

const pick = <T>(ctx: Ctx, xs: readonly T[]): T => xs[Math.floor(ctx.rng() * xs.length)]!;
const chance = (ctx: Ctx, p: number): boolean => ctx.rng() < p;
const other = (s: StoreId): StoreId => (s === "A" ? "B" : "A");
const NAMESPACES = ["default", "kube-system", "team-a"];
let podSeq = 0;

/** Start pod numbering afresh (one run after another in a process). */
export function resetIds(): void {
  podSeq = 0;
}

function newPod(ctx: Ctx, store: StoreId): Pod {
  const n = ++podSeq;
  const pod: Pod = { store, cid: `${store === "A" ? "c" : "b"}${n.toString(36)}-${Math.floor(ctx.rng() * 1e6).toString(36)}`, ns: pick(ctx, NAMESPACES), name: `pod-${n}`, netns: ctx.w.netns(), ifnames: new Set() };
  ctx.m.pods.push(pod);
  return pod;
}

/** A new attachment (not yet in the model): a new pod, or a second interface of a live pod. */
function newAtt(ctx: Ctx, store: StoreId): Att {
  const livePods = [...new Set(ctx.m.list("live", store).map((a) => a.pod))].filter((p) => p.ifnames.size < 2);
  const pod = livePods.length && chance(ctx, 0.3) ? pick(ctx, livePods) : newPod(ctx, store);
  const ifname = pod.ifnames.size === 0 ? pick(ctx, ["eth0", "net1"]) : pod.ifnames.has("eth0") ? "net1" : "eth0";
  pod.ifnames.add(ifname);
  const network = pick(ctx, ctx.w.networks);
  return { key: attKey(store, network, pod.cid, ifname), store, network, pod, ifname, netns: pod.netns, state: "dead", held: [] };
}

function addCall(a: Att, ip?: string): Call {
  return { store: a.store, network: a.network, command: "ADD", cid: a.pod.cid, ifname: a.ifname, netns: a.netns, pod: [a.pod.ns, a.pod.name], ...(ip ? { ip } : {}) };
}

function delCall(ctx: Ctx, a: Att, netns: "keep" | "maybe-gone" = "maybe-gone"): Call {
  return { store: a.store, network: a.network, command: "DEL", cid: a.pod.cid, ifname: a.ifname, netns: netns === "maybe-gone" && chance(ctx, 0.2) ? null : a.netns, pod: [a.pod.ns, a.pod.name] };
}

function checkCall(a: Att, prevResult: unknown): Call {
  return { store: a.store, network: a.network, command: "CHECK", cid: a.pod.cid, ifname: a.ifname, netns: a.netns, pod: [a.pod.ns, a.pod.name], top: { prevResult } };
}

/** The holdings an ADD starts from: every holder of its store except those a concurrent call releases. */
function holdings(ctx: Ctx, store: StoreId, releasing: ReadonlySet<string> = new Set()): Holdings {
  return new Holdings(store, ctx.m.holders(store).filter((a) => !releasing.has(a.key)), ctx.m.holders(other(store)));
}

export const codeOf = (o: Outcome): number => (o.r.code === 0 ? 0 : typeof o.r.json?.code === "number" ? o.r.json.code : -1);

function describe(c: Call): string {
  const who = c.command === "GC" ? `${c.store}/${c.network}` : `${c.store}/${c.network}/${c.cid}/${c.ifname}`;
  const ns = c.command === "GC" ? "" : c.netns ? ` netns=${c.netns.slice(c.netns.lastIndexOf("/") + 1)}` : " netns=-";
  return `${c.command} ${who}${ns}${c.ip ? ` IP=${c.ip}` : ""}`;
}

function outcomeText(o: Outcome): string {
  if (o.killedByUs) return `killed by us after ${o.ms} ms${o.r.stdout ? " (after answering)" : ""}`;
  if (o.killedByOther) return `SIGKILLed by another process after ${o.ms} ms`;
  const code = codeOf(o);
  if (code === 0) return `ok${o.r.json?.ips ? ` ${o.r.json.ips.map((i: any) => i.address).join(" ")}` : ""} (${o.ms} ms)`;
  return `code ${code}: ${String(o.r.json?.msg ?? (o.r.stdout + o.r.stderr)).slice(0, 160)} (${o.ms} ms)`;
}

/** Make a call, log it and count it. */
async function call(ctx: Ctx, c: Call, tag: string, killAfterMs?: number): Promise<Outcome> {
  ctx.touched.add(c.store);
  ctx.calls++;
  const o = await ctx.w.call(c, killAfterMs);
  settleLog(ctx, c, tag, o);
  return o;
}

function settleLog(ctx: Ctx, c: Call, tag: string, o: Outcome): void {
  ctx.stats.calls++;
  const code = o.killedByUs || o.killedByOther ? "killed" : String(codeOf(o));
  ctx.stats.codes[`${c.command}:${code}`] = (ctx.stats.codes[`${c.command}:${code}`] ?? 0) + 1;
  ctx.log(`  ${tag} ${describe(c)} -> ${outcomeText(o)}`);
}

function expectCode(ctx: Ctx, what: string, o: Outcome, codes: ReadonlySet<number>, why: readonly string[] = []): boolean {
  const code = codeOf(o);
  if (codes.has(code)) {
    if (code !== 0 && (o.r.code !== 1 || !o.r.json)) ctx.v.push({ kind: "protocol", msg: `${what}: an error must be one JSON object and exit status 1; got status ${o.r.code}, stdout ${o.r.stdout.slice(0, 200)}` });
    return true;
  }
  ctx.v.push({
    kind: "protocol",
    msg: `${what}: exited with ${code === 0 ? "success" : `code ${code}`} (${String(o.r.json?.msg ?? o.r.stderr).slice(0, 300)}); expected ${[...codes].map((c) => (c === 0 ? "success" : c)).join(" or ")}${why.length ? ` (${why.join("; ")})` : ""}`,
  });
  return false;
}

/** Run a call that must change nothing, comparing both stores byte for byte. */
async function unchanged(ctx: Ctx, what: string, fn: () => Promise<Outcome>): Promise<Outcome> {
  const before = ctx.w.snapshotStores();
  const claims = ctx.w.claims();
  const o = await fn();
  const after = ctx.w.snapshotStores();
  const claimsAfter = ctx.w.claims();
  const claimed = [...claimsAfter.keys()].filter((k) => k !== "." && claimsAfter.get(k) !== claims.get(k));
  if (claimed.length) {
    ctx.stats.claimsByRefused++;
    ctx.log(`  NOTICE: ${what} wrote the claim(s) ${claimed.join(", ")}`);
  }
  if ([...before.keys()].some((k) => /journal/.test(k))) {
    ctx.stats.snapshotsSkipped++; // a killed commit's journal is replayed by whichever call comes next
    return o;
  }
  const ignore = (k: string): boolean => /\/(lock|lock\.owner|lock\.reap|queue)(\/|$)/.test(`/${k}`);
  const changed = [...new Set([...before.keys(), ...after.keys()])].filter((k) => !ignore(k) && before.get(k) !== after.get(k));
  if (changed.length) ctx.v.push({ kind: "changed", msg: `${what} changed the store: ${changed.slice(0, 6).join(", ")}${changed.length > 6 ? ` and ${changed.length - 6} more` : ""}` });
  else {
    ctx.stats.refusedUnchanged++;
    ctx.unchangedCalls++;
  }
  return o;
}

// --- settling the outcome of each kind of call into the model ---

/** An ADD of a new attachment (or a retry of one in doubt that held nothing) has ended. */
function settleAdd(ctx: Ctx, a: Att, o: Outcome, hold: Holdings, concurrent: number, versions: readonly NodeVersion[], requested: Ip | null, before?: Holdings): void {
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

function settleDel(ctx: Ctx, a: Att, o: Outcome): void {
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

function settleCheck(ctx: Ctx, a: Att, o: Outcome): void {
  if (o.killedByUs || o.killedByOther) return;
  expectCode(ctx, `CHECK ${a.key} (${a.state})`, o, new Set([a.state === "live" ? 0 : 104]));
}

/** A repeated ADD of a live attachment from a new netns (container restarted): the same addresses. */
function settleRepeat(ctx: Ctx, a: Att, o: Outcome, netns: string): void {
  if (o.killedByUs || o.killedByOther) return; // it holds what it held, in either netns
  if (!expectCode(ctx, `repeated ADD ${a.key} from a new netns`, o, new Set([0]))) return;
  const held = parseHeld(o.r.json);
  if (!held || !sameHeld(held, a.held)) ctx.v.push({ kind: "lost", msg: `repeated ADD ${a.key} from a new netns answered ${held ? showHeld(held) : o.r.stdout}; it holds ${showHeld(a.held)}` });
  a.netns = netns;
  a.pod.netns = netns;
  a.result = o.r.json;
}

// --- the operations ---

function liveAtts(ctx: Ctx, store?: StoreId): Att[] {
  return ctx.m.list("live", store);
}

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
  const specials = (c: Cidr): bigint[] => [c.net, gatewayOf(c), gatewayOf(c) + 1n, broadcastOf(c) ?? c.net + 2n, (broadcastOf(c) ?? c.net + 3n) - 1n];
  const r = ctx.rng();
  // The network, gateway and broadcast of a range pods still hold addresses in, that the node file no longer lists.
  const orphans = [...new Map(ctx.m.holders("A").flatMap((a) => a.held.map((h) => [h.cidr.text, h.cidr] as const))).values()].filter((c) => c.fam === fam && !v.cidrs.some((x) => x.text === c.text));
  if (r < 0.25 && orphans.length) return fmtIp(fam, pick(ctx, specials(pick(ctx, orphans))));
  if (r < 0.45) return fmtIp(fam, pick(ctx, specials(pick(ctx, ALL_CIDRS.filter((x) => x.fam === fam)))));
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
    const o = await unchanged(ctx, `repeated ADD ${a.key} into its own netns`, () => call(ctx, addCall(a), "repeat-same-netns"));
    expectCode(ctx, `repeated ADD ${a.key} into its own netns`, o, new Set([106]), ["the interface exists: ptp fails and rolls back with DEL"]);
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
  weight: (ctx) => (liveAtts(ctx, "B").length ? 12 : 0) + (liveAtts(ctx, "A").length ? (liveAtts(ctx, "A").length > ctx.target ? 30 : 12) : 0),
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
      c = { store, network: pick(ctx, ctx.w.networks), command: "DEL", cid: `unknown-${Math.floor(ctx.rng() * 1e9).toString(36)}`, ifname: "eth0", netns: chance(ctx, 0.5) ? ctx.w.netns() : null };
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
    const o = await unchanged(ctx, `CHECK ${a.key}`, () => call(ctx, checkCall(a, a.result), a.state === "live" ? "check" : "check-deleted"));
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
  for (const x of ctx.m.holders("A").filter((a) => a.network !== network).slice(0, 3)) list.push({ containerID: x.pod.cid, ifname: x.ifname });
  list.push({ containerID: "gone-pod", ifname: "eth0" });
  const key = chance(ctx, 0.15) ? "cni.dev/attachments" : "cni.dev/valid-attachments";
  return { top: { [key]: list }, releases: mine.filter((a) => !keep.includes(a)), label: `gc(${key === "cni.dev/attachments" ? "old key, " : ""}keeps ${keep.length}/${mine.length})` };
}

const gcOp: Op = {
  name: "gc",
  weight: () => 2,
  run: async (ctx) => {
    const network = pick(ctx, ctx.w.networks);
    const plan = gcPlan(ctx, network);
    const c: Call = { store: "A", network, command: "GC", top: plan.top };
    const o = plan.releases.length ? await call(ctx, c, plan.label) : await unchanged(ctx, `${plan.label} releasing nothing`, () => call(ctx, c, plan.label));
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

/** Change the node file (temp + rename) in one of the ways the operator's sync job does. */
function changeNode(ctx: Ctx): NodeVersion {
  const cur = ctx.m.node;
  let cidrs = [...cur.cidrs];
  let special = [...cur.special];
  let kind = cur.kind;
  const r = ctx.rng();
  let what: string;
  const chainAt = cidrs.findIndex((c) => V4_CHAIN.some((x) => x.text === c.text));
  const v6At = cidrs.findIndex((c) => c.fam === 6);
  if (r < 0.28) {
    const next = pick(ctx, V4_CHAIN.filter((x) => x.text !== cidrs[chainAt]?.text));
    if (chainAt >= 0) cidrs[chainAt] = next;
    else cidrs.unshift(next);
    what = `IPv4 ${chainAt >= 0 ? `${cur.cidrs[chainAt]!.text} -> ` : "+"}${next.text}`;
  } else if (r < 0.46) {
    const next = pick(ctx, V6_CHAIN.filter((x) => x.text !== cidrs[v6At]?.text));
    if (v6At >= 0) cidrs[v6At] = next;
    else cidrs.push(next);
    what = `IPv6 ${v6At >= 0 ? `${cur.cidrs[v6At]!.text} -> ` : "+"}${next.text}`;
  } else if (r < 0.58) {
    const missing = V4_EXTRA.filter((x) => !cidrs.some((c) => c.text === x.text));
    const add = missing.length ? pick(ctx, missing) : v6At < 0 ? V6_CHAIN[0]! : null;
    if (add) cidrs.push(add);
    what = add ? `append ${add.text}` : "append (nothing left)";
  } else if (r < 0.68 && cidrs.length > 1) {
    const gone = pick(ctx, cidrs);
    cidrs = cidrs.filter((c) => c !== gone);
    what = `remove ${gone.text}`;
  } else if (r < 0.74) {
    // The pool shrinks to one tiny IPv4 CIDR: what pods hold elsewhere is orphaned, new ADDs run out.
    const tiny = pick(ctx, V4_EXTRA.slice(1));
    cidrs = [tiny, ...cidrs.filter((c) => c.fam === 6)];
    what = `squeeze IPv4 to ${tiny.text}`;
  } else if (r < 0.94) {
    // Router / health / ingress move inside the podCIDRs (to addresses no pod holds).
    const role = pick(ctx, ["router", "health", "ingress"] as const);
    const c = pick(ctx, cidrs);
    const avoid = new Set(special.map((x) => key(x.fam, x.v)));
    const v = freeAddress(ctx, c, avoid);
    special = special.filter((x) => !(x.role === role && x.fam === c.fam));
    if (v !== null) special.push({ fam: c.fam, v, role });
    what = `${role} IPv${c.fam} -> ${v === null ? "none" : fmtIp(c.fam, v)}`;
  } else {
    kind = kind === "CiliumNode" ? "Node" : "CiliumNode";
    what = `as a ${kind}`;
  }
  return applyNode(ctx, cidrs, special, kind, what);
}

function applyNode(ctx: Ctx, cidrs: Cidr[], special: Special[], kind: NodeVersion["kind"], what: string): NodeVersion {
  const v: NodeVersion = { seq: ctx.m.node.seq + 1, at: 0, kind, cidrs, special };
  writeNode(ctx, v);
  ctx.m.versions.push({ ...v, at: Date.now() });
  ctx.stats.nodeChanges++;
  ctx.log(`  node v${v.seq}: ${what}: ${kind} ${cidrs.map((c) => c.text).join(", ")}; ${special.map((x) => `${x.role}=${fmtIp(x.fam, x.v)}`).join(" ")}`);
  return ctx.m.node;
}

/**
 * The reverse of an orphan's gateway: a pod holds an ordinary address that is the
 * gateway of another CIDR of the chain, then the node file switches to that CIDR.
 * Its gateway is the pod's address, so it must not be used for new pods (and
 * never returned as a gateway) while that pod lives.
 */
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
          return c.text !== cur.text && inWindow(cur, fam, g) && g !== gatewayOf(cur) && !hold.byIp.has(key(fam, g)) && !hold.reservedIn(cur, v).has(key(fam, g));
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
      const o = mode < 0.8 ? await call(ctx, c, "del-kill", killDelay(ctx)) : await killedOn(ctx, c, "journal");
      countKill(ctx, o);
      settleDel(ctx, a, o);
      return;
    }
    const a = newAtt(ctx, "A");
    const hold = holdings(ctx, "A");
    const t0 = Date.now();
    const c = addCall(a);
    const o = mode < 0.7 ? await call(ctx, c, "add-kill", killDelay(ctx)) : await killedOn(ctx, c, mode < 0.85 ? "journal" : "answer");
    countKill(ctx, o);
    settleAdd(ctx, a, o, hold, 1, ctx.m.versionsDuring(t0, Date.now()), null);
  },
};

function killDelay(ctx: Ctx): number {
  return Math.floor(ctx.rng() * 1.5 * ctx.w.callMs);
}

async function killedOn(ctx: Ctx, c: Call, mode: "journal" | "answer"): Promise<Outcome> {
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
    a.pod.netns = netns;
    if (a.held.length) {
      // It committed before it died: the retry must get what it holds.
      const o = await call(ctx, addCall(a), "retry-add");
      if (expectCode(ctx, `retried ADD ${a.key}`, o, new Set([0]))) {
        const held = parseHeld(o.r.json);
        if (!held || !sameHeld(held, a.held)) ctx.v.push({ kind: "lost", msg: `retried ADD ${a.key} answered ${held ? showHeld(held) : "?"}; the killed ADD had committed ${showHeld(a.held)}` });
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

// --- several calls at once ---

interface Planned {
  c: Call;
  tag: string;
  att?: Att;
  /** Settle the outcome of the call started at t0. */
  settle: (o: Outcome, t0: number) => void;
}

/** A few calls the runtime makes at once: new pods, deletions, checks, restarts; on distinct attachments. */
function planBatch(ctx: Ctx, n: number, exclude: readonly string[] = [], firstAdd = false, released: readonly string[] = []): { plans: Planned[]; releasing: Set<string> } {
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
    p.settle = (o, t0) => settleAdd(ctx, a, o, hold, adds.length, ctx.m.versionsDuring(Math.max(ctx.notBefore ?? 0, t0), Date.now()), null, before);
  }
  return { plans, releasing };
}

/** Start the planned calls at once; `during` runs while they are under way. */
async function runPlans(ctx: Ctx, plans: Planned[], tagPrefix: string, during?: () => Promise<void>): Promise<void> {
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

const batchOp: Op = {
  name: "batch",
  weight: () => 5,
  run: async (ctx) => {
    const { plans } = planBatch(ctx, 3 + Math.floor(ctx.rng() * 4));
    await runPlans(ctx, plans, "batch:");
  },
};

// --- a holder stalled in fsync, a holder stopped ---

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
    const list = ctx.m.holders("A").filter((a) => a.network === network).map((a) => ({ containerID: a.pod.cid, ifname: a.ifname }));
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

const stallOp: Op = {
  name: "stall",
  weight: () => 0, // placed at seeded steps, see run.ts
  run: async (ctx) => {
    if (!ctx.w.strace) {
      ctx.log("  NOTICE: strace is missing (/usr/bin/strace): stalled-fsync step skipped");
      return;
    }
    const vic = victim(ctx, true);
    const plus = chance(ctx, 0.3);
    const delayUs = plus ? Math.floor(300_000 + ctx.rng() * Math.min(1_200_000, ctx.maxStallUs / 4)) : Math.floor(1_000_000 + ctx.rng() * (ctx.maxStallUs - 1_000_000));
    const stall: Stall = { delayUs, when: `${1 + Math.floor(ctx.rng() * 6)}${plus ? "+" : ""}` };
    await heldScenario(ctx, vic, `fsync #${stall.when} stalled ${(delayUs / 1e6).toFixed(1)} s`, stall, 1 + Math.floor(ctx.rng() * 4), chance(ctx, 0.4));
    ctx.stats.stalls++;
  },
};

const stopOp: Op = {
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
async function heldScenario(ctx: Ctx, vic: Victim, label: string, stall: Stall | null, waiters: number, changeNodeToo: boolean): Promise<boolean> {
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
  ctx.log(`  ${label}: ${vic.tag} pid ${child.pid} ${caught ? "holds the lock" : "was not seen holding the lock"}; ${waiters} call(s) queue behind it`);
  const { plans } = planBatch(ctx, waiters, vic.att ? [vic.att.key] : [], true, vic.kind === "del" ? [vic.att!.key] : []);
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

export const OPS: readonly Op[] = [addOp, addIpOp, gatewayTrapOp, secondOp, repeatOp, restartOp("restart", false, 3), restartOp("restartInode", true, 1), rollbackOp, delOp, delUnknownOp, delTwiceOp, checkOp, gcOp, nodeOp, killOp, resolveOp, batchOp, stallOp, stopOp];

export { changeNode, resolve, settleCheck, checkCall, delCall, settleDel, settleLog };
