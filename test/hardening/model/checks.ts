// The invariants, checked after every step against the status of both data
// dirs: (1) no address held by two attachments, across networks and data dirs;
// (2) no pod holds the network or broadcast address of the range it is listed
// in (the rest of (2) is checked on each ADD answer, see Holdings.checkAnswer);
// (3) every acknowledged attachment holds what its ADD answered, with its owner;
// (4) nothing is held that the runtime does not know about: no unknown owner, no
// bit without an owner, no record file without a live or in-doubt attachment.
// Also: the store loads. Attachments in doubt take what status shows them holding.
import { type Att, type Held, type Model, type Violation, attKey, showHeld } from "./model";
import { broadcastOf, fmtIp, key } from "./net";
import type { StoreId, StoreView } from "./world";

export function checkStores(m: Model, views: readonly StoreView[], records: Record<StoreId, string[]>): Violation[] {
  const out: Violation[] = [];
  /** address -> attachment keys holding it (status, every store and network) */
  const owners = new Map<string, Set<string>>();
  /** attachment key -> what status shows it holding */
  const seen = new Map<string, Held[]>();
  const note = (k: string, who: string): void => {
    const s = owners.get(k) ?? new Set<string>();
    s.add(who);
    owners.set(k, s);
  };
  for (const view of views) {
    if (view.loadError) {
      out.push({ kind: "load", msg: `store ${view.store} does not load: ${view.loadError}` });
      continue;
    }
    for (const r of view.ranges) {
      let bits = 0;
      for (const l of r.lines) {
        if (!l.reserved || l.owner) bits++;
        if (!l.owner) {
          if (!l.reserved)
            out.push({
              kind: "leak",
              msg: `store ${view.store}${r.network ? `/${r.network}` : ""}: ${l.text} in ${r.cidr.text} is marked but has no owner record`,
            });
          continue;
        }
        const o = l.owner;
        const who = attKey(view.store, o.network, o.containerID, o.ifname);
        note(key(l.fam, l.v), who);
        const hs = seen.get(who) ?? [];
        if (!hs.some((h) => h.fam === l.fam && h.v === l.v)) hs.push({ fam: l.fam, v: l.v, cidr: r.cidr });
        seen.set(who, hs);
        if (l.v === r.cidr.net || l.v === broadcastOf(r.cidr))
          out.push({ kind: "reserved", msg: `${who} holds ${l.text}, the network/broadcast address of ${r.cidr.text}` });
        const a = m.atts.get(who);
        if (!a || a.state === "dead") {
          out.push({ kind: "leak", msg: `${l.text} is held by ${who}, which the runtime ${a ? "deleted" : "never added"}` });
          continue;
        }
        if (o.namespace !== undefined && (o.namespace !== a.pod.ns || o.pod !== a.pod.name)) {
          out.push({ kind: "protocol", msg: `${who}: status owner ${o.namespace}/${o.pod}, expected ${a.pod.ns}/${a.pod.name}` });
        }
        if (o.netns !== undefined && a.state === "live" && o.netns !== a.netns)
          out.push({ kind: "protocol", msg: `${who}: record netns ${o.netns}, expected ${a.netns}` });
      }
      if (r.allocated !== bits)
        out.push({
          kind: "leak",
          msg: `store ${view.store}: ${r.cidr.text} reports allocated ${r.allocated} but lists ${bits} marked addresses`,
        });
    }
  }
  // (3) Every acknowledged attachment holds exactly what it was given.
  for (const a of m.list("live")) {
    const got = seen.get(a.key) ?? [];
    for (const h of a.held) {
      const who = owners.get(key(h.fam, h.v));
      if (!who?.has(a.key)) {
        out.push({
          kind: "lost",
          msg: `${a.key} was given ${fmtIp(h.fam, h.v)}; status shows it ${who ? `held by ${[...who].join(", ")}` : "not held"}`,
        });
      }
    }
    const extra = got.filter((g) => !a.held.some((h) => h.fam === g.fam && h.v === g.v));
    if (extra.length) out.push({ kind: "leak", msg: `${a.key} holds ${showHeld(extra)} beyond its ADD's ${showHeld(a.held)}` });
  }
  // (1) One holder per address: status owners and acknowledged answers together.
  for (const a of m.list("live")) for (const h of a.held) note(key(h.fam, h.v), a.key);
  for (const [k, who] of owners) {
    if (who.size > 1)
      out.push({
        kind: "duplicate",
        msg: `${fmtIp(k.startsWith("4:") ? 4 : 6, BigInt(`0x${k.slice(2)}`))} is held by ${[...who].join(" and ")}`,
      });
  }
  // In doubt: take what the store shows.
  for (const a of m.list("doubt")) a.held = seen.get(a.key) ?? [];
  // Record files: each belongs to a live or in-doubt attachment.
  for (const store of ["A", "B"] as const) {
    for (const f of records[store]) {
      const [net, rest] = f.split("/");
      const at = rest!.lastIndexOf("@");
      const a = m.atts.get(attKey(store, net!, rest!.slice(0, at), rest!.slice(at + 1)));
      if (!a || a.state === "dead")
        out.push({
          kind: "leak",
          msg: `store ${store} keeps the record ${f} of an attachment the runtime ${a ? "deleted" : "never added"}`,
        });
    }
  }
  return out;
}

/** A doubt attachment that a killed ADD answered before it died: its answer must be durable. */
export function checkDurable(a: Att, answered: readonly Held[], view: StoreView): Violation[] {
  const got: string[] = [];
  for (const r of view.ranges)
    for (const l of r.lines)
      if (l.owner && attKey(view.store, l.owner.network, l.owner.containerID, l.owner.ifname) === a.key) got.push(l.text);
  const want = answered.map((h) => fmtIp(h.fam, h.v));
  if (got.sort().join(",") !== [...want].sort().join(","))
    return [
      {
        kind: "lost",
        msg: `${a.key}: ADD answered ${want.join(",")} and was killed; the store holds ${got.join(",") || "nothing"} for it`,
      },
    ];
  return [];
}

/**
 * Claims (shared layout): a store that holds addresses in a range keeps that
 * range's claim, if the claim exists; another store taking it over would let
 * both hand out its addresses.
 */
export function checkClaims(
  views: readonly StoreView[],
  claims: ReadonlyMap<string, string>,
  folders: Record<StoreId, string>,
): Violation[] {
  const out: Violation[] = [];
  for (const view of views) {
    if (view.layout !== "shared") continue;
    for (const r of view.ranges) {
      const held = r.lines.filter((l) => l.owner).length;
      const claim = claims.get(r.cidr.text);
      if (held > 0 && claim !== undefined && claim !== folders[view.store]) {
        out.push({
          kind: "duplicate",
          msg: `store ${view.store} holds ${held} address(es) in ${r.cidr.text} but its claim names ${claim}`,
        });
      }
    }
  }
  return out;
}
