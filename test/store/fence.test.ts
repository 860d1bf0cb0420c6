// A lock holder is judged by its process. One that is alive keeps the lock for
// as long as it runs, however slow; the waiter proceeds after it. One whose
// process cannot be seen (another pid namespace) is judged by its lease, and if
// it loses the lock it must not, on waking, write over what the new holder did.
// Blocking this process's event loop inside a transaction is exactly a busy or
// frozen holder: nothing renews its lease meanwhile.
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CniError } from "../../src/errors";
import { parseCidr } from "../../src/ipam/cidr";
import { take } from "../../src/ipam/allocator";
import { DiskStore } from "../../src/store/disk";
import { commit, load, txOf } from "../../src/store/engine";
import { type HeldLock, STALE_MS, acquire } from "../../src/store/lock";
import { ciliumNode } from "../helpers/node";
import { BIN } from "../helpers/plugin";

function world(): { dir: string; dataDir: string; confFile: string; store: DiskStore; cidr: ReturnType<typeof cidrOf> } {
  const dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-fence-"));
  const nodeFile = join(dir, "node.json");
  writeFileSync(nodeFile, JSON.stringify(ciliumNode(["10.1.0.0/24"])));
  const dataDir = join(dir, "data");
  const confFile = join(dir, "conf.json");
  writeFileSync(
    confFile,
    JSON.stringify({
      cniVersion: "1.1.0",
      name: "podnet",
      ipam: { type: "podcidr-ipam", nodeFile, dataDir, waitForPodCIDRs: 0, lockTimeout: 60 },
    }),
  );
  return { dir, dataDir, confFile, store: new DiskStore(dataDir, 60_000, () => {}), cidr: cidrOf("10.1.0.0/24") };
}

function cidrOf(text: string) {
  const c = parseCidr(text);
  if (!c.ok) throw new Error("bad cidr");
  return c.cidr;
}

/** Start a real ADD; stdin from a file, since a pipe would only be written once our event loop runs again. */
function startAdd(confFile: string): Promise<{ code: number | null; out: string }> {
  const p = spawn(BIN, [], {
    env: { PATH: process.env.PATH, CNI_COMMAND: "ADD", CNI_CONTAINERID: "other", CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: "/x" },
    stdio: [openSync(confFile, "r"), "pipe", "ignore"],
  });
  let out = "";
  p.stdout!.on("data", (d) => (out += d));
  return new Promise((res) => p.on("close", (code) => res({ code, out })));
}

/** Spin (the event loop blocked, as a frozen holder's is) until `done` or the bound. */
function spinUntil(done: () => boolean, boundMs: number): void {
  const until = Date.now() + boundMs;
  while (Date.now() < until && !done()) {
    /* frozen: nothing renews the lease */
  }
}

/** The address a record of the store at dataDir holds, read (without the lock) by the store's own code; null when none. */
function held(dataDir: string, containerID: string): string | null {
  const v = load(join(dataDir, "_store"), false);
  try {
    return txOf(v, { writable: true }).attachment({ network: "podnet", containerID, ifname: "eth0" })?.ips[0]?.address ?? null;
  } finally {
    v.close();
  }
}

function ourRecord(tx: Parameters<Parameters<DiskStore["transact"]>[1]>[0], cidr: ReturnType<typeof cidrOf>): void {
  const r = tx.range(cidr);
  take(r, 1);
  tx.touch(r);
  tx.putAttachment({
    network: "podnet",
    containerID: "frozen",
    ifname: "eth0",
    netns: "/y",
    netnsId: "",
    namespace: "",
    pod: "",
    createdAt: new Date().toISOString(),
    ips: [{ cidr: "10.1.0.0/24", address: "10.1.0.2" }],
  });
}

