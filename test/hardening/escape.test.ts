// Guarantee 5, against the built executable: nobody escapes the data dir.
// Hostile network names, container IDs and interface names; symlinks, FIFOs and
// files planted in the store folder; a node file that is a FIFO, a folder, a
// huge file or a character device. The plugin must never write outside its
// folder, never follow a link it did not create, and never hang.
import { execFileSync } from "node:child_process";
import {
  existsSync,
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
import { basename, join } from "node:path";
import { type ExpectStatic, afterAll, afterEach, describe, expect, it } from "vitest";
import { type RunResult, Sandbox, run } from "../helpers/plugin";
import { encodeAttachment } from "../../src/store/codec";
import type { AttachmentRecord } from "../../src/store/store";
import { changes, snapshot } from "../helpers/snapshot";
import { containers, previousFormatJournal, previousFormatStore, section } from "../helpers/store-state";
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

  it("odd but valid names (unicode or @ in the interface, a 200-character ID, a hostile pod name) stay records in the store", async () => {
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
        expect(await containers(w.dataDir, NETWORK), what).toContain(`${c.id}@${c.ifname}`);
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
    expect(await containers(w.dataDir, NETWORK)).toEqual(["live@eth0"]);
    expectNoOutsideWrite(w, before, "odd names");
    expect(readdirSync(w.dataDir)).toEqual(["_store"]);
  });
});

// --- things planted in the store folder ----------------------------------------

interface PlantCase {
  name: string;
  /** Plant it. The world already holds pod "live" (in the previous format's files, for `previous`). */
  plant(w: World): void;
  /** The store is in the previous release's format: the planted thing meets the upgrade. */
  previous?: boolean;
  /** Allowed outcomes of ADD (a new pod) and DEL (of "live"): 0 = success. */
  add: number[];
  del: number[];
}

const LIVE: AttachmentRecord = {
  network: NETWORK,
  containerID: "live",
  ifname: "eth0",
  netns: "/var/run/netns/live",
  netnsId: "",
  namespace: "",
  pod: "",
  createdAt: "2026-01-01T00:00:00.000Z",
  ips: [
    { cidr: "10.0.2.0/24", address: "10.0.2.2" },
    { cidr: "fd00::200/120", address: "fd00::202" },
  ],
};

/**
 * A valid, checksummed journal of the previous format whose replay would create the record of
 * "evil" holding the live pod's addresses: if the plugin reads it through the planted link, the
 * record appears (and an address is held twice).
 */
function evilJournal(): string {
  const evil = { ...LIVE, containerID: "evil", netns: "/x", createdAt: new Date().toISOString() };
  return previousFormatJournal([{ file: `attachments/${NETWORK}/evil@eth0.json`, content: encodeAttachment(evil) }]);
}

/** A pending journal, as a committer of the previous format named its own. */
const JOURNAL = "journal-1-planted.json";

/** A store file replaced by a symlink to an outside copy of it. */
function linkToCopy(w: World, name: string): void {
  const p = join(w.netDir, name);
  writeFileSync(w.outsideFile, readFileSync(p));
  rmSync(p);
  symlinkSync(w.outsideFile, p);
}

/** The slot the store loads its state from. */
function currentSlot(w: World): string {
  return basename(section(w.dataDir, { meta: true }).path);
}

const plantCases: PlantCase[] = [
  {
    name: "the file attachments (where older releases kept a folder) is a symlink to an outside folder",
    plant: (w) => {
      rmSync(join(w.netDir, "attachments"));
      symlinkSync(w.outsideDir, join(w.netDir, "attachments"));
    },
    add: [0, 103, 105],
    del: [0, 103, 105],
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
    name: "the log is a symlink to an outside file (a copy of the real one)",
    plant: (w) => linkToCopy(w, "log"),
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "the checkpoint the state is in is a symlink to an outside file (a copy of the real one)",
    plant: (w) => linkToCopy(w, currentSlot(w)),
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "the log is a FIFO",
    plant: (w) => {
      rmSync(join(w.netDir, "log"));
      execFileSync("mkfifo", [join(w.netDir, "log")]);
    },
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "the other checkpoint slot is a FIFO",
    plant: (w) => {
      const other = currentSlot(w) === "checkpoint.0" ? "checkpoint.1" : "checkpoint.0";
      rmSync(join(w.netDir, other));
      execFileSync("mkfifo", [join(w.netDir, other)]);
    },
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "the reserve is a symlink to an outside file",
    plant: (w) => {
      rmSync(join(w.netDir, "reserve"));
      symlinkSync(w.outsideFile, join(w.netDir, "reserve"));
    },
    add: [0, 103, 105],
    del: [0, 103, 105],
  },
  {
    name: "a store of the previous format: a journal is a symlink to an outside file holding a valid journal",
    previous: true,
    plant: (w) => {
      writeFileSync(w.outsideFile, evilJournal());
      symlinkSync(w.outsideFile, join(w.netDir, JOURNAL));
    },
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "a store of the previous format: a journal is a FIFO",
    previous: true,
    plant: (w) => execFileSync("mkfifo", [join(w.netDir, JOURNAL)]),
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "a store of the previous format: its range file is a symlink to an outside file (a copy of the real one)",
    previous: true,
    plant: (w) => linkToCopy(w, "range-10.0.2.0_24.json"),
    add: [103, 105],
    del: [103, 105],
  },
  {
    name: "a journal of the previous format, a symlink to a valid journal outside, planted in a log store",
    plant: (w) => {
      writeFileSync(w.outsideFile, evilJournal());
      symlinkSync(w.outsideFile, join(w.netDir, JOURNAL));
    },
    add: [0, 103, 105], // moved aside (as what is left of an upgrade), never read
    del: [0, 103, 105],
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
    plant: (w) => symlinkSync(w.outsideFile, join(w.netDir, ".tmp-checkpoint.0-1-deadbeef")),
    add: [0, 103, 105],
    del: [0, 103, 105],
  },
];

describe("links, FIFOs and files planted in the store folder", () => {
  it("control: the planted journal, as a regular file in a store of the previous format, is one the upgrade would replay", async () => {
    const w = world();
    previousFormatStore(w.dataDir, [LIVE]);
    writeFileSync(join(w.netDir, JOURNAL), evilJournal());
    const r = await w.call("DEL", "nobody");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await containers(w.dataDir, NETWORK)).toEqual(["evil@eth0", "live@eth0"]);
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
  if (c.previous) previousFormatStore(w.dataDir, [LIVE]);
  else {
    const live = await w.call("ADD", "live");
    expect(live.code, live.stdout + live.stderr).toBe(0);
  }
  c.plant(w);
  const before = w.outsideSnap();
  const add = await w.call("ADD", "newpod");
  expectCode(add, c.add, `ADD with ${c.name}`, expect);
  expectNoOutsideWrite(w, before, `ADD with ${c.name}`);
  const del = await w.call("DEL", "live");
  expectCode(del, c.del, `DEL with ${c.name}`, expect);
  expectNoOutsideWrite(w, before, `DEL with ${c.name}`);
  // Nothing read through a planted link may come back as state.
  let held: string[] = [];
  try {
    held = await containers(w.dataDir);
  } catch {
    /* a store that does not load holds nothing anyone reads */
  }
  expect(held, "a record came from a planted journal").not.toContain("evil@eth0");
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
