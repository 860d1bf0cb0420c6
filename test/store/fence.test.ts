// A lock holder frozen past the stale threshold must not, on waking, overwrite
// what another call committed meanwhile. Blocking this process's event loop
// inside a transaction is exactly a frozen holder: proper-lockfile cannot
// refresh the lock, so a waiting call takes it over after STALE_MS.
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CniError } from "../../src/errors";
import { parseCidr } from "../../src/ipam/cidr";
import { take } from "../../src/ipam/allocator";
import { DiskStore } from "../../src/store/disk";
import { STALE_MS } from "../../src/store/lock";
import { BIN } from "../helpers/plugin";

/** True once process `pid` has exited (a zombie until our event loop reaps it) or is gone. */
function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

describe("frozen lock holder", () => {
  it("refuses to commit after another call took the lock over, leaving that call's work intact", async () => {
    const dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-fence-"));
    try {
      const nodeFile = join(dir, "node.json");
      writeFileSync(nodeFile, JSON.stringify({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name: "n" }, spec: { ipam: { podCIDRs: ["10.1.0.0/24"] } } }));
      const dataDir = join(dir, "data");
      const conf = { cniVersion: "1.1.0", name: "podnet", ipam: { type: "podcidr-ipam", nodeFile, dataDir, waitForPodCIDRs: 0, lockTimeout: 30 } };
      const cidr = parseCidr("10.1.0.0/24");
      if (!cidr.ok) throw new Error("bad cidr");
      const store = new DiskStore(dataDir, "podnet", 30_000);
      await store.transact({ create: true }, () => undefined);

      let child: Promise<{ code: number | null; out: string }> | undefined;
      let frozenMs = 0;
      const frozen = store.transact({ create: true }, (tx) => {
        // Start a real ADD while we hold the lock, then freeze past the stale threshold.
        // stdin from a file: a pipe would only be written once our event loop runs again.
        const confFile = join(dir, "conf.json");
        writeFileSync(confFile, JSON.stringify(conf));
        const p = spawn(BIN, [], {
          env: { PATH: process.env.PATH, CNI_COMMAND: "ADD", CNI_CONTAINERID: "other", CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: "/x" },
          stdio: [openSync(confFile, "r"), "pipe", "ignore"],
        });
        let out = "";
        p.stdout!.on("data", (d) => (out += d));
        child = new Promise((res) => p.on("close", (code) => res({ code, out })));
        // Stay frozen until the other call has finished (its process is a zombie we have not
        // reaped yet), not for a fixed time: a fixed STALE_MS + 2.5 s assumed the other call
        // takes the lock over and commits within 2.5 s of it going stale, which a loaded machine
        // need not do (we would then commit first and the test would fail for no fault). It
        // cannot finish before the lock is stale, so we are frozen past STALE_MS by construction.
        // The 60 s only bounds a hang.
        const from = Date.now();
        const until = from + 60_000;
        while (Date.now() < until && !exited(p.pid!)) {
          /* frozen: the event loop cannot refresh the lock */
        }
        frozenMs = Date.now() - from;
        // Our own allocation of the first pod address, which the other call also took.
        const r = tx.range(cidr.cidr);
        take(r, 1);
        tx.touch(r);
        tx.putAttachment({ containerID: "frozen", ifname: "eth0", namespace: "", pod: "", createdAt: new Date().toISOString(), ips: [{ cidr: "10.1.0.0/24", address: "10.1.0.2" }] });
      });
      const err = await frozen.then(
        () => null,
        (e: unknown) => e,
      );
      const other = await child!;
      expect(frozenMs, "the other call did not finish while we were frozen").toBeLessThan(60_000);
      expect(frozenMs).toBeGreaterThanOrEqual(STALE_MS - 1000);
      process.stdout.write(`[timing] fence: frozen ${frozenMs} ms, until the other call had finished (stale threshold ${STALE_MS} ms)\n`);
      expect(other.code, other.out).toBe(0);
      expect(JSON.parse(other.out).ips[0].address).toBe("10.1.0.2/24");
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(11);
      expect((err as CniError).message).toContain("lost the store lock");
      // The other call's record stands; the frozen one's was never written.
      const net = join(dataDir, "podnet");
      expect(JSON.parse(readFileSync(join(net, "attachments", "other@eth0.json"), "utf8")).ips[0].address).toBe("10.1.0.2");
      expect(() => readFileSync(join(net, "attachments", "frozen@eth0.json"))).toThrow();
      // And the frozen call did not remove a lock that was no longer its own: the store still works.
      const again = await new DiskStore(dataDir, "podnet", 2000).transact({ create: false }, (tx) => tx.range(cidr.cidr).allocated);
      expect(again).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
