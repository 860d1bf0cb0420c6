// The reference model: what the runtime believes (acknowledged attachments,
// calls in doubt, attachments it deleted), the node file's versions, and from
// them what the plugin must answer and which addresses it must never hand out.
// The semantics are docs/design-shared-store.md's: one store per data dir shared
// by every network; a second data dir over a podCIDR the first holds addresses
// in is refused (7); overlapping podCIDRs reserve an in-use orphan's addresses,
// gateway, network and broadcast; a podCIDR whose gateway a pod holds is not used.
import {
  type Cidr,
  type Fam,
  type Ip,
  broadcastOf,
  contains,
  fmtIp,
  gatewayOf,
  inWindow,
  key,
  overlaps,
  parseCidr,
  parseIp,
  windowSize,
} from "./net";
import type { StoreId } from "./world";

export interface Held {
  readonly fam: Fam;
  readonly v: bigint;
  /** The range the address was handed out from (the result's prefix, or status's range). */
  readonly cidr: Cidr;
}

export interface Pod {
  readonly store: StoreId;
  readonly cid: string;
  readonly ns: string;
  readonly name: string;
  /** The sandbox's current netns file. */
  netns: string;
  /** Interface names this pod has used (never reused: a runtime never repeats a sandbox's attachment after its DEL). */
  readonly ifnames: Set<string>;
}

export type State = "live" | "doubt" | "dead";

export interface Att {
  readonly key: string;
  readonly store: StoreId;
  readonly network: string;
  readonly pod: Pod;
  readonly ifname: string;
  /** The netns the attachment's record must carry (CNI_NETNS of its last successful ADD). */
  netns: string;
  /** Which file at that path it was (World.netnsGen): a netns made again at the same path is another netns. */
  netnsGen: number;
  state: State;
  /** live: what its ADD answered; doubt: what status last showed it holding; dead: nothing. */
  held: Held[];
  /** The acknowledged ADD result: CHECK's prevResult. */
  result?: unknown;
  /** Which call of it was killed (or failed in a way that leaves it unknown). */
  doubt?: "add" | "del";
}

export interface Special {
  readonly fam: Fam;
  readonly v: bigint;
  readonly role: "router" | "health" | "ingress";
}

export interface NodeVersion {
  readonly seq: number;
  /** Date.now() when the file was renamed into place. */
  readonly at: number;
  readonly kind: "CiliumNode" | "Node";
  readonly cidrs: readonly Cidr[];
  readonly special: readonly Special[];
}

/** What an ADD may answer: the accepted exit codes (0 = success) and why. */
export interface Expect {
  readonly codes: Set<number>;
  readonly why: string[];
}

export type Kind = "duplicate" | "reserved" | "lost" | "leak" | "load" | "protocol" | "changed";

export interface Violation {
  readonly kind: Kind;
  readonly msg: string;
}

export const attKey = (store: StoreId, network: string, cid: string, ifname: string): string => `${store}/${network}/${cid}/${ifname}`;
export const heldText = (h: Held): string => fmtIp(h.fam, h.v);
export const showHeld = (hs: readonly Held[]): string => hs.map(heldText).join(",") || "-";

export function families(v: NodeVersion): Fam[] {
  const out: Fam[] = [];
  for (const c of v.cidrs) if (!out.includes(c.fam)) out.push(c.fam);
  return out;
}

export class Model {
  readonly atts = new Map<string, Att>();
  readonly pods: Pod[] = [];
  readonly versions: NodeVersion[] = [];

  get node(): NodeVersion {
    return this.versions[this.versions.length - 1]!;
  }

  list(state: State, store?: StoreId): Att[] {
    return [...this.atts.values()].filter((a) => a.state === state && (!store || a.store === store));
  }

  /** Attachments that hold (live) or may hold (doubt, as last seen) addresses. */
  holders(store?: StoreId): Att[] {
    return [...this.atts.values()].filter((a) => a.state !== "dead" && (!store || a.store === store));
  }

