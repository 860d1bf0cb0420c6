// A checkpoint: the whole state of the store as of one generation, one JSON line
// per section, each with its own CRC-32, so that a call reads the meta line, the
// ranges it needs and one bucket of attachments, never all of them:
//   meta   {"format":"podcidr-ipam/checkpoint","version":2,"gen":..,"ranges":[[cidr,off,len,crc]..],
//           "buckets":B,"index":base64(B x u32 [off,len,crc]),"history":[off,len,crc],...,"crc":..}
//   ranges {"cidr":..,"size":..,"next":..,"allocated":..,"released":[[offset,at]..],"bits":base64}
//   buckets [[network,containerID,ifname,netns,netnsId,namespace,pod,createdAt,ips,boot]..]
//   history [[time,"put"|"del",record]..]
import type { RangeState } from "../ipam/allocator.js";
import { type RecordArray, decodeRange, encodeRange, fromArray, pathOf, toArray } from "./change.js";
import { asciiJson, crc32 } from "./crc.js";
import { fileSize, readAt } from "./files.js";
import { FORMAT_VERSION, newer } from "./log.js";
import type { AttachmentRecord } from "./store.js";

const FORMAT = "podcidr-ipam/checkpoint";
const FIRST_READ = 64 << 10;
const PER_BUCKET = 32;

export type HistoryEvent = [number, "put" | "del", RecordArray];

export interface FullState {
  readonly gen: number;
  readonly at: number;
  readonly ranges: readonly RangeState[];
  readonly records: readonly AttachmentRecord[];
  readonly history: readonly HistoryEvent[];
  readonly sw: Readonly<Record<string, string>>;
}

export interface Meta {
  readonly gen: number;
  readonly at: number;
  readonly count: number;
  readonly networks: Record<string, number>;
  readonly sw: Record<string, string>;
  readonly ranges: [string, number, number, number][];
  readonly buckets: number;
  readonly index: Buffer;
  readonly history: [number, number, number];
}

/** Section bytes that fail their CRC. */
export class Damage {
  constructor(
    readonly what: string,
    readonly text: string,
  ) {}
}

export function encodeCheckpoint(s: FullState): Buffer {
  const sorted = [...s.records].sort((a, b) => (pathOf(a) < pathOf(b) ? -1 : pathOf(a) > pathOf(b) ? 1 : 0));
  const buckets = Math.max(1, 2 ** Math.ceil(Math.log2(Math.max(1, sorted.length / PER_BUCKET))));
  const lines: Buffer[] = [];
  const rangeIdx: [string, number, number, number][] = [];
  const networks: Record<string, number> = {};
  let off = 0;
  const add = (text: string): [number, number, number] => {
    const b = Buffer.from(`${text}\n`, "latin1");
    const at: [number, number, number] = [off, b.length - 1, crc32(b, 0, b.length - 1)];
    lines.push(b);
    off += b.length;
    return at;
  };
  // Offsets are relative to the end of the meta line until it is known.
  for (const r of s.ranges) rangeIdx.push([r.cidr.text, ...add(encodeRange(r))]);
  const per: [number, RecordArray][][] = Array.from({ length: buckets }, () => []);
  for (const r of sorted) {
    const a = toArray(r);
    per[bucketOf(r, buckets)]!.push([crc32(Buffer.from(asciiJson(a), "latin1")), a]);
    networks[r.network] = (networks[r.network] ?? 0) + 1;
  }
  const index = Buffer.alloc(buckets * 12);
  per.forEach((recs, i) => {
    const [o, l, c] = add(asciiJson(recs));
    index.writeUInt32BE(o, i * 12);
    index.writeUInt32BE(l, i * 12 + 4);
    index.writeUInt32BE(c, i * 12 + 8);
  });
  const history = add(asciiJson(s.history));
  const meta = {
    format: FORMAT,
    version: FORMAT_VERSION,
    gen: s.gen,
    at: s.at,
    count: sorted.length,
    networks,
    sw: s.sw,
    ranges: rangeIdx,
    buckets,
    index: index.toString("base64"),
    history,
    size: off,
  };
  const body = asciiJson(meta);
  const head = Buffer.from(`${body.slice(0, -1)},"crc":${crc32(Buffer.from(body, "latin1"))}}\n`, "latin1");
  return Buffer.concat([head, ...lines]);
}

/** What a transaction reads of a checkpoint (a slot, or what repair salvaged of one: salvage.ts). */
export interface SlotView {
  readonly path: string;
  readonly meta: Meta;
  range(cidrText: string): RangeState | Damage | null;
  bucket(i: number): (AttachmentRecord | Damage)[] | Damage;
  history(): HistoryEvent[] | Damage;
}

/** A checkpoint slot, read on demand. Offsets in the meta count from the end of the meta line. */
export class Slot implements SlotView {
  private constructor(
    private readonly fd: number,
    readonly path: string,
    readonly meta: Meta,
    private readonly base: number,
    private head: Buffer,
  ) {}

