// Power cuts, enumerated (in the manner of ALICE and CrashMonkey): every write,
// sync, create, rename, unlink and mkdir the store makes is recorded through its
// io layer (ioTrace), and for every crash point of the commits under test (after
// each operation) every state a power cut could leave is built (see
// ./power-cut-model.ts: writes since a file's last fdatasync lost from any point
// on, the first of them torn at sector boundaries; folder operations not yet
// made durable by a folder fsync undone from any point on). Each state is loaded
// with the real code, then written to by a next call, and must:
//   - load (the design has no power-cut state that fails closed);
//   - hold no address twice, and no record whose bit is clear or bit no record holds;
//   - hold exactly the state before the commit or after it, and after it once the
//     commit's sync returned (the ADD answers only then): no acknowledged change lost;
//   - let the next call commit on top of it and keep all of the above.
// Commits: the first (it creates the store), appends (ADD, DEL), two that write a
// checkpoint and the appends after them, the next call after a checkpoint whose
// generation record was lost (it confirms the checkpoint), and the upgrade of a
// store of the previous format with a pending journal.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { emptyRange, take } from "../../src/ipam/allocator.js";
import { type Cidr, addressAt, parseCidr } from "../../src/ipam/cidr.js";
import { heldOffsets } from "../../src/ipam/pool.js";
import { releaseAttachment } from "../../src/store/attachments.js";
import * as codec from "../../src/store/codec.js";
import { DiskStore } from "../../src/store/disk.js";
import { type IoEvent, ioTrace } from "../../src/store/io.js";
import type { AttachmentRecord, Tx } from "../../src/store/store.js";
import { previousFormatJournal, previousFormatStore, readStore } from "../helpers/store-state";
import { type CrashState, PowerCutModel, materialize } from "./power-cut-model";
import { attachmentRecord } from "../helpers/records";