  /**
   * Forget all but the last `keep` deleted attachments (CHECK-after-DEL and DEL-twice
   * pick from those) and pods none of the rest belong to, so long runs stay linear.
   * A status owner the model forgot is still reported, as "never added".
   */
  prune(keep: number): void {
    const dead = [...this.atts.values()].filter((a) => a.state === "dead");
    for (const a of dead.slice(0, Math.max(0, dead.length - keep))) this.atts.delete(a.key);
    const used = new Set([...this.atts.values()].map((a) => a.pod));
    const recent = this.pods.slice(-keep);
    const kept = this.pods.filter((p) => used.has(p) || recent.includes(p));
    this.pods.length = 0;
    this.pods.push(...kept);
  }

  /** The node versions current at some instant of [from, to]. */
  versionsDuring(from: number, to: number): NodeVersion[] {
    return this.versions.filter((v, i) => {
      const next = this.versions[i + 1];
      return v.at <= to && (!next || next.at > from);
    });
  }
}

/**
 * What the store of one data dir holds at the start of a call: the attachments
 * holding addresses throughout it (a concurrent DEL's target is left out: after
 * its release the address and its orphan's reservations may be reused).
 */
export class Holdings {
  readonly byIp = new Map<string, Att>();
  readonly inUse: Cidr[] = [];
  /** What each holder held when this was made: the model moves on while the calls run (a DEL settles first). */
  private readonly mine: { a: Att; held: readonly Held[] }[];
  private readonly theirs: { a: Att; held: readonly Held[] }[];

  constructor(
    readonly store: StoreId,
    holders: readonly Att[],
    /** The other data dir's holders, for claims. */
    others: readonly Att[],
  ) {
    this.mine = holders.map((a) => ({ a, held: [...a.held] }));
    this.theirs = others.map((a) => ({ a, held: [...a.held] }));
    for (const { a, held } of this.mine) {
      for (const h of held) {
        this.byIp.set(key(h.fam, h.v), a);
        if (!this.inUse.some((c) => c.text === h.cidr.text)) this.inUse.push(h.cidr);
      }
    }
  }

  /** Addresses of `c`'s window that no pod may get, and why (gateway, router, health, ingress, an orphan's). */
  reservedIn(c: Cidr, v: NodeVersion): Map<string, string> {
    const out = new Map<string, string>();
    const add = (x: bigint | null, why: string): void => {
      if (x !== null && inWindow(c, c.fam, x) && !out.has(key(c.fam, x))) out.set(key(c.fam, x), why);
    };
    add(gatewayOf(c), "gateway");
    for (const s of v.special) if (s.fam === c.fam) add(s.v, s.role);
    for (const r of this.inUse) {
      if (r.text === c.text || !overlaps(r, c) || v.cidrs.some((x) => x.text === r.text)) continue;
      add(r.net, `network of in-use orphan ${r.text}`);
      add(gatewayOf(r), `gateway of in-use orphan ${r.text}`);
      add(broadcastOf(r), `broadcast of in-use orphan ${r.text}`);
    }
    return out;
  }

  /** A pod of this store holding `c`'s gateway: then `c` is not used for new pods. */
  gatewayHolder(c: Cidr): Att | undefined {
    return this.byIp.get(key(c.fam, gatewayOf(c)));
  }

  /** Free addresses of `c` (window minus reserved minus held). */
  free(c: Cidr, v: NodeVersion): bigint {
    const taken = new Set(this.reservedIn(c, v).keys());
    for (const { held } of this.mine) for (const h of held) if (inWindow(c, h.fam, h.v)) taken.add(key(h.fam, h.v));
    return windowSize(c) - BigInt(taken.size);
  }

  /** The other data dir holds an address in `c`: its claim stands, success is impossible (code 7). */
  conflict(c: Cidr): Att | undefined {
    return this.theirs.find(({ held }) => held.some((h) => contains(c, h.fam, h.v)))?.a;
  }

  /** The other data dir holds addresses in a range overlapping `c`: its claim may be judged by that range (7 is fine). */
  claimed(c: Cidr): Att | undefined {
    return this.theirs.find(({ held }) => held.some((h) => overlaps(h.cidr, c)))?.a;
  }

