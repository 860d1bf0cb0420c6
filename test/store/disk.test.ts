import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CniError, Code } from "../../src/errors.js";
import { emptyRange, take } from "../../src/ipam/allocator.js";
import { type Cidr, parseCidr } from "../../src/ipam/cidr.js";
import * as codec from "../../src/store/codec.js";
import { DiskStore } from "../../src/store/disk.js";
import { STALE_MS } from "../../src/store/lock.js";
import type { AttachmentRecord, Tx } from "../../src/store/store.js";

function cidr(text: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(p.reason);
  return p.cidr;
}

const V4 = cidr("10.0.2.0/24");
const V6 = cidr("fd00::200/120");
const RANGE_FILE = codec.rangeFileName(V4.text);

const rec = (containerID: string, address = "10.0.2.5"): AttachmentRecord => ({
  containerID,
  ifname: "eth0",
  namespace: "default",
  pod: `pod-${containerID}`,
  createdAt: "2024-05-01T12:00:00.000Z",
  ips: [{ cidr: V4.text, address }],
});

let root: string;
let dataDir: string;
let netDir: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "podcidr-ipam-disk-"));
  dataDir = join(root, "data");
  netDir = join(dataDir, "podnet");
});

afterEach(() => {
  vi.restoreAllMocks();
  rmSync(root, { recursive: true, force: true });
});

/** What the store logs (a replayed journal...), per test. */
let logged = vi.fn();
const store = (lockTimeoutMs = 2000): DiskStore => new DiskStore(dataDir, "podnet", lockTimeoutMs, logged);
const mode = (path: string): number => statSync(path).mode & 0o777;

/** Take `offsets` in V4 and record an attachment, in one transaction. */
async function allocate(s: DiskStore, id: string, offsets: number[]): Promise<void> {
  await s.transact({ create: true }, (tx) => {
    const r = tx.range(V4);
    for (const o of offsets) take(r, o);
    tx.touch(r);
    tx.putAttachment(rec(id));
  });
}

async function rejection(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return err as CniError;
  }
  throw new Error("expected transact to reject");
}

