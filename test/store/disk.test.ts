import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CniError, Code } from "../../src/errors.js";
import { emptyRange, take } from "../../src/ipam/allocator.js";
import { type Cidr, parseCidr } from "../../src/ipam/cidr.js";
import * as codec from "../../src/store/codec.js";
import { DiskStore } from "../../src/store/disk.js";
import { LOG, load } from "../../src/store/engine.js";
import { scanLog } from "../../src/store/log.js";
import { STALE_MS } from "../../src/store/lock.js";
import type { AttachmentKey, AttachmentRecord, Tx } from "../../src/store/store.js";

function cidr(text: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(p.reason);
  return p.cidr;
}

const V4 = cidr("10.0.2.0/24");
const V6 = cidr("fd00::200/120");
const RANGE_FILE = codec.rangeFileName(V4.text);

const rec = (containerID: string, address = "10.0.2.5", network = "podnet"): AttachmentRecord => ({
  network,
  containerID,
  ifname: "eth0",
  netns: `/var/run/netns/${containerID}`,
  netnsId: "",
  namespace: "default",
  pod: `pod-${containerID}`,
  createdAt: "2024-05-01T12:00:00.000Z",
  ips: [{ cidr: V4.text, address }],
});

const key = (containerID: string, network = "podnet"): AttachmentKey => ({ network, containerID, ifname: "eth0" });

let root: string;
let dataDir: string;
/** The store folder, shared by every network. */
let netDir: string;
/** Where one network's records live inside it. */
let attDir: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "podcidr-ipam-disk-"));
  dataDir = join(root, "data");
  netDir = join(dataDir, "_store");
  attDir = join(netDir, "attachments", "podnet");
});

afterEach(() => {
  vi.restoreAllMocks();
  rmSync(root, { recursive: true, force: true });
});

/** What the store logs (a replayed journal...), per test. */
let logged = vi.fn();
const store = (lockTimeoutMs = 2000): DiskStore => new DiskStore(dataDir, lockTimeoutMs, (l) => logged(l));
/** transact's value alone. */
const value = async <T>(p: Promise<{ value: T }>): Promise<T> => (await p).value;
const mode = (path: string): number => statSync(path).mode & 0o777;

