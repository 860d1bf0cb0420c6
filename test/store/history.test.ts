// What a checkpoint keeps of the history: the events of the last 30 days, at most
// 10,000, the oldest dropped first (engine.HISTORY, which README and `history --help` quote).
import { describe, expect, it } from "vitest";
import type { Change } from "../../src/store/change.js";
import { HISTORY } from "../../src/store/engine.js";
import { LogTx } from "../../src/store/log-tx.js";
import type { AttachmentRecord } from "../../src/store/store.js";
import { attachmentRecord } from "../helpers/records";

const rec = (i: number): AttachmentRecord =>
  attachmentRecord(`c${i}`, undefined, undefined, { netns: "", createdAt: "2026-12-01T00:00:00.000Z" });

describe("history kept by a checkpoint", () => {
  it("is 30 days and 10,000 events", () => {
    expect(HISTORY).toEqual({ maxAge: 30 * 86400_000, maxEvents: 10_000 });
  });

  it("drops what is older than 30 days, then the oldest past 10,000", () => {
    const now = Date.parse("2026-12-02T00:00:00Z");
    const day = 86400_000;
    // 5 events 31 days old, then 10,050 within the last day, in time order.
    const changes: Change[] = [
      ...Array.from({ length: 5 }, (_, i) => ({ t: now - 31 * day + i, put: [rec(i)] })),
      ...Array.from({ length: 10_050 }, (_, i) => ({ t: now - day + i, put: [rec(100 + i)] })),
    ];
    const tx = new LogTx(null, changes, { writable: true });
    const h = tx.fullState(2, now, HISTORY).history;
    expect(h).toHaveLength(10_000);
    // The 5 old ones went for their age, then the 50 oldest of the rest for the count.
    expect(h[0]![2][1]).toBe("c150");
    expect(h.at(-1)![2][1]).toBe("c10149");
    expect(h.every((e) => e[0] >= now - 30 * day)).toBe(true);
  });
});
