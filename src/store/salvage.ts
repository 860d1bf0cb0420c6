// What repair can still trust when the store does not load as a whole:
//  - a checkpoint whose meta line fails its checks (no section offsets, no section
//    CRCs): each record still carries its own CRC, so the records that pass theirs
//    are kept; range lines cannot be checked, so their bits are kept taken only
//    (never freed, never trusted to say who holds them); the history line is not used;
//  - a damaged log record between valid ones: every address still legible in its
//    bytes is kept taken;
//  - a checkpoint bucket (or record) that fails its CRC: the records of the keys it
//    held are taken back from the checkpoint's history line (its own CRC passed),
//    where an event of theirs is still in it.
// See docs/design-log-store.md, "Repair".
import { type Cidr, parseCidr } from "../ipam/cidr.js";
import { heldOffsets } from "../ipam/pool.js";
import { fromArray, keyOf } from "./change.js";
import { Damage, type HistoryEvent, type Meta, type SlotView } from "./checkpoint.js";
import { asciiJson, crc32 } from "./crc.js";
import { fileSize, readAt } from "./files.js";
import type { AttachmentRecord } from "./store.js";

/** A checkpoint read line by line, its meta untrusted. */
export class SalvagedSlot implements SlotView {
  private constructor(
    readonly path: string,
    readonly meta: Meta,
    private readonly lines: ReadonlyMap<string, string>,
    private readonly entries: (AttachmentRecord | Damage)[],
  ) {}

  /** The generation the meta says, if it still parses (0 when not). */
  static looseGen(fd: number): number {
    const meta = looseMeta(readAt(fd, 0, Math.min(fileSize(fd), 64 << 10)).toString("latin1"));
    return Number.isInteger(meta?.gen) ? (meta!.gen as number) : 0;
  }

  static read(fd: number, path: string, gen: number): SalvagedSlot {
    const all = readAt(fd, 0, fileSize(fd)).toString("latin1");
    const meta = looseMeta(all);
    // The checkpoint ends at its size, if the meta still says it; zeros after it are padding.
    const size = typeof meta?.size === "number" ? meta.size : all.length;
    const nl = all.indexOf("\n");
    const body = nl < 0 ? "" : all.slice(nl + 1, nl + 1 + size);
    const ranges = new Map<string, string>();
    const entries: (AttachmentRecord | Damage)[] = [];
    const lines = body.split("\n");
    for (let n = 0; n < lines.length; n++) {
      const line = lines[n]!;
      if (!line.replace(/\0/g, "")) continue;
      const cidr = /^\{"cidr":"([^"]+)"/.exec(line);
      const p = cidr ? parseCidr(cidr[1]!) : null;
      if (p?.ok) {
        ranges.set(p.cidr.text, line);
        continue;
      }
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        v = null;
      }
      if (!Array.isArray(v)) {
        entries.push(new Damage(`line ${n + 2}`, line));
        continue;
      }
      for (const e of v as unknown[]) {
        if (!Array.isArray(e) || typeof e[1] === "string") continue; // a history event: not trusted without its CRC
        const r = fromArray(e[1]);
        if (r && crc32(Buffer.from(asciiJson(e[1]), "latin1")) === e[0]) entries.push(r);
        else entries.push(new Damage(`record of ${Array.isArray(e[1]) ? e[1].slice(0, 3).map(String).join("/") : "?"}`, JSON.stringify(e)));
      }
    }
    const networks: Record<string, number> = {};
    for (const r of entries) if (!(r instanceof Damage)) networks[r.network] = (networks[r.network] ?? 0) + 1;
    const m: Meta = {
      gen,
      at: 0,
      count: entries.length,
      networks,
      sw: (typeof meta?.sw === "object" && meta.sw !== null ? meta.sw : {}) as Record<string, string>,
      ranges: [...ranges.keys()].map((c): [string, number, number, number] => [c, 0, 0, 0]),
      buckets: 1,
      index: Buffer.alloc(12),
      history: [0, 0, 0],
    };
    return new SalvagedSlot(path, m, ranges, entries);
  }

  /** A range line is never trusted here (no CRC to check it by): its bits are kept taken by repair, as a damaged range's. */
  range(cidrText: string): Damage | null {
    const line = this.lines.get(cidrText);
    return line === undefined ? null : new Damage(`range ${cidrText}`, line);
  }

  bucket(): (AttachmentRecord | Damage)[] {
    return this.entries;
  }

  history(): Damage {
    return new Damage("history", "");
  }
}

/** Every (CIDR, offset) still legible in damaged bytes: a record's [cidr, address] pairs and a range delta's set offsets. */
export function legibleHolds(text: string): { cidr: Cidr; offsets: number[] }[] {
  const out = new Map<string, { cidr: Cidr; offsets: number[] }>();
  const add = (cidrText: string, offset: number): void => {
    const p = parseCidr(cidrText);
    if (!p.ok || offset < 0 || offset >= p.cidr.size) return;
    const e = out.get(p.cidr.text) ?? { cidr: p.cidr, offsets: [] };
    if (!e.offsets.includes(offset)) e.offsets.push(offset);
    out.set(p.cidr.text, e);
  };
  for (const m of text.matchAll(/\["([0-9a-fA-F.:]+\/\d+)","([0-9a-fA-F.:]+)"\]/g)) {
    for (const h of heldOffsets({ ips: [{ cidr: m[1]!, address: m[2]! }] })) if (h.cidr) add(h.cidr.text, h.offset);
  }
  for (const m of text.matchAll(/\{"c":"([0-9a-fA-F.:]+\/\d+)","s":\[([0-9,]+)\]/g))
    for (const o of m[2]!.split(",")) add(m[1]!, Number(o));
  return [...out.values()];
}

/** The records the history says were live at the checkpoint (the last event of each key a put), by key. */
export function liveInHistory(events: readonly HistoryEvent[]): Map<string, AttachmentRecord> {
  const out = new Map<string, AttachmentRecord>();
  for (const [, kind, a] of events) {
    const r = fromArray(a);
    if (!r) continue;
    if (kind === "put") out.set(keyOf(r), r);
    else out.delete(keyOf(r));
  }
  return out;
}

// --- internal ---

function looseMeta(text: string): Record<string, unknown> | null {
  const nl = text.indexOf("\n");
  try {
    const o = JSON.parse((nl < 0 ? text : text.slice(0, nl)).replace(/,"crc":\d+\}$/, "}")) as unknown;
    return typeof o === "object" && o !== null ? (o as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
