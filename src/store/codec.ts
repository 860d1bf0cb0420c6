// The previous release's on-disk formats (read by the upgrade). Every file is one JSON object with
// "format", "version" and a "crc32" of the object's JSON without that key; a file that fails any
// check is refused (StoreCorrupt), never reset: a reset would hand out addresses in use.
import { Code, CniError } from "../errors.js";
import { type RangeState, countBits } from "../ipam/allocator.js";
import { type Cidr, parseCidr } from "../ipam/cidr.js";
import { crc32 as crc32Bytes } from "./crc.js";
import type { AttachmentKey, AttachmentRecord } from "./store.js";

// The files' names (names.ts), with the formats for the callers that import the codec whole.
import { rangeFileName } from "./names.js";
export { attachmentFileName, attachmentPath, parseAttachmentName, parseRangeName, rangeFileName } from "./names.js";

/** Range and journal files. */
export const VERSION = 1;
/** Attachment records gained `network`, `netns` and `netnsId` in version 2 (version 1: the per-network stores before issue #9). */
export const ATTACHMENT_VERSION = 2;
const RANGE = "podcidr-ipam/range";
const ATTACHMENT = "podcidr-ipam/attachment";
const JOURNAL = "podcidr-ipam/journal";

export interface JournalWrite {
  /** Path relative to the network folder. */
  readonly file: string;
  /** New content, or null to delete. */
  readonly content: string | null;
}

export function encodeRange(r: RangeState): string {
  const released: Record<string, number> = {};
  for (const [o, at] of r.released) released[o] = at;
  return seal({
    format: RANGE,
    version: VERSION,
    cidr: r.cidr.text,
    size: r.cidr.size,
    next: r.next,
    allocated: r.allocated,
    released,
    bits: Buffer.from(r.bits.buffer, r.bits.byteOffset, r.bits.byteLength).toString("base64"),
  });
}

export function decodeRange(text: string, file: string): RangeState {
  const o = unseal(text, file, RANGE);
  const p = parseCidr(o.cidr);
  if (!p.ok) throw corrupt(file, `its cidr ${JSON.stringify(o.cidr)} is invalid`);
  if (rangeFileName(p.cidr.text) !== file.slice(file.lastIndexOf("/") + 1)) {
    throw corrupt(file, `it holds the bitmap of ${p.cidr.text}, not of the CIDR its name says`);
  }
  const bits = typeof o.bits === "string" ? new Uint8Array(Buffer.from(o.bits, "base64")) : null;
  // The bitmap must be exactly the window's size, with no bit set past its end.
  const spare = p.cidr.size % 8;
  if (
    !bits ||
    o.size !== p.cidr.size ||
    bits.length !== Math.ceil(p.cidr.size / 8) ||
    (spare !== 0 && bits[bits.length - 1]! >> spare !== 0)
  ) {
    throw corrupt(file, `its bitmap does not fit ${p.cidr.text} (${p.cidr.size} addresses)`);
  }
  const allocated = countBits(bits);
  if (o.allocated !== allocated) throw corrupt(file, `it counts ${String(o.allocated)} addresses but its bitmap holds ${allocated}`);
  const released = new Map<number, number>();
  if (typeof o.released === "object" && o.released !== null) {
    for (const [k, v] of Object.entries(o.released)) {
      const off = Number(k);
      if (typeof v === "number" && Number.isInteger(off) && off >= 0 && off < p.cidr.size) released.set(off, v);
    }
  }
  const next = typeof o.next === "number" && o.next >= 0 && o.next < p.cidr.size ? o.next : 0;
  return { cidr: p.cidr, bits, next, allocated, released };
}

export function encodeAttachment(rec: AttachmentRecord): string {
  const { network, containerID, ifname, netns, netnsId, namespace, pod, createdAt, ips } = rec;
  return seal({
    format: ATTACHMENT,
    version: ATTACHMENT_VERSION,
    network,
    containerID,
    ifname,
    netns,
    netnsId,
    namespace,
    pod,
    createdAt,
    ips,
  });
}

/**
 * Decode an attachment record read from the file named for `key`. A record whose
 * content names another attachment is refused: releasing it would free someone
 * else's address (a file copied or restored by hand).
 */
export function decodeAttachment(text: string, file: string, key: AttachmentKey): AttachmentRecord {
  const rec = decodeRecord(unseal(text, file, ATTACHMENT, ATTACHMENT_VERSION), file, key.network);
  if (rec.network !== key.network || rec.containerID !== key.containerID || rec.ifname !== key.ifname) {
    throw corrupt(file, `it holds the record of ${rec.network}/${rec.containerID}/${rec.ifname}, not of the attachment its name says`);
  }
  return rec;
}

