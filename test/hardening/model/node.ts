// The node file the model test writes: podCIDRs from chains of overlapping
// CIDRs (a /24 replaced by a /22, then a /25, ...; an IPv6 /64 and /120s inside
// it), disjoint small CIDRs to append, and router/health/ingress addresses
// moving inside the podCIDRs; as a CiliumNode or a v1 Node, written to a temp
// file and renamed into place.
import { type Ctx, pick } from "./calls";
import type { NodeVersion, Special } from "./model";
import { type Cidr, type Fam, broadcastOf, fmtIp, gatewayOf, key, parseCidr, windowEnd } from "./net";

export const V4_CHAIN = ["10.0.2.0/24", "10.0.0.0/22", "10.0.2.0/25", "10.0.2.0/26", "10.0.2.0/23", "10.0.2.128/25"].map(parseCidr);
export const V4_EXTRA = ["10.0.5.0/26", "10.0.6.0/28", "10.0.7.0/30"].map(parseCidr);
export const V6_CHAIN = ["fd00::200/120", "fd00::/64", "fd00::280/121", "fd00::/118"].map(parseCidr);
export const ALL_CIDRS = [...V4_CHAIN, ...V4_EXTRA, ...V6_CHAIN];

export function initialNode(ctx: Ctx): NodeVersion {
  const cidrs = [V4_CHAIN[0]!, V6_CHAIN[0]!];
  const special: Special[] = [];
  const taken = new Set<string>();
  for (const c of cidrs)
    for (const role of ["router", "health"] as const) special.push({ fam: c.fam, v: freeAddress(ctx, c, taken)!, role });
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
      addresses: [
        { ip: "172.18.0.9", type: "InternalIP" },
        ...v.special.filter((s) => s.role === "router").map((s) => ({ ip: ip(s), type: "CiliumInternalIP" })),
      ],
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
    obj = {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "model-node", annotations },
      spec: { podCIDRs: v.cidrs.map((c) => c.text), ...(v.cidrs[0] ? { podCIDR: v.cidrs[0].text } : {}) },
    };
  }
  ctx.w.writeNode(obj);
}

/** A random address of `c` that no pod holds (either data dir) and that is nothing special. */
export function freeAddress(ctx: Ctx, c: Cidr, avoid: Set<string>): bigint | null {
  const held = new Set<string>();
  for (const a of ctx.m.holders()) for (const h of a.held) held.add(key(h.fam, h.v));
  const span = windowEnd(c) - c.net;
  const limit = span < 1024n ? span : 1024n;
  for (let i = 0; i < 40; i++) {
    const v = c.net + 1n + BigInt(Math.floor(ctx.rng() * Number(limit)));
    const k = key(c.fam, v);
    if (
      v === gatewayOf(c) ||
      held.has(k) ||
      avoid.has(k) ||
      ALL_CIDRS.some((x) => x.fam === c.fam && (x.net === v || gatewayOf(x) === v || broadcastOf(x) === v))
    )
      continue;
    avoid.add(k);
    return v;
  }
  return null;
}

/** Change the node file (temp + rename) in one of the ways the operator's sync job does. */
export function changeNode(ctx: Ctx): NodeVersion {
  const cur = ctx.m.node;
  let cidrs = [...cur.cidrs];
  let special = [...cur.special];
  let kind = cur.kind;
  const r = ctx.rng();
  let what: string;
  const chainAt = cidrs.findIndex((c) => V4_CHAIN.some((x) => x.text === c.text));
  const v6At = cidrs.findIndex((c) => c.fam === 6);
  if (r < 0.28) {
    const next = pick(
      ctx,
      V4_CHAIN.filter((x) => x.text !== cidrs[chainAt]?.text),
    );
    if (chainAt >= 0) cidrs[chainAt] = next;
    else cidrs.unshift(next);
    what = `IPv4 ${chainAt >= 0 ? `${cur.cidrs[chainAt]!.text} -> ` : "+"}${next.text}`;
  } else if (r < 0.46) {
    const next = pick(
      ctx,
      V6_CHAIN.filter((x) => x.text !== cidrs[v6At]?.text),
    );
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

export function applyNode(ctx: Ctx, cidrs: Cidr[], special: Special[], kind: NodeVersion["kind"], what: string): NodeVersion {
  const v: NodeVersion = { seq: ctx.m.node.seq + 1, at: 0, kind, cidrs, special };
  writeNode(ctx, v);
  ctx.m.versions.push({ ...v, at: Date.now() });
  ctx.stats.nodeChanges++;
  ctx.log(
    `  node v${v.seq}: ${what}: ${kind} ${cidrs.map((c) => c.text).join(", ")}; ${special.map((x) => `${x.role}=${fmtIp(x.fam, x.v)}`).join(" ")}`,
  );
  return ctx.m.node;
}

/**
 * The reverse of an orphan's gateway: a pod holds an ordinary address that is the
 * gateway of another CIDR of the chain, then the node file switches to that CIDR.
 * Its gateway is the pod's address, so it must not be used for new pods (and
 * never returned as a gateway) while that pod lives.
 */
