// A transaction's reads of its checkpoint: ranges and buckets loaded once, and
// what fails its checks noted (tolerated: DEL, GC, status, repair) or thrown (103).
// Repair also takes back from the history the records of a bucket that failed.
import type { RangeState } from "../ipam/allocator.js";
import type { Cidr } from "../ipam/cidr.js";
import { keyOf } from "./change.js";
import { Damage, type SlotView, bucketOf } from "./checkpoint.js";
import { corrupt, salvageRange } from "./codec.js";
import { liveInHistory } from "./salvage.js";
import type { AttachmentKey, AttachmentRecord, Damaged } from "./store.js";

export interface ReadMode {
  readonly salvage?: boolean;
  readonly skipDamaged?: boolean;
}

export class SlotReader {
  readonly broken: Damaged[] = [];
  readonly brokenRanges = new Set<string>();
  private readonly buckets = new Map<number, (AttachmentRecord | Damage)[] | Damage>();
  /** Buckets that failed their checks (whole, or a record of theirs) -> the part of it noted first. */
  private readonly lost = new Map<number, string>();

  constructor(
    readonly slot: SlotView | null,
    private readonly mode: ReadMode,
  ) {}

  /** The checkpoint's state of a range: null when it has none, or when its section failed (noted). */
  range(cidr: Cidr): RangeState | null {
    const base = this.slot?.range(cidr.text) ?? null;
    if (!(base instanceof Damage)) return base;
    this.damaged(base, cidr);
    return null;
  }

  /** The checkpoint's record of `key`. Strict: a damaged bucket or record of that key fails the call. */
  find(key: AttachmentKey, strict: boolean): AttachmentRecord | null {
    if (!this.slot) return null;
    const same = (r: AttachmentRecord): boolean =>
      r.network === key.network && r.containerID === key.containerID && r.ifname === key.ifname;
    const i = bucketOf(key, this.slot.meta.buckets);
    return this.bucket(i, strict, `${key.network}/${key.containerID}/${key.ifname}`).find(same) ?? null;
  }

  /** Every record of the checkpoint; repairing, with those of failed buckets taken back from the history where it has them. */
  all(): AttachmentRecord[] {
    const slot = this.slot;
    if (!slot) return [];
    const out: AttachmentRecord[] = [];
    for (let i = 0; i < slot.meta.buckets; i++) out.push(...this.bucket(i, false));
    if (!this.mode.salvage || this.lost.size === 0) return out;
    const h = slot.history();
    if (h instanceof Damage) return out;
    const have = new Set(out.map(keyOf));
    for (const [k, r] of liveInHistory(h)) {
      const i = bucketOf(r, slot.meta.buckets);
      if (have.has(k) || !this.lost.has(i)) continue;
      out.push(r);
      const id = `${r.network}/${r.containerID}/${r.ifname}`;
      // Noted on its own damaged record if it has one, else on the first damage of its bucket.
      const own = this.broken.findIndex((b) => b.file === this.fileOf(`record of ${id}`));
      const j = own >= 0 ? own : this.broken.findIndex((b) => b.file === this.lost.get(i));
      if (j >= 0) this.broken[j] = { ...this.broken[j]!, recovered: [...(this.broken[j]!.recovered ?? []), id] };
    }
    return out;
  }

  // --- internal ---

  /** A bucket's records. A damaged one (or a damaged record in it, `only`: the one asked for) fails the call unless tolerated. */
  private bucket(i: number, strict: boolean, only?: string): AttachmentRecord[] {
    let b = this.buckets.get(i);
    if (!b) {
      b = this.slot!.bucket(i);
      this.buckets.set(i, b);
    }
    const tolerate = this.mode.salvage || this.mode.skipDamaged;
    if (b instanceof Damage) {
      if (strict || !tolerate) throw damageError(this.slot!.path, b);
      this.damaged(b);
      if (!this.lost.has(i)) this.lost.set(i, this.fileOf(b.what));
      return [];
    }
    const out: AttachmentRecord[] = [];
    for (const r of b) {
      if (!(r instanceof Damage)) out.push(r);
      else if (only !== undefined && r.what !== `record of ${only}`) continue;
      else if (strict || !tolerate) throw damageError(this.slot!.path, r);
      else {
        this.damaged(r);
        if (!this.lost.has(i)) this.lost.set(i, this.fileOf(r.what));
      }
    }
    return out;
  }

  private damaged(d: Damage, cidr?: Cidr): void {
    const file = this.fileOf(d.what);
    if (!this.mode.salvage && !this.mode.skipDamaged) throw damageError(this.slot!.path, d);
    if (cidr) this.brokenRanges.add(cidr.text);
    if (this.broken.some((b) => b.file === file)) return;
    const offsets = cidr ? salvageRange(d.text, cidr) : null;
    this.broken.push({
      file,
      reason: damageError(this.slot!.path, d).message,
      ...(cidr ? { cidr } : {}),
      ...(cidr && offsets ? { salvaged: { cidr, offsets } } : {}),
    });
  }

  private fileOf(what: string): string {
    return `${this.slot!.path}: ${what}`;
  }
}

function damageError(path: string, d: Damage): ReturnType<typeof corrupt> {
  return corrupt(path, `its ${d.what} fails its checksum`);
}
