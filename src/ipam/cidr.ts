// A podCIDR and the window of addresses we may allocate from it.
//
//   IPv4 10.0.2.0/24                      IPv6 fd00::200/120
//   network  10.0.2.0    never handed out  fd00::200  subnet-router anycast, never
//   offset 0 10.0.2.1    gateway (default) fd00::201  gateway (default)
//   offset 1 10.0.2.2    first pod         fd00::202  first pod
//   ...                                    ...
//   offset n-1 10.0.2.254                  fd00::2ff  (IPv6 has no broadcast)
//   broadcast 10.0.2.255 never handed out
//
// The window is capped at MAX_WINDOW addresses (offsets 0..MAX_WINDOW-1), so a
// /64 is served from its first 65,536 addresses after the anycast one and the
// bitmap never exceeds 8 KiB. Offsets are plain numbers; address math is BigInt.
//
// Addresses are parsed and printed here, by hand, not with ipaddr.js: its parsers are
// large regular expressions that V8 compiles on their first use, about 1.4 ms of every
// CNI call (every call parses the node file's CIDRs). test/ipam/cidr.test.ts checks both
// against ipaddr.js, which stays a development dependency for that.
import { brief } from "../errors.js";

export const MAX_WINDOW = 65536;
/** IPv4 prefixes longer than this leave no address for a pod beside the gateway. */
export const MAX_PREFIX = { 4: 30, 6: 126 } as const;

export type Family = 4 | 6;

/** A prefix length as people write it: no sign, no leading zero ("/08" is refused). */
export const PREFIX_RE = /^(0|[1-9]\d{0,2})$/;

export interface Cidr {
  /** Canonical text, e.g. "10.0.2.0/24", "fd00::200/120". */
  readonly text: string;
  readonly family: Family;
  readonly prefix: number;
  readonly network: bigint;
  /** Address of offset 0 (network + 1). */
  readonly base: bigint;
  /** Number of offsets in the window. */
  readonly size: number;
  /** Addresses in the CIDR beyond the window (IPv6 /64 and friends): not allocatable. */
  readonly truncated: boolean;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

const MAPPED = 0xffffn << 32n;

/** A dotted quad, strictly: four decimal parts 0-255, no sign, no leading zero. */
function parseQuad(text: string, from: number): bigint | null {
  let value = 0n;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = from; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // the end closes the last part like a "."
    if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return null; // a leading zero ("010")
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return null;
    } else if (c === 46 && digits > 0 && ++parts <= 4) {
      value = (value << 8n) | BigInt(part);
      part = 0;
      digits = 0;
    } else return null;
  }
  return parts === 4 ? value : null;
}

/** The 16-bit groups of one side of "::" (empty text: none); null when one is not 1-4 hex digits. */
function hexGroups(text: string, out: number[]): boolean {
  if (text === "") return true;
  for (const g of text.split(":")) {
    if (g.length === 0 || g.length > 4) return false;
    let v = 0;
    for (let i = 0; i < g.length; i++) {
      const raw = g.charCodeAt(i);
      const c = raw >= 65 ? raw | 0x20 : raw; // A-F as a-f (and never a control character as a digit)
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
      if (d < 0) return false;
      v = v * 16 + d;
    }
    out.push(v);
  }
  return true;
}

/** An IPv6 text (RFC 4291 2.2: groups, one "::", a dotted quad last), no zone. */
function parseV6(text: string): bigint | null {
  let groupsText = text;
  let quad: bigint | null = null;
  const dot = text.indexOf(".");
  if (dot >= 0) {
    const colon = text.lastIndexOf(":");
    if (colon < 0 || colon > dot) return null;
    quad = parseQuad(text, colon + 1);
    if (quad === null) return null;
    // "::1.2.3.4" keeps its "::"; "64:ff9b::1.2.3.4" likewise; "1:2:3:4:5:6:1.2.3.4" drops the ":".
    groupsText = text.slice(0, text[colon - 1] === ":" ? colon + 1 : colon);
    // The deprecated IPv4-compatible "::a.b.c.d" reads as IPv4-mapped, as ipaddr.js read it.
    if (groupsText === "::") return MAPPED | quad;
  }
  const want = quad === null ? 8 : 6;
  const halves = groupsText.split("::");
  if (halves.length > 2) return null;
  const head: number[] = [];
  const tail: number[] = [];
  if (!hexGroups(halves[0]!, head) || (halves.length === 2 && !hexGroups(halves[1]!, tail))) return null;
  const n = head.length + tail.length;
  if (halves.length === 2 ? n >= want : n !== want) return null;
  let value = 0n;
  for (const g of head) value = (value << 16n) | BigInt(g);
  value <<= BigInt(16 * (want - n));
  for (const g of tail) value = (value << 16n) | BigInt(g);
  return quad === null ? value : (value << 32n) | quad;
}

