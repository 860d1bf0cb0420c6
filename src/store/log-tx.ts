// One transaction's view of the log store: the checkpoint (read on demand: the
// ranges asked for, one bucket of records), the log's changes over it, and what
// the handler changes. On commit it gives the change (a log record) or, for a
// checkpoint, the whole new state.
import { Code, CniError } from "../errors.js";
import { type RangeState, emptyRange } from "../ipam/allocator.js";
import { type Cidr, parseCidr } from "../ipam/cidr.js";
import { type Change, type RangeDelta, applyDelta, copyRange, diffRange, keyOf, pathOf, toArray } from "./change.js";
import { Damage, type FullState, type HistoryEvent, type SlotView } from "./checkpoint.js";
import { SlotReader } from "./slot-reader.js";
import type { AttachmentKey, AttachmentRecord, Damaged, Tx } from "./store.js";

export interface LogTxMode {
  /** False: no store; everything reads as empty and nothing may be written. */
  readonly writable: boolean;
  readonly salvage?: boolean;
  readonly skipDamaged?: boolean;
}

export class LogTx implements Tx {
  private readonly overlay = new Map<string, AttachmentRecord | null>();
  private readonly deltas = new Map<string, RangeDelta[]>();
  private readonly sweeps: Record<string, string>;
  private readonly ranges = new Map<string, RangeState>();
  private readonly pristine = new Map<string, RangeState>();
  private readonly dirty = new Set<RangeState>();
  private readonly mine = new Map<string, AttachmentRecord | null>();
  private readonly read: SlotReader;
  private readonly noted: Damaged[] = [];
  /** Sweeps made by this transaction (releaseOnReboot). */
  readonly newSweeps: Record<string, string> = {};

  constructor(
    private readonly slot: SlotView | null,
    private readonly changes: readonly Change[],
    private readonly mode: LogTxMode,
  ) {
    this.read = new SlotReader(mode.writable ? slot : null, mode);
    this.sweeps = { ...(slot?.meta.sw ?? {}) };
    for (const c of changes) {
      for (const r of c.del ?? []) this.overlay.set(keyOf(r), null);
      for (const r of c.put ?? []) this.overlay.set(keyOf(r), r);
      for (const d of c.rng ?? []) this.deltas.set(d.c, [...(this.deltas.get(d.c) ?? []), d]);
      Object.assign(this.sweeps, c.sw ?? {});
    }
  }

  range(cidr: Cidr): RangeState {
    let r = this.ranges.get(cidr.text);
    if (r) return r;
    r = this.read.range(cidr) ?? emptyRange(cidr);
    for (const d of this.deltas.get(cidr.text) ?? []) applyDelta(r, d);
    this.ranges.set(cidr.text, r);
    this.pristine.set(cidr.text, copyRange(r));
    return r;
  }

  storedRanges(): RangeState[] {
    if (!this.mode.writable) return [];
    const out: RangeState[] = [];
    for (const c of this.storedCidrs()) {
      const r = this.range(c);
      if (!this.read.brokenRanges.has(c.text)) out.push(r);
    }
    return out;
  }

  touch(range: RangeState): boolean {
    this.mustWrite();
    if (this.read.brokenRanges.has(range.cidr.text) && !this.mode.salvage) return false;
    this.dirty.add(range);
    return true;
  }

  attachment(key: AttachmentKey): AttachmentRecord | null {
    const k = keyOf(key);
    if (this.mine.has(k)) return this.mine.get(k)!;
    return this.mode.writable ? this.before(key, !this.mode.salvage) : null;
  }

  networks(): string[] {
    if (!this.mode.writable) return [];
    const out = new Set(Object.keys(this.slot?.meta.networks ?? {}));
    // A network whose last record was deleted since the checkpoint is still listed (as its folder was before).
    for (const k of [...this.overlay.keys(), ...this.mine.keys()]) out.add(k.slice(0, k.indexOf("\u0000")));
    return [...out].sort();
  }

  attachments(network?: string): AttachmentRecord[] {
    const all = new Map<string, AttachmentRecord | null>();
    for (const r of this.read.all()) all.set(keyOf(r), r);
    if (this.mode.writable) for (const [k, r] of this.overlay) all.set(k, r);
    for (const [k, r] of this.mine) all.set(k, r);
    return [...all.values()]
      .filter((r): r is AttachmentRecord => r !== null && (network === undefined || r.network === network))
      .sort((a, b) => (pathOf(a) < pathOf(b) ? -1 : pathOf(a) > pathOf(b) ? 1 : 0));
  }

