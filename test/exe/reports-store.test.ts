// Every reproduction of the outside report on the store, concurrency and
// operations (../shared/reports/adversarial-store-d173de3.md, issue #9) as a test
// of its own, through the built executable. Each asserts what the report says
// should happen, so it fails on the build the report was written against (d173de3:
// PODCIDR_BIN=/tmp/old-podcidr-ipam) and passes now. The helpers find the store in
// either layout (test/helpers/reports.ts), so that on the old build a test fails
// for its bug; where it can only fail there because a path moved, it says so.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
  chmodSync,
} from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { addErr, addOk, addrs, call, ciliumNode, delOk, replaceNode, snapshot, statusArgs, statusJson } from "../helpers/exe";
import { BIN, ROOT, Sandbox, cli, collect, run } from "../helpers/plugin";
import { expectCniError } from "../helpers/protocol";
import {
  type Spawned,
  cniEnv,
  holdings,
  journals,
  legacyLayout,
  list,
  lockPid,
  plantLock,
  procStat,
  rangeFile,
  recDir,
  recordFile,
  releaseLock,
  sdir,
  sleep,
  start,
  straceFsync,
  until,
} from "../helpers/reports";

let sb: Sandbox;
/** Processes a test started (lock holders, stopped plugins): woken and killed after it. */
const procs: ChildProcess[] = [];

beforeEach(() => {
  sb = new Sandbox();
  sb.writeNode(ciliumNode(["10.0.2.0/24"]));
});
afterEach(() => {
  for (const p of procs.splice(0)) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(p.pid!, "SIGCONT");
        p.kill("SIGKILL");
      } catch {
        /* gone */
      }
    }
  }
  sb.cleanup();
});

/** A live process that holds a planted lock for as long as the test wants. */
function sleeper(): ChildProcess {
  const p = spawn("sleep", ["600"], { stdio: "ignore" });
  procs.push(p);
  return p;
}

/** Start an ADD without waiting for it (config as the sandbox's, plus `ipam`). */
function startAdd(id: string, ipam: Record<string, unknown> = {}, wrapper: string[] = []): Spawned {
  const s = start(sb.conf("1.1.0", ipam), cniEnv("ADD", id), wrapper);
  procs.push(s.child);
  return s;
}

/** The config file `repair --conf` and `status --conf` read. */
function confFile(ipam: Record<string, unknown> = {}): string {
  const path = join(sb.dir, "podnet.conf");
  writeFileSync(path, JSON.stringify(sb.conf("1.1.0", ipam)));
  return path;
}

/** Wait until `n` calls have queued for the lock (a ticket each in queue/). */
async function queued(n: number): Promise<void> {
  expect(await until(() => list(join(sdir(sb), "queue")).length >= n, 15_000), `${n} call(s) never queued for the lock`).toBe(true);
}

function first(res: any): string {
  return addrs(res)[0]!;
}

describe("F3: ADD reads the node file under the lock", () => {
  it("store F3: ADD reads the node file under the lock: a CIDR removed while it waited for the lock is not used", async () => {
    await addOk(sb, "c0");
    const holder = sleeper();
    plantLock(sdir(sb), holder.pid!);
    const pending = call(sb, "ADD", "c1", { ipam: { lockTimeout: 30 } });
    await queued(1);
    await sleep(300);
    replaceNode(sb, ciliumNode(["10.0.9.0/24"]));
    await sleep(500);
    releaseLock(sdir(sb));
    const r = await pending;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(first(r.json)).toBe("10.0.9.2");
    // 10.0.2.0/24 keeps c0 only: nothing new in the CIDR the node no longer has.
    expect(holdings(sb).byContainer.get("c1")).toEqual(["10.0.9.2"]);
  });

  it("store F3: router, health and ingress IPs added to the node file while ADD waited for the lock are not handed out", async () => {
    await addOk(sb, "c0");
    const holder = sleeper();
    plantLock(sdir(sb), holder.pid!);
    const pending = call(sb, "ADD", "c1", { ipam: { lockTimeout: 30 } });
    await queued(1);
    await sleep(300);
    // 10.0.2.3, .4 and .5 are the next free addresses: the node now uses them itself.
    replaceNode(sb, ciliumNode(["10.0.2.0/24"], { router: ["10.0.2.3"], health: { ipv4: "10.0.2.4" }, ingress: { ipv4: "10.0.2.5" } }));
    await sleep(500);
    releaseLock(sdir(sb));
    const r = await pending;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(first(r.json)).toBe("10.0.2.6");
  });
});

