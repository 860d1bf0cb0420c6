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
import ipaddr from "ipaddr.js";
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

/** Parse "a.b.c.d" or an IPv6 text strictly. IPv4-mapped IPv6 becomes IPv4. Null when invalid. */
export function parseIp(text: string): { family: Family; value: bigint } | null {
  if (typeof text !== "string" || text.length > 64) return null;
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) addr = ipaddr.IPv4.parse(text);
  else if (text.includes(":") && !text.includes("%") && ipaddr.IPv6.isValid(text)) {
    const v6 = ipaddr.IPv6.parse(text);
    addr = v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
  } else return null;
  let value = 0n;
  for (const b of addr.toByteArray()) value = (value << 8n) | BigInt(b);
  return { family: addr.kind() === "ipv4" ? 4 : 6, value };
}

export function formatIp(family: Family, value: bigint): string {
  const n = BITS[family] / 8;
  const bytes = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
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
