// The memory store (test/helpers/memory-store.ts) against the disk store: the same
// script, the same observable answers. What the handler tests rely on is pinned here.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CniError, Code } from "../../src/errors.js";
import { isSet, take } from "../../src/ipam/allocator.js";
import { type Cidr, parseCidr } from "../../src/ipam/cidr.js";
import * as codec from "../../src/store/codec.js";
import { DiskStore } from "../../src/store/disk.js";
import { SLOTS, commit, confirm, load, txOf } from "../../src/store/engine.js";
import type { HeldLock } from "../../src/store/lock.js";
import type { AttachmentKey, AttachmentRecord, Store, TransactOptions, Tx } from "../../src/store/store.js";
import { MemoryStore } from "../helpers/memory-store.js";

function cidr(text: string): Cidr {
  const p = parseCidr(text);
  if (!p.ok) throw new Error(p.reason);
  return p.cidr;
}

const V4 = cidr("10.0.2.0/24");
const V6 = cidr("fd00::200/120");
const key = (containerID: string, network = "podnet"): AttachmentKey => ({ network, containerID, ifname: "eth0" });
const rec = (containerID: string, network = "podnet", address = "10.0.2.5"): AttachmentRecord => ({
  ...key(containerID, network),
  netns: `/var/run/netns/${containerID}`,
  netnsId: "",
  namespace: "default",
  pod: `pod-${containerID}`,
  createdAt: "2024-05-01T12:00:00.000Z",
  ips: [{ cidr: V4.text, address }],
});

/** A store under test, with what differs: how to tell it exists and how to damage a file. */
interface Subject {
  store: Store;
  exists(): boolean;
  damageRange(c: Cidr): void;
  damageRecord(k: AttachmentKey): void;
  cleanup(): void;
}

/** Write the disk store's state into a checkpoint (as a long log would), then change one character of what `find` finds there. */
function damageCheckpoint(dir: string, find: (text: string) => number): void {
  const lock: HeldLock = { assertHeld() {}, stillHeld: () => true, release() {}, token: "test", waitedMs: 0 };
  const v = load(dir, true);
  let slot: number;
  try {
    confirm(v);
    commit(v, txOf(v, { writable: true }), lock, Date.now(), true);
    slot = 1 - v.slot;
  } finally {
    v.close();
  }
  const file = join(dir, SLOTS[slot]!);
  const buf = readFileSync(file);
  const at = find(buf.toString("latin1"));
  expect(at).toBeGreaterThan(0);
  buf[at] = buf[at] === 0x41 ? 0x42 : 0x41;
  writeFileSync(file, buf);
}

/** Names of damaged parts, the same for both stores: "attachments/<network>/<id>@<if>.json" or "range-<cidr>.json". */
const damageName = (file: string): string => {
  const rec = /: record of ([^/]+)\/([^/]+)\/(.+)$/.exec(file);
  if (rec) return `attachments/${rec[1]}/${rec[2]}@${rec[3]}.json`;
  const range = /: range (.+)$/.exec(file);
  return range ? codec.rangeFileName(range[1]!) : file.slice(file.lastIndexOf("/") + 1).replace(/^(?!range-)/, "");
};

const subjects: { name: string; make: () => Subject }[] = [
  {
    name: "disk",
    make: () => {
      const root = mkdtempSync(join(tmpdir(), "podcidr-ipam-parity-"));
      const store = new DiskStore(join(root, "data"), 2000, () => {});
      return {
        store,
        exists: () => existsSync(store.dir),
        damageRange: (c) => damageCheckpoint(store.dir, (t) => t.indexOf('"bits":"', t.indexOf(`{"cidr":"${c.text}"`)) + 8),
        // A character of the record's pod name (its key fields intact: the damage is its own, by name).
        damageRecord: (k) =>
          damageCheckpoint(store.dir, (t) => t.indexOf(`"pod-${k.containerID}"`, t.indexOf(`"${k.network}","${k.containerID}"`)) + 1),
        cleanup: () => rmSync(root, { recursive: true, force: true }),
      };
    },
  },
  {
    name: "memory",
    make: () => {
      const store = new MemoryStore();
      return {
        store,
        exists: () => store.snapshot().exists,
        damageRange: (c) => store.damageRange(c.text),
        damageRecord: (k) => store.damageRecord(k),
        cleanup: () => {},
      };
    },
  },
];