describe("F5: repair keeps what a damaged bitmap still says", () => {
  /** Python's json.dumps with its default separators, as the report's one-liner writes the file back. */
  function pyDumps(v: unknown): string {
    if (Array.isArray(v)) return `[${v.map(pyDumps).join(", ")}]`;
    if (v !== null && typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyDumps(x)}`).join(", ")}}`;
    return JSON.stringify(v);
  }

  it("store F5: repair keeps the set bits of a bitmap that fails its checksum as unowned and lists them, so new1 does not get c3's address", async () => {
    for (const i of [1, 2, 3, 4, 5]) await addOk(sb, `c${i}`);
    // c3 holds 10.0.2.4. Its record is lost; status still shows the address taken.
    expect(holdings(sb).byContainer.get("c3")).toEqual(["10.0.2.4"]);
    unlinkSync(recordFile(sb, "c3"));
    // python3 -c "...;b=bytearray(base64.b64decode(o['bits']));b[20]^=1;o['bits']=base64.b64encode(b).decode();open(p,'w').write(json.dumps(o))"
    const p = rangeFile(sb, "10.0.2.0/24");
    const o = JSON.parse(readFileSync(p, "utf8"));
    const b = Buffer.from(o.bits, "base64");
    b[20] = b[20]! ^ 1;
    o.bits = b.toString("base64");
    writeFileSync(p, pyDumps(o));

    const rep = await cli(["repair", "--conf", confFile()]);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    // The report names c3's address as possibly live (and the flipped bit, 10.0.2.161, as well).
    const kept = rep.stdout.split("\n").find((l) => l.includes("no record holds them"));
    expect(kept, rep.stdout).toBeDefined();
    expect(kept).toContain("10.0.2.4");
    expect(kept).toContain("10.0.2.161");

    const res = await addOk(sb, "new1");
    expect(first(res)).not.toBe("10.0.2.4");
    expect(first(res)).toBe("10.0.2.7");
  });
});

describe("F6: a symlinked store folder", () => {
  it("store F6: the message for a symlinked store folder says how to fix it without losing state, never just \"Remove it\"", async () => {
    await addOk(sb, "a1");
    await addOk(sb, "a2");
    const dir = sdir(sb);
    const real = join(sb.dir, "moved-store");
    renameSync(dir, real);
    symlinkSync(real, dir);

    for (const cmd of ["ADD", "DEL"]) {
      const r = await call(sb, cmd, "z2");
      const e = expectCniError(r, 103, "is not a folder");
      const text = `${e.msg} ${e.details}`;
      expect(text).not.toMatch(/Remove it\.?\s*$/);
      expect(text).toContain("mv");
      expect(text).toContain("ipam.dataDir");
      expect(text).toMatch(/never delete it/);
    }
    // Following the advice (the real folder back in its place) keeps every address.
    unlinkSync(dir);
    renameSync(real, dir);
    expect(first(await addOk(sb, "z2"))).toBe("10.0.2.4");
  });
});

