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
        const until = Date.now() + STALE_MS + 2500;
        while (Date.now() < until) {
          /* frozen: the event loop cannot refresh the lock */
        }
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
