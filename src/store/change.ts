// What one commit changes, as the log and the checkpoints hold it: compact
// arrays for attachment records, and range deltas (bits set and cleared, the
// allocation cursor, the release times of the reuse cooldown).
import { type RangeState, countBits } from "../ipam/allocator.js";
import { parseCidr } from "../ipam/cidr.js";
import { asciiJson } from "./crc.js";
import type { AttachmentKey, AttachmentRecord } from "./store.js";

/** One range's change: offsets set (s) and cleared (u), the cursor (n), released-at added (r) and dropped (p). */
export interface RangeDelta {
  readonly c: string;
  readonly s?: number[];
  readonly u?: number[];
  readonly n?: number;
  readonly r?: [number, number][];
  readonly p?: number[];
}

/** One transaction. The records deleted are carried whole: the log is also the history of who held what. */
export interface Change {
  readonly t: number;
  readonly put?: AttachmentRecord[];
  readonly del?: AttachmentRecord[];
  readonly rng?: RangeDelta[];
  /** network -> the boot ID at which its attachments of earlier boots were released (releaseOnReboot). */
  readonly sw?: Record<string, string>;
}

export type RecordArray = [string, string, string, string, string, string, string, string, [string, string][], string];

export function toArray(r: AttachmentRecord): RecordArray {
  return [
    r.network,
    r.containerID,
    r.ifname,
    r.netns,
    r.netnsId,
    r.namespace,
    r.pod,
    r.createdAt,
    r.ips.map((h) => [h.cidr, h.address]),
    r.boot ?? "",
  ];
}

/** An attachment from its array form; null when malformed. */
export function fromArray(a: unknown): AttachmentRecord | null {
  if (!Array.isArray(a) || a.length < 9) return null;
  for (let i = 0; i < 8; i++) if (typeof a[i] !== "string") return null;
  if (!Array.isArray(a[8])) return null;
  const ips: { cidr: string; address: string }[] = [];
  for (const h of a[8] as unknown[]) {
    if (!Array.isArray(h) || typeof h[0] !== "string" || typeof h[1] !== "string") return null;
    ips.push({ cidr: h[0], address: h[1] });
  }
  const boot = typeof a[9] === "string" ? a[9] : "";
  return {
    network: a[0],
    containerID: a[1],
    ifname: a[2],
    netns: a[3],
    netnsId: a[4],
    namespace: a[5],
    pod: a[6],
    createdAt: a[7],
    ips,
    ...(boot ? { boot } : {}),
  };
}

export function keyOf(k: AttachmentKey): string {
  return `${k.network}\u0000${k.containerID}\u0000${k.ifname}`;
}

/** The order records are listed in (as the files attachments/<network>/<containerID>@<ifname>.json sorted). */
export function pathOf(k: AttachmentKey): string {
  return `attachments/${k.network}/${k.containerID}@${k.ifname}.json`;
}

/** Apply a delta to a range in place. */
export function applyDelta(r: RangeState, d: RangeDelta): void {
  for (const o of d.s ?? []) {
    if (o < 0 || o >= r.cidr.size) continue;
    const m = 1 << (o & 7);
    if (!(r.bits[o >> 3]! & m)) {
      r.bits[o >> 3]! |= m;
      r.allocated++;
    }
  }
  for (const o of d.u ?? []) {
    if (o < 0 || o >= r.cidr.size) continue;
    const m = 1 << (o & 7);
    if (r.bits[o >> 3]! & m) {
      r.bits[o >> 3]! &= ~m;
      r.allocated--;
    }
  }
  if (typeof d.n === "number" && d.n >= 0 && d.n < r.cidr.size) r.next = d.n;
  for (const o of d.p ?? []) r.released.delete(o);
  for (const [o, at] of d.r ?? []) r.released.set(o, at);
}

/** A copy of a range to diff against later. */
export function copyRange(r: RangeState): RangeState {
  return { cidr: r.cidr, bits: new Uint8Array(r.bits), next: r.next, allocated: r.allocated, released: new Map(r.released) };
}

/** What changed from `before` to `after` (same CIDR); null when nothing did. */
export function diffRange(before: RangeState, after: RangeState): RangeDelta | null {
  const s: number[] = [];
  const u: number[] = [];
  for (let i = 0; i < after.bits.length; i++) {
    const x = before.bits[i]! ^ after.bits[i]!;
    if (!x) continue;
    for (let b = 0; b < 8; b++) {
      if (!(x & (1 << b))) continue;
      (after.bits[i]! & (1 << b) ? s : u).push(i * 8 + b);
    }
  }
  const r: [number, number][] = [];
  const p: number[] = [];
  for (const [o, at] of after.released) if (before.released.get(o) !== at) r.push([o, at]);
  for (const o of before.released.keys()) if (!after.released.has(o)) p.push(o);
  const n = after.next !== before.next ? after.next : undefined;
  if (!s.length && !u.length && !r.length && !p.length && n === undefined) return null;
  return {
    c: after.cidr.text,
    ...(s.length ? { s } : {}),
    ...(u.length ? { u } : {}),
    ...(n !== undefined ? { n } : {}),
    ...(r.length ? { r } : {}),
    ...(p.length ? { p } : {}),
  };
}

/** A range as a checkpoint's range line. */
export function encodeRange(r: RangeState): string {
  return asciiJson({
    cidr: r.cidr.text,
    size: r.cidr.size,
    next: r.next,
    allocated: r.allocated,
    released: [...r.released],
    bits: Buffer.from(r.bits.buffer, r.bits.byteOffset, r.bits.byteLength).toString("base64"),
  });
}

/** A range line; null when it does not hold a consistent bitmap of that CIDR. */
export function decodeRange(text: string, cidrText: string): RangeState | null {
  try {
    const o = JSON.parse(text) as Record<string, unknown>;
    const p = parseCidr(String(o.cidr));
    if (!p.ok || p.cidr.text !== cidrText || o.size !== p.cidr.size || typeof o.bits !== "string") return null;
    const bits = new Uint8Array(Buffer.from(o.bits, "base64"));
    const spare = p.cidr.size % 8;
    if (bits.length !== Math.ceil(p.cidr.size / 8) || (spare !== 0 && bits[bits.length - 1]! >> spare !== 0)) return null;
    const allocated = countBits(bits);
    if (o.allocated !== allocated) return null;
    const released = new Map<number, number>();
    for (const e of Array.isArray(o.released) ? o.released : []) {
      if (Array.isArray(e) && Number.isInteger(e[0]) && e[0] >= 0 && e[0] < p.cidr.size && typeof e[1] === "number")
        released.set(e[0], e[1]);
    }
    const next = typeof o.next === "number" && o.next >= 0 && o.next < p.cidr.size ? o.next : 0;
    return { cidr: p.cidr, bits, next, allocated, released };
  } catch {
    return null;
  }
}
