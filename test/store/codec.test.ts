import { describe, expect, it } from "vitest";
import { failure } from "../helpers/errors";
import { Code } from "../../src/errors.js";
import { type RangeState, emptyRange, release, take } from "../../src/ipam/allocator.js";
import { type Cidr, parseCidr } from "../../src/ipam/cidr.js";
import * as codec from "../../src/store/codec.js";
import type { AttachmentRecord } from "../../src/store/store.js";

function cidr(text: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(p.reason);
  return p.cidr;
}

function sample(): RangeState {
  const r = emptyRange(cidr("10.0.2.0/24"));
  for (const o of [0, 1, 2, 9, 253]) take(r, o);
  release(r, 2, 1_700_000_000_000);
  r.next = 10;
  return r;
}

const FILE = `/data/podnet/${codec.rangeFileName("10.0.2.0/24")}`;

const REC: AttachmentRecord = {
  network: "podnet",
  containerID: "ctr1",
  ifname: "eth0",
  netns: "/var/run/netns/cni-1",
  netnsId: "4:4026532200",
  namespace: "default",
  pod: "web-0",
  createdAt: "2024-05-01T12:00:00.000Z",
  ips: [
    { cidr: "10.0.2.0/24", address: "10.0.2.5" },
    { cidr: "fd00::200/120", address: "fd00::205" },
  ],
};

const KEY_ = { network: "podnet", containerID: "ctr1", ifname: "eth0" };
const KEY = KEY_;

/** Change keys of a sealed record and seal it again with a valid checksum: a file a bug (not the disk) got wrong. */
function resealed(text: string, patch: Record<string, unknown>): string {
  const { crc32: _sum, ...body } = JSON.parse(text) as Record<string, unknown>;
  const b = JSON.stringify({ ...body, ...patch });
  return `${b.slice(0, -1)},"crc32":"${crc32(b)}"}\n`;
}

/** Flip one bit of the byte `at` characters into the value of `key`. */
function flipByte(text: string, key: string, at: number): string {
  const buf = Buffer.from(text, "utf8");
  const i = text.indexOf(`"${key}":"`) + key.length + 4 + at;
  buf[i]! ^= 0x01;
  return buf.toString("utf8");
}

function crc32(s: string): string {
  let crc = -1;
  for (const byte of Buffer.from(s, "utf8")) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
  }
  return ((crc ^ -1) >>> 0).toString(16).padStart(8, "0");
}

describe("file names", () => {
  it.each([
    { name: "an IPv4 range", text: "10.0.2.0/24", file: "range-10.0.2.0_24.json" },
    { name: "an IPv6 range", text: "fd00::200/120", file: "range-fd00--200_120.json" },
  ])("names the file of $name", ({ text, file }) => {
    expect(codec.rangeFileName(text)).toBe(file);
  });

  it("names an attachment file by container ID and interface", () => {
    expect(codec.attachmentFileName("ctr1", "eth0")).toBe("ctr1@eth0.json");
    expect(codec.attachmentPath(KEY)).toBe("attachments/podnet/ctr1@eth0.json");
    expect(codec.parseAttachmentName("ctr1@et@h0.json")).toEqual({ containerID: "ctr1", ifname: "et@h0" });
    expect(codec.parseAttachmentName("noat.json")).toBeNull();
  });

  it("reads the CIDR back from a range file's name, and nothing from a name the store never writes", () => {
    expect(codec.parseRangeName("range-fd00--200_120.json")?.text).toBe("fd00::200/120");
    expect(codec.parseRangeName("range-10.0.2.0_24.json")?.text).toBe("10.0.2.0/24");
    expect(codec.parseRangeName("range-notes.json")).toBeNull();
    expect(codec.parseRangeName("range-10.0.2.5_24.json")).toBeNull();
  });
});

