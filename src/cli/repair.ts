// `podcidr-ipam repair`: rebuild a store around files that fail to load. The
// attachment records (of every network sharing the store) are the truth of who
// holds what: every range is rebuilt from them. Files that fail to load are moved
// to quarantine/. A bit that no record holds ("unowned": its record was lost, or
// it was read from a damaged bitmap) stays taken, because it may be a running
// pod's, unless --release-unowned says the operator has checked that it is not.
import { isSet } from "../ipam/allocator.js";
import { type Cidr, addressAt } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import * as codec from "../store/codec.js";
import { pendingCheckpoint, pendingJournalFiles } from "../store/disk.js";
import { findLegacy } from "../store/migrate.js";
import { heldOffsets, resetRange } from "../ipam/pool.js";
import { openStore } from "../store/open.js";
import type { Store } from "../store/store.js";

export interface RepairReport {
  readonly store: string;
  readonly dryRun: boolean;
  /** Files that failed to load, with why; moved to quarantine/ unless dry-run. */
  readonly quarantined: readonly { readonly file: string; readonly reason: string }[];
  /** Attachments whose record was lost (network/container ID/ifname): their addresses are kept taken where still known. */
  readonly lostRecords: readonly string[];
  /** Attachments (network/container ID/ifname) of a damaged part whose records were taken back from the checkpoint's history. */
  readonly recoveredRecords: readonly string[];
  /** Dry run: older per-network stores that the next real call moves into the shared store. */
  readonly pendingMigration: readonly string[];
  /** Dry run: journals of interrupted commits of the previous format, which the next real call replays (shown as applied). */
  readonly pendingJournals: readonly string[];
  /** Dry run: the checkpoint of an interrupted commit, whole but not confirmed; the next real call confirms it (shown as the state). */
  readonly pendingCheckpoint: string | null;
  readonly ranges: readonly {
    readonly cidr: string;
    readonly records: number;
    /** Addresses a record holds whose bit was clear (now marked). */
    readonly marked: readonly string[];
    /** Bits set that no record holds (some read from a damaged bitmap): kept, or released with --release-unowned. */
    readonly unowned: readonly string[];
    readonly released: number;
    /** Addresses that two records claim: both kept; one of the pods must be recreated. */
    readonly conflicts: readonly string[];
  }[];
}

/** Repair the store of `ipam.dataDir` on disk. */
export function repairDisk(ipam: IpamConfig, opts: RepairOptions, log: (msg: string) => void = () => {}): Promise<RepairReport> {
  const store = openStore(ipam, log);
  const pending = opts.dryRun
    ? {
        migration: findLegacy(ipam.dataDir).map((l) => l.path),
        journals: pendingJournalFiles(store.location),
        checkpoint: pendingCheckpoint(store.location),
      }
    : undefined;
  return repair(store, opts, pending);
}

export interface RepairOptions {
  readonly releaseUnowned: boolean;
  readonly dryRun: boolean;
}