  /** expectAdd over every node version the call may have read: any of their outcomes. */
  expectAddDuring(versions: readonly NodeVersion[], requested: Ip | null, concurrentAdds = 1): Expect {
    const codes = new Set<number>();
    const why: string[] = [];
    for (const v of versions) {
      const e = this.expectAdd(v, requested, concurrentAdds);
      for (const c of e.codes) codes.add(c);
      why.push(...e.why.map((w) => (versions.length > 1 ? `node v${v.seq}: ${w}` : w)));
    }
    return { codes, why };
  }

  /**
   * The codes an ADD of a new attachment may exit with, given the node version,
   * a requested address and how many ADDs run beside it (they share the free ones).
   */
  expectAdd(v: NodeVersion, requested: Ip | null, concurrentAdds = 1): Expect {
    const why: string[] = [];
    const fail = new Set<number>();
    let ok = true;
    const fams = families(v);
    if (fams.length === 0) return { codes: new Set([11]), why: ["the node lists no podCIDRs"] };
    if (v.cidrs.some((c) => this.claimed(c))) {
      fail.add(7);
      why.push(
        `the other data dir holds addresses in or overlapping ${v.cidrs
          .filter((c) => this.claimed(c))
          .map((c) => c.text)
          .join(", ")}`,
      );
    }
    if (requested && !fams.includes(requested.fam)) {
      ok = false;
      fail.add(101);
      why.push(`no IPv${requested.fam} podCIDR for the requested address`);
    }
    for (const f of fams) {
      if (requested?.fam === f) {
        const c = v.cidrs.find((x) => contains(x, f, requested.v));
        const ip = fmtIp(f, requested.v);
        const reason = !c
          ? "outside every podCIDR"
          : !inWindow(c, f, requested.v)
            ? `network/broadcast/outside the window of ${c.text}`
            : (this.reservedIn(c, v).get(key(f, requested.v)) ??
              (this.byIp.get(key(f, requested.v)) ? `held by ${this.byIp.get(key(f, requested.v))!.key}` : null));
        if (reason) {
          ok = false;
          fail.add(101);
          why.push(`requested ${ip}: ${reason}`);
        } else if (this.gatewayHolder(c!)) {
          ok = false;
          fail.add(101).add(11);
          why.push(`requested ${ip}: the gateway of ${c!.text} is held by ${this.gatewayHolder(c!)!.key}`);
        } else if (this.conflict(c!)) {
          ok = false;
          why.push(`requested ${ip}: the other data dir holds addresses in ${c!.text}`);
        }
        continue;
      }
      const cands = v.cidrs.filter((c) => c.fam === f);
      const usable = cands.filter((c) => !this.gatewayHolder(c));
      const free = usable.map((c) => ({ c, n: this.free(c, v) }));
      const total = free.reduce((s, x) => s + x.n, 0n);
      why.push(
        `IPv${f} free: ${cands.map((c) => (usable.includes(c) ? `${c.text} ${free.find((x) => x.c === c)!.n}` : `${c.text} unusable`)).join(", ")}`,
      );
      if (!free.some((x) => x.n > 0n && !this.conflict(x.c))) {
        ok = false;
        why.push(`IPv${f}: no free address in an unclaimed usable podCIDR`);
      }
      if (total < BigInt(concurrentAdds)) {
        fail.add(100);
        why.push(`IPv${f}: ${total} free for ${concurrentAdds} ADD(s)`);
        if (usable.length < cands.length) {
          fail.add(11);
          why.push(
            `IPv${f}: ${cands
              .filter((c) => !usable.includes(c))
              .map((c) => `${c.text} (gateway held by ${this.gatewayHolder(c)!.key})`)
              .join(", ")} not usable`,
          );
        }
      }
    }
    if (ok) fail.add(0);
    return { codes: fail, why };
  }

