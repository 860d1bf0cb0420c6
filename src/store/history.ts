// Who held an address, and when: the events the store keeps (a checkpoint keeps
// those of the last 30 days, at most 10,000, the oldest dropped first; the log
// holds those since) and the live records, so that a live attachment is shown
// even when its ADD is older than what is kept. Read without the lock.
import { fromArray, keyOf } from "./change.js";
import type { Store } from "./store.js";
import type { AttachmentRecord } from "./store.js";

export interface HistoryEntry {
  /** ms since the epoch. */
  readonly time: number;
  /** put: the attachment was made (or its record changed: a new netns); del: it was released. */
  readonly kind: "put" | "del";
  readonly record: AttachmentRecord;
  /** The attachment holds its addresses now. */
  readonly live: boolean;
}

/** Every event kept, oldest first, with each live attachment's ADD (from its record when the history no longer has it). */
export async function readHistory(store: Store): Promise<HistoryEntry[]> {
  const { value } = await store.transact({ create: false, unlocked: true, skipDamaged: true }, (tx) => ({
    events: tx.history?.() ?? [],
    live: tx.attachments(),
  }));
  const live = new Map(value.live.map((r) => [keyOf(r), r]));
  const out: HistoryEntry[] = [];
  const seen = new Set<string>();
  for (const [time, kind, a] of value.events) {
    const record = fromArray(a);
    if (!record || (kind !== "put" && kind !== "del")) continue;
    out.push({ time, kind, record, live: false });
    if (kind === "put") seen.add(keyOf(record));
  }
  for (const [k, r] of live) {
    if (!seen.has(k)) out.push({ time: Date.parse(r.createdAt) || 0, kind: "put", record: r, live: false });
  }
  out.sort((a, b) => a.time - b.time);
  // The last put of each live attachment is the one that holds now.
  const last = new Map<string, number>();
  out.forEach((e, i) => {
    if (e.kind === "put" && live.has(keyOf(e.record))) last.set(keyOf(e.record), i);
  });
  return out.map((e, i) => (last.get(keyOf(e.record)) === i ? { ...e, live: true } : e));
}