  /** Read a slot's meta: null when the file is empty, not a checkpoint, or its meta fails its checks (torn, damaged). */
  static open(fd: number, path: string): Slot | null {
    const size = fileSize(fd);
    if (size === 0) return null;
    let head = readAt(fd, 0, Math.min(size, FIRST_READ));
    let nl = head.indexOf(10);
    while (nl < 0 && head.length < size) {
      head = Buffer.concat([head, readAt(fd, head.length, Math.min(size - head.length, head.length * 2))]);
      nl = head.indexOf(10);
    }
    if (nl < 0) return null;
    const text = head.toString("latin1", 0, nl);
    const m = /,"crc":(\d+)\}$/.exec(text);
    if (!m) return null;
    const body = `${text.slice(0, m.index)}}`;
    if (crc32(Buffer.from(body, "latin1")) !== Number(m[1])) return null;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(body) as Record<string, unknown>;
    } catch {
      return null;
    }
    if (o.format !== FORMAT || typeof o.version !== "number") return null;
    if (o.version > FORMAT_VERSION) throw newer(path, o.version);
    const meta: Meta = {
      gen: Number(o.gen),
      at: Number(o.at),
      count: Number(o.count),
      networks: (o.networks ?? {}) as Record<string, number>,
      sw: (o.sw ?? {}) as Record<string, string>,
      ranges: (o.ranges ?? []) as Meta["ranges"],
      buckets: Number(o.buckets),
      index: Buffer.from(String(o.index ?? ""), "base64"),
      history: (o.history ?? [0, 0, 0]) as Meta["history"],
    };
    if (!Number.isInteger(meta.gen) || meta.gen < 1 || !(meta.buckets >= 1) || meta.index.length !== meta.buckets * 12) return null;
    return new Slot(fd, path, meta, nl + 1, head);
  }

  range(cidrText: string): RangeState | Damage | null {
    const e = this.meta.ranges.find((r) => r[0] === cidrText);
    if (!e) return null;
    const text = this.section(e[1], e[2], e[3]);
    if (text instanceof Damage) return new Damage(`range ${cidrText}`, text.text);
    return decodeRange(text, cidrText) ?? new Damage(`range ${cidrText}`, text);
  }

  /**
   * The records of bucket i. Each record has its own CRC too: in a bucket that fails its
   * CRC, the records that pass theirs are kept and the others returned as Damage, one each.
   */
  bucket(i: number): (AttachmentRecord | Damage)[] | Damage {
    const ix = this.meta.index;
    const text = this.section(ix.readUInt32BE(i * 12), ix.readUInt32BE(i * 12 + 4), ix.readUInt32BE(i * 12 + 8));
    const what = `attachments (bucket ${i} of ${this.meta.buckets})`;
    const whole = !(text instanceof Damage);
    const body = whole ? text : text.text;
    let entries: unknown[];
    try {
      entries = JSON.parse(body) as unknown[];
      if (!Array.isArray(entries)) return new Damage(what, body);
    } catch {
      return new Damage(what, body);
    }
    return entries.map((e) => {
      const a = Array.isArray(e) ? (e[1] as unknown) : undefined;
      const r = fromArray(a);
      const ok = r !== null && (whole || crc32(Buffer.from(asciiJson(a), "latin1")) === (e as unknown[])[0]);
      if (ok) return r;
      const id = Array.isArray(a) ? a.slice(0, 3).map(String).join("/") : "?";
      return new Damage(`record of ${id}`, JSON.stringify(e));
    });
  }

  history(): HistoryEvent[] | Damage {
    const [o, l, c] = this.meta.history;
    const text = this.section(o, l, c);
    if (text instanceof Damage) return new Damage("history", text.text);
    try {
      return JSON.parse(text) as HistoryEvent[];
    } catch {
      return new Damage("history", text);
    }
  }

  /** Every section passes its checks (a slot not known to have been synced is used only then). */
  verify(): boolean {
    for (const r of this.meta.ranges) if (!(this.range(r[0]) && !(this.range(r[0]) instanceof Damage))) return false;
    for (let i = 0; i < this.meta.buckets; i++) {
      const b = this.bucket(i);
      if (b instanceof Damage || b.some((r) => r instanceof Damage)) return false;
    }
    return !(this.history() instanceof Damage);
  }

  private section(off: number, len: number, crc: number): string | Damage {
    const start = this.base + off;
    const buf = start + len <= this.head.length ? this.head.subarray(start, start + len) : readAt(this.fd, start, len);
    if (buf.length !== len || crc32(buf) !== crc) return new Damage("", buf.toString("latin1"));
    return buf.toString("latin1");
  }
}

export function bucketOf(key: { containerID: string; ifname: string }, buckets: number): number {
  const s = `${key.containerID}@${key.ifname}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0) % buckets;
}