/** Take `offsets` in V4 and record an attachment, in one transaction. */
async function allocate(s: DiskStore, id: string, offsets: number[]): Promise<unknown> {
  return s.transact({ create: true }, (tx) => {
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

const RESERVE = "reserve";
/** The files of a store of this format, once it has committed. */
const FILES = ["attachments", "checkpoint.0", "checkpoint.1", LOG, RESERVE];

/** Every file of the store folder (not the lock's), byte for byte. */
function bytes(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of readdirSync(netDir, { recursive: true }).map(String).sort()) {
    const p = join(netDir, n);
    if (statSync(p).isFile()) out[n] = readFileSync(p).toString("base64");
  }
  return out;
}

/** The changes the log holds for the current checkpoint, read by the store's own code. */
function logChanges() {
  const v = load(netDir, false);
  try {
    return scanLog(v.logFd!, join(netDir, LOG), v.base!.meta.gen).changes;
  } finally {
    v.close();
  }
}

/** A store as the previous release left it: range-*.json and attachments/<network>/<id>@eth0.json (codec.ts). */
function oldStore(id: string, offsets: number[]): void {
  mkdirSync(attDir, { recursive: true, mode: 0o700 });
  const r = emptyRange(V4);
  for (const o of offsets) take(r, o);
  writeFileSync(join(netDir, RANGE_FILE), codec.encodeRange(r), { mode: 0o600 });
  writeFileSync(join(attDir, `${id}@eth0.json`), codec.encodeAttachment(rec(id)), { mode: 0o600 });
}

/** The folder the upgrade moved the previous format's files to. */
function preLog(): string {
  const d = readdirSync(netDir).filter((n) => n.startsWith("pre-log-"));
  expect(d).toHaveLength(1);
  return join(netDir, d[0]!);
}

describe("DiskStore: commit", () => {
  it("creates the folders 0700 and its files 0600: the log, two checkpoint slots, the marker, the reserve", async () => {
    await allocate(store(), "ctr1", [0, 4]);
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(netDir)).toBe(0o700);
    for (const f of FILES) expect(mode(join(netDir, f)), f).toBe(0o600);
    // No temp files, no lock left behind; the reserve a DEL on a full disk may free.
    expect(readdirSync(netDir).sort()).toEqual(FILES);
    // attachments is a file: a release of the previous format that finds it fails closed.
    expect(statSync(join(netDir, "attachments")).isFile()).toBe(true);
    expect(statSync(join(netDir, LOG)).size).toBe(128 << 10);
    expect(statSync(join(netDir, RESERVE)).size).toBe(64 * 1024);
  });

  it("commits one record to the log: the record put and the bits set", async () => {
    await allocate(store(), "ctr1", [0, 4]);
    const changes = logChanges();
    expect(changes).toHaveLength(1);
    expect(changes[0]!.put).toEqual([rec("ctr1")]);
    expect(changes[0]!.rng).toEqual([expect.objectContaining({ c: V4.text, s: [0, 4] })]);
  });

  it("reads back what it committed in the next transaction, per network and for all of them", async () => {
    await allocate(store(), "ctr1", [0, 4]);
    await store().transact({ create: true }, (tx) => tx.putAttachment(rec("ctr9", "10.0.2.9", "other")));
    const seen = await value(
      store().transact({ create: true }, (tx) => ({
        allocated: tx.range(V4).allocated,
        v6: tx.range(V6).allocated,
        stored: tx.storedRanges().map((r) => r.cidr.text),
        one: tx.attachment(key("ctr1")),
        missing: tx.attachment(key("ctr2")),
        otherNet: tx.attachment(key("ctr1", "other")),
        mine: tx.attachments("podnet"),
        networks: tx.networks(),
        all: tx.attachments().map((a) => `${a.network}/${a.containerID}`),
      })),
    );
    expect(seen).toEqual({
      allocated: 2,
      v6: 0,
      stored: [V4.text],
      one: rec("ctr1"),
      missing: null,
      otherNet: null,
      mine: [rec("ctr1")],
      networks: ["other", "podnet"],
      all: ["other/ctr9", "podnet/ctr1"],
    });
  });

  it("deletes an attachment: its record is gone, and the log's record of the delete carries it whole (history)", async () => {
    await allocate(store(), "ctr1", [0]);
    await store().transact({ create: true }, (tx) => tx.deleteAttachment(key("ctr1")));
    expect(logChanges()[1]!.del).toEqual([rec("ctr1")]);
    expect(await value(store().transact({ create: true }, (tx) => tx.attachment(key("ctr1"))))).toBeNull();
  });

  it("writes nothing for a transaction that changes nothing", async () => {
    await allocate(store(), "ctr1", [0]);
    const before = bytes();
    const got = await value(store().transact({ create: true }, (tx) => tx.range(V4).allocated));
    expect(got).toBe(1);
    expect(bytes()).toEqual(before);
    expect(readdirSync(netDir).sort()).toEqual(FILES);
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
    // The store folder is not even created for a transaction that fails.
    expect(existsSync(dataDir)).toBe(false);
  });

  it("leaves an existing store byte for byte as it was when fn throws", async () => {
    await allocate(store(), "ctr1", [0]);
    const before = bytes();
    await expect(
      store().transact({ create: true }, (tx) => {
        const r = tx.range(V4);
        take(r, 1);
        tx.touch(r);
        tx.deleteAttachment(key("ctr1"));
        throw new CniError(Code.PoolExhausted, "no free address");
      }),
    ).rejects.toMatchObject({ code: Code.PoolExhausted });
    expect(bytes()).toEqual(before);
  });

  it("serialises concurrent transactions in one process under the lock", async () => {
    const s = store(10_000);
    const picks = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        value(
          s.transact({ create: true }, (tx: Tx) => {
            const r = tx.range(V4);
            let o = 0;
            while (!take(r, o)) o++;
            tx.touch(r);
            tx.putAttachment(rec(`ctr${i}`));
            return o;
          }),
        ),
      ),
    );
    expect([...picks].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(await value(s.transact({ create: true }, (tx) => [tx.range(V4).allocated, tx.attachments().length]))).toEqual([8, 8]);
  });

  it("renews the lease before every step of a commit: the lock folder's mtime moves while it is held", async () => {
    await allocate(store(), "ctr1", [0]);
    const lock = join(netDir, "lock");
    const stamps: number[] = [];
    await store().transact({ create: true }, (tx) => {
      const past = new Date(Date.now() - 60_000);
      utimesSync(lock, past, past);
      stamps.push(statSync(lock).mtimeMs);
      tx.putAttachment(rec("ctr2"));
    });
    expect(stamps[0]).toBeLessThan(Date.now() - 50_000);
    // The commit renewed it (and released it): a waiter never saw a lease 60 s old while it wrote.
    expect(existsSync(lock)).toBe(false);
  });
});