describe("lock holder", () => {
  it("alive and busy past the lease keeps the lock: the waiting ADD gets the next address once it has committed", async () => {
    const w = world();
    try {
      await w.store.transact({ create: true }, () => undefined);
      let child: Promise<{ code: number | null; out: string }> | undefined;
      await w.store.transact({ create: true }, (tx) => {
        child = startAdd(w.confFile);
        spinUntil(() => false, STALE_MS + 2000);
        ourRecord(tx, w.cidr);
      });
      const other = await child!;
      expect(other.code, other.out).toBe(0);
      expect(JSON.parse(other.out).ips[0].address).toBe("10.1.0.3/24");
      expect(held(w.dataDir, "frozen")).toBe("10.1.0.2");
      expect(held(w.dataDir, "other")).toBe("10.1.0.3");
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });

  it("in another pid namespace, once its lease is taken over, refuses to commit and leaves the new holder's work intact", async () => {
    const w = world();
    try {
      await w.store.transact({ create: true }, () => undefined);
      const ownerFile = join(w.dataDir, "_store", "lock.owner");
      let child: Promise<{ code: number | null; out: string }> | undefined;
      const frozen = w.store.transact({ create: true }, (tx) => {
        // Seen from the waiter, this holder now runs in a pid namespace it cannot look into: only the lease counts.
        const owner = JSON.parse(readFileSync(ownerFile, "utf8"));
        writeFileSync(ownerFile, JSON.stringify({ ...owner, pidns: "pid:[1]" }));
        child = startAdd(w.confFile);
        // Frozen until the waiter has taken the lock over and committed (the lease is 5 s), bounded.
        spinUntil(() => held(w.dataDir, "other") !== null, STALE_MS + 20_000);
        ourRecord(tx, w.cidr);
      });
      const err = await frozen.then(
        () => null,
        (e: unknown) => e,
      );
      const other = await child!;
      expect(other.code, other.out).toBe(0);
      expect(JSON.parse(other.out).ips[0].address).toBe("10.1.0.2/24");
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(11);
      expect((err as CniError).message).toBe("lost the store lock before committing; nothing was written");
      // The other call's record stands; the frozen one's was never written.
      expect(held(w.dataDir, "other")).toBe("10.1.0.2");
      expect(held(w.dataDir, "frozen")).toBeNull();
      // And the frozen call did not remove a lock that was no longer its own: the store still works.
      const again = await new DiskStore(w.dataDir, 2000, () => {}).transact({ create: false }, (tx) => tx.range(w.cidr).allocated);
      expect(again.value).toBe(1);
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });

  it("in another pid namespace, frozen after its last fence and before its write: the write lands in no file the store reads, and it answers 11", async () => {
    const w = world();
    try {
      await w.store.transact({ create: true }, () => undefined);
      const dir = join(w.dataDir, "_store");
      const ownerFile = join(dir, "lock.owner");
      const lock = await acquire(dir, 10_000);
      const view = load(dir, true);
      let child: Promise<{ code: number | null; out: string }> | undefined;
      // The real lock, frozen once its fence has passed: the one instant the fence itself cannot cover.
      const frozenAfterFence: HeldLock = {
        ...lock,
        assertHeld() {
          lock.assertHeld();
          const owner = JSON.parse(readFileSync(ownerFile, "utf8"));
          writeFileSync(ownerFile, JSON.stringify({ ...owner, pidns: "pid:[1]" }));
          child = startAdd(w.confFile);
          spinUntil(() => held(w.dataDir, "other") !== null, STALE_MS + 20_000);
        },
      };
      let err: unknown = null;
      try {
        const tx = txOf(view, { writable: true });
        ourRecord(tx, w.cidr);
        commit(view, tx, frozenAfterFence);
      } catch (e) {
        err = e;
      } finally {
        view.close();
        lock.release();
      }
      const other = await child!;
      expect(other.code, other.out).toBe(0);
      expect(JSON.parse(other.out).ips[0].address).toBe("10.1.0.2/24");
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(11);
      expect((err as CniError).message).toBe("lost the store lock while committing; this change may not have been kept");
      // The other call's acknowledged record stands; the frozen one's went to the old inode.
      expect(held(w.dataDir, "other")).toBe("10.1.0.2");
      expect(held(w.dataDir, "frozen")).toBeNull();
      const next = await new DiskStore(w.dataDir, 2000, () => {}).transact({ create: false }, (tx) => tx.range(w.cidr).allocated);
      expect(next.value).toBe(1);
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });
});