  putAttachment(rec: AttachmentRecord): void {
    this.mustWrite();
    this.mine.set(keyOf(rec), rec);
  }

  deleteAttachment(key: AttachmentKey): void {
    this.mustWrite();
    this.mine.set(keyOf(key), null);
  }

  corrupt(): readonly Damaged[] {
    return [...this.noted, ...this.read.broken];
  }

  /** Parts found broken before the transaction began (an upgrade or migration under repair, a damaged log record). */
  note(broken: readonly Damaged[]): void {
    this.noted.push(...broken);
  }

  /** Note a sweep of releaseOnReboot: `network`'s attachments of boots before `boot` were released. */
  sweep(network: string, boot: string): void {
    this.newSweeps[network] = boot;
  }

  /** The boot at which `network` was last swept ("" never). */
  sweptAt(network: string): string {
    return this.newSweeps[network] ?? this.sweeps[network] ?? "";
  }

  /** What this transaction changed, as a log record's change; null when nothing. */
  change(now: number): Change | null {
    const put: AttachmentRecord[] = [];
    const del: AttachmentRecord[] = [];
    for (const r of this.mine.values()) if (r) put.push(r);
    for (const [k, r] of this.mine) {
      if (r) continue;
      const [network, containerID, ifname] = k.split("\u0000") as [string, string, string];
      const prior = this.before({ network, containerID, ifname }, false);
      if (prior) del.push(prior);
    }
    const rng: RangeDelta[] = [];
    for (const r of this.dirty) {
      const d = diffRange(this.pristine.get(r.cidr.text) ?? emptyRange(r.cidr), r);
      if (d) rng.push(d);
    }
    const sw = this.newSweeps;
    if (!put.length && !del.length && !rng.length && !Object.keys(sw).length) return null;
    return { t: now, put, del, rng, sw };
  }

  /** The whole state after this transaction, for a checkpoint. Damaged sections are dropped only when salvaging. */
  fullState(gen: number, now: number, history: { maxAge: number; maxEvents: number }): FullState {
    const records = this.attachments();
    const ranges = this.storedCidrs().map((c) => this.range(c));
    for (const r of this.dirty) if (!ranges.includes(r)) ranges.push(r);
    const kept = ranges.filter((r) => !this.read.brokenRanges.has(r.cidr.text) || this.dirty.has(r));
    const broken = this.corrupt();
    if (broken.length && !this.mode.salvage) throw new CniError(Code.StoreCorrupt, broken[0]!.reason, "");
    const change = this.change(now);
    const events = this.history(change ? [change] : []).filter((e) => e[0] >= now - history.maxAge);
    return {
      gen,
      at: now,
      ranges: kept,
      records,
      history: events.slice(Math.max(0, events.length - history.maxEvents)),
      sw: { ...this.sweeps, ...this.newSweeps },
    };
  }

  /** Events of the checkpoint's history, then of the log, then of `more`. */
  history(more: readonly Change[] = []): HistoryEvent[] {
    const h = this.slot?.history() ?? [];
    const out: HistoryEvent[] = h instanceof Damage ? [] : [...h];
    for (const c of [...this.changes, ...more]) {
      for (const r of c.del ?? []) out.push([c.t, "del", toArray(r)]);
      for (const r of c.put ?? []) out.push([c.t, "put", toArray(r)]);
    }
    return out;
  }

  // --- internal ---

  private storedCidrs(): Cidr[] {
    const texts = new Set([...(this.slot?.meta.ranges.map((r) => r[0]) ?? []), ...this.deltas.keys()]);
    const out: Cidr[] = [];
    for (const t of texts) {
      const p = parseCidr(t);
      if (p.ok) out.push(p.cidr);
    }
    return out;
  }

  /** The record before this transaction: the log's, else the checkpoint's. Strict: a damaged bucket fails the call. */
  private before(key: AttachmentKey, strict: boolean): AttachmentRecord | null {
    const k = keyOf(key);
    if (this.overlay.has(k)) return this.overlay.get(k)!;
    return this.read.find(key, strict);
  }

  private mustWrite(): void {
    if (!this.mode.writable) throw new CniError(Code.Internal, "internal: write to a store that was opened without create", "");
  }
}
