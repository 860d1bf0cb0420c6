// `podcidr-ipam repair`: rebuild a network's store around files that fail to
// load. The attachment records are the truth of who holds what: every range is
// rebuilt from them. Files that fail to load are moved to quarantine/. A bit that
// no record holds ("unowned": its record was lost, or the bitmap damaged) stays
// taken, because it may be a running pod's, unless --release-unowned says the
// operator has checked that it is not.
import { NAME_RE } from "../cni/env.js";
import { Code, CniError } from "../errors.js";
import { isSet, take } from "../ipam/allocator.js";
import { type Cidr, addressAt, parseCidr } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import { DiskStore } from "../store/disk.js";
import { heldOffsets } from "./ranges.js";

export interface RepairReport {
  readonly store: string;
  readonly dryRun: boolean;
  /** Files that failed to load, with why; moved to quarantine/ unless dry-run. */
  readonly quarantined: readonly { readonly file: string; readonly reason: string }[];
  /** Attachments whose record was lost (container ID/ifname from the file name): their addresses are unknown. */
  readonly lostRecords: readonly string[];
  readonly ranges: readonly {
    readonly cidr: string;
    readonly records: number;
    /** Addresses a record holds whose bit was clear (now marked). */
    readonly marked: readonly string[];
    /** Bits set that no record holds: kept, or released with --release-unowned. */
    readonly unowned: readonly string[];
    readonly released: number;
    /** Addresses that two records claim: both kept; one of the pods must be recreated. */
    readonly conflicts: readonly string[];
  }[];
}

export async function repair(network: string, ipam: IpamConfig, opts: { releaseUnowned: boolean; dryRun: boolean }): Promise<RepairReport> {
  if (!NAME_RE.test(network)) throw new CniError(Code.InvalidNetworkConfig, `invalid network name ${JSON.stringify(network)}`);
  const store = new DiskStore(ipam.dataDir, network, ipam.lockTimeout * 1000);
  return store.transact({ create: false, salvage: true, dryRun: opts.dryRun }, (tx) => {
    const records = tx.attachments();
    const cidrs = new Map<string, Cidr>();
    for (const r of tx.storedRanges()) cidrs.set(r.cidr.text, r.cidr);
    const held = new Map<string, Map<number, number>>();
    for (const rec of records) {
      for (const h of heldOffsets(rec)) {
        if (!h.cidr || h.offset < 0) continue;
        cidrs.set(h.cidr.text, h.cidr);
        const m = held.get(h.cidr.text) ?? new Map<number, number>();
        m.set(h.offset, (m.get(h.offset) ?? 0) + 1);
        held.set(h.cidr.text, m);
      }
    }
    // A range file that failed to load still names its CIDR.
    for (const c of tx.corrupt()) {
      const m = /range-(.+)_(\d+)\.json$/.exec(c.file);
      const p = m ? parseCidr(`${m[1]!.replace(/-/g, ":")}/${m[2]}`) : null;
      if (p?.ok) cidrs.set(p.cidr.text, p.cidr);
    }
    const ranges = [...cidrs.values()].map((cidr) => {
      const range = tx.range(cidr);
      const mine = held.get(cidr.text) ?? new Map<number, number>();
      const marked: string[] = [];
      const unowned: number[] = [];
      for (let o = 0; o < cidr.size; o++) {
        if (mine.has(o) && !isSet(range, o)) marked.push(addressAt(cidr, o));
        if (!mine.has(o) && isSet(range, o)) unowned.push(o);
      }
      if (marked.length > 0 || (opts.releaseUnowned && unowned.length > 0)) {
        const keep = opts.releaseUnowned ? [] : unowned;
        range.bits.fill(0);
        range.allocated = 0;
        for (const o of [...mine.keys(), ...keep]) take(range, o);
        tx.touch(range);
      }
      return {
        cidr: cidr.text,
        records: mine.size,
        marked,
        unowned: unowned.map((o) => addressAt(cidr, o)),
        released: opts.releaseUnowned ? unowned.length : 0,
        conflicts: [...mine].filter(([, n]) => n > 1).map(([o]) => addressAt(cidr, o)),
      };
    });
    const lostRecords = tx
      .corrupt()
      .map((c) => /attachments\/(.+)@(.+)\.json$/.exec(c.file))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => `${m[1]}/${m[2]}`);
    return { store: store.dir, dryRun: opts.dryRun, quarantined: tx.corrupt(), lostRecords, ranges };
  });
}

export function formatRepair(rep: RepairReport): string {
  const lines = [`Store ${rep.store}${rep.dryRun ? " (dry run: nothing written)" : ""}`];
  for (const q of rep.quarantined) lines.push(`${rep.dryRun ? "Would quarantine" : "Quarantined"} ${q.file}: ${q.reason}`);
  if (rep.lostRecords.length) {
    lines.push(
      `Lost records: ${rep.lostRecords.join(", ")}. Where their range files survived, their addresses stay taken as unowned; ` +
        "where a range file was lost too, their addresses are unknown and may be handed out again: delete and recreate those pods.",
    );
  }
  for (const r of rep.ranges) {
    lines.push(`${r.cidr}: ${r.records} address(es) held by records`);
    if (r.marked.length) lines.push(`  marked again (held by a record, bit was clear): ${r.marked.join(", ")}`);
    if (r.unowned.length) {
      lines.push(
        r.released
          ? `  released (no record held them): ${r.unowned.join(", ")}`
          : `  kept, no record holds them (may be pods whose records were lost; --release-unowned frees them): ${r.unowned.join(", ")}`,
      );
    }
    if (r.conflicts.length) lines.push(`  CONFLICT, held by two records (recreate one of the pods): ${r.conflicts.join(", ")}`);
  }
  if (rep.quarantined.length === 0 && rep.ranges.every((r) => !r.marked.length && !r.unowned.length && !r.conflicts.length)) lines.push("Nothing to repair.");
  return `${lines.join("\n")}\n`;
}
