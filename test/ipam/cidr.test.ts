import { describe, expect, it } from "vitest";
import { MAX_WINDOW, addressAt, contains, formatIp, offsetOf, overlaps, parseCidr, parseIp, type Cidr } from "../../src/ipam/cidr.js";

function cidr(text: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(`fixture ${text}: ${p.reason}`);
  return p.cidr;
}

function reason(text: unknown): string {
  const p = parseCidr(text);
  if (p.ok) throw new Error(`expected ${String(text)} to be rejected`);
  return p.reason;
}

describe("parseIp", () => {
  it.each([
    { name: "dotted IPv4", text: "10.0.2.1", family: 4, value: 0x0a000201n },
    { name: "IPv4 zero", text: "0.0.0.0", family: 4, value: 0n },
    { name: "compressed IPv6", text: "fd00::201", family: 6, value: (0xfd00n << 112n) | 0x201n },
    { name: "IPv6 loopback", text: "::1", family: 6, value: 1n },
    { name: "mapped IPv6 as IPv4", text: "::ffff:10.0.2.7", family: 4, value: 0x0a000207n },
    { name: "mapped IPv6 in hex as IPv4", text: "::ffff:a00:207", family: 4, value: 0x0a000207n },
  ])("parses $name", ({ text, family, value }) => {
    expect(parseIp(text)).toEqual({ family, value });
  });

  it.each([
    { name: "empty", text: "" },
    { name: "three octets", text: "10.0.2" },
    { name: "an octet over 255", text: "10.0.2.256" },
    { name: "a leading zero", text: "010.0.2.1" },
    { name: "a hex IPv4", text: "0x0a000201" },
    { name: "a bare number", text: "167772673" },
    { name: "a CIDR", text: "10.0.2.0/24" },
    { name: "a host name", text: "localhost" },
    { name: "two double colons", text: "fd00::1::2" },
    { name: "an over-long string", text: `${"0:".repeat(40)}1` },
    { name: "white space", text: " 10.0.2.1" },
    { name: "an IPv6 zone index", text: "fe80::1%eth0" },
  ])("rejects $name", ({ text }) => {
    expect(parseIp(text)).toBeNull();
  });

  it("round-trips through formatIp in canonical form", () => {
    expect(formatIp(4, 0x0a0002fen)).toBe("10.0.2.254");
    expect(formatIp(6, (0xfd00n << 112n) | 0x2ffn)).toBe("fd00::2ff");
    expect(formatIp(6, 0n)).toBe("::");
  });
});