/** Repair any store: every range rebuilt from the records, unowned bits kept unless releaseUnowned. */
export async function repair(
  store: Store,
  opts: RepairOptions,
  pending?: { migration: string[]; journals: string[]; checkpoint?: string | null },
): Promise<RepairReport> {
  const pendingMigration = pending?.migration ?? [];
  const pendingJournals = pending?.journals ?? [];
  const pendingCheckpoint = pending?.checkpoint ?? null;
  const { value } = await store.transact({ create: false, salvage: true, unlocked: opts.dryRun }, (tx) => {
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
    // A range that failed to load still names its CIDR, and may still say which bits were set; a damaged log
    // record may still show the addresses it took.
    const salvaged = new Map<string, number[]>();
    const keep = (cidr: Cidr, offsets: readonly number[]): void => {
      cidrs.set(cidr.text, cidr);
      salvaged.set(cidr.text, [...(salvaged.get(cidr.text) ?? []), ...offsets]);
    };
    for (const c of tx.corrupt()) {
      for (const h of c.held ?? []) keep(h.cidr, h.offsets);
      const cidr = c.salvaged?.cidr ?? c.cidr ?? codec.parseRangeName(c.file.slice(c.file.lastIndexOf("/") + 1));
      if (cidr) keep(cidr, c.salvaged?.offsets ?? []);
    }
    const ranges = [...cidrs.values()].map((cidr) => {
      const range = tx.range(cidr);
      const mine = held.get(cidr.text) ?? new Map<number, number>();
      const marked: string[] = [];
      const unowned = new Set<number>();
      for (let o = 0; o < cidr.size; o++) {
        if (mine.has(o) && !isSet(range, o)) marked.push(addressAt(cidr, o));
        if (!mine.has(o) && isSet(range, o)) unowned.add(o);
      }
      for (const o of salvaged.get(cidr.text) ?? []) if (!mine.has(o)) unowned.add(o);
      const rebuild = marked.length > 0 || salvaged.has(cidr.text) || (opts.releaseUnowned && unowned.size > 0);
      if (rebuild) {
        resetRange(range, [...mine.keys(), ...(opts.releaseUnowned ? [] : unowned)]);
        tx.touch(range);
      }
      return {
        cidr: cidr.text,
        records: mine.size,
        marked,
        unowned: [...unowned].sort((a, b) => a - b).map((o) => addressAt(cidr, o)),
        released: opts.releaseUnowned ? unowned.size : 0,
        conflicts: [...mine].filter(([, n]) => n > 1).map(([o]) => addressAt(cidr, o)),
      };
    });
    const recoveredRecords = tx.corrupt().flatMap((c) => c.recovered ?? []);
    const lostRecords = tx.corrupt().flatMap((c) => {
      // A record of a checkpoint ("<slot>: record of network/containerID/ifname"), or a file of the previous format.
      const rec = /: record of ([^/]+\/[^/]+\/[^/]+)$/.exec(c.file);
      if (rec) return recoveredRecords.includes(rec[1]!) ? [] : [rec[1]!];
      const m = /attachments\/([^/]+)\/([^/]+)$/.exec(c.file);
      const id = m ? codec.parseAttachmentName(m[2]!) : null;
      return m && id ? [`${m[1]}/${id.containerID}/${id.ifname}`] : [];
    });
    return { quarantined: tx.corrupt().map((c) => ({ file: c.file, reason: c.reason })), lostRecords, recoveredRecords, ranges };
  });
  return { store: store.location, dryRun: opts.dryRun, pendingMigration, pendingJournals, pendingCheckpoint, ...value };
}

export function formatRepair(rep: RepairReport): string {
  const lines = [`Store ${rep.store}${rep.dryRun ? " (dry run: nothing written, no lock taken)" : ""}`];
  for (const p of rep.pendingMigration)
    lines.push(`Would move the older per-network store ${p} into the shared store (the next call does)`);
  for (const j of rep.pendingJournals)
    lines.push(`Would replay ${j}, the journal of an interrupted commit (the next call does; shown here as applied)`);
  if (rep.pendingCheckpoint)
    lines.push(
      `Would confirm ${rep.pendingCheckpoint}, the checkpoint of an interrupted commit ` +
        "(it is whole; the next call does; shown here as the state)",
    );
  for (const q of rep.quarantined) lines.push(`${rep.dryRun ? "Would quarantine" : "Quarantined"} ${q.file}: ${q.reason}`);
  if (rep.recoveredRecords.length) lines.push(`Recovered from the checkpoint's history: ${rep.recoveredRecords.join(", ")}`);
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
  const clean =
    rep.quarantined.length === 0 &&
    rep.pendingMigration.length === 0 &&
    rep.pendingJournals.length === 0 &&
    !rep.pendingCheckpoint &&
    rep.ranges.every((r) => !r.marked.length && !r.unowned.length && !r.conflicts.length);
  if (clean) lines.push("Nothing to repair.");
  return `${lines.join("\n")}\n`;
}