/** A version-1 record of a per-network store (before issue #9): the network comes from its folder. */
export function decodeLegacyAttachment(text: string, file: string, key: AttachmentKey): AttachmentRecord {
  const rec = decodeRecord(unseal(text, file, ATTACHMENT, 1), file, key.network);
  if (rec.containerID !== key.containerID || rec.ifname !== key.ifname) {
    throw corrupt(file, `it holds the record of ${rec.containerID}/${rec.ifname}, not of the attachment its name says`);
  }
  return rec;
}

export function encodeJournal(writes: readonly JournalWrite[]): string {
  return seal({ format: JOURNAL, version: VERSION, writes });
}

export function decodeJournal(text: string, file: string): JournalWrite[] {
  const o = unseal(text, file, JOURNAL);
  if (!Array.isArray(o.writes)) throw corrupt(file, "writes is not a list");
  return o.writes.map((w: unknown) => {
    const e = w as { file?: unknown; content?: unknown };
    if (typeof e.file !== "string" || /(^|\/)\.\.(\/|$)|^\//.test(e.file) || (e.content !== null && typeof e.content !== "string")) {
      throw corrupt(file, "an entry of writes is malformed");
    }
    return { file: e.file, content: e.content };
  });
}

/**
 * The offsets a damaged range file still marks taken, if it parses far enough to
 * tell (JSON, a bitmap of the right size for the CIDR its name says): repair keeps
 * them taken, since some may be live pods whose records were lost. Null otherwise.
 */
export function salvageRange(text: string, cidr: Cidr): number[] | null {
  let o: { bits?: unknown };
  try {
    o = JSON.parse(text) as { bits?: unknown };
  } catch {
    return null;
  }
  if (typeof o !== "object" || o === null || typeof o.bits !== "string") return null;
  // A character damaged out of the base64 alphabet stands for six unknown bits: read them as taken.
  const bits = Buffer.from(o.bits.replace(/[^A-Za-z0-9+/=]/g, "/"), "base64");
  if (bits.length !== Math.ceil(cidr.size / 8)) return null;
  const out: number[] = [];
  for (let i = 0; i < cidr.size; i++) if (bits[i >> 3]! & (1 << (i & 7))) out.push(i);
  return out;
}

export function corrupt(file: string, why: string): CniError {
  return new CniError(
    Code.StoreCorrupt,
    `store file ${file} is corrupt: ${why}`,
    "podcidr-ipam refuses to guess which addresses are in use. Run `podcidr-ipam repair --conf <your conflist>` " +
      "(add --dry-run first to see what it would do): it moves damaged files to quarantine/ and rebuilds the bitmaps from the " +
      "attachment records. See README, Troubleshooting.",
  );
}

// --- internal ---
function seal(o: Record<string, unknown>): string {
  const body = JSON.stringify(o);
  return `${body.slice(0, -1)},"crc32":"${crc32(body)}"}\n`;
}

function decodeRecord(o: Record<string, unknown>, file: string, network: string): AttachmentRecord {
  const str = (v: unknown): v is string => typeof v === "string";
  const net = o.version === 1 ? network : o.network;
  const netns = o.version === 1 ? "" : o.netns;
  const netnsId = o.version === 1 ? "" : o.netnsId;
  if (
    !str(net) ||
    !str(netns) ||
    !str(netnsId) ||
    !str(o.containerID) ||
    !str(o.ifname) ||
    !str(o.namespace) ||
    !str(o.pod) ||
    !str(o.createdAt) ||
    !Array.isArray(o.ips)
  ) {
    throw corrupt(file, "a field is missing or of the wrong type");
  }
  const ips = (o.ips as unknown[]).map((ip: unknown) => {
    const e = ip as { cidr?: unknown; address?: unknown };
    if (!str(e.cidr) || !str(e.address)) throw corrupt(file, "an entry of ips is malformed");
    return { cidr: e.cidr, address: e.address };
  });
  return {
    network: net,
    containerID: o.containerID,
    ifname: o.ifname,
    netns,
    netnsId,
    namespace: o.namespace,
    pod: o.pod,
    createdAt: o.createdAt,
    ips,
  };
}

function unseal(text: string, file: string, format: string, version = VERSION): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw corrupt(file, text.length === 0 ? "it is empty" : "it is not JSON");
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw corrupt(file, "it is not a JSON object");
  const rec = o as Record<string, unknown>;
  if (rec.format !== format) throw corrupt(file, `format is ${JSON.stringify(rec.format)}, expected ${format}`);
  if (rec.version !== version) {
    throw corrupt(
      file,
      `version ${JSON.stringify(rec.version)} is not one this build reads here (${version}); use the podcidr-ipam that wrote it`,
    );
  }
  const { crc32: sum, ...rest } = rec;
  if (sum !== crc32(JSON.stringify(rest))) throw corrupt(file, "its checksum does not match its content");
  return rest;
}

/** CRC-32 of the UTF-8 bytes of s, as 8 hex digits (the previous format's "crc32"). */
const crc32 = (s: string): string => crc32Bytes(Buffer.from(s, "utf8")).toString(16).padStart(8, "0");
