// What every hardening test checks after its faults: the store loads, no address
// is held twice, every record's address is marked, and (at the end) nothing leaks.
import { expect } from "vitest";
import { type Sandbox, cli } from "../helpers/plugin";

export interface StoreView {
  /** address -> owners (containerID/ifname) */
  holders: Map<string, string[]>;
  /** per CIDR: allocated bits */
  allocated: Record<string, number>;
  raw: any;
}

/** `status --json --all-addresses`: throws (fails the test) if the store does not load. */
export async function loadStore(sb: Sandbox): Promise<StoreView> {
  const r = await cli(["status", "--json", "--all-addresses", "--data-dir", sb.dataDir, "--network", "podnet", "--node-file", sb.nodeFile]);
  expect(r.json, `status did not load the store: ${r.stderr}`).toBeDefined();
  const holders = new Map<string, string[]>();
  const allocated: Record<string, number> = {};
  for (const range of r.json.ranges) {
    allocated[range.cidr] = range.allocated;
    for (const a of range.addresses) {
      if (!a.owner) continue;
      const list = holders.get(a.ip) ?? [];
      list.push(`${a.owner.containerID}/${a.owner.ifname}`);
      holders.set(a.ip, list);
    }
  }
  return { holders, allocated, raw: r.json };
}

/** Addresses two attachments claim. The store keeps one owner per bit, so also compare counts. */
export function duplicates(v: StoreView): string[] {
  return [...v.holders].filter(([, owners]) => owners.length > 1).map(([ip]) => ip);
}

/** Bits set that no record holds, or records whose bit is clear: either is a leak or a lost address. */
export function unowned(v: StoreView): string[] {
  const out: string[] = [];
  for (const range of v.raw.ranges) for (const a of range.addresses) if (!a.owner && !a.reserved) out.push(a.ip);
  return out;
}

/** Every attachment record's addresses, by container. */
export function recordsByContainer(v: StoreView): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [ip, owners] of v.holders) for (const o of owners) out.set(o, [...(out.get(o) ?? []), ip]);
  return out;
}
