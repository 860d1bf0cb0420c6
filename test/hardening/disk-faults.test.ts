// Guarantees 1 and 3 under disk faults, against the built executable: the store
// on a tiny tmpfs (and, at full size, a loop-mounted ext4) that fills up, and on
// a read-only mount. A call either succeeds durably or fails with code 105 naming
// the errno; the store stays loadable, never holds an address twice, and after
// space is freed (and the runtime has sent DEL for every failed ADD, as the CNI
// spec has it do) nothing leaks.
//
// "The store" here is its logical content, as the next call will see it, read
// through the store's own code (test/helpers/store-state.ts).
import { execFileSync, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  statfsSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { FIXTURES, type RunResult, cli, run } from "../helpers/plugin";
import { snapshot } from "../helpers/snapshot";
import { logNames, logRecords, readStore as readStoreState, section } from "../helpers/store-state";
import { pendingCheckpoint } from "../../src/store/disk";
import { record, size } from "./report";

const NETWORK = "podnet";

// --- mounts -----------------------------------------------------------------

type FsKind = "tmpfs" | "ext4";

/** Why this machine cannot mount a tmpfs, or null when it can. */
function mountBlocker(): string | null {
  if (process.getuid?.() !== 0) return "not running as root (mount needs CAP_SYS_ADMIN)";
  const probe = mkdtempSync(join(tmpdir(), "podcidr-ipam-mountprobe-"));
  try {
    const r = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], { encoding: "utf8" });
    if (r.status !== 0) return `cannot mount a tmpfs: ${(r.stderr || r.error?.message || "").trim()}`;
    spawnSync("umount", [probe]);
    return null;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

function announceSkip(blocker: string): void {
  process.stderr.write(
    `\n!!! podcidr-ipam disk-fault hardening tests SKIPPED: ${blocker}.\n!!! They need root to mount a tmpfs / loop filesystem.\n`,
  );
  if (process.env.PODCIDR_E2E === "require") throw new Error(`disk-fault tests required (PODCIDR_E2E=require) but cannot run: ${blocker}`);
}

const mounted = new Set<string>();

function umount(dir: string): void {
  if (spawnSync("umount", [dir]).status !== 0) spawnSync("umount", ["-l", dir]);
  mounted.delete(dir);
}

/** A small filesystem under a fresh temp folder; the store's dataDir is <mnt>/data. */
class SmallFs {
  readonly root = mkdtempSync(join(tmpdir(), "podcidr-ipam-disk-"));
  readonly mnt = join(this.root, "mnt");
  readonly nodeFile = join(this.root, "node.json");
  readonly dataDir = join(this.mnt, "data");
  /** The store folder (shared by every network). */
  readonly netDir = join(this.dataDir, "_store");
  readonly filler = join(this.mnt, "filler");
  /** Allocation unit of statfs (a page on tmpfs, a block on ext4). */
  readonly unit: number;

  constructor(readonly kind: FsKind) {
    mkdirSync(this.mnt);
    execFileSync("cp", [join(FIXTURES, "ciliumnode-cluster-pool.json"), this.nodeFile]);
    if (kind === "tmpfs") {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", this.mnt]);
    } else {
      const img = join(this.root, "fs.img");
      execFileSync("truncate", ["-s", "4M", img]);
      execFileSync("mkfs.ext4", ["-q", "-F", "-m", "0", "-b", "1024", img]);
      execFileSync("mount", ["-o", "loop", img, this.mnt]);
    }
    mounted.add(this.mnt);
    this.unit = statfsSync(this.mnt).bsize;
  }

  free(): number {
    return statfsSync(this.mnt).bavail;
  }

  /** Fill the filesystem so that exactly `k` allocation units stay free; returns what is free. */
  fillLeaving(k: number): number {
    const fd = openSync(this.filler, "a");
    const unit = Buffer.alloc(this.unit, 0x5a);
    try {
      for (let round = 0; round < 20 && this.free() !== k; round++) {
        const free = this.free();
        if (free > k) {
          for (let i = 0; i < free - k; i++) {
            try {
              writeSync(fd, unit);
            } catch {
              break; // full: metadata took the rest
            }
          }
        } else {
          const st = statSync(this.filler);
          ftruncateSync(fd, Math.max(0, st.size - (k - free) * this.unit));
        }
        fsyncSync(fd);
      }
    } finally {
      closeSync(fd);
    }
    return this.free();
  }

  unfill(): void {
    rmSync(this.filler, { force: true });
  }

  remount(mode: "ro" | "rw"): void {
    execFileSync("mount", ["-o", `remount,${mode}`, this.mnt]);
  }

  conf(): Record<string, unknown> {
    return {
      cniVersion: "1.1.0",
      name: NETWORK,
      type: "bridge",
      bridge: "cni0",
      isGateway: true,
      ipam: { type: "podcidr-ipam", nodeFile: this.nodeFile, dataDir: this.dataDir, waitForPodCIDRs: 0 },
    };
  }

  call(command: string, containerID: string, extra: Record<string, unknown> = {}): Promise<RunResult> {
    // The 20 s only bounds a hang (a call takes well under a second; a killed one fails the test
    // as "hung"): the faults here are the full and read-only disk, no kill decides an outcome.
    return run({ command, containerID, stdin: { ...this.conf(), ...extra }, killAfterMs: 20_000 });
  }

  status(): Promise<RunResult> {
    return cli(["status", "--json", "--all-addresses", "--data-dir", this.dataDir, "--network", NETWORK, "--node-file", this.nodeFile]);
  }

  cleanup(): void {
    umount(this.mnt);
    rmSync(this.root, { recursive: true, force: true });
  }
}

// --- the store as the next call will see it ----------------------------------

interface RangeView {
  cidr: string;
  allocated: number;
  /** The addresses whose bit is set. */
  set: Set<string>;
}
interface StoreView {
  ranges: Map<string, RangeView>;
  /** <containerID>@<ifname>.json -> the addresses its record holds */
  records: Map<string, { cidr: string; address: string }[]>;
  tmpFiles: string[];
}

/** The store as the next call sees it, read through the store's own code (it must load). */
async function readStore(f: SmallFs): Promise<StoreView> {
  const s = await readStoreState(f.dataDir);
  const view: StoreView = { ranges: new Map(), records: new Map(), tmpFiles: [] };
  for (const r of s.ranges) view.ranges.set(r.cidr, { cidr: r.cidr, allocated: r.allocated, set: new Set(r.addresses) });
  for (const r of s.records) if (r.network === NETWORK) view.records.set(recName(r.containerID), [...r.ips]);
  view.tmpFiles = existsSync(f.netDir) ? readdirSync(f.netDir).filter((n) => n.startsWith(".tmp-")) : [];
  return view;
}

interface Problems {
  /** Addresses held by two or more records. */
  duplicates: string[];
  /** A record's address whose bit is clear (could be handed out again). */
  unmarked: string[];
  /** A range whose `allocated` differs from its bitmap. */
  badCounts: string[];
  /** Bits set that no record holds. */
  leaks: string[];
}

function problems(view: StoreView): Problems {
  const out: Problems = { duplicates: [], unmarked: [], badCounts: [], leaks: [] };
  const holders = new Map<string, string[]>();
  for (const [name, ips] of view.records) {
    for (const ip of ips) {
      const key = `${ip.cidr} ${ip.address}`;
      holders.set(key, [...(holders.get(key) ?? []), name]);
      if (!view.ranges.get(ip.cidr)?.set.has(ip.address)) out.unmarked.push(`${ip.address} (${name})`);
    }
  }
  for (const [key, names] of holders) if (names.length > 1) out.duplicates.push(`${key}: ${names.join(", ")}`);
  for (const r of view.ranges.values()) {
    if (r.set.size !== r.allocated) out.badCounts.push(`${r.cidr}: allocated ${r.allocated}, bitmap ${r.set.size}`);
    for (const a of r.set) if (!holders.has(`${r.cidr} ${a}`)) out.leaks.push(`${r.cidr} ${a}`);
  }
  return out;
}

function expectConsistent(view: StoreView, what: string): void {
  expect(problems(view), what).toEqual({ duplicates: [], unmarked: [], badCounts: [], leaks: [] });
}

/** Records and bitmaps, for comparing two logical states. */
function canonical(view: StoreView): string {
  const recs = [...view.records.entries()].sort(([a], [b]) => a.localeCompare(b));
  const ranges = [...view.ranges.values()]
    .sort((a, b) => a.cidr.localeCompare(b.cidr))
    .map((r) => [r.cidr, r.allocated, [...r.set].sort()]);
  return JSON.stringify({ recs, ranges });
}

/**
 * Every store file and its bytes, except the lock's own files (lock/, lock.owner, lock.reap/), the queue, the reserve a
 * DEL may free, and the checkpoint slot that does not hold the state (a checkpoint that failed may be left half-written there).
 */
function storeBytes(f: SmallFs): Map<string, string> {
  let spare = "";
  try {
    spare = basename(section(f.dataDir, { meta: true }).path) === "checkpoint.0" ? "checkpoint.1" : "checkpoint.0";
  } catch {
    /* no store yet */
  }
  return snapshot(f.netDir, {
    filesOnly: true,
    skip: (rel) => !rel.includes("/") && (rel.startsWith("lock") || rel === "queue" || rel === "reserve" || rel === spare),
  });
}

const recName = (id: string): string => `${id}@eth0.json`;

/** Which step of a call an ENOSPC error came from, by the path it names. */
function stepOf(msg: string): string {
  if (/store lock|lock\.owner/.test(msg)) return "lock";
  if (/checkpoint\.[01]/.test(msg)) return "checkpoint";
  if (/_store\/log\b/.test(msg)) return "log";
  if (/claims/.test(msg)) return "claim";
  return msg;
}

// --- tests ------------------------------------------------------------------

const blocker = mountBlocker();
if (blocker) announceSkip(blocker);
const suite = blocker ? describe.skip : describe;

let fsys: SmallFs | undefined;
afterEach(() => {
  fsys?.cleanup();
  fsys = undefined;
});
afterAll(() => {
  for (const m of [...mounted]) umount(m);
});

suite("disk full (ENOSPC) at every step of a commit", () => {
  const kinds = size<FsKind[]>(["tmpfs"], ["tmpfs", "ext4"]);
  const maxK = size(8, 16);
  const totals = { calls: 0, enospcFailures: 0, duplicates: 0, leaks: 0, statusUnreadable: 0, rolledForward: 0 };
  const steps = new Map<string, number>();

  afterAll(() => {
    if (totals.calls > 0) {
      record("disk full (tmpfs)", "1. no address held twice", {
        filesystems: kinds.join("+"),
        freeUnits: `0-${maxK}`,
        calls: totals.calls,
        enospcFailures: totals.enospcFailures,
        failedAt: [...steps.entries()].map(([s, n]) => `${s}:${n}`).join(" "),
        rolledForward: totals.rolledForward,
        statusUnreadable: totals.statusUnreadable,
        duplicates: totals.duplicates,
        leaks: totals.leaks,
      });
    }
  });

  for (const kind of kinds) {
    it(`${kind}: each ADD/DEL succeeds durably or fails with 105 ENOSPC; the store stays loadable, and nothing leaks once space is back`, async () => {
      fsys = new SmallFs(kind);
      const f = fsys;
      const expected = new Set<string>(); // attachments that must be held in the end
      const mustDel = new Set<string>(); // failed ADDs / DELs the runtime will retry as DEL

      const counted = async (p: Promise<RunResult>): Promise<RunResult> => {
        totals.calls++;
        const r = await p;
        expect(r.signal, `call hung and was killed: ${r.stderr}`).toBeNull();
        return r;
      };

      const statusLoads = async (what: string): Promise<void> => {
        const r = await f.status();
        const ok = (r.code === 0 || r.code === 1) && r.json !== undefined;
        if (!ok) totals.statusUnreadable++;
        expect
          .soft(
            ok,
            `status --json must load ${what}; exit ${r.code}, stdout ${JSON.stringify(r.stdout.slice(0, 200))}, stderr ${r.stderr.trim()}`,
          )
          .toBe(true);
        if (r.json) {
          // It shows the store as the next call will see it.
          const counts = (v: StoreView): string => JSON.stringify([...v.ranges.values()].map((x) => [x.cidr, x.allocated]).sort());
          const shown = JSON.stringify(r.json.ranges.map((x: any) => [x.cidr, x.allocated]).sort());
          expect(shown, `status counts ${what}`).toBe(counts(await readStore(f)));
        }
      };

      /** One ADD or DEL on the full disk, with every check of one call. */
      const faultyCall = async (command: "ADD" | "DEL", id: string, k: number): Promise<boolean> => {
        const before = await readStore(f);
        const beforeBytes = storeBytes(f);
        const r = await counted(f.call(command, id));
        const after = await readStore(f);
        const p = problems(after);
        totals.duplicates += p.duplicates.length;
        expectConsistent(after, `after ${command} ${id} with ${k} units free: ${r.stdout}`);
        const oldRecs = new Set(before.records.keys());
        const newRecs = new Set(oldRecs);
        if (command === "ADD") newRecs.add(recName(id));
        else newRecs.delete(recName(id));
        const recs = new Set(after.records.keys());
        const same = (a: Set<string>, b: Set<string>): boolean => a.size === b.size && [...a].every((x) => b.has(x));

        if (r.code === 0) {
          // 3. A success is durable: in the log or a confirmed checkpoint, no interrupted commit left to finish.
          expect(pendingCheckpoint(f.netDir), `${command} ${id} answered with its checkpoint unconfirmed`).toBeNull();
          expect(same(recs, newRecs), `${command} ${id} succeeded: records`).toBe(true);
          if (command === "ADD") {
            const ips = r.json.ips.map((i: any) => String(i.address).replace(/\/\d+$/, ""));
            expect(after.records.get(recName(id))!.map((i) => i.address)).toEqual(ips);
          }
          return true;
        }
        expect(r.code, `${command} ${id}: exit status`).toBe(1);
        expect(r.json?.code, `${command} ${id} with ${k} units free: ${r.stdout}${r.stderr}`).toBe(105);
        expect(r.json.msg).toMatch(/ENOSPC/);
        totals.enospcFailures++;
        const step = stepOf(r.json.msg);
        steps.set(`${command}:${step}`, (steps.get(`${command}:${step}`) ?? 0) + 1);
        // The store is the old one or the new one, never a mix.
        const old = same(recs, oldRecs);
        expect(old || same(recs, newRecs), `after a failed ${command} ${id}: records ${[...recs].join(",")}`).toBe(true);
        if (old) {
          expect(canonical(after), `a failed ${command} that kept the old records must keep the old bitmaps`).toBe(canonical(before));
          expect(storeBytes(f), `failed ${command} ${id} changed store bytes`).toEqual(beforeBytes);
        } else {
          totals.rolledForward++;
        }
        // "the store was left as it was" must be true when the error says so.
        if (/left as it was|nothing was changed/.test(`${r.json.msg} ${r.json.details}`)) {
          expect
            .soft(
              canonical(after),
              `${command} ${id} failed with "${r.json.msg}" and says the store was left as it was, but the next call sees it changed`,
            )
            .toBe(canonical(before));
        }
        return false;
      };

      // A few pods first.
      for (const id of ["p0", "p1", "p2"]) {
        const r = await counted(f.call("ADD", id));
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expected.add(id);
      }

      for (let k = 0; k <= maxK; k++) {
        const free = f.fillLeaving(k);
        expect(free, `could not leave exactly ${k} units free`).toBe(k);

        // A new pod: ADD; if it fails, the runtime sends DEL (and retries it until it succeeds).
        const id = `new${k}`;
        if (await faultyCall("ADD", id, k)) expected.add(id);
        else {
          mustDel.add(id);
          if (await faultyCall("DEL", id, k)) mustDel.delete(id);
        }
        await statusLoads(`on a full disk after ADD ${id} (${k} free)`);

        // A running pod is deleted.
        const victim = k % 2 === 0 ? "p0" : "p1";
        if (expected.has(victim)) {
          expected.delete(victim);
          if (!(await faultyCall("DEL", victim, k))) mustDel.add(victim);
          await statusLoads(`on a full disk after DEL ${victim} (${k} free)`);
        }

        // Space is back: the next call succeeds.
        f.unfill();
        const back = await counted(f.call("ADD", `after${k}`));
        expect(back.code, `first call after freeing space: ${back.stdout}${back.stderr}`).toBe(0);
        expected.add(`after${k}`);
        for (const d of [...mustDel]) {
          const r = await counted(f.call("DEL", d));
          expect(r.code, `runtime's DEL ${d} after space is back: ${r.stdout}${r.stderr}`).toBe(0);
          mustDel.delete(d);
        }
        // Bring the victim back so later rounds have something to delete.
        if (!expected.has(victim)) {
          const r = await counted(f.call("ADD", victim));
          expect(r.code, r.stdout + r.stderr).toBe(0);
          expected.add(victim);
        }
        const view = await readStore(f);
        const p = problems(view);
        totals.leaks += p.leaks.length;
        totals.duplicates += p.duplicates.length;
        expect(view.tmpFiles, "temp files left behind").toEqual([]);
        expectConsistent(view, `round ${k} after space is back`);
        expect([...view.records.keys()].sort(), `round ${k}: exactly the attachments the runtime believes exist`).toEqual(
          [...expected].map(recName).sort(),
        );
        const st = await f.status();
        expect(st.code, st.stderr).toBe(0);
        expect(st.json.ranges.map((x: any) => x.allocated)).toEqual([expected.size, expected.size]);
      }
    });
  }
});

suite("read-only store", () => {
  it("ADD and DEL fail with 105 naming EROFS, status still reads the store, and after remount rw nothing changed and everything works", async () => {
    fsys = new SmallFs("tmpfs");
    const f = fsys;
    let calls = 0;
    const go = async (p: Promise<RunResult>): Promise<RunResult> => {
      calls++;
      const r = await p;
      expect(r.signal, `call hung: ${r.stderr}`).toBeNull();
      return r;
    };
    const held: Record<string, any> = {};
    for (const id of ["p0", "p1"]) {
      const r = await go(f.call("ADD", id));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      held[id] = r.json;
    }
    const bytes = storeBytes(f);
    f.remount("ro");
    let erofs = 0;
    const fails = async (command: string, id: string, extra: Record<string, unknown> = {}): Promise<void> => {
      const r = await go(f.call(command, id, extra));
      expect(r.code, `${command} ${id} on a read-only store: ${r.stdout}${r.stderr}`).toBe(1);
      expect(r.json?.code, r.stdout).toBe(105);
      expect(r.json.msg).toMatch(/EROFS/);
      expect(r.json.details).toMatch(/read-only/);
      erofs++;
    };
    await fails("ADD", "new");
    await fails("DEL", "p0");
    // A repeated ADD / a CHECK change nothing: succeeding or failing with 105 EROFS are both fine.
    for (const [command, extra] of [
      ["ADD", {}],
      ["CHECK", { prevResult: held.p1 }],
    ] as const) {
      const r = await go(f.call(command, "p1", extra));
      if (r.code !== 0) {
        expect(r.json?.code, `${command} p1 on a read-only store: ${r.stdout}`).toBe(105);
        expect(r.json.msg).toMatch(/EROFS/);
      } else if (command === "ADD") expect(r.json.ips).toEqual(held.p1.ips);
    }
    const st = await f.status();
    calls++;
    expect(st.code, `status on a read-only store: ${st.stderr}`).toBe(0);
    expect(st.json.ranges.map((x: any) => x.allocated)).toEqual([2, 2]);
    const owners = st.json.ranges.flatMap((x: any) => x.addresses.filter((a: any) => a.owner).map((a: any) => a.owner.containerID));
    expect(owners.sort()).toEqual(["p0", "p0", "p1", "p1"]);
    expect(st.stderr).toMatch(/without the lock/);

    f.remount("rw");
    expect(storeBytes(f), "the read-only episode changed the store").toEqual(bytes);
    expect(existsSync(join(f.netDir, "lock")), "lock left behind").toBe(false);
    const add = await go(f.call("ADD", "new"));
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const del = await go(f.call("DEL", "p0"));
    expect(del.code, del.stdout + del.stderr).toBe(0);
    const view = await readStore(f);
    expectConsistent(view, "after remount rw");
    expect([...view.records.keys()].sort()).toEqual([recName("new"), recName("p1")]);
    record("read-only store", "1. no address held twice", {
      calls,
      erofsFailures: erofs,
      storeChanged: 0,
      duplicates: problems(view).duplicates.length,
      leaks: problems(view).leaks.length,
    });
  });
});

suite("a success is durable", () => {
  it("when ADD and DEL answer, the log holds their record and the store as the next call loads it holds the change", async () => {
    fsys = new SmallFs("tmpfs");
    const f = fsys;
    for (let i = 0; i < 5; i++) {
      const id = `pod${i}`;
      const r = await f.call("ADD", id);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(readdirSync(f.netDir).filter((n) => n.startsWith(".tmp-"))).toEqual([]);
      expect(logNames(f.dataDir, id), `${id}'s record is not in the log`).toBe(true);
      expect(pendingCheckpoint(f.netDir)).toBeNull();
      const view = await readStore(f);
      const ips = view.records.get(recName(id))!;
      expect(ips.map((x) => x.address)).toEqual(r.json.ips.map((x: any) => String(x.address).replace(/\/\d+$/, "")));
      for (const ip of ips) expect(view.ranges.get(ip.cidr)!.set.has(ip.address), `${ip.address} not marked`).toBe(true);
      expectConsistent(view, `after ADD ${id}`);
    }
    const records = logRecords(f.dataDir).length;
    const del = await f.call("DEL", "pod2");
    expect(del.code).toBe(0);
    // The DEL's record follows, carrying pod2's record whole.
    const recs = logRecords(f.dataDir);
    expect(recs).toHaveLength(records + 1);
    expect(recs.at(-1)!.payload).toMatch(/"del":\[\["podnet","pod2","eth0"/);
    const view = await readStore(f);
    expect(view.records.has(recName("pod2"))).toBe(false);
    expectConsistent(view, "after DEL pod2");
    expect([...view.ranges.values()].map((r) => r.allocated)).toEqual([4, 4]);
  });
});