describe("range records", () => {
  it("round-trips bitmap, cursor, count and cool-down entries", () => {
    const r = sample();
    const back = codec.decodeRange(codec.encodeRange(r), FILE);
    expect(back.cidr).toEqual(r.cidr);
    expect(back.bits).toEqual(r.bits);
    expect(back).toMatchObject({ next: 10, allocated: 4 });
    expect([...back.released]).toEqual([[2, 1_700_000_000_000]]);
  });

  it("writes one sealed JSON line with format, version, cidr and crc32", () => {
    const text = codec.encodeRange(sample());
    expect(text.endsWith("}\n")).toBe(true);
    expect(text.split("\n")).toHaveLength(2);
    const o = JSON.parse(text);
    expect(o).toMatchObject({ format: "podcidr-ipam/range", version: 1, cidr: "10.0.2.0/24", size: 254, next: 10, allocated: 4 });
    expect(o.crc32).toMatch(/^[0-9a-f]{8}$/);
    expect(Buffer.from(o.bits, "base64")).toHaveLength(32);
  });

  it('computes the standard CRC-32 (check value of "123456789" is cbf43926)', () => {
    expect(crc32("123456789")).toBe("cbf43926");
    const text = codec.encodeRange(sample());
    const { crc32: sum, ...rest } = JSON.parse(text);
    expect(sum).toBe(crc32(JSON.stringify(rest)));
  });

  it("round-trips an IPv6 range and a capped /64", () => {
    for (const t of ["fd00::200/120", "fd00::/64"]) {
      const r = emptyRange(cidr(t));
      take(r, r.cidr.size - 1);
      const file = `/d/${codec.rangeFileName(t)}`;
      const back = codec.decodeRange(codec.encodeRange(r), file);
      expect(back).toMatchObject({ allocated: 1 });
      expect(back.bits).toEqual(r.bits);
    }
  });

  it.each([
    { name: "an empty file", mutate: () => "", why: "it is empty" },
    { name: "a truncated file", mutate: (t: string) => t.slice(0, t.length / 2), why: "it is not JSON" },
    { name: "a JSON array", mutate: () => "[]", why: "it is not a JSON object" },
    {
      name: "another format",
      mutate: (t: string) => t.replace('"podcidr-ipam/range"', '"podcidr-ipam/journal"'),
      why: 'format is "podcidr-ipam/journal", expected podcidr-ipam/range',
    },
    {
      name: "an unknown version",
      mutate: (t: string) => t.replace('"version":1', '"version":2'),
      why: "version 2 is not one this build reads here (1); use the podcidr-ipam that wrote it",
    },
    { name: "a flipped byte in the bitmap", mutate: (t: string) => flipByte(t, "bits", 5), why: "its checksum does not match its content" },
    {
      name: "a changed cursor",
      mutate: (t: string) => t.replace('"next":10', '"next":11'),
      why: "its checksum does not match its content",
    },
    { name: "no checksum", mutate: (t: string) => t.replace(/,"crc32":"[0-9a-f]+"/, ""), why: "its checksum does not match its content" },
  ])("refuses $name with code 103", ({ mutate, why }) => {
    const text = codec.encodeRange(sample());
    const bad = mutate(text);
    expect(bad).not.toBe(text);
    const err = failure(() => codec.decodeRange(bad, FILE));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(`store file ${FILE} is corrupt: ${why}`);
    expect(err.details).toContain("refuses to guess which addresses are in use");
  });

  it("refuses a bitmap written for another CIDR than its file name says", () => {
    const other = emptyRange(cidr("10.0.3.0/24"));
    const err = failure(() => codec.decodeRange(codec.encodeRange(other), FILE));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(`store file ${FILE} is corrupt: it holds the bitmap of 10.0.3.0/24, not of the CIDR its name says`);
  });

  it.each([
    { name: "a size that is not the window's", patch: { size: 255 }, why: "its bitmap does not fit 10.0.2.0/24 (254 addresses)" },
    {
      name: "a bitmap one byte short",
      patch: { bits: Buffer.alloc(31).toString("base64"), allocated: 0 },
      why: "its bitmap does not fit 10.0.2.0/24 (254 addresses)",
    },
    { name: "a count that disagrees with the bitmap", patch: { allocated: 5 }, why: "it counts 5 addresses but its bitmap holds 4" },
    { name: "an invalid cidr", patch: { cidr: "10.0.2.7/24" }, why: 'its cidr "10.0.2.7/24" is invalid' },
    // Bits 254 and 255 of the last byte lie outside a /24's window: no encoder sets them.
    {
      name: "bits set beyond the window",
      patch: { bits: Buffer.from([...Array(31).fill(0), 0xc0]).toString("base64"), allocated: 2 },
      why: "its bitmap does not fit 10.0.2.0/24 (254 addresses)",
    },
  ])("refuses a well-sealed record with $name", ({ patch, why }) => {
    const bad = resealed(codec.encodeRange(sample()), patch);
    const err = failure(() => codec.decodeRange(bad, FILE));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(`store file ${FILE} is corrupt: ${why}`);
  });

  it("restarts a cursor that lies outside the window at 0", () => {
    const bad = resealed(codec.encodeRange(sample()), { next: 999 });
    expect(codec.decodeRange(bad, FILE).next).toBe(0);
  });
});