  /**
   * Check an ADD answer for a new attachment against the node versions it may
   * have read: one address per family from a current podCIDR, none reserved,
   * none held, and a gateway that is the podCIDR's and no pod's.
   */
  checkAnswer(result: any, versions: readonly NodeVersion[], requested: Ip | null): Violation[] {
    let best: Violation[] | null = null;
    for (const v of versions.length ? versions : []) {
      const out = this.checkAnswerAt(result, v, requested);
      if (out.length === 0) return [];
      if (!best) best = out;
    }
    return best ?? [{ kind: "protocol", msg: "no node version to check the answer against" }];
  }

  private checkAnswerAt(result: any, v: NodeVersion, requested: Ip | null): Violation[] {
    const out: Violation[] = [];
    const ips: any[] = Array.isArray(result?.ips) ? result.ips : [];
    const fams = families(v);
    const got = parseHeld(result);
    if (!got || got.length !== ips.length) return [{ kind: "protocol", msg: `answer does not parse: ${JSON.stringify(result)}` }];
    const gotFams = got.map((h) => h.fam).sort();
    if (JSON.stringify(gotFams) !== JSON.stringify([...fams].sort()))
      out.push({ kind: "protocol", msg: `answer has families ${gotFams} for a node with ${fams} (node v${v.seq})` });
    got.forEach((h, i) => {
      const ip = heldText(h);
      const c = v.cidrs.find((x) => x.text === h.cidr.text);
      if (!c) {
        out.push({
          kind: "reserved",
          msg: `${ip}/${h.cidr.prefix} is from ${h.cidr.text}, not a podCIDR of node v${v.seq} (${v.cidrs.map((x) => x.text).join(", ")})`,
        });
        return;
      }
      if (!inWindow(c, h.fam, h.v))
        out.push({ kind: "reserved", msg: `${ip} is the network/broadcast of (or outside the window of) ${c.text}` });
      const r = this.reservedIn(c, v).get(key(h.fam, h.v));
      if (r) out.push({ kind: "reserved", msg: `${ip} handed out from ${c.text} is reserved: ${r} (node v${v.seq})` });
      const holder = this.byIp.get(key(h.fam, h.v));
      if (holder) out.push({ kind: "duplicate", msg: `${ip} handed out again: ${holder.key} holds it` });
      const other = this.theirs.find(({ held }) => held.some((x) => x.fam === h.fam && x.v === h.v))?.a;
      if (other) out.push({ kind: "duplicate", msg: `${ip} handed out again: ${other.key} (other data dir) holds it` });
      if (this.conflict(c))
        out.push({
          kind: "protocol",
          msg: `${ip} handed out from ${c.text}, in which the other data dir's ${this.conflict(c)!.key} holds addresses (its claim)`,
        });
      const gw = ips[i]?.gateway;
      if (gw !== fmtIp(c.fam, gatewayOf(c)))
        out.push({ kind: "protocol", msg: `gateway ${gw} for ${ip} is not ${c.text}'s first address` });
      const gwHolder = this.gatewayHolder(c);
      if (gwHolder)
        out.push({
          kind: "reserved",
          msg: `${ip} handed out from ${c.text} whose gateway ${fmtIp(c.fam, gatewayOf(c))} is the address of live ${gwHolder.key}`,
        });
      if (requested && requested.fam === h.fam && requested.v !== h.v)
        out.push({ kind: "protocol", msg: `requested ${fmtIp(requested.fam, requested.v)}, got ${ip}` });
    });
    return out;
  }
}

/** The addresses of a 1.x ADD result, with the podCIDR each came from; null when it does not parse. */
export function parseHeld(result: any): Held[] | null {
  if (!Array.isArray(result?.ips)) return null;
  const out: Held[] = [];
  for (const e of result.ips) {
    const [a, p] = String(e?.address ?? "").split("/");
    const ip = parseIp(a ?? "");
    if (!ip || p === undefined) return null;
    out.push({ fam: ip.fam, v: ip.v, cidr: parseCidr(`${a}/${p}`) });
  }
  return out;
}

export function sameHeld(a: readonly Held[], b: readonly Held[]): boolean {
  const s = (x: readonly Held[]): string =>
    x
      .map((h) => key(h.fam, h.v))
      .sort()
      .join(" ");
  return s(a) === s(b);
}