describe("DiskStore: upgrade of the previous format's journal", () => {
  const journalOf = (token: string): string => join(netDir, `journal-${token}.json`);

  it("applies a journal left behind when it converts the store, before running the next transaction", async () => {
    oldStore("old", [7]);
    const r = emptyRange(V4);
    take(r, 0);
    take(r, 1);
    const journal = [
      { file: RANGE_FILE, content: codec.encodeRange(r) },
      { file: "attachments/podnet/ctr1@eth0.json", content: codec.encodeAttachment(rec("ctr1")) },
      { file: "attachments/podnet/old@eth0.json", content: null },
    ];
    writeFileSync(journalOf("123-dead"), codec.encodeJournal(journal));
    writeFileSync(join(netDir, `.tmp-${RANGE_FILE}-1-abcd`), "half a file");
    const stderr = quiet();

    const seen = await value(
      store().transact({ create: true }, (tx) => ({ allocated: tx.range(V4).allocated, ids: tx.attachments().map((a) => a.containerID) })),
    );

    expect(seen).toEqual({ allocated: 2, ids: ["ctr1"] });
    // The old files are kept aside (the temp file of the killed commit is swept), the marker stands in attachments' place.
    expect(readdirSync(netDir).sort()).toEqual([...FILES.slice(0, 4), preLog().slice(netDir.length + 1), RESERVE]);
    expect(readdirSync(preLog()).sort()).toEqual(["attachments", "journal-123-dead.json", RANGE_FILE]);
    expect(stderr).toHaveBeenCalledWith(expect.stringMatching(/^podcidr-ipam: converted the store .* \(1 attachments, 1 ranges\)/));
  });

  it("replays a journal into a store that has no attachments folder yet", async () => {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    writeFileSync(
      journalOf("1-a"),
      codec.encodeJournal([{ file: "attachments/podnet/ctr1@eth0.json", content: codec.encodeAttachment(rec("ctr1")) }]),
    );
    quiet();
    expect(await value(store().transact({ create: true }, (tx) => tx.attachment(key("ctr1"))))).toEqual(rec("ctr1"));
    expect(await value(store().transact({ create: false }, (tx) => tx.attachments()))).toEqual([rec("ctr1")]);
  });

  it("refuses a corrupt journal with code 103 and leaves it in place", async () => {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    const text = codec.encodeJournal([{ file: RANGE_FILE, content: "x" }]).replace('"content":"x"', '"content":"y"');
    writeFileSync(journalOf("1-a"), text);
    quiet();
    const err = await rejection(store().transact({ create: true }, () => 0));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(`store file ${journalOf("1-a")} is corrupt: its checksum does not match its content`);
    expect(readFileSync(journalOf("1-a"), "utf8")).toBe(text);
    expect(existsSync(join(netDir, RANGE_FILE))).toBe(false);
  });

  it("refuses two journals (one was written by a call that had lost the lock) with 103, replaying neither", async () => {
    oldStore("ctr1", [0]);
    const before = readFileSync(join(netDir, RANGE_FILE), "utf8");
    for (const t of ["1-a", "2-b"])
      writeFileSync(journalOf(t), codec.encodeJournal([{ file: RANGE_FILE, content: codec.encodeRange(emptyRange(V4)) }]));
    const err = await rejection(store().transact({ create: true }, () => 0));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toContain("has 2 interrupted commits");
    expect(err.details).toContain("podcidr-ipam repair");
    expect(readFileSync(join(netDir, RANGE_FILE), "utf8")).toBe(before);
    expect(existsSync(join(netDir, "checkpoint.0"))).toBe(false);
  });
});