describe("F9: a node file written in place", () => {
  it("store F9: an empty node file is reported as empty, by ADD (11) and by STATUS (50), not as missing", async () => {
    await addOk(sb, "c0");
    writeFileSync(sb.nodeFile, "");
    const a = expectCniError(await call(sb, "ADD", "c1"), 11, `node file ${sb.nodeFile} is empty`);
    expect(a.msg).not.toContain("does not exist");
    const s = expectCniError(await run({ command: "STATUS", stdin: sb.conf() }), 50, `node file ${sb.nodeFile} is empty`);
    expect(s.msg).not.toContain("does not exist");
  });

  it("store F9: README's install snippet writes the node file to a temp file and mv's it into place", () => {
    // The README is not part of the build: PODCIDR_README=<file> checks another one (the old one: git show d173de3:README.md).
    const readme = readFileSync(process.env.PODCIDR_README ?? join(ROOT, "README.md"), "utf8");
    const writes = readme.split("\n").filter((l) => /kubectl get .*-o json\s*>/.test(l));
    expect(writes.length).toBeGreaterThan(0);
    for (const l of writes) {
      const m = /-o json\s*>\s*("?)(\S+?)\1(\s|$)/.exec(l);
      expect(m, l).not.toBeNull();
      const target = m![2]!;
      expect(target, `writes the node file in place: ${l}`).toMatch(/\.tmp$/);
      expect(l, `no mv of ${target} into place: ${l}`).toMatch(new RegExp(`&& mv "?${target.replace(/[$.*+?^()[\]{}|\\]/g, "\\$&")}"? `));
    }
  });
});

describe("F10: repair --dry-run", () => {
  /** A store with a pending journal (of c3's ADD), a temp file and an orphan lock folder. */
  async function pendingStore(): Promise<void> {
    await addOk(sb, "c1");
    await addOk(sb, "c2");
    const dir = sdir(sb);
    const before = snapshot(dir);
    await addOk(sb, "c3");
    const after = snapshot(dir);
    // The files c3's ADD changed, with their new content: what its journal held.
    const writes: { file: string; content: string | null }[] = [];
    for (const [rel, v] of after) {
      if (before.get(rel) === v || !v.startsWith("file ")) continue;
      writes.push({ file: rel, content: readFileSync(join(dir, rel), "utf8") });
    }
    expect(writes.map((w) => w.file).sort()).toEqual([rangeFile(sb, "10.0.2.0/24").slice(dir.length + 1), recordFile(sb, "c3").slice(dir.length + 1)].sort());
    // Back to before c3's commit was applied, with its journal left behind (a SIGKILL mid-commit).
    for (const w of writes) {
      const old = before.get(w.file);
      if (old === undefined) unlinkSync(join(dir, w.file));
      else writeFileSync(join(dir, w.file), Buffer.from(old.split(" ")[2]!, "base64"));
    }
    const body = JSON.stringify({ format: "podcidr-ipam/journal", version: 1, writes });
    const journal = legacyLayout(sb) ? "journal.json" : `journal-${process.pid}-pending.json`;
    writeFileSync(join(dir, journal), `${body.slice(0, -1)},"crc32":"${crc32(body).toString(16).padStart(8, "0")}"}\n`, { mode: 0o600 });
    writeFileSync(join(dir, ".tmp-range-10.0.2.0_24.json-99999-x"), "half a file", { mode: 0o600 });
    mkdirSync(join(dir, "lock"), { mode: 0o700 });
    const hourAgo = Date.now() / 1000 - 3600;
    utimesSync(join(dir, "lock"), hourAgo, hourAgo);
  }

  it("store F10: repair --dry-run changes no byte, with a pending journal, temp files and an orphan lock present", async () => {
    await pendingStore();
    const before = snapshot(sb.dataDir);
    const nodeSide = snapshot(`${sb.nodeFile}.claims`);
    const r = await cli(["repair", "--dry-run", "--conf", confFile()]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("dry run");
    expect(snapshot(sb.dataDir)).toEqual(before);
    expect(snapshot(`${sb.nodeFile}.claims`)).toEqual(nodeSide);
  });

  // BUG: with a pending journal, `repair --dry-run` reads it as an overlay (3 records, nothing
  // to mark) but never mentions it: it prints "Nothing to repair." instead of "would replay journal-....json".
  it.fails("store F10: repair --dry-run reads the pending journal as an overlay and says it would replay it", async () => {
    await pendingStore();
    const r = await cli(["repair", "--dry-run", "--json", "--conf", confFile()]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    // Seen through the journal, c3's record holds 10.0.2.4 and its bit is set: nothing to mark.
    const range = r.json.ranges.find((x: any) => x.cidr === "10.0.2.0/24");
    expect(range.records).toBe(3);
    expect(range.marked).toEqual([]);
    const text = await cli(["repair", "--dry-run", "--conf", confFile()]);
    expect(text.stdout).toMatch(/[Ww]ould replay .*journal/);
  });
});

describe("F11: a record copied by hand to another name", () => {
  async function copied(): Promise<void> {
    await addOk(sb, "c1");
    await addOk(sb, "c2"); // 10.0.2.3
    cpSync(recordFile(sb, "c2"), recordFile(sb, "c9"));
  }

  it("store F11: DEL of a record copied by hand to another name frees nobody's address, and repair quarantines the copy", async () => {
    await copied();
    await call(sb, "DEL", "c9");
    // c2 still holds 10.0.2.3: its record is there and its bit is set.
    expect(existsSync(recordFile(sb, "c2"))).toBe(true);
    const h = holdings(sb);
    expect(h.byContainer.get("c2")).toEqual(["10.0.2.3"]);
    expect(h.unmarked).toEqual([]);
    expect(first(await addOk(sb, "c3"))).toBe("10.0.2.4");

    const rep = await cli(["repair", "--conf", confFile()]);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
    expect(rep.stdout).toMatch(new RegExp(`Quarantined \\S*c9@eth0\\.json: .*holds the record of \\S*c2`));
    expect(existsSync(recordFile(sb, "c9"))).toBe(false);
    expect(existsSync(recordFile(sb, "c2"))).toBe(true);
  });

  // BUG: DEL of the copied name answers 0 ("nothing to release", the copy logged as a
  // skipped damaged file), not 103 as the report asks. (The code follows the protocol
  // report's F3 instead: DEL is best-effort past damaged files. The owner of src/ decides.)
  it.fails("store F11: DEL of a record copied by hand to another name fails with 103", async () => {
    await copied();
    const r = await call(sb, "DEL", "c9");
    expectCniError(r, 103, "c9@eth0.json", "holds the record of");
  });
});

describe("F12: status and lock diagnostics", () => {
  it("store F12: status with a missing or non-JSON node file does not call every range orphaned", async () => {
    await addOk(sb, "c1");
    for (const state of ["missing", "not JSON"]) {
      if (state === "missing") unlinkSync(sb.nodeFile);
      else writeFileSync(sb.nodeFile, "{not json");
      const s = await statusJson(sb);
      expect(s.ranges.map((r: any) => [r.cidr, r.orphaned])).toEqual([["10.0.2.0/24", false]]);
      expect(s.problems.filter((p: string) => p.includes("no longer in the node file"))).toEqual([]);
      const text = await cli(["status", ...statusArgs(sb)]);
      expect(text.stdout).not.toContain("(orphaned");
    }
  });

  it("store F12: a stray range-notes.json does not hide the status report", async () => {
    await addOk(sb, "c1");
    writeFileSync(join(sdir(sb), "range-notes.json"), "my notes\n");
    const r = await cli(["status", "--json", "--all-addresses", ...statusArgs(sb)]);
    expect(r.json, r.stdout + r.stderr).toBeDefined();
    expect(r.json.ranges.map((x: any) => [x.cidr, x.allocated])).toEqual([["10.0.2.0/24", 1]]);
    expect(r.json.problems.some((p: string) => p.includes("range-notes.json"))).toBe(true);
  });

  it("store F12: after an overlap, the active range does not count the orphan's addresses again", async () => {
    await addOk(sb, "c0");
    await addOk(sb, "c1");
    replaceNode(sb, ciliumNode(["10.0.0.0/22"]));
    for (const id of ["d1", "d2", "d3"]) await addOk(sb, id);
    const r = await cli(["status", ...statusArgs(sb)]);
    const lines = r.stdout.split("\n");
    // 5 pods and 1 gateway: 3 pods + the gateway in the /22, the orphan's 2 pods in its own line.
    expect(lines, r.stdout).toContain("IPv4: 4/1022 allocated from 10.0.0.0/22");
    expect(lines, r.stdout).toContain("IPv4: 2/254 allocated from 10.0.2.0/24 (orphaned: no longer in the node file)");
  });

  it("store F12: a folder named lock.owner is cleared, and ADD and repair run", async () => {
    await addOk(sb, "c1");
    mkdirSync(join(sdir(sb), "lock.owner"));
    const r = await call(sb, "ADD", "c2", { ipam: { lockTimeout: 10 } });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(first(r.json)).toBe("10.0.2.3");
    const rep = await cli(["repair", "--conf", confFile({ lockTimeout: 10 })]);
    expect(rep.code, rep.stdout + rep.stderr).toBe(0);
  });

  it("store F12: a stray file inside lock/ is cleared, and ADD runs", async () => {
    await addOk(sb, "c1");
    mkdirSync(join(sdir(sb), "lock"));
    writeFileSync(join(sdir(sb), "lock", "stray"), "x");
    const r = await call(sb, "ADD", "c2", { ipam: { lockTimeout: 10 } });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(existsSync(join(sdir(sb), "lock"))).toBe(false);
    const again = await call(sb, "ADD", "c3", { ipam: { lockTimeout: 10 } });
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  it("store F12: the store folder moved away while a call waits ends that call with a message saying so", async () => {
    await addOk(sb, "c1");
    const holder = sleeper();
    plantLock(sdir(sb), holder.pid!);
    const t0 = Date.now();
    const pending = call(sb, "ADD", "c2", { ipam: { lockTimeout: 15 } });
    await queued(1);
    const dir = sdir(sb);
    renameSync(dir, join(sb.dir, "elsewhere"));
    const r = await pending;
    const e = expectCniError(r, 105, "disappeared while this call waited");
    expect(e.msg).toContain(dir);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("store F12: the EACCES hint names the caller's uid and does not assume the plugin runs as root", async () => {
    await addOk(sb, "c1");
    chmodSync(sb.dir, 0o755);
    const r = await collect(
      (() => {
        const child = spawn(BIN, [], { env: cniEnv("ADD", "c2"), uid: 65534, gid: 65534, stdio: ["pipe", "pipe", "pipe"] });
        child.stdin!.end(JSON.stringify(sb.conf()));
        return child;
      })(),
    );
    const e = expectCniError(r, 105, "EACCES");
    expect(e.details).toContain("uid 65534");
    expect(e.details).not.toContain("runs as root from the container runtime");
  });

  it("store F12: a lock folder stamped in the future (the clock stepped back) is recovered", async () => {
    await addOk(sb, "c1");
    mkdirSync(join(sdir(sb), "lock"));
    const hourAhead = Date.now() / 1000 + 3600;
    utimesSync(join(sdir(sb), "lock"), hourAhead, hourAhead);
    const t0 = Date.now();
    const r = await call(sb, "ADD", "c2", { ipam: { lockTimeout: 10 } });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000);
  });

  it("store F12: cool-down entries are not kept with reuseCooldown 0, and DEL prunes expired ones", async () => {
    const released = (): string[] => Object.keys(JSON.parse(readFileSync(rangeFile(sb, "10.0.2.0/24"), "utf8")).released);
    for (const id of ["a", "b", "c"]) await addOk(sb, id);
    await delOk(sb, "a");
    await delOk(sb, "b");
    expect(released()).toEqual([]);
    // With a 1 s cool-down, DEL records the release and a later DEL drops what has cooled down.
    const cool = { ipam: { reuseCooldown: 1 } };
    for (const id of ["d", "e", "f"]) await addOk(sb, id, cool);
    await delOk(sb, "d", cool);
    await delOk(sb, "e", cool);
    expect(released().length).toBe(2);
    await sleep(1200);
    await delOk(sb, "f", cool);
    expect(released().length).toBe(1);
  });
});
