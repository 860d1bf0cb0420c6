// Guarantee 5, against the built executable: nobody escapes the data dir.
// Hostile network names, container IDs and interface names; symlinks, FIFOs and
// files planted in the store folder; a node file that is a FIFO, a folder, a
// huge file or a character device. The plugin must never write outside its
// folder, never follow a link it did not create, and never hang.
import { execFileSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { type ExpectStatic, afterAll, afterEach, describe, expect, it } from "vitest";
import { type RunResult, Sandbox, run } from "../helpers/plugin";
import { changes, snapshot } from "../helpers/snapshot";
import { record } from "./report";

const NETWORK = "podnet";
const globalExpect = expect;
/** Only bounds a hang (reported as one): no kill here attacks a call mid-way. */
const CALL_BOUND_MS = 15_000;

const figures = { cases: 0, calls: 0, outsideWrites: 0, hangs: 0 };

afterAll(() => {
  record("escape attempts", "5. nobody escapes the data dir", {
    cases: figures.cases,
    calls: figures.calls,
    outsideWrites: figures.outsideWrites,
    hangs: figures.hangs,
  });
});

/**
 * A sandbox whose data dir sits two folders deep, beside an `outside` folder
 * that holds the targets of planted links:
 *   <dir>/node.json  <dir>/outside/{dir/, file.json}  <dir>/d1/d2/data/_store/
 */
class World {
  readonly sb = new Sandbox("ciliumnode-cluster-pool.json");
  readonly dataDir = join(this.sb.dir, "d1", "d2", "data");
  /** The store folder (shared by every network). */
  readonly netDir = join(this.dataDir, "_store");
  /** This network's records in it. */
  readonly attDir = join(this.netDir, "attachments", NETWORK);
  readonly outside = join(this.sb.dir, "outside");
  readonly outsideDir = join(this.outside, "dir");
  readonly outsideFile = join(this.outside, "file.json");

  /** Concurrent tests pass their own `expect` (the global one cannot be soft there). */
  constructor(readonly expect: ExpectStatic = globalExpect) {
    mkdirSync(this.outsideDir, { recursive: true });
    writeFileSync(join(this.outsideDir, "keep.txt"), "outside, not the plugin's\n");
    writeFileSync(this.outsideFile, "outside, not the plugin's\n");
  }

  conf(top: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): Record<string, unknown> {
    return this.sb.conf("1.1.0", { dataDir: this.dataDir, ...ipam }, top);
  }

  async call(
    command: string,
    containerID: string,
    o: { ifname?: string; top?: Record<string, unknown>; ipam?: Record<string, unknown>; args?: string } = {},
  ): Promise<RunResult> {
    figures.calls++;
    const started = Date.now();
    const r = await run({
      command,
      containerID,
      ifname: o.ifname ?? "eth0",
      args: o.args,
      stdin: this.conf(o.top, o.ipam),
      killAfterMs: CALL_BOUND_MS,
    });
    if (r.signal) figures.hangs++;
    // Soft: report the hang and go on, so the rest of the case still runs.
    this.expect
      .soft(r.signal, `${command} ${containerID} hung for ${Date.now() - started} ms and was killed; stderr: ${r.stderr}`)
      .toBeNull();
    return r;
  }

  /** Everything in the sandbox except the store folder. */
  outsideSnap(): Map<string, string> {
    const store = join("d1", "d2", "data");
    return snapshot(this.sb.dir, { stat: true, skip: (rel) => rel === store || rel.startsWith(`${store}/`) });
  }

  /** The store, without the lock's own files (whose mtimes change on every call). */
  storeSnap(): Map<string, string> {
    return snapshot(this.netDir, { stat: true, skip: (rel) => rel.startsWith("lock") });
  }

  cleanup(): void {
    this.sb.cleanup();
  }
}

const worlds: World[] = [];
function world(): World {
  const w = new World();
  worlds.push(w);
  return w;
}
afterEach(() => {
  for (const w of worlds.splice(0)) w.cleanup();
});

function expectNoOutsideWrite(w: World, before: Map<string, string>, what: string): void {
  const d = changes(before, w.outsideSnap());
  if (d.length) figures.outsideWrites++;
  w.expect(d, `${what}: something outside the data dir changed`).toEqual([]);
}

function expectCode(r: RunResult, codes: number[], what: string, ex: ExpectStatic = expect): void {
  if (r.signal) return; // a hang, already reported
  if (codes.includes(0) && r.code === 0) return;
  ex(r.code, `${what}: ${r.stdout}${r.stderr}`).toBe(1);
  ex(r.json, `${what}: stdout must be one CNI error object: ${r.stdout}`).toBeDefined();
  ex(codes, `${what}: code ${r.json.code} "${r.json.msg}"`).toContain(r.json.code);
  ex(String(r.json.msg).length).toBeGreaterThan(0);
}

// --- hostile names -----------------------------------------------------------

describe("hostile names", () => {
  it("network names, container IDs and interface names that could make a path are refused before any file is touched", async () => {
    const w = world();
    expect((await w.call("ADD", "live")).code).toBe(0);
    const abs = join(w.sb.dir, "abs-target");
    const badNames = [
      "..",
      ".",
      "../escape",
      "../../../../escape",
      "a/../../escape",
      "a/b",
      "/",
      abs,
      `${abs}/x`,
      "x".repeat(201),
      "ネット",
      "net@x",
      "net x",
      "net\n",
      "-net",
      ".hidden",
      "net\\..\\x",
      "%2e%2e",
    ];
    const badIfnames = [
      "..",
      ".",
      "/",
      "../x",
      "../../../../etc",
      "a/b",
      abs,
      "x".repeat(16),
      "eth0:1",
      "eth 0",
      "eth\t0",
      "eth\n0",
      "\u0007",
    ];
    const prevResult = { cniVersion: "1.1.0", ips: [{ address: "10.0.2.2/24" }] };
    let n = 0;
    const before = w.outsideSnap();
    const store = w.storeSnap();
    for (const name of badNames) {
      for (const command of ["ADD", "DEL", "CHECK"]) {
        const r = await w.call(command, "ctr1", { top: { name, ...(command === "CHECK" ? { prevResult } : {}) } });
        expectCode(r, [7], `${command} with network name ${JSON.stringify(name)}`);
        n++;
      }
      // The same names as container IDs.
      for (const command of ["ADD", "DEL", "CHECK"]) {
        const r = await w.call(command, name, { top: command === "CHECK" ? { prevResult } : {} });
        expectCode(r, [4], `${command} with CNI_CONTAINERID ${JSON.stringify(name)}`);
        n++;
      }
    }
    for (const ifname of badIfnames) {
      for (const command of ["ADD", "DEL", "CHECK"]) {
        const r = await w.call(command, "ctr1", { ifname, top: command === "CHECK" ? { prevResult } : {} });
        expectCode(r, [4], `${command} with CNI_IFNAME ${JSON.stringify(ifname)}`);
        n++;
      }
    }
    expectNoOutsideWrite(w, before, "hostile names");
    expect(changes(store, w.storeSnap()), "a refused call changed the store").toEqual([]);
    expect(existsSync(abs)).toBe(false);
    expect(readdirSync(w.dataDir)).toEqual(["_store"]);
    figures.cases += n;
  });

  it("odd but valid names (unicode or @ in the interface, a 200-character ID, a hostile pod name) stay inside attachments/", async () => {
    const w = world();
    expect((await w.call("ADD", "live")).code).toBe(0);
    const before = w.outsideSnap();
    const cases: { id: string; ifname: string; args?: string }[] = [
      { id: "ctr-a", ifname: "eth@0" },
      { id: "ctr-b", ifname: "e@.." },
      { id: "ctr-c", ifname: "äöü0" },
      { id: "ctr-d", ifname: "..." },
      { id: "ctr-e", ifname: "eth0", args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=../../..;K8S_POD_NAME=../../etc/passwd" },
      { id: "c".repeat(200), ifname: "abcdefghijklmno" },
      // 15 characters but 30 / 45 bytes: longer than Linux allows an interface name (IFNAMSIZ), so refusing it (4) is fine too.
      { id: "d".repeat(200), ifname: "ü".repeat(15) },
      { id: "e".repeat(200), ifname: "网".repeat(15) },
    ];
    for (const c of cases) {
      const what = `ADD ${c.id.slice(0, 20)}${c.id.length > 20 ? `...(${c.id.length})` : ""} ifname ${JSON.stringify(c.ifname)}`;
      const r = await w.call("ADD", c.id, { ifname: c.ifname, args: c.args });
      expectCode(r, [0, 4], what);
      if (r.code === 0) {
        expect(readdirSync(w.attDir), what).toContain(`${c.id}@${c.ifname}.json`);
        const d = await w.call("DEL", c.id, { ifname: c.ifname });
        expect(d.code, `DEL after ${what}: ${d.stdout}`).toBe(0);
      }
      figures.cases++;
    }
    // GC whose valid-attachments list holds hostile entries: keeps the live pod, touches nothing else.
    const gc = await run({
      command: "GC",
      path: "/opt/cni/bin",
      stdin: w.conf({
        "cni.dev/valid-attachments": [
          { containerID: "live", ifname: "eth0" },
          { containerID: "../../x", ifname: "../y" },
          { containerID: "/etc", ifname: "passwd" },
        ],
      }),
      killAfterMs: CALL_BOUND_MS,
    });
    figures.calls++;
    figures.cases++;
    expect(gc.signal).toBeNull();
    expectCode(gc, [0, 7], "GC with hostile valid-attachments");
    expect(readdirSync(w.attDir)).toEqual(["live@eth0.json"]);
    expectNoOutsideWrite(w, before, "odd names");
    expect(readdirSync(w.dataDir)).toEqual(["_store"]);
  });
});

// --- things planted in the store folder ----------------------------------------

interface PlantCase {
  name: string;
  /** Plant it. The world already holds pod "live". */
  plant(w: World): void;
  /** Allowed outcomes of ADD (a new pod) and DEL (of "live"): 0 = success. */
  add: number[];
  del: number[];
}

function crc32(s: string): string {
  let crc = -1;
  for (const b of Buffer.from(s, "utf8")) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
  }
  return ((crc ^ -1) >>> 0).toString(16).padStart(8, "0");
}

/** A store file as the plugin writes it: JSON with a crc32 of the rest. */
function seal(o: Record<string, unknown>): string {
  const body = JSON.stringify(o);
  return `${body.slice(0, -1)},"crc32":"${crc32(body)}"}\n`;
}

/**
 * A valid, checksummed journal whose replay would create attachments/evil@eth0.json
 * holding the live pod's addresses: if the plugin reads it through the planted
 * link, the record appears (and an address is held twice).
 */
function evilJournal(w: World): string {
  const live = JSON.parse(readFileSync(join(w.attDir, "live@eth0.json"), "utf8"));
  const evil = seal({
    format: "podcidr-ipam/attachment",
    version: 2,
    network: NETWORK,
    containerID: "evil",
    ifname: "eth0",
    netns: "/x",
    namespace: "",
    pod: "",
    createdAt: new Date().toISOString(),
    ips: live.ips,
  });
  return seal({ format: "podcidr-ipam/journal", version: 1, writes: [{ file: `attachments/${NETWORK}/evil@eth0.json`, content: evil }] });
}

const RANGE4 = "range-10.0.2.0_24.json";
/** A pending journal, as a committer names its own. */
const JOURNAL = "journal-1-planted.json";

const plantCases: PlantCase[] = [
  {
    name: "attachments/ is a symlink to an outside folder",
    plant: (w) => {
      rmSync(join(w.netDir, "attachments"), { recursive: true });
      symlinkSync(w.outsideDir, join(w.netDir, "attachments"));
    },
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "attachments/<network>/ is a symlink to an outside folder",
    plant: (w) => {
      rmSync(w.attDir, { recursive: true });
      symlinkSync(w.outsideDir, w.attDir);
    },
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "the store folder is a symlink to an outside folder",
    plant: (w) => {
      renameSync(w.netDir, join(w.dataDir, "moved-away"));
      symlinkSync(w.outsideDir, w.netDir);
    },
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: `${RANGE4} is a symlink to an outside file (a copy of the real one)`,
    plant: (w) => {
      const p = join(w.netDir, RANGE4);
      writeFileSync(w.outsideFile, readFileSync(p));
      rmSync(p);
      symlinkSync(w.outsideFile, p);
    },
    add: [103, 105],
    del: [0, 103, 105], // DEL releases the record and leaves a bitmap it cannot read for repair
  },
  {
    name: `${RANGE4} is a FIFO`,
    plant: (w) => {
      rmSync(join(w.netDir, RANGE4));
      execFileSync("mkfifo", [join(w.netDir, RANGE4)]);
    },
    add: [103, 105],
    del: [0, 103, 105], // DEL releases the record and leaves a bitmap it cannot read for repair
  },
  {
    name: "the attachment record of the pod is a symlink to an outside file (a copy of the real one)",
    plant: (w) => {
      const p = join(w.attDir, "live@eth0.json");
      writeFileSync(w.outsideFile, readFileSync(p));
      rmSync(p);
      symlinkSync(w.outsideFile, p);
    },
    add: [0, 103, 105], // a new pod does not read live's record
    del: [103, 105],
  },
  {
    name: "a journal is a symlink to an outside file holding a valid journal",
    plant: (w) => {
      writeFileSync(w.outsideFile, evilJournal(w));
      symlinkSync(w.outsideFile, join(w.netDir, JOURNAL));
    },
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "a journal is a FIFO",
    plant: (w) => execFileSync("mkfifo", [join(w.netDir, JOURNAL)]),
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "lock is a symlink to an outside folder (fresh mtime)",
    plant: (w) => symlinkSync(w.outsideDir, join(w.netDir, "lock")),
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "lock is a symlink to an outside folder (stale mtime)",
    plant: (w) => {
      const old = new Date(Date.now() - 3600_000);
      utimesSync(w.outsideDir, old, old);
      symlinkSync(w.outsideDir, join(w.netDir, "lock"));
    },
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "lock.owner is a symlink to an outside file",
    plant: (w) => symlinkSync(w.outsideFile, join(w.netDir, "lock.owner")),
    add: [0, 103, 105],
    del: [0, 103, 105],
  },
  {
    name: "lock.owner is a FIFO",
    plant: (w) => execFileSync("mkfifo", [join(w.netDir, "lock.owner")]),
    add: [0, 103, 105],
    del: [0, 103, 105],
  },
  {
    name: "lock.reap is a symlink to an outside folder, beside an orphaned lock",
    plant: (w) => {
      const old = new Date(Date.now() - 3600_000);
      utimesSync(w.outsideDir, old, old);
      symlinkSync(w.outsideDir, join(w.netDir, "lock.reap"));
      mkdirSync(join(w.netDir, "lock"));
      const t = new Date(Date.now() - 2000);
      utimesSync(join(w.netDir, "lock"), t, t);
    },
    add: [0, 11, 103, 105],
    del: [0, 11, 103, 105],
  },
  {
    name: "a leftover .tmp- file is a symlink to an outside file",
    plant: (w) => symlinkSync(w.outsideFile, join(w.netDir, `.tmp-${RANGE4}-1-deadbeef`)),
    add: [0, 103, 105],
    del: [0, 103, 105],
  },
];

describe("links, FIFOs and files planted in the store folder", () => {
  it("control: the planted journal, as a regular file, is one the plugin would replay", async () => {
    const w = world();
    expect((await w.call("ADD", "live")).code).toBe(0);
    writeFileSync(join(w.netDir, JOURNAL), evilJournal(w));
    const r = await w.call("DEL", "nobody");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(readdirSync(w.attDir).sort()).toEqual(["evil@eth0.json", "live@eth0.json"]);
  });

  for (const c of plantCases) {
    it.concurrent(`${c.name}: ADD and DEL fail with a clear error or succeed, never touch the outside, never hang`, async ({ expect }) => {
      // Concurrent tests: each cleans up its own world (afterEach would remove the others').
      const w = new World(expect);
      try {
        await plantedCase(w, c);
      } finally {
        w.cleanup();
      }
    });
  }
});

async function plantedCase(w: World, c: PlantCase): Promise<void> {
  const expect = w.expect;
  const live = await w.call("ADD", "live");
  expect(live.code, live.stdout + live.stderr).toBe(0);
  c.plant(w);
  const before = w.outsideSnap();
  const add = await w.call("ADD", "newpod");
  expectCode(add, c.add, `ADD with ${c.name}`, expect);
  expectNoOutsideWrite(w, before, `ADD with ${c.name}`);
  const del = await w.call("DEL", "live");
  expectCode(del, c.del, `DEL with ${c.name}`, expect);
  expectNoOutsideWrite(w, before, `DEL with ${c.name}`);
  // Nothing read through a planted link may come back as state.
  const att = w.attDir;
  if (existsSync(att) && lstatSync(att).isDirectory())
    expect(readdirSync(att), "a record came from a planted journal").not.toContain("evil@eth0.json");
  expect(existsSync(join(w.outsideDir, "evil@eth0.json"))).toBe(false);
  process.stdout.write(
    `[escape] ${c.name}: ADD ${add.code === 0 ? "ok" : `${add.json?.code} ${add.json?.msg}`} | DEL ${del.code === 0 ? "ok" : `${del.json?.code} ${del.json?.msg}`}\n`,
  );
  figures.cases++;
}

// --- node files that are not files ------------------------------------------------

describe("a node file that is not a regular JSON file", () => {
  const nodeCases: { name: string; make: (w: World) => string }[] = [
    {
      name: "a FIFO",
      make: (w) => {
        const p = join(w.sb.dir, "node-fifo");
        execFileSync("mkfifo", [p]);
        return p;
      },
    },
    {
      name: "a folder",
      make: (w) => {
        const p = join(w.sb.dir, "node-dir");
        mkdirSync(p);
        return p;
      },
    },
    {
      name: "a 100 MB file",
      make: (w) => {
        const p = join(w.sb.dir, "node-huge.json");
        writeFileSync(p, "{");
        truncateSync(p, 100 << 20);
        return p;
      },
    },
    { name: "/dev/zero (a character device)", make: () => "/dev/zero" },
  ];
  for (const c of nodeCases) {
    it(`${c.name}: ADD fails fast with 102, the store is unchanged, DEL still works`, async () => {
      const w = world();
      expect((await w.call("ADD", "live")).code).toBe(0);
      const nodeFile = c.make(w);
      const before = w.outsideSnap();
      const store = w.storeSnap();
      const started = Date.now();
      // waitForPodCIDRs 10: a node file that is there but unusable must not be waited for.
      const add = await w.call("ADD", "newpod", { ipam: { nodeFile, waitForPodCIDRs: 10 } });
      // 5 s separates "did not wait" (one call, well under a second) from waiting the 10 s asked
      // for; only a machine 50 times slower than this one could blur it.
      const ms = Date.now() - started;
      expectCode(add, [102], `ADD with a node file that is ${c.name}`);
      expect(ms, `ADD with a node file that is ${c.name} took ${ms} ms`).toBeLessThan(5000);
      expect(changes(store, w.storeSnap()), "the failed ADD changed the store").toEqual([]);
      const del = await w.call("DEL", "live", { ipam: { nodeFile } });
      expect(del.code, `DEL needs no node file: ${del.stdout}`).toBe(0);
      expectNoOutsideWrite(w, before, `node file ${c.name}`);
      figures.cases++;
    });
  }
});