describe("parseCidr", () => {
  it.each([
    {
      name: "IPv4 /24",
      text: "10.0.2.0/24",
      canonical: "10.0.2.0/24",
      family: 4,
      prefix: 24,
      size: 254,
      truncated: false,
      first: "10.0.2.1",
      last: "10.0.2.254",
    },
    {
      name: "IPv4 /16",
      text: "10.1.0.0/16",
      canonical: "10.1.0.0/16",
      family: 4,
      prefix: 16,
      size: 65534,
      truncated: false,
      first: "10.1.0.1",
      last: "10.1.255.254",
    },
    {
      name: "IPv4 /15 capped",
      text: "10.2.0.0/15",
      canonical: "10.2.0.0/15",
      family: 4,
      prefix: 15,
      size: MAX_WINDOW,
      truncated: true,
      first: "10.2.0.1",
      last: "10.3.0.0",
    },
    {
      name: "IPv4 /30, the smallest",
      text: "192.168.7.4/30",
      canonical: "192.168.7.4/30",
      family: 4,
      prefix: 30,
      size: 2,
      truncated: false,
      first: "192.168.7.5",
      last: "192.168.7.6",
    },
    {
      name: "IPv4 /29",
      text: "10.0.0.8/29",
      canonical: "10.0.0.8/29",
      family: 4,
      prefix: 29,
      size: 6,
      truncated: false,
      first: "10.0.0.9",
      last: "10.0.0.14",
    },
    {
      name: "IPv6 /120",
      text: "fd00::200/120",
      canonical: "fd00::200/120",
      family: 6,
      prefix: 120,
      size: 255,
      truncated: false,
      first: "fd00::201",
      last: "fd00::2ff",
    },
    {
      name: "IPv6 /112",
      text: "fd00::/112",
      canonical: "fd00::/112",
      family: 6,
      prefix: 112,
      size: 65535,
      truncated: false,
      first: "fd00::1",
      last: "fd00::ffff",
    },
    {
      name: "IPv6 /64 capped",
      text: "fd00:10:244:2::/64",
      canonical: "fd00:10:244:2::/64",
      family: 6,
      prefix: 64,
      size: 65536,
      truncated: true,
      first: "fd00:10:244:2::1",
      last: "fd00:10:244:2::1:0",
    },
    {
      name: "IPv6 /126, the smallest",
      text: "fd00::4/126",
      canonical: "fd00::4/126",
      family: 6,
      prefix: 126,
      size: 3,
      truncated: false,
      first: "fd00::5",
      last: "fd00::7",
    },
    {
      name: "IPv6 written long-hand",
      text: "FD00:0000:0000:0000:0000:0000:0000:0200/120",
      canonical: "fd00::200/120",
      family: 6,
      prefix: 120,
      size: 255,
      truncated: false,
      first: "fd00::201",
      last: "fd00::2ff",
    },
  ])("gives the window of $name", ({ text, canonical, family, prefix, size, truncated, first, last }) => {
    const c = cidr(text);
    expect(c).toMatchObject({ text: canonical, family, prefix, size, truncated });
    expect(c.base).toBe(c.network + 1n);
    expect(addressAt(c, 0)).toBe(first);
    expect(addressAt(c, c.size - 1)).toBe(last);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each([
    { name: "IPv4 /31", text: "10.0.2.0/31", fragment: '"10.0.2.0/31" is too small to allocate from: IPv4 podCIDRs must be /30 or larger' },
    { name: "IPv4 /32", text: "10.0.2.1/32", fragment: '"10.0.2.1/32" is too small to allocate from: IPv4 podCIDRs must be /30 or larger' },
    { name: "IPv6 /127", text: "fd00::/127", fragment: '"fd00::/127" is too small to allocate from: IPv6 podCIDRs must be /126 or larger' },
    {
      name: "IPv6 /128",
      text: "fd00::1/128",
      fragment: '"fd00::1/128" is too small to allocate from: IPv6 podCIDRs must be /126 or larger',
    },
    { name: "an IPv4 prefix over 32", text: "10.0.2.0/33", fragment: '"10.0.2.0/33" has prefix /33, longer than an IPv4 address' },
    { name: "an IPv6 prefix over 128", text: "fd00::/129", fragment: '"fd00::/129" has prefix /129, longer than an IPv6 address' },
    { name: "IPv4 host bits", text: "10.0.0.5/24", fragment: '"10.0.0.5/24" has host bits set; the network is 10.0.0.0/24' },
    { name: "IPv6 host bits", text: "fd00::2a1/120", fragment: '"fd00::2a1/120" has host bits set; the network is fd00::200/120' },
    { name: "no prefix", text: "10.0.2.0", fragment: '"10.0.2.0" is not a CIDR; expected the form 10.0.2.0/24 or fd00::200/120' },
    { name: "an empty prefix", text: "10.0.2.0/", fragment: "is not a CIDR" },
    { name: "a signed prefix", text: "10.0.2.0/+24", fragment: "is not a CIDR" },
    { name: "a netmask prefix", text: "10.0.2.0/255.255.255.0", fragment: "is not a CIDR" },
    { name: "a bad address", text: "10.0.2.300/24", fragment: "is not a CIDR" },
    { name: "a mapped IPv6 network", text: "::ffff:10.0.2.0/120", fragment: '"::ffff:10.0.2.0/120" is not a CIDR' },
    // The prefix of a mapped address counts IPv6 bits; read as an IPv4 prefix it names another network.
    { name: "mapped IPv6 in upper case", text: "::FFFF:10.0.2.0/24", fragment: '"::FFFF:10.0.2.0/24" is not a CIDR' },
    { name: "mapped IPv6 long-hand", text: "0:0:0:0:0:ffff:a00:200/24", fragment: '"0:0:0:0:0:ffff:a00:200/24" is not a CIDR' },
  ])("rejects $name", ({ text, fragment }) => {
    expect(reason(text)).toContain(fragment);
  });

  it.each([
    { name: "a number", value: 24 as unknown, got: "24" },
    { name: "null", value: null as unknown, got: "null" },
    { name: "an array", value: ["10.0.2.0/24"] as unknown, got: '["10.0.2.0/24"]' },
  ])("rejects $name with the expected form", ({ value, got }) => {
    expect(reason(value)).toBe(`must be a CIDR string such as "10.0.2.0/24", got ${got}`);
  });
});

describe("offsetOf", () => {
  const v4 = cidr("10.0.2.0/24");
  const v6 = cidr("fd00::200/120");
  const v6big = cidr("fd00::/64");

  it.each([
    { name: "the first window address", c: v4, ip: "10.0.2.1", offset: 0 },
    { name: "the last window address", c: v4, ip: "10.0.2.254", offset: 253 },
    { name: "the network address", c: v4, ip: "10.0.2.0", offset: -1 },
    { name: "the broadcast address", c: v4, ip: "10.0.2.255", offset: -1 },
    { name: "an address of another network", c: v4, ip: "10.0.3.1", offset: -1 },
    { name: "an IPv6 address in an IPv4 range", c: v4, ip: "fd00::201", offset: -1 },
    { name: "the IPv6 anycast address", c: v6, ip: "fd00::200", offset: -1 },
    { name: "the last IPv6 address (no broadcast)", c: v6, ip: "fd00::2ff", offset: 254 },
    { name: "the last offset of a capped /64", c: v6big, ip: "fd00::1:0", offset: 65535 },
    { name: "an address of a /64 beyond the cap", c: v6big, ip: "fd00::1:1", offset: -1 },
  ])("maps $name", ({ c, ip, offset }) => {
    const p = parseIp(ip)!;
    expect(offsetOf(c, p.family, p.value)).toBe(offset);
    if (offset >= 0) expect(addressAt(c, offset)).toBe(ip);
  });
});

describe("contains", () => {
  it("covers the whole CIDR, window or not", () => {
    const c = cidr("fd00::/64");
    const beyond = parseIp("fd00::ffff:ffff")!;
    expect(contains(c, 6, beyond.value)).toBe(true);
    expect(offsetOf(c, 6, beyond.value)).toBe(-1);
    expect(contains(c, 4, beyond.value)).toBe(false);
    expect(contains(cidr("10.0.2.0/24"), 4, parseIp("10.0.2.255")!.value)).toBe(true);
    expect(contains(cidr("10.0.2.0/24"), 4, parseIp("10.0.3.0")!.value)).toBe(false);
  });
});

describe("overlaps", () => {
  it.each([
    { name: "identical CIDRs", a: "10.0.2.0/24", b: "10.0.2.0/24", expected: true },
    { name: "a /24 inside a /16", a: "10.0.2.0/24", b: "10.0.0.0/16", expected: true },
    { name: "a /16 around a /24 (argument order)", a: "10.0.0.0/16", b: "10.0.2.0/24", expected: true },
    { name: "adjacent /24s", a: "10.0.2.0/24", b: "10.0.3.0/24", expected: false },
    { name: "a /30 at the end of a /24", a: "10.0.2.252/30", b: "10.0.2.0/24", expected: true },
    { name: "IPv6 /120 inside a /64", a: "fd00::200/120", b: "fd00::/64", expected: true },
    { name: "disjoint IPv6 /120s", a: "fd00::200/120", b: "fd00::300/120", expected: false },
    { name: "different families", a: "10.0.0.0/8", b: "fd00::/8", expected: false },
  ])("is $expected for $name", ({ a, b, expected }) => {
    expect(overlaps(cidr(a), cidr(b))).toBe(expected);
    expect(overlaps(cidr(b), cidr(a))).toBe(expected);
  });
});
