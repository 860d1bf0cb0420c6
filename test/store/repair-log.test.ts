// Repair of a log store that does not load (103): damage in the middle of the log,
// no checkpoint that loads, a log missing or cut short. Repair rebuilds what can be
// trusted (records that pass their own CRC, the valid records of the log) and
// keeps taken every address it cannot rule out; the store then loads again.
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { repair } from "../../src/cli/repair.js";
import { CniError } from "../../src/errors.js";
import { take } from "../../src/ipam/allocator.js";
import { addressAt, parseCidr } from "../../src/ipam/cidr.js";
import { DiskStore } from "../../src/store/disk.js";
import { LOG_BYTES } from "../../src/store/log.js";
import type { AttachmentRecord } from "../../src/store/store.js";
import { checkpointNow, damageRecord, holdings, logRecords, readStore, section } from "../helpers/store-state";
import { attachmentRecord } from "../helpers/records";

const p = parseCidr("10.0.2.0/24");
if (!p.ok) throw new Error(p.reason);
const V4 = p.cidr;

let root: string;
let dataDir: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "podcidr-ipam-repair-log-"));
  dataDir = join(root, "data");
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const store = (): DiskStore => new DiskStore(dataDir, 2000, () => {});
const rec = (id: string, address: string): AttachmentRecord =>
  attachmentRecord(id, address, V4.text, { createdAt: "2026-12-02T00:00:00.000Z" });

/** ADD `id` at offset `o`. */
async function add(id: string, o: number): Promise<void> {
  await store().transact({ create: true }, (tx) => {
    const r = tx.range(V4);
    take(r, o);
    tx.touch(r);
    tx.putAttachment(rec(id, addressAt(V4, o)));
  });
}

async function refused(): Promise<CniError> {
  try {
    await store().transact({ create: false }, (tx) => tx.attachments());
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return err as CniError;
  }
  throw new Error("the store loaded");
}

const held = async (): Promise<Record<string, string[]>> => Object.fromEntries((await holdings(dataDir)).byContainer);

describe("repair of a log store that does not load", () => {
  it("a record damaged in the middle of the log: 103; repair applies the valid records after it and keeps its legible address taken", async () => {
    for (const [i, id] of ["a", "b", "c"].entries()) await add(id, i);
    const b = logRecords(dataDir).find((r) => r.payload.includes(',"b",'))!;
    damageRecord(dataDir, b);
    expect((await refused()).message).toMatch(/record 2 of generation 1 .* fails its checks, and record 3 after it is valid/);
    const rep = await repair(store(), { releaseUnowned: false, dryRun: false });
    expect(rep.quarantined.map((q) => q.file)).toEqual([expect.stringMatching(/_store\/log: record 2 of generation 1 \(at byte \d+\)$/)]);
    // c (after the damage) is kept; b's record is lost, its address (still legible in the damaged bytes) kept taken.
    expect(await held()).toEqual({ a: ["10.0.2.1"], c: ["10.0.2.3"] });
    expect(rep.ranges[0]!.unowned).toEqual(["10.0.2.2"]);
    expect((await readStore(dataDir)).damaged).toEqual([]);
  });

  it("no checkpoint that loads (both slots' meta lines damaged): 103; repair keeps every record that passes its own checksum", async () => {
    for (const [i, id] of ["a", "b"].entries()) await add(id, i);
    await checkpointNow(dataDir); // slot 1: generation 2, with a and b
    await add("c", 2); // in the log of generation 2
    for (const slot of ["checkpoint.0", "checkpoint.1"]) {
      // The meta line of each slot, one byte changed.
      const path = join(dataDir, "_store", slot);
      const buf = readFileSync(path);
      const i = Math.floor(buf.indexOf(10) / 2);
      buf[i] = buf[i]! ^ 0x20;
      writeFileSync(path, buf);
    }
    expect((await refused()).message).toMatch(/neither checkpoint\.0 nor checkpoint\.1 holds a checkpoint that loads/);
    const rep = await repair(store(), { releaseUnowned: false, dryRun: false });
    expect(rep.quarantined.map((q) => q.file)).toContain(join(dataDir, "_store", "checkpoint.1: meta"));
    expect(await held()).toEqual({ a: ["10.0.2.1"], b: ["10.0.2.2"], c: ["10.0.2.3"] });
    expect((await holdings(dataDir)).unowned).toEqual([]);
  });

  it("the log cut short, or missing: 103 naming it; repair makes it whole again (128 KiB) and keeps what it still held", async () => {
    await add("a", 0);
    await add("b", 1);
    const log = join(dataDir, "_store", "log");
    truncateSync(log, 4096);
    expect((await refused()).message).toContain(`store file ${log} is corrupt: it is 4096 bytes, shorter than the ${LOG_BYTES}`);
    await repair(store(), { releaseUnowned: false, dryRun: false });
    expect(statSync(log).size).toBe(LOG_BYTES);
    expect(await held()).toEqual({ a: ["10.0.2.1"], b: ["10.0.2.2"] });

    unlinkSync(log);
    expect((await refused()).message).toContain(`store file ${log} is corrupt: it is missing`);
    const rep = await repair(store(), { releaseUnowned: false, dryRun: false });
    expect(rep.quarantined.map((q) => q.file)).toContain(log);
    expect(statSync(log).size).toBe(LOG_BYTES);
    // What the log held since the last checkpoint (repair's, above) is gone with it; the checkpoint's state is kept.
    expect(await held()).toEqual({ a: ["10.0.2.1"], b: ["10.0.2.2"] });
    await add("c", 2);
    expect(await held()).toEqual({ a: ["10.0.2.1"], b: ["10.0.2.2"], c: ["10.0.2.3"] });
  });

  it("a damaged bucket of the checkpoint: repair takes its records back from the checkpoint's history", async () => {
    for (const [i, id] of ["a", "b", "c"].entries()) await add(id, i);
    await checkpointNow(dataDir);
    // The bracket that opens b's entry in its bucket line: the whole line no longer parses.
    const s = section(dataDir, { record: { containerID: "b" } });
    const buf = readFileSync(s.path);
    buf[s.start] = 0x41;
    writeFileSync(s.path, buf);
    const rep = await repair(store(), { releaseUnowned: false, dryRun: false });
    expect([...rep.recoveredRecords].sort()).toEqual(["podnet/a/eth0", "podnet/b/eth0", "podnet/c/eth0"]);
    expect(rep.lostRecords).toEqual([]);
    expect(await held()).toEqual({ a: ["10.0.2.1"], b: ["10.0.2.2"], c: ["10.0.2.3"] });
  });
});