describe("DiskStore: corrupt range files of the previous format (the upgrade refuses them)", () => {
  const flip = (t: string): string => {
    const buf = Buffer.from(t, "utf8");
    buf[t.indexOf('"bits":"') + 12]! ^= 0x01;
    return buf.toString("utf8");
  };

  it.each([
    { name: "a flipped byte", mutate: flip, why: "its checksum does not match its content" },
    { name: "a truncated file", mutate: (t: string) => t.slice(0, 40), why: "it is not JSON" },
    { name: "an empty file", mutate: () => "", why: "it is empty" },
    {
      name: "an unknown version",
      mutate: (t: string) => t.replace('"version":1', '"version":7'),
      why: "version 7 is not one this build reads here (1)",
    },
    {
      name: "the bitmap of another CIDR",
      mutate: () => codec.encodeRange(emptyRange(cidr("10.0.3.0/24"))),
      why: "it holds the bitmap of 10.0.3.0/24, not of the CIDR its name says",
    },
  ])("rejects $name with code 103 and leaves the file untouched", async ({ mutate, why }) => {
    oldStore("ctr1", [0, 1]);
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
    // Nothing converted, nothing moved.
    expect(readdirSync(netDir).sort()).toEqual(["attachments", RANGE_FILE]);
    expect(readdirSync(attDir)).toEqual(["ctr1@eth0.json"]);
  });

  it("skipping damage (DEL, GC), the upgrade still refuses it: a bitmap is never dropped silently", async () => {
    oldStore("ctr1", [0, 1]);
    const file = join(netDir, RANGE_FILE);
    const bad = flip(readFileSync(file, "utf8"));
    writeFileSync(file, bad);
    const err = await rejection(
      store().transact({ create: false, skipDamaged: true }, (tx) => {
        const r = tx.range(V4);
        take(r, 5);
        tx.touch(r);
        tx.deleteAttachment(key("ctr1"));
        return tx.corrupt();
      }),
    );
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toContain(`store file ${file} is corrupt: its checksum does not match its content`);
    expect(readFileSync(file, "utf8")).toBe(bad);
    expect(readdirSync(attDir)).toEqual(["ctr1@eth0.json"]);
  });

  it("refuses a symbolic link where the store folder should be, saying how to fix it without losing state", async () => {
    mkdirSync(dataDir, { recursive: true });
    mkdirSync(join(root, "elsewhere"));
    symlinkSync(join(root, "elsewhere"), netDir);
    const err = await rejection(store().transact({ create: true }, () => 0));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toBe(`store folder ${netDir} is not a folder`);
    expect(err.details).toContain("move the real folder back");
    expect(err.details).toContain("never delete it while pods run");
    expect(err.details).not.toMatch(/Remove it\.$/);
    expect(readdirSync(join(root, "elsewhere"))).toEqual([]);
  });

  it("refuses a record whose content names another attachment (a file copied by hand)", async () => {
    oldStore("ctr1", [0]);
    writeFileSync(join(attDir, "ctr9@eth0.json"), readFileSync(join(attDir, "ctr1@eth0.json")));
    const err = await rejection(store().transact({ create: true }, (tx) => tx.attachment(key("ctr9"))));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(err.message).toContain("it holds the record of podnet/ctr1/eth0, not of the attachment its name says");
  });
});