describe.each(subjects)("$name store", ({ make }) => {
  let s: Subject;
  afterEach(() => s.cleanup());

  const tx = async <T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<T> => (await s.store.transact(opts, fn)).value;
  const failure = async (p: Promise<unknown>): Promise<CniError> => {
    try {
      await p;
    } catch (err) {
      expect(err).toBeInstanceOf(CniError);
      return err as CniError;
    }
    throw new Error("expected a CniError");
  };
  /** Store the records and take offset 4 of V4 and V6. */
  const seed = (...recs: AttachmentRecord[]) =>
    tx({ create: true }, (t) => {
      for (const r of [t.range(V4), t.range(V6)]) {
        take(r, 4);
        t.touch(r);
      }
      for (const r of recs) t.putAttachment(r);
    });
  const relative = (file: string): string => (s.store instanceof DiskStore ? damageName(file) : file.slice(s.store.location.length + 1));

  it("create:false on a missing store reads empty, refuses writes with 999, and creates nothing", async () => {
    s = make();
    const seen = await tx({ create: false }, (t) => ({
      allocated: t.range(V4).allocated,
      stored: t.storedRanges().length,
      networks: t.networks(),
      records: t.attachments(),
      one: t.attachment(key("c1")),
    }));
    expect(seen).toEqual({ allocated: 0, stored: 0, networks: [], records: [], one: null });
    for (const write of [
      (t: Tx) => t.touch(t.range(V4)),
      (t: Tx) => t.putAttachment(rec("c1")),
      (t: Tx) => t.deleteAttachment(key("c1")),
    ]) {
      const e = await failure(tx({ create: false }, write));
      expect(e.code).toBe(Code.Internal);
      expect(e.message).toBe("internal: write to a store that was opened without create");
    }
    expect(s.exists()).toBe(false);
  });

  it("runs fn twice on the transaction that creates the store, once after; a first transaction that throws creates nothing", async () => {
    s = make();
    await failure(
      tx({ create: true }, (t) => {
        t.putAttachment(rec("c1"));
        throw new CniError(Code.PoolExhausted, "full");
      }),
    );
    expect(s.exists()).toBe(false);
    let runs = 0;
    await tx({ create: true }, () => runs++);
    expect(runs).toBe(2);
    await tx({ create: true }, () => runs++);
    expect(runs).toBe(3);
    expect(s.exists()).toBe(true);
  });

  it("writes nothing of a transaction whose fn throws", async () => {
    s = make();
    await seed(rec("c1"));
    await failure(
      tx({ create: true }, (t) => {
        const r = t.range(V4);
        take(r, 9);
        t.touch(r);
        t.putAttachment(rec("c2"));
        t.deleteAttachment(key("c1"));
        throw new CniError(Code.PoolExhausted, "full");
      }),
    );
    const seen = await tx({ create: false }, (t) => ({ bit9: isSet(t.range(V4), 9), ids: t.attachments().map((r) => r.containerID) }));
    expect(seen).toEqual({ bit9: false, ids: ["c1"] });
  });

  it("writes a changed range only when it is touched", async () => {
    s = make();
    await seed();
    await tx({ create: true }, (t) => {
      take(t.range(V4), 7);
      const r6 = t.range(V6);
      take(r6, 7);
      t.touch(r6);
    });
    expect(await tx({ create: false }, (t) => [isSet(t.range(V4), 7), isSet(t.range(V6), 7)])).toEqual([false, true]);
  });

  it("lists records in path order, hides deleted ones, shows ones put in the transaction", async () => {
    s = make();
    await seed(rec("b", "net2"), rec("c", "net1"), rec("a", "net1"), rec("a", "net2"));
    const seen = await tx({ create: true }, (t) => {
      t.deleteAttachment(key("c", "net1"));
      t.putAttachment(rec("b", "net1"));
      return {
        all: t.attachments().map((r) => `${r.network}/${r.containerID}`),
        net1: t.attachments("net1").map((r) => r.containerID),
        networks: t.networks(),
        deleted: t.attachment(key("c", "net1")),
      };
    });
    expect(seen).toEqual({ all: ["net1/a", "net1/b", "net2/a", "net2/b"], net1: ["a", "b"], networks: ["net1", "net2"], deleted: null });
    // A network whose last record went keeps its place (its folder stays on disk).
    await tx({ create: true }, (t) => {
      t.deleteAttachment(key("a", "net2"));
      t.deleteAttachment(key("b", "net2"));
    });
    expect(await tx({ create: false }, (t) => ({ networks: t.networks(), net2: t.attachments("net2") }))).toEqual({
      networks: ["net1", "net2"],
      net2: [],
    });
  });

  it("returns copies: changing what a transaction read, without committing, changes nothing stored", async () => {
    s = make();
    await seed(rec("c1"));
    await tx({ create: false }, (t) => {
      take(t.range(V4), 20);
      (t.attachment(key("c1"))!.ips as { cidr: string; address: string }[]).push({ cidr: V6.text, address: "fd00::299" });
    });
    expect(await tx({ create: false }, (t) => [isSet(t.range(V4), 20), t.attachment(key("c1"))!.ips.length])).toEqual([false, 1]);
  });

  it("unlocked: fn sees the store and may change its view, nothing is kept", async () => {
    s = make();
    await seed(rec("c1"));
    const seen = await tx({ create: false, unlocked: true }, (t) => {
      const r = t.range(V4);
      take(r, 30);
      t.touch(r);
      t.deleteAttachment(key("c1"));
      return isSet(t.range(V4), 4);
    });
    expect(seen).toBe(true);
    expect(await tx({ create: false }, (t) => [isSet(t.range(V4), 30), t.attachments().length])).toEqual([false, 1]);
  });

  it("runs transactions one at a time: concurrent ones each see the other's commit", async () => {
    s = make();
    await seed();
    const next = () =>
      tx({ create: true }, (t) => {
        const r = t.range(V4);
        const o = r.allocated + 10;
        take(r, o);
        t.touch(r);
        return o;
      });
    const got = await Promise.all([next(), next(), next()]);
    expect([...got].sort()).toEqual([11, 12, 13]);
  });

  it("a damaged record: 103 by key even when tolerating damage; listed, skipped and noted when tolerated, 103 otherwise", async () => {
    s = make();
    await seed(rec("c1"), rec("c2"));
    s.damageRecord(key("c2"));
    const byKey = await failure(tx({ create: false, skipDamaged: true }, (t) => t.attachment(key("c2"))));
    expect(byKey.code).toBe(Code.StoreCorrupt);
    expect(byKey.message).toMatch(/^store file .*(attachments\/podnet\/c2@eth0\.json|checkpoint\.\d) is corrupt: /);
    if (s.store instanceof DiskStore) expect(byKey.message).toContain("record of podnet/c2/eth0");
    const listed = await failure(tx({ create: false }, (t) => t.attachments()));
    expect(listed.code).toBe(Code.StoreCorrupt);
    const tolerated = await tx({ create: false, skipDamaged: true }, (t) => ({
      ids: t.attachments().map((r) => r.containerID),
      damaged: t.corrupt().map((d) => relative(d.file)),
    }));
    expect(tolerated).toEqual({ ids: ["c1"], damaged: ["attachments/podnet/c2@eth0.json"] });
    // Salvaging, even read by key it is noted and read as absent.
    const salvaged = await tx({ create: false, salvage: true, unlocked: true }, (t) => ({
      one: t.attachment(key("c2")),
      damaged: t.corrupt().map((d) => relative(d.file)),
    }));
    expect(salvaged).toEqual({ one: null, damaged: ["attachments/podnet/c2@eth0.json"] });
  });

  it("a damaged range: 103 unless tolerated; tolerated it reads empty and is never rewritten; salvaging it is rewritten and quarantined", async () => {
    s = make();
    await seed(rec("c1"));
    s.damageRange(V4);
    const e = await failure(tx({ create: true }, (t) => t.range(V4)));
    expect(e.code).toBe(Code.StoreCorrupt);
    expect(e.message).toMatch(/^store file .*(range-10\.0\.2\.0_24\.json|checkpoint\.\d) is corrupt: /);
    if (s.store instanceof DiskStore) expect(e.message).toContain("range 10.0.2.0/24");
    expect((await failure(tx({ create: false }, (t) => t.storedRanges()))).code).toBe(Code.StoreCorrupt);
    const skipped = await tx({ create: false, skipDamaged: true }, (t) => {
      const stored = t.storedRanges().map((r) => r.cidr.text);
      const r = t.range(V4);
      const empty = r.allocated;
      take(r, 50);
      t.touch(r);
      return { stored, empty, damaged: t.corrupt().map((d) => relative(d.file)) };
    });
    expect(skipped).toEqual({ stored: [V6.text], empty: 0, damaged: ["range-10.0.2.0_24.json"] });
    expect((await failure(tx({ create: false }, (t) => t.range(V4)))).code).toBe(Code.StoreCorrupt);
    await tx({ create: false, salvage: true }, (t) => {
      t.storedRanges();
      const r = t.range(V4);
      take(r, 60);
      t.touch(r);
    });
    expect(
      await tx({ create: false }, (t) => ({
        stored: t.storedRanges().map((r) => r.cidr.text),
        bit60: isSet(t.range(V4), 60),
        bit50: isSet(t.range(V4), 50),
      })),
    ).toEqual({
      stored: [V4.text, V6.text],
      bit60: true,
      bit50: false,
    });
  });

  it("resolves waitedMs with the value", async () => {
    s = make();
    const r = await s.store.transact({ create: true }, () => "v");
    expect(r.value).toBe("v");
    expect(typeof r.waitedMs).toBe("number");
  });
});