describe("attachment records", () => {
  it("round-trips every field", () => {
    const text = codec.encodeAttachment(REC);
    expect(JSON.parse(text)).toMatchObject({
      format: "podcidr-ipam/attachment",
      version: 2,
      network: "podnet",
      containerID: "ctr1",
      netns: "/var/run/netns/cni-1",
    });
    expect(codec.decodeAttachment(text, "/d/attachments/podnet/ctr1@eth0.json", KEY)).toEqual(REC);
  });

  it.each([
    { name: "another container", key: { ...KEY_, containerID: "ctr9" } },
    { name: "another interface", key: { ...KEY_, ifname: "net1" } },
    { name: "another network", key: { ...KEY_, network: "other" } },
  ])("refuses a record read from the file of $name (a file copied by hand)", ({ key }) => {
    const err = failure(() => codec.decodeAttachment(codec.encodeAttachment(REC), "/d/x.json", key));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(
      "store file /d/x.json is corrupt: it holds the record of podnet/ctr1/eth0, not of the attachment its name says",
    );
  });

  it("reads a version-1 record of a per-network store, the network given by its folder", () => {
    const { network: _n, netns: _ns, netnsId: _id, ...v1 } = REC;
    const text = resealed(codec.encodeAttachment(REC), { version: 1, network: undefined, netns: undefined, netnsId: undefined });
    expect(JSON.parse(text).network).toBeUndefined();
    expect(codec.decodeLegacyAttachment(text, "/d/a.json", { ...KEY, network: "legacy" })).toEqual({
      ...v1,
      network: "legacy",
      netns: "",
      netnsId: "",
    });
    // A version-1 record is not read where version 2 is expected (and a newer one nowhere).
    expect(failure(() => codec.decodeAttachment(text, "/d/a.json", KEY)).message).toContain(
      "version 1 is not one this build reads here (2)",
    );
    const future = resealed(codec.encodeAttachment(REC), { version: 3 });
    expect(failure(() => codec.decodeAttachment(future, "/d/a.json", KEY)).message).toContain(
      "version 3 is not one this build reads here (2)",
    );
  });

  it.each([
    { name: "a missing pod", patch: { pod: undefined }, why: "a field is missing or of the wrong type" },
    { name: "ips that is not a list", patch: { ips: "10.0.2.5" }, why: "a field is missing or of the wrong type" },
    { name: "an ips entry without address", patch: { ips: [{ cidr: "10.0.2.0/24" }] }, why: "an entry of ips is malformed" },
  ])("refuses $name with code 103", ({ patch, why }) => {
    const bad = resealed(codec.encodeAttachment(REC), patch);
    const err = failure(() => codec.decodeAttachment(bad, "/d/a.json", KEY));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(`store file /d/a.json is corrupt: ${why}`);
  });

  it("refuses a range record read as an attachment", () => {
    const err = failure(() => codec.decodeAttachment(codec.encodeRange(sample()), "/d/a.json", KEY));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe('store file /d/a.json is corrupt: format is "podcidr-ipam/range", expected podcidr-ipam/attachment');
  });
});

describe("journals", () => {
  it("round-trips writes and deletions in order", () => {
    const writes = [
      { file: "attachments/ctr1@eth0.json", content: codec.encodeAttachment(REC) },
      { file: "range-10.0.2.0_24.json", content: codec.encodeRange(sample()) },
      { file: "attachments/old@eth0.json", content: null },
    ];
    expect(codec.decodeJournal(codec.encodeJournal(writes), "/d/journal.json")).toEqual(writes);
  });

  it.each([
    { name: "an absolute path", file: "/etc/passwd" },
    { name: "a parent reference", file: "../other/range.json" },
    { name: "a parent reference inside", file: "attachments/../../x.json" },
    { name: "a bare parent", file: ".." },
  ])("refuses a write to $name", ({ file }) => {
    const err = failure(() => codec.decodeJournal(codec.encodeJournal([{ file, content: "x" }]), "/d/journal.json"));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe("store file /d/journal.json is corrupt: an entry of writes is malformed");
  });

  it("refuses a journal whose writes is not a list", () => {
    const bad = resealed(codec.encodeJournal([]), { writes: {} });
    const err = failure(() => codec.decodeJournal(bad, "/d/journal.json"));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe("store file /d/journal.json is corrupt: writes is not a list");
  });
});

describe("salvaging a damaged bitmap (repair)", () => {
  it("reads the offsets a bitmap with a bad checksum still marks", () => {
    const text = flipByte(codec.encodeRange(sample()), "crc32", 0);
    expect(failure(() => codec.decodeRange(text, FILE)).code).toBe(Code.StoreCorrupt);
    expect(codec.salvageRange(text, sample().cidr)).toEqual([0, 1, 9, 253]);
  });

  it("reads a character damaged out of the base64 alphabet as six taken bits, never as free ones", () => {
    const good = codec.encodeRange(sample());
    const at = good.indexOf('"bits":"') + 8;
    const text = `${good.slice(0, at)}!${good.slice(at + 1)}`;
    const got = codec.salvageRange(text, sample().cidr)!;
    expect(got.slice(0, 6)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(got).toContain(253);
  });

  it.each([
    { name: "not JSON", text: '{"bits":' },
    { name: "no bitmap", text: "{}" },
    { name: "a bitmap of another size", text: JSON.stringify({ bits: Buffer.alloc(3).toString("base64") }) },
  ])("gives nothing for $name", ({ text }) => {
    expect(codec.salvageRange(text, sample().cidr)).toBeNull();
  });
});