const V4 = ((): Cidr => {
  const p = parseCidr("10.0.2.0/24");
  if (!p.ok) throw new Error(p.reason);
  return p.cidr;
})();
const SHM = "/dev/shm";
const scratch = mkdtempSync(join(SHM, "podcidr-ipam-powercut-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

type Held = Map<string, string>; // containerID -> address

const rec = (id: string, address: string): AttachmentRecord =>
  attachmentRecord(id, address, V4.text, { namespace: "default", pod: `pod-${id}`, createdAt: "2026-12-02T00:00:00.000Z" });

/** ADD: the first free address, and its record. */
function addTx(id: string): (tx: Tx) => string {
  return (tx) => {
    const r = tx.range(V4);
    let o = 0;
    while (r.bits[o >> 3]! & (1 << (o & 7))) o++;
    take(r, o);
    tx.touch(r);
    const address = addressAt(V4, o);
    tx.putAttachment(rec(id, address));
    return address;
  };
}

/** DEL: its record dropped, its bit cleared. */
function delTx(id: string): (tx: Tx) => string {
  return (tx) => {
    const r = tx.attachment({ network: "podnet", containerID: id, ifname: "eth0" });
    if (r) releaseAttachment(tx, r, Date.now(), 0);
    return "";
  };
}

const figures = { commits: 0, crashPoints: 0, states: 0, loaded: 0, nextCommitted: 0 };
const byKind = new Map<string, number>();
const failures: string[] = [];

/** Run `fn` in one transaction of `store`, recording the store's operations. */
async function traced<T>(store: DiskStore, fn: (tx: Tx) => T): Promise<{ value: T; events: IoEvent[] }> {
  const events: IoEvent[] = [];
  ioTrace.on = (e) => events.push(e);
  try {
    const { value } = await store.transact({ create: true }, fn);
    return { value, events };
  } finally {
    ioTrace.on = null;
  }
}

let n = 0;

/** Load one crash state with the real code, check it, let a next call commit on it, check again. */
async function check(s: CrashState, allowed: Held[], what: string): Promise<void> {
  figures.states++;
  const dataDir = join(scratch, `s${n++}`, "data");
  const dir = join(dataDir, "_store");
  mkdirSync(dir, { recursive: true });
  materialize(dir, s);
  const fail = (why: string): void => {
    if (failures.length < 20) failures.push(`${what}, ${s.how}: ${why}`);
  };
  try {
    const held = await heldIn(dataDir).catch((err: Error) => {
      fail(`does not load: ${err.message}`);
      return null;
    });
    if (!held) return;
    figures.loaded++;
    if (!allowed.some((a) => same(a, held.records))) {
      return fail(`holds ${show(held.records)}; allowed: ${allowed.map(show).join(" or ")}`);
    }
    if (held.problems.length) return fail(held.problems.join("; "));
    // The next call commits on top of it (confirming a checkpoint a cut left unconfirmed, writing over a torn tail).
    const next = await new DiskStore(dataDir, 2000, () => {}).transact({ create: true }, addTx("next"));
    const after = await heldIn(dataDir);
    const want = new Map([...held.records, ["next", next.value]]);
    if (!same(want, after.records) || after.problems.length) {
      return fail(`after the next commit holds ${show(after.records)} (${after.problems.join("; ")}); expected ${show(want)}`);
    }
    figures.nextCommitted++;
  } finally {
    rmSync(join(dataDir, ".."), { recursive: true, force: true });
  }
}

/** What a store holds, and what is inconsistent in it: an address twice, a record's bit clear, a bit no record holds. */
async function heldIn(dataDir: string): Promise<{ records: Held; problems: string[] }> {
  const s = await readStore(dataDir);
  const records: Held = new Map();
  const problems: string[] = [];
  const owners = new Map<string, string>();
  for (const r of s.records) {
    const a = r.ips[0]!.address;
    records.set(r.containerID, a);
    if (owners.has(a)) problems.push(`${a} held by ${owners.get(a)} and ${r.containerID}`);
    owners.set(a, r.containerID);
  }
  const bits = new Set(s.ranges.find((r) => r.cidr === V4.text)?.addresses ?? []);
  for (const [a, id] of owners) if (!bits.has(a)) problems.push(`${id}'s ${a} is not marked`);
  for (const a of bits) if (!owners.has(a)) problems.push(`${a} is marked but no record holds it`);
  if (s.damaged.length) problems.push(`damaged: ${s.damaged.map((d) => d.file).join(", ")}`);
  return { records, problems };
}

/**
 * Replay a transaction's operations into the model, and at every crash point check every state a power cut
 * could leave: before the last sync of the transaction it holds `before` or `after`; from then on `after`.
 */
async function enumerate(model: PowerCutModel, events: IoEvent[], before: Held, after: Held, kind: string): Promise<void> {
  figures.commits++;
  const lastSync = events.map((e) => e.op === "sync" || e.op === "syncdir").lastIndexOf(true);
  const points = [-1, ...events.keys()];
  for (const i of points) {
    if (i >= 0) model.apply(events[i]!);
    figures.crashPoints++;
    const allowed = i >= lastSync && lastSync >= 0 ? [after] : [before, after];
    let count = 0;
    for (const s of model.states()) {
      count++;
      await check(s, allowed, `${kind}: cut after op ${i + 1}/${events.length} (${i >= 0 ? opText(events[i]!) : "none yet"})`);
    }
    byKind.set(kind, (byKind.get(kind) ?? 0) + count);
  }
}

function opText(e: IoEvent): string {
  const name = (p: string): string => p.slice(p.lastIndexOf("_store/") + 7);
  if (e.op === "write") return `write ${e.data.length} bytes at ${e.offset} of ${name(e.path)}`;
  if (e.op === "rename") return `rename ${name(e.path)} to ${name(e.to)}`;
  return `${e.op} ${name(e.path)}`;
}

function same(a: Held, b: Held): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}

function show(h: Held): string {
  return `{${[...h].map(([k, v]) => `${k}:${v}`).join(" ")}}`;
}

describe("power cuts at every instant of a commit", () => {
  it("every state a power cut could leave loads, holds no address twice, and loses no acknowledged change", async () => {
    const dataDir = join(scratch, "work", "data");
    const dir = join(dataDir, "_store");
    mkdirSync(dir, { recursive: true });
    const store = new DiskStore(dataDir, 2000, () => {});
    const model = new PowerCutModel(dir);
    let held: Held = new Map();
    /** One transaction: replayed into the model, and its crash states checked when `kind` is given. */
    const step = async (what: "add" | "del", id: string, kind?: string): Promise<IoEvent[]> => {
      const before = held;
      const { value, events } = await traced(store, what === "add" ? addTx(id) : delTx(id));
      held = new Map(before);
      if (what === "add") held.set(id, value);
      else held.delete(id);
      if (kind) await enumerate(model, events, before, held, kind);
      else for (const e of events) model.apply(e);
      return events;
    };
    const writesCheckpoint = (events: IoEvent[]): boolean => events.some((e) => e.op === "write" && /checkpoint\.[01]$/.test(e.path));

    await step("add", "a", "first commit (creates the store)");
    await step("add", "b", "append (ADD)");
    await step("del", "a", "append (DEL)");
    for (let i = 0; i < 30; i++) await step("add", `p${i}`);
    // ADD and DEL pairs until the log is long enough for a checkpoint, twice.
    let cpState: CrashState | null = null;
    let cpHeld: Held = new Map();
    for (let cps = 0, i = 0; cps < 2; i++) {
      const id = `f${i}`;
      for (const what of ["add", "del"] as const) {
        const before = held;
        const { value, events } = await traced(store, what === "add" ? addTx(id) : delTx(id));
        held = new Map(before);
        if (what === "add") held.set(id, value);
        else held.delete(id);
        if (!writesCheckpoint(events)) {
          for (const e of events) model.apply(e);
          continue;
        }
        cps++;
        await enumerate(model, events, before, held, `checkpoint ${cps} (${what.toUpperCase()})`);
        if (cps === 1) {
          cpState = genRecordLost(model);
          cpHeld = held;
        }
        await step("add", `after-cp${cps}`, `append after checkpoint ${cps}`);
        break;
      }
    }

    // The next call after a cut that kept checkpoint 1 (synced) but not its generation record: it confirms the checkpoint.
    expect(cpState, "no state with checkpoint 1 synced and its generation record lost").not.toBeNull();
    {
      const d2 = join(scratch, "confirm", "data");
      mkdirSync(join(d2, "_store"), { recursive: true });
      materialize(join(d2, "_store"), cpState!);
      const m2 = new PowerCutModel(join(d2, "_store"));
      const s2 = new DiskStore(d2, 2000, () => {});
      const { value, events } = await traced(s2, addTx("confirming"));
      expect(
        events.some((e) => e.op === "sync" && /checkpoint\.[01]$/.test(e.path)),
        "the next call did not sync the checkpoint",
      ).toBe(true);
      await enumerate(m2, events, cpHeld, new Map([...cpHeld, ["confirming", value]]), "next call after a lost generation record");
    }

    // The upgrade of a store of the previous format, with a journal of a commit it had not finished.
    {
      const d3 = join(scratch, "upgrade", "data");
      const dir3 = join(d3, "_store");
      mkdirSync(dir3, { recursive: true });
      const old = ["o1", "o2", "o3"].map((id, i) => rec(id, addressAt(V4, i)));
      previousFormatStore(d3, old);
      // The journal adds j (offset 3): its record and the bitmap with its bit, neither yet in place.
      const j = rec("j", addressAt(V4, 3));
      const range = emptyRange(V4);
      for (const r of [...old, j]) for (const h of heldOffsets(r)) take(range, h.offset);
      writeFileSync(
        join(dir3, "journal-1-pending.json"),
        previousFormatJournal([
          { file: codec.attachmentPath(j), content: codec.encodeAttachment(j) },
          { file: codec.rangeFileName(V4.text), content: codec.encodeRange(range) },
        ]),
      );
      const before: Held = new Map([...old, j].map((r) => [r.containerID, r.ips[0]!.address]));
      expect((await heldIn(d3)).records, "the previous format, read as that release did").toEqual(before);
      const m3 = new PowerCutModel(dir3);
      const s3 = new DiskStore(d3, 2000, () => {});
      const { value, events } = await traced(s3, addTx("u"));
      expect(events.some((e) => e.op === "rename" && /pre-log-/.test(e.to))).toBe(true);
      await enumerate(m3, events, before, new Map([...before, ["u", value]]), "upgrade from the previous format");
    }

    process.stdout.write(
      `[power-cut] commits ${figures.commits}, crash points ${figures.crashPoints}, states ${figures.states}, loaded ${figures.loaded}, ` +
        `next call committed on ${figures.nextCommitted}; by commit: ${[...byKind].map(([k, v]) => `${k} ${v}`).join(", ")}\n`,
    );
    expect(failures).toEqual([]);
    expect(figures.loaded).toBe(figures.states);
    expect(figures.nextCommitted).toBe(figures.states);
  }, 600_000);
});

/** Of the states a cut could leave now (just after a checkpoint commit): one with the slot synced and the log's generation record lost. */
function genRecordLost(model: PowerCutModel): CrashState | null {
  const live = model.live();
  for (const s of model.states()) {
    const log = s.files.get("log");
    const liveLog = live.files.get("log");
    if (log && liveLog && !log.equals(liveLog) && /log: 0\/1 write/.test(s.how)) return s;
  }
  return null;
}