describe("DiskStore: create:false", () => {
  it("reads a missing store as empty and creates nothing", async () => {
    const seen = await value(
      store().transact({ create: false }, (tx) => ({
        allocated: tx.range(V4).allocated,
        stored: tx.storedRanges(),
        one: tx.attachment(key("ctr1")),
        all: tx.attachments(),
      })),
    );
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
    expect(await value(store().transact({ create: false }, (tx) => tx.range(V4).allocated))).toBe(1);
  });

  it("unlocked (STATUS, repair --dry-run): takes no lock and sees a pending journal of the previous format as applied", async () => {
    oldStore("ctr1", [0]);
    const r = emptyRange(V4);
    for (const o of [0, 1, 2]) take(r, o);
    writeFileSync(join(netDir, "journal-1-x.json"), codec.encodeJournal([{ file: RANGE_FILE, content: codec.encodeRange(r) }]));
    mkdirSync(join(netDir, "lock")); // held by someone: an unlocked read does not wait for it
    const seen = await value(store(200).transact({ create: false, unlocked: true }, (tx) => tx.range(V4).allocated));
    expect(seen).toBe(3);
    expect(existsSync(join(netDir, "journal-1-x.json"))).toBe(true);
  });
});

describe("DiskStore: lock", () => {
  /** Leave `<store>/lock` and `lock.owner` as a holder with `pid` would. */
  function plantLock(owner: { pid: number; pidns?: string; start?: number }): void {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    mkdirSync(join(netDir, "lock"));
    const ino = statSync(join(netDir, "lock")).ino;
    writeFileSync(
      join(netDir, "lock.owner"),
      JSON.stringify({
        pid: owner.pid,
        pidns: owner.pidns ?? readlinkSync("/proc/self/ns/pid"),
        start: owner.start ?? -1,
        ino,
        token: "x",
      }),
    );
  }

  it("recovers a lock left by a dead process long before the stale time", async () => {
    plantLock({ pid: deadPid() });
    const s = store(3000);
    const started = Date.now();
    const { waitedMs } = await s.transact({ create: true }, (tx) => tx.putAttachment(rec("ctr1")));
    const took = Date.now() - started;
    // Not a bet on speed: the 3 s lock timeout fails the call before the 5 s stale path could
    // free the lock, so the bound only tells which path was taken (dead pid: milliseconds).
    expect(STALE_MS).toBe(5000);
    expect(took).toBeLessThan(3000);
    expect(waitedMs).toBeLessThan(3000);
    // The wait queued a ticket in queue/ and took it away once the lock was had.
    expect(readdirSync(netDir).sort()).toEqual([...FILES.slice(0, 4), "queue", RESERVE]);
    expect(readdirSync(join(netDir, "queue"))).toEqual([]);
  });

  it("recovers a lock whose pid now names another process (its start time differs)", async () => {
    // Our parent is alive, but it is not the process that wrote this owner file: its start time is another.
    plantLock({ pid: process.ppid, start: 1 });
    const { waitedMs } = await store(3000).transact({ create: true }, (tx) => tx.putAttachment(rec("ctr1")));
    expect(waitedMs).toBeLessThan(3000);
  });

  it("recovers a lock folder with no owner file once it is two seconds old", async () => {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    mkdirSync(join(netDir, "lock"));
    const past = new Date(Date.now() - 3000);
    utimesSync(join(netDir, "lock"), past, past);
    const { waitedMs } = await store(3000).transact({ create: true }, (tx) => tx.putAttachment(rec("ctr1")));
    expect(waitedMs).toBeLessThan(3000);
  });

  it("recovers a lock folder with no owner file stamped an hour in the future (a clock stepped back)", async () => {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    mkdirSync(join(netDir, "lock"));
    const future = new Date(Date.now() + 3600_000);
    utimesSync(join(netDir, "lock"), future, future);
    const { waitedMs } = await store(3000).transact({ create: true }, (tx) => tx.putAttachment(rec("ctr1")));
    expect(waitedMs).toBeLessThan(3000);
  });

  it("removes a stray file inside lock/ and a folder named lock.owner instead of failing for good", async () => {
    mkdirSync(netDir, { recursive: true, mode: 0o700 });
    mkdirSync(join(netDir, "lock"));
    writeFileSync(join(netDir, "lock", "stray"), "x");
    mkdirSync(join(netDir, "lock.owner"));
    const past = new Date(Date.now() - 3000);
    utimesSync(join(netDir, "lock"), past, past);
    const { waitedMs } = await store(3000).transact({ create: true }, (tx) => tx.putAttachment(rec("ctr1")));
    expect(waitedMs).toBeLessThan(3000);
    expect(existsSync(join(netDir, "lock"))).toBe(false);
  });

  it.each([
    { name: "a live process", owner: () => ({ pid: process.ppid }), why: "(running)" },
    { name: "a dead pid of another pid namespace", owner: () => ({ pid: deadPid(), pidns: "pid:[1]" }), why: "in another pid namespace" },
  ])("times out with code 11 on a lock held by $name, saying what the holder is", async ({ owner, why }) => {
    const o = owner();
    plantLock(o);
    const err = await rejection(store(1000).transact({ create: true }, () => 0));
    expect(err.code).toBe(Code.TryAgainLater);
    expect(err.message).toBe(`timed out after 1s waiting for the store lock ${join(netDir, "lock")}`);
    expect(err.details).toContain(`held by pid ${o.pid}`);
    expect(err.details).toContain(why);
    expect(existsSync(join(netDir, "lock"))).toBe(true);
  });

  it("keeps a live holder's lock past the lease however long it runs (a slow disk), and waits for it", async () => {
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    try {
      plantLock({ pid: child.pid! });
      const past = new Date(Date.now() - 10 * STALE_MS);
      utimesSync(join(netDir, "lock"), past, past);
      const err = await rejection(store(1500).transact({ create: true }, () => 0));
      expect(err.code).toBe(Code.TryAgainLater);
      expect(err.details).toContain(`held by pid ${child.pid}`);
      expect(child.exitCode).toBeNull();
      expect(child.signalCode).toBeNull();
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("kills a holder stopped (SIGSTOP) past its lease, then recovers the lock as a dead one's", async () => {
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on("exit", (_c, sig) => res(sig)));
    try {
      await new Promise((r) => child.on("spawn", r));
      child.kill("SIGSTOP");
      plantLock({ pid: child.pid! });
      const past = new Date(Date.now() - 2 * STALE_MS);
      utimesSync(join(netDir, "lock"), past, past);
      const { waitedMs } = await store(3000).transact({ create: true }, (tx) => tx.putAttachment(rec("ctr1")));
      expect(waitedMs).toBeLessThan(3000);
      expect(await exited).toBe("SIGKILL");
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("DiskStore: stores of an older release, one folder per network", () => {
  /** A version-1 record as the per-network stores wrote it (no network, no netns). */
  function legacyRecord(containerID: string, address: string): string {
    const body = JSON.stringify({
      format: "podcidr-ipam/attachment",
      version: 1,
      containerID,
      ifname: "eth0",
      namespace: "default",
      pod: `pod-${containerID}`,
      createdAt: "2024-05-01T12:00:00.000Z",
      ips: [{ cidr: V4.text, address }],
    });
    return `${body.slice(0, -1)},"crc32":"${crc32(body)}"}\n`;
  }

  function plantLegacy(network: string, held: Record<string, number>): string {
    const dir = join(dataDir, network);
    mkdirSync(join(dir, "attachments"), { recursive: true, mode: 0o700 });
    const r = emptyRange(V4);
    for (const [id, o] of Object.entries(held)) {
      take(r, o);
      writeFileSync(join(dir, "attachments", `${id}@eth0.json`), legacyRecord(id, `10.0.2.${o + 1}`));
    }
    writeFileSync(join(dir, RANGE_FILE), codec.encodeRange(r));
    return dir;
  }

  it("merges every network's folder into the shared store on first use, keeps the old files, and leaves a marker in its place", async () => {
    plantLegacy("podnet", { a: 1, b: 2 });
    plantLegacy("other", { c: 5 });
    const stderr = quiet();
    const seen = await value(
      store().transact({ create: false }, (tx) => ({
        bits: tx.range(V4).allocated,
        all: tx.attachments().map((x) => `${x.network}/${x.containerID} ${x.ips[0]!.address} netns=${JSON.stringify(x.netns)}`),
      })),
    );
    expect(seen.bits).toBe(3);
    expect(seen.all).toEqual(['other/c 10.0.2.6 netns=""', 'podnet/a 10.0.2.2 netns=""', 'podnet/b 10.0.2.3 netns=""']);
    const names = readdirSync(dataDir).sort();
    expect(names.filter((n) => n.startsWith("_migrated-other-"))).toHaveLength(1);
    expect(names.filter((n) => n.startsWith("_migrated-podnet-"))).toHaveLength(1);
    // An older binary now finds a file where its folder was, and refuses instead of starting an empty store.
    expect(statSync(join(dataDir, "podnet")).isFile()).toBe(true);
    expect(readFileSync(join(dataDir, "podnet"), "utf8")).toContain("older podcidr-ipam");
    const archived = join(dataDir, names.find((n) => n.startsWith("_migrated-podnet-"))!);
    expect(readdirSync(join(archived, "attachments")).sort()).toEqual(["a@eth0.json", "b@eth0.json"]);
    expect(stderr.mock.calls.flat().join("")).toContain("moved the store of network podnet");
    // Done once: the next call finds nothing to move.
    quiet();
    await store().transact({ create: false }, () => 0);
    expect(logged).not.toHaveBeenCalled();
  });

  it("keeps both owners of an address two networks already shared, so repair reports the conflict", async () => {
    plantLegacy("podnet", { a: 1 });
    plantLegacy("other", { b: 1 });
    quiet();
    const all = await value(
      store().transact({ create: false }, (tx) => tx.attachments().map((x) => `${x.network}/${x.containerID} ${x.ips[0]!.address}`)),
    );
    expect(all).toEqual(["other/b 10.0.2.2", "podnet/a 10.0.2.2"]);
  });

  it("reads a pending journal of the old folder as applied", async () => {
    const dir = plantLegacy("podnet", { a: 1 });
    writeFileSync(join(dir, "journal.json"), codec.encodeJournal([{ file: "attachments/a@eth0.json", content: null }]));
    quiet();
    const all = await value(store().transact({ create: false }, (tx) => tx.attachments().length));
    expect(all).toBe(0);
  });

  it("refuses a damaged old store with 103 until repair, and moves nothing", async () => {
    const dir = plantLegacy("podnet", { a: 1 });
    writeFileSync(join(dir, RANGE_FILE), "{}");
    quiet();
    const err = await rejection(store().transact({ create: true }, () => 0));
    expect(err.code).toBe(Code.StoreCorrupt);
    expect(statSync(dir).isDirectory()).toBe(true);
  });
});

function crc32(s: string): string {
  let crc = -1;
  for (const byte of Buffer.from(s, "utf8")) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
  }
  return ((crc ^ -1) >>> 0).toString(16).padStart(8, "0");
}