/** Parse "a.b.c.d" or an IPv6 text strictly. IPv4-mapped IPv6 becomes IPv4. Null when invalid. */
export function parseIp(text: string): { family: Family; value: bigint } | null {
  if (typeof text !== "string" || text.length > 64) return null;
  if (!text.includes(":")) {
    const v4 = parseQuad(text, 0);
    return v4 === null ? null : { family: 4, value: v4 };
  }
  const v6 = parseV6(text);
  if (v6 === null) return null;
  return v6 >> 32n === 0xffffn ? { family: 4, value: v6 - MAPPED } : { family: 6, value: v6 };
}

/** An address as text: dotted quad, or IPv6 as ipaddr.js prints it (RFC 5952: lower case, the longest zero run as "::"). */
export function formatIp(family: Family, value: bigint): string {
  if (family === 4) {
    const v = Number(value);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const groups = new Array<number>(8);
  for (let i = 7; i >= 0; i--) {
    groups[i] = Number(value & 0xffffn);
    value >>= 16n;
  }
  // The longest run of two or more zero groups becomes "::", the first one on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (from: number, to: number): string =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(":");
  return best < 0 ? hex(0, 8) : `${hex(0, best)}::${hex(best + bestLen, 8)}`;
}

export type CidrParse = { ok: true; cidr: Cidr } | { ok: false; reason: string };

/** Parse and validate a podCIDR. The reason says what is wrong and what is expected. */
export function parseCidr(text: unknown): CidrParse {
  if (typeof text !== "string") return { ok: false, reason: `must be a CIDR string such as "10.0.2.0/24", got ${brief(text)}` };
  const slash = text.indexOf("/");
  const ip = slash < 0 ? null : parseIp(text.slice(0, slash));
  const prefixText = slash < 0 ? "" : text.slice(slash + 1);
  // An IPv4-mapped IPv6 prefix (::ffff:10.0.2.0/120) is neither family's CIDR: refuse it.
  if (!ip || !PREFIX_RE.test(prefixText) || (ip.family === 4 && text.slice(0, slash).includes(":"))) {
    return { ok: false, reason: `${brief(text)} is not a CIDR; expected the form 10.0.2.0/24 or fd00::200/120` };
  }
  const prefix = Number(prefixText);
  const bits = BITS[ip.family];
  if (prefix > bits) return { ok: false, reason: `"${text}" has prefix /${prefix}, longer than an IPv${ip.family} address` };
  if (prefix > MAX_PREFIX[ip.family]) {
    return {
      ok: false,
      reason: `"${text}" is too small to allocate from: IPv${ip.family} podCIDRs must be /${MAX_PREFIX[ip.family]} or larger`,
    };
  }
  const hostBits = BigInt(bits - prefix);
  const network = (ip.value >> hostBits) << hostBits;
  if (network !== ip.value) {
    return { ok: false, reason: `"${text}" has host bits set; the network is ${formatIp(ip.family, network)}/${prefix}` };
  }
  const total = 1n << hostBits;
  // IPv4 loses network and broadcast, IPv6 only its anycast first address.
  const usable = ip.family === 4 ? total - 2n : total - 1n;
  const size = usable > BigInt(MAX_WINDOW) ? MAX_WINDOW : Number(usable);
  const canonical = `${formatIp(ip.family, network)}/${prefix}`;
  return {
    ok: true,
    cidr: Object.freeze({
      text: canonical,
      family: ip.family,
      prefix,
      network,
      base: network + 1n,
      size,
      truncated: usable > BigInt(size),
    }),
  };
}

/** Offset of an address in the window, or -1 when it is outside the window. */
export function offsetOf(cidr: Cidr, family: Family, value: bigint): number {
  if (family !== cidr.family) return -1;
  const d = value - cidr.base;
  return d >= 0n && d < BigInt(cidr.size) ? Number(d) : -1;
}

export function addressAt(cidr: Cidr, offset: number): string {
  return formatIp(cidr.family, cidr.base + BigInt(offset));
}

/** True when the address lies anywhere in the CIDR (window or not). */
export function contains(cidr: Cidr, family: Family, value: bigint): boolean {
  if (family !== cidr.family) return false;
  return value >> BigInt(BITS[family] - cidr.prefix) === cidr.network >> BigInt(BITS[family] - cidr.prefix);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const shorter = a.prefix <= b.prefix ? a : b;
  const other = shorter === a ? b : a;
  return contains(shorter, other.family, other.network);
}
