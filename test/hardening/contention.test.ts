// Guarantee 1 under contention: 200 ADDs from 16 concurrent workers on one
// network, then DEL of all. Reports the wall time and the longest lock wait.
import { afterEach, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { Sandbox, run } from "../helpers/plugin";
import { duplicates, loadStore, unowned } from "./invariants";
import { record, size } from "./report";

// No instant here decides an outcome: the calls only race one another for the lock, the
// default lockTimeout (60 s) only bounds a hang, and the times are reported, not asserted.

let sb: Sandbox;
afterEach(() => sb?.cleanup());

async function workers<T>(count: number, jobs: T[], fn: (job: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: count }, async () => {
      while (next < jobs.length) await fn(jobs[next++]!);
    }),
  );
}

function lockWait(stderr: string): number {
  const m = /waited (\d+) ms for the lock/.exec(stderr);
  expect(m, stderr).not.toBeNull();
  return Number(m![1]);
}

describe("contention", () => {
  it("200 ADDs from 16 workers get distinct addresses; DEL of all leaves the store empty", async () => {
    sb = new Sandbox();
    sb.writeNode(ciliumNode(["10.20.0.0/23", "fd00:20::/119"]));
    const total = size(200, 400);
    const ids = Array.from({ length: total }, (_, i) => `c-${i}`);
    const addrs = new Map<string, string[]>();
    let maxWait = 0;
    const t0 = Date.now();
    await workers(16, ids, async (id) => {
      const r = await run({ command: "ADD", containerID: id, stdin: sb.conf() });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      addrs.set(
        id,
        r.json.ips.map((i: any) => i.address),
      );
      maxWait = Math.max(maxWait, lockWait(r.stderr));
    });
    const addMs = Date.now() - t0;
    const all = [...addrs.values()].flat();
    expect(new Set(all).size).toBe(2 * total);
    const mid = await loadStore(sb);
    expect(duplicates(mid)).toEqual([]);
    expect(Object.values(mid.allocated)).toEqual([total, total]);

    const t1 = Date.now();
    await workers(16, ids, async (id) => {
      const r = await run({ command: "DEL", containerID: id, stdin: sb.conf() });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      maxWait = Math.max(maxWait, lockWait(r.stderr));
    });
    const delMs = Date.now() - t1;
    const end = await loadStore(sb);
    expect(Object.values(end.allocated)).toEqual([0, 0]);
    expect(unowned(end)).toEqual([]);
    record("contention: ADDs then DELs from 16 workers", "1. no address held twice", {
      adds: total,
      dels: total,
      "ADD wall s": (addMs / 1000).toFixed(1),
      "DEL wall s": (delMs / 1000).toFixed(1),
      "longest lock wait ms": maxWait,
      duplicates: 0,
      leaks: 0,
    });
  });
});
