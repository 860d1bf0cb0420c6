// The hand-written address parser and printer of src/ipam/cidr.ts against ipaddr.js, which
// the plugin used before (and which is kept as a development dependency for this test).
// Generated texts of every shape a node file, a config or an attack could hold: where
// ipaddr.js and ours both accept, the value and the family agree; ours accepts nothing
// ipaddr.js refuses; and what ipaddr.js alone accepts is one of the loose forms we
// refuse on purpose (octal or hex parts, leading zeros, over-long groups).
import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import { formatIp, parseIp } from "../../src/ipam/cidr.js";
import { prng } from "../helpers/prng.js";

/** ipaddr.js's reading of a text, as the plugin's parseIp() did it before. */
function reference(text: string): { family: 4 | 6; value: bigint } | null {
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

function bytes(family: 4 | 6, value: bigint): number[] {
  const out: number[] = [];
  for (let i = family === 4 ? 3 : 15; i >= 0; i--) out.push(Number((value >> BigInt(8 * i)) & 0xffn));
  return out;
}

/** A loose form: a part with a leading zero or hex/octal, or an IPv6 group over 4 digits. */
const LOOSE = /(^|[.:])0\d|0x|[0-9a-f]{5}/i;

function texts(seed: number, n: number): string[] {
  const r = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const group = (): string =>
    pick([
      () => "0",
      () => Math.floor(r() * 0x10000).toString(16),
      () => Math.floor(r() * 16).toString(16),
      () =>
        Math.floor(r() * 0x10000)
          .toString(16)
          .toUpperCase(),
      () =>
        Math.floor(r() * 0x10000)
          .toString(16)
          .padStart(4, "0"),
      () => "00000",
      () => "g",
      () => "",
    ])();
  const octet = (): string =>
    pick([() => String(Math.floor(r() * 256)), () => "0", () => "255", () => "256", () => "01", () => "0x1", () => "", () => "1a"])();
  const quad = (): string => Array.from({ length: pick([4, 4, 4, 3, 5]) }, octet).join(".");
  const v6 = (): string => {
    const groups = Array.from({ length: Math.floor(r() * 10) }, group);
    const at = Math.floor(r() * (groups.length + 1));
    const withGap = r() < 0.6 ? [...groups.slice(0, at).join(":"), "::", groups.slice(at).join(":")].join("") : groups.join(":");
    return r() < 0.2 ? `${withGap}${withGap.endsWith(":") ? "" : ":"}${quad()}` : withGap;
  };
  // Well-formed texts too, so that both parsers accept often: where they agree matters most.
  const validQuad = (): string => Array.from({ length: 4 }, () => String(Math.floor(r() * 256))).join(".");
  const validV6 = (): string => {
    const groups = Array.from({ length: 8 }, () => (r() < 0.4 ? "0" : Math.floor(r() * 0x10000).toString(16)));
    const at = Math.floor(r() * 8);
    const len = Math.floor(r() * (9 - at));
    return len < 1 ? groups.join(":") : `${groups.slice(0, at).join(":")}::${groups.slice(at + len).join(":")}`;
  };
  const noise = (s: string): string => {
    if (r() > 0.15) return s;
    const i = Math.floor(r() * (s.length + 1));
    return s.slice(0, i) + pick([":", ".", "::", " ", "%", "\u0010", "A", "/", "-"]) + s.slice(i);
  };
  const out: string[] = [];
  for (let i = 0; i < n; i++)
    out.push(noise(pick([quad, validQuad, v6, validV6, validV6, () => `::ffff:${quad()}`, () => `::${validQuad()}`])()));
  return out;
}

describe("the address parser against ipaddr.js", () => {
  it("agrees on 40,000 generated texts, and refuses only loose forms that ipaddr.js takes", () => {
    let bothAccepted = 0;
    let v4Accepted = 0;
    for (const text of texts(20261202, 40_000)) {
      const ours = parseIp(text);
      const theirs = reference(text);
      if (ours) {
        expect(theirs, text).not.toBeNull();
        expect(ours, text).toEqual(theirs);
        bothAccepted++;
        if (ours.family === 4) v4Accepted++;
      } else if (theirs) expect(text, "ipaddr.js alone accepts it").toMatch(LOOSE);
    }
    // The generator must have reached both families' valid forms, not only garbage.
    expect(v4Accepted).toBeGreaterThan(5_000);
    expect(bothAccepted - v4Accepted).toBeGreaterThan(10_000);
  });

  it("prints every address as ipaddr.js does, zero runs of every length and place included", () => {
    const r = prng(7);
    const values: bigint[] = [0n, 1n, (1n << 128n) - 1n];
    for (let i = 0; i < 20_000; i++) {
      let v = 0n;
      // Groups of zeros often, so runs tie, lead, trail and fill the address.
      for (let g = 0; g < 8; g++) v = (v << 16n) | (r() < 0.5 ? 0n : BigInt(Math.floor(r() * 0x10000)));
      values.push(v);
    }
    for (const v of values) expect(formatIp(6, v)).toBe(ipaddr.fromByteArray(bytes(6, v)).toString());
    for (let i = 0; i < 5_000; i++) {
      const v = BigInt(Math.floor(r() * 2 ** 32));
      expect(formatIp(4, v)).toBe(ipaddr.fromByteArray(bytes(4, v)).toString());
    }
  });

  it("reads back what it prints", () => {
    const r = prng(11);
    for (let i = 0; i < 5_000; i++) {
      let v = 0n;
      for (let g = 0; g < 8; g++) v = (v << 16n) | (r() < 0.4 ? 0n : BigInt(Math.floor(r() * 0x10000)));
      if (v >> 32n === 0xffffn) continue; // mapped: read back as IPv4, on purpose
      expect(parseIp(formatIp(6, v))).toEqual({ family: 6, value: v });
    }
  });
});