/** The pid of a child that has exited and been reaped. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  expect(child.status).toBe(0);
  return child.pid!;
}

function quiet(): typeof logged {
  logged = vi.fn();
  return logged;
}

describe("DiskStore: commit", () => {
  it("creates the folders 0700 and writes the range and attachment files 0600", async () => {
    await allocate(store(), "ctr1", [0, 4]);
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(netDir)).toBe(0o700);
    expect(mode(join(netDir, "attachments"))).toBe(0o700);
    expect(mode(join(netDir, RANGE_FILE))).toBe(0o600);
    expect(mode(join(netDir, "attachments", "ctr1@eth0.json"))).toBe(0o600);
    // No journal, no temp files, no lock left behind.
    expect(readdirSync(netDir).sort()).toEqual(["attachments", RANGE_FILE]);
    expect(readdirSync(join(netDir, "attachments"))).toEqual(["ctr1@eth0.json"]);
  });

  it("writes exactly the codec's bytes", async () => {
    await allocate(store(), "ctr1", [0, 4]);
    const expected = emptyRange(V4);
    take(expected, 0);
    take(expected, 4);
    expect(readFileSync(join(netDir, RANGE_FILE), "utf8")).toBe(codec.encodeRange(expected));
    expect(readFileSync(join(netDir, "attachments", "ctr1@eth0.json"), "utf8")).toBe(codec.encodeAttachment(rec("ctr1")));
  });

  it("reads back what it committed in the next transaction", async () => {
    await allocate(store(), "ctr1", [0, 4]);
    const seen = await store().transact({ create: true }, (tx) => ({
      allocated: tx.range(V4).allocated,
      v6: tx.range(V6).allocated,
      stored: tx.storedRanges().map((r) => r.cidr.text),
      one: tx.attachment("ctr1", "eth0"),
      missing: tx.attachment("ctr2", "eth0"),
      all: tx.attachments(),
    }));
    expect(seen).toEqual({ allocated: 2, v6: 0, stored: [V4.text], one: rec("ctr1"), missing: null, all: [rec("ctr1")] });
  });

  it("deletes an attachment file and keeps the attachments folder", async () => {
    await allocate(store(), "ctr1", [0]);
    await store().transact({ create: true }, (tx) => tx.deleteAttachment("ctr1", "eth0"));
    expect(readdirSync(join(netDir, "attachments"))).toEqual([]);
    expect(await store().transact({ create: true }, (tx) => tx.attachment("ctr1", "eth0"))).toBeNull();
  });

  it("writes nothing for a transaction that changes nothing", async () => {
    await allocate(store(), "ctr1", [0]);
    const before = statSync(join(netDir, RANGE_FILE)).mtimeMs;
    const got = await store().transact({ create: true }, (tx) => tx.range(V4).allocated);
    expect(got).toBe(1);
    expect(statSync(join(netDir, RANGE_FILE)).mtimeMs).toBe(before);
    expect(readdirSync(netDir).sort()).toEqual(["attachments", RANGE_FILE]);
  });

  it("writes nothing when fn throws, and rejects with fn's error", async () => {
    const boom = new Error("boom");
    await expect(
      store().transact({ create: true }, (tx) => {
        const r = tx.range(V4);
        take(r, 0);
        tx.touch(r);
        tx.putAttachment(rec("ctr1"));
        throw boom;
      }),
    ).rejects.toBe(boom);
    // The network's folder is not even created for a transaction that fails.
    expect(existsSync(netDir)).toBe(false);
  });

  it("leaves an existing store byte for byte as it was when fn throws", async () => {
    await allocate(store(), "ctr1", [0]);
    const range = readFileSync(join(netDir, RANGE_FILE));
    await expect(
      store().transact({ create: true }, (tx) => {
        const r = tx.range(V4);
        take(r, 1);
        tx.touch(r);
        tx.deleteAttachment("ctr1", "eth0");
        throw new CniError(Code.PoolExhausted, "no free address");
      }),
    ).rejects.toMatchObject({ code: Code.PoolExhausted });
    expect(readFileSync(join(netDir, RANGE_FILE))).toEqual(range);
    expect(readdirSync(join(netDir, "attachments"))).toEqual(["ctr1@eth0.json"]);
    expect(readdirSync(netDir).sort()).toEqual(["attachments", RANGE_FILE]);
  });

  it("serialises concurrent transactions in one process under the lock", async () => {
    const s = store(10_000);
    const picks = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        s.transact({ create: true }, (tx: Tx) => {
          const r = tx.range(V4);
          let o = 0;
          while (!take(r, o)) o++;
          tx.touch(r);
          tx.putAttachment(rec(`ctr${i}`));
          return o;
        }),
      ),
    );
    expect([...picks].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(await s.transact({ create: true }, (tx) => [tx.range(V4).allocated, tx.attachments().length])).toEqual([8, 8]);
  });
});

describe("DiskStore: journal", () => {
  it("replays a journal left behind before running the next transaction", async () => {
    await allocate(store(), "old", [7]);
    const r = emptyRange(V4);
    take(r, 0);
    take(r, 1);
    const journal = [
      { file: RANGE_FILE, content: codec.encodeRange(r) },
      { file: "attachments/ctr1@eth0.json", content: codec.encodeAttachment(rec("ctr1")) },
      { file: "attachments/old@eth0.json", content: null },
    ];
    writeFileSync(join(netDir, "journal.json"), codec.encodeJournal(journal));
    writeFileSync(join(netDir, `.tmp-${RANGE_FILE}-1-abcd`), "half a file");
    const stderr = quiet();

    const seen = await store().transact({ create: true }, (tx) => ({ allocated: tx.range(V4).allocated, ids: tx.attachments().map((a) => a.containerID) }));

    expect(seen).toEqual({ allocated: 2, ids: ["ctr1"] });
    expect(readdirSync(netDir).sort()).toEqual(["attachments", RANGE_FILE]);
    expect(readFileSync(join(netDir, RANGE_FILE), "utf8")).toBe(journal[0]!.content);
    expect(readdirSync(join(netDir, "attachments"))).toEqual(["ctr1@eth0.json"]);
    expect(stderr).toHaveBeenCalledWith(`podcidr-ipam: replaying the journal of an interrupted commit in ${netDir}\n`);
  });

  it("replays a journal into a folder that has no attachments folder yet", async () => {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(netDir, "journal.json"), codec.encodeJournal([{ file: "attachments/ctr1@eth0.json", content: codec.encodeAttachment(rec("ctr1")) }]));
    quiet();
    expect(await store().transact({ create: true }, (tx) => tx.attachment("ctr1", "eth0"))).toEqual(rec("ctr1"));
    expect(mode(join(netDir, "attachments", "ctr1@eth0.json"))).toBe(0o600);
  });

  it("refuses a corrupt journal with code 103 and leaves it in place", async () => {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    const text = codec.encodeJournal([{ file: RANGE_FILE, content: "x" }]).replace('"content":"x"', '"content":"y"');
    writeFileSync(join(netDir, "journal.json"), text);
    quiet();
    const err = await rejection(store().transact({ create: true }, () => 0));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(`store file ${join(netDir, "journal.json")} is corrupt: its checksum does not match its content`);
    expect(readFileSync(join(netDir, "journal.json"), "utf8")).toBe(text);
    expect(existsSync(join(netDir, RANGE_FILE))).toBe(false);
  });
});

describe("DiskStore: corrupt range files", () => {
  const flip = (t: string): string => {
    const buf = Buffer.from(t, "utf8");
    buf[t.indexOf('"bits":"') + 12]! ^= 0x01;
    return buf.toString("utf8");
  };

  it.each([
    { name: "a flipped byte", mutate: flip, why: "its checksum does not match its content" },
    { name: "a truncated file", mutate: (t: string) => t.slice(0, 40), why: "it is not JSON" },
    { name: "an empty file", mutate: () => "", why: "it is empty" },
    { name: "an unknown version", mutate: (t: string) => t.replace('"version":1', '"version":7'), why: "version 7 is not one this build reads (1)" },
    { name: "the bitmap of another CIDR", mutate: () => codec.encodeRange(emptyRange(cidr("10.0.3.0/24"))), why: "it holds the bitmap of 10.0.3.0/24, not of the CIDR its name says" },
  ])("rejects $name with code 103 and leaves the file untouched", async ({ mutate, why }) => {
    await allocate(store(), "ctr1", [0, 1]);
    const file = join(netDir, RANGE_FILE);
    const bad = mutate(readFileSync(file, "utf8"));
    writeFileSync(file, bad);
    const { mtimeMs } = statSync(file);

    for (const read of [(tx: Tx) => tx.range(V4), (tx: Tx) => tx.storedRanges()]) {
      const err = await rejection(
        store().transact({ create: true }, (tx) => {
          read(tx);
          tx.putAttachment(rec("ctr2"));
        }),
      );
      expect(err.code).toBe(Code.StoreCorrupt);
      expect(err.message).toContain(`store file ${file} is corrupt: ${why}`);
    }
    expect(readFileSync(file, "utf8")).toBe(bad);
    expect(statSync(file).mtimeMs).toBe(mtimeMs);
    expect(readdirSync(netDir).sort()).toEqual(["attachments", RANGE_FILE]);
    expect(readdirSync(join(netDir, "attachments"))).toEqual(["ctr1@eth0.json"]);
  });

  it("refuses a symbolic link where the store folder should be", async () => {
    mkdirSync(dataDir, { recursive: true });
    mkdirSync(join(root, "elsewhere"));
    symlinkSync(join(root, "elsewhere"), netDir);
    const err = await rejection(store().transact({ create: true }, () => 0));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(`store folder ${netDir} is not a folder`);
    expect(readdirSync(join(root, "elsewhere"))).toEqual([]);
  });
});

describe("DiskStore: create:false", () => {
  it("reads a missing store as empty and creates nothing", async () => {
    const seen = await store().transact({ create: false }, (tx) => ({
      allocated: tx.range(V4).allocated,
      stored: tx.storedRanges(),
      one: tx.attachment("ctr1", "eth0"),
      all: tx.attachments(),
    }));
    expect(seen).toEqual({ allocated: 0, stored: [], one: null, all: [] });
    expect(existsSync(dataDir)).toBe(false);
  });

  it("refuses writes to a missing store with code 999 and creates nothing", async () => {
    const err = await rejection(
      store().transact({ create: false }, (tx) => {
        tx.putAttachment(rec("ctr1"));
      }),
    );
    expect(err.code).toBe(Code.Internal);
    expect(err.message).toBe("internal: write to a store that was opened without create");
    expect(existsSync(dataDir)).toBe(false);
  });

  it("reads an existing store under the lock", async () => {
    await allocate(store(), "ctr1", [3]);
    expect(await store().transact({ create: false }, (tx) => tx.range(V4).allocated)).toBe(1);
  });
});

describe("DiskStore: lock", () => {
  /** Leave `<net>/lock` and `<net>/lock.owner` as a holder with `pid` would. */
  function plantLock(owner: { pid: number; pidns?: string }): void {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    mkdirSync(join(netDir, "lock"));
    const ino = statSync(join(netDir, "lock")).ino;
    writeFileSync(join(netDir, "lock.owner"), JSON.stringify({ pid: owner.pid, pidns: owner.pidns ?? readlinkSync("/proc/self/ns/pid"), ino, token: "x" }));
  }

  it("recovers a lock left by a dead process long before the stale time", async () => {
    plantLock({ pid: deadPid() });
    const s = store(3000);
    const started = Date.now();
    await allocate(s, "ctr1", [0]);
    const took = Date.now() - started;
    // Not a bet on speed: the 3 s lock timeout fails the call before the 5 s stale path could
    // free the lock, so the bound only tells which path was taken (dead pid: milliseconds).
    expect(STALE_MS).toBe(5000);
    expect(took).toBeLessThan(3000);
    expect(s.lastWaitMs).toBeLessThan(3000);
    // The wait queued a ticket in queue/ and took it away once the lock was had.
    expect(readdirSync(netDir).sort()).toEqual(["attachments", "queue", RANGE_FILE]);
    expect(readdirSync(join(netDir, "queue"))).toEqual([]);
  });

  it("recovers a lock folder with no owner file once it is a second old", async () => {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    mkdirSync(join(netDir, "lock"));
    const past = new Date(Date.now() - 2000);
    utimesSync(join(netDir, "lock"), past, past);
    const s = store(3000);
    await allocate(s, "ctr1", [0]);
    expect(s.lastWaitMs).toBeLessThan(3000);
  });

  it.each([
    { name: "a live process", owner: () => ({ pid: process.ppid }) },
    { name: "a dead pid of another pid namespace", owner: () => ({ pid: deadPid(), pidns: "pid:[1]" }) },
  ])("times out with code 11 on a lock held by $name", async ({ owner }) => {
    const o = owner();
    plantLock(o);
    const err = await rejection(store(1000).transact({ create: true }, () => 0));
    expect(err.code).toBe(Code.TryAgainLater);
    expect(err.message).toBe(`timed out after 1s waiting for the store lock ${join(netDir, "lock")}`);
    expect(err.details).toContain(`held by pid ${o.pid}`);
    expect(existsSync(join(netDir, "lock"))).toBe(true);
  });
});
