// Address math for the reference model, written independently of src/ (the
// model must not share the implementation's mistakes): parse and print IPv4
// and IPv6 addresses, CIDRs, and the special addresses of a podCIDR.
export type Fam = 4 | 6;

export interface Ip {
  readonly fam: Fam;
  readonly v: bigint;
}

export interface Cidr {
  /** Canonical text, e.g. 10.0.2.0/24, fd00::200/120. */
  readonly text: string;
  readonly fam: Fam;
  readonly net: bigint;
  readonly prefix: number;
  readonly size: bigint;
}

/** The plugin serves at most this many addresses after the network address (README "Window"). */
export const WINDOW = 65536n;

/** A map key for an address that cannot mix up the families. */
export const key = (fam: Fam, v: bigint): string => `${fam}:${v.toString(16)}`;

export function parseIp(text: string): Ip | null {
  const s = text.trim();
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(s)) {
    const parts = s.split(".").map(Number);
    if (parts.some((p) => p > 255)) return null;
    return { fam: 4, v: parts.reduce((a, p) => (a << 8n) | BigInt(p), 0n) };
  }
  if (!/^[0-9a-fA-F:]+$/.test(s) || s.split("::").length > 2) return null;
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = head ? head.split(":") : [];
  const t = tail === undefined ? [] : tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  return { fam: 6, v: groups.reduce((a, g) => (a << 16n) | BigInt(parseInt(g, 16)), 0n) };
}

/** RFC 5952 text: lowercase, the longest run of two or more zero groups as "::". */
export function fmtIp(fam: Fam, v: bigint): string {
  if (fam === 4) return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join(".");
  const g = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

export function parseCidr(text: string): Cidr {
  const [a, p] = text.split("/");
  const ip = parseIp(a ?? "");
  const prefix = Number(p);
  const bits = ip?.fam === 4 ? 32 : 128;
  if (!ip || !Number.isInteger(prefix) || prefix < 0 || prefix > bits) throw new Error(`bad CIDR ${text}`);
  const size = 1n << BigInt(bits - prefix);
  const net = ip.v & ~(size - 1n);
  return { text: `${fmtIp(ip.fam, net)}/${prefix}`, fam: ip.fam, net, prefix, size };
}

/** The podCIDR an "address/prefix" of a result lies in. */
export function cidrOfResult(address: string): Cidr {
  return parseCidr(address);
}

export function contains(c: Cidr, fam: Fam, v: bigint): boolean {
  return c.fam === fam && v >= c.net && v < c.net + c.size;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.fam === b.fam && a.net < b.net + b.size && b.net < a.net + a.size;
}

export const gatewayOf = (c: Cidr): bigint => c.net + 1n;
export const broadcastOf = (c: Cidr): bigint | null => (c.fam === 4 ? c.net + c.size - 1n : null);

/** Last allocatable address: IPv4 stops before the broadcast, IPv6 at the end; both within WINDOW. */
export function windowEnd(c: Cidr): bigint {
  const n = c.size - (c.fam === 4 ? 2n : 1n);
  return c.net + (n < WINDOW ? n : WINDOW);
}

export const windowSize = (c: Cidr): bigint => windowEnd(c) - c.net;

export function inWindow(c: Cidr, fam: Fam, v: bigint): boolean {
  return c.fam === fam && v > c.net && v <= windowEnd(c);
}
