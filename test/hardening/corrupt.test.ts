// A damaged store: a part of a checkpoint or of the log with a byte flipped, cut
// short, zeroed, replaced with garbage, or written by a newer release. The plugin
// must refuse (103) with a hint, never reset anything, and `podcidr-ipam repair`
// must bring the store back without handing any live address out twice. A torn
// tail of the log (an append a power cut or a kill cut short) is no damage: it is
// ignored. The parts are found through the store's own code (test/helpers/store-state.ts).
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { Sandbox, cli, run } from "../helpers/plugin";
import { prng } from "../helpers/prng";
import { snapshot } from "../helpers/snapshot";
import { type LogRecord, type SectionTarget, checkpointNow, logRecords, section } from "../helpers/store-state";
import { duplicates, loadStore, recordsByContainer } from "./invariants";
import { record } from "./report";

/** In the checkpoint: p0-p4. In the log after it: p5 (10.50.0.7, fd00:50::7), then p6. */
const PODS = ["p0", "p1", "p2", "p3", "p4"];
const LATE = ["p5", "p6"];
const ALL = [...PODS, ...LATE];
let base: Sandbox;
let cases = 0;
let refused = 0;
let repaired = 0;

const rand = prng(7);

/** A mutation of a part's bytes, in place (the part keeps its length: what follows it stays where the store expects it). */
const MUTATIONS: Record<string, (b: Buffer) => Buffer> = {
  "one byte flipped": (b) => {
    const c = Buffer.from(b);
    const i = Math.floor(rand() * c.length);
    c[i] = c[i]! ^ (1 + Math.floor(rand() * 254));
    return c;
  },
  "cut short (the rest zeroed)": (b) => {
    const c = Buffer.from(b);
    c.fill(0, 1 + Math.floor(rand() * (c.length - 2)));
    return c;
  },
  zeroed: (b) => Buffer.alloc(b.length),
  "random garbage": (b) => Buffer.from(Array.from({ length: b.length }, () => Math.floor(rand() * 256))),
};

interface Part {
  readonly path: string;
  readonly start: number;
  readonly length: number;
  /** A call that reads the part. */
  readonly who: { command: string; containerID: string };
}

type Target = { name: string; find: (sb: Sandbox) => Part; section?: SectionTarget; log?: boolean };

const TARGETS: Target[] = [
  { name: "the checkpoint's range 10.50.0.0/24", section: { range: "10.50.0.0/24" }, find: inCheckpoint({ range: "10.50.0.0/24" }) },
  { name: "the checkpoint's range fd00:50::/120", section: { range: "fd00:50::/120" }, find: inCheckpoint({ range: "fd00:50::/120" }) },
  {
    name: "p2's record in the checkpoint",
    section: { record: { containerID: "p2" } },
    find: inCheckpoint({ record: { containerID: "p2" } }, { command: "DEL", containerID: "p2" }),
  },
  { name: "the checkpoint's meta line", section: { meta: true }, find: inCheckpoint({ meta: true }) },
  {
    name: "p5's record in the middle of the log",
    log: true,
    find: (sb) => {
      const r = p5(sb);
      return {
        path: join(sb.dataDir, "_store", "log"),
        start: r.offset,
        length: r.length,
        who: { command: "ADD", containerID: "newcomer" },
      };
    },
  },
];

function inCheckpoint(t: SectionTarget, who = { command: "ADD", containerID: "newcomer" }): (sb: Sandbox) => Part {
  return (sb) => ({ ...section(sb.dataDir, t), who });
}

function p5(sb: Sandbox): LogRecord {
  const r = logRecords(sb.dataDir).find((x) => x.seq > 0 && x.payload.includes(',"p5",'));
  expect(r, "p5's record is not in the log").toBeDefined();
  return r!;
}

beforeAll(async () => {
  base = new Sandbox();
  base.writeNode(ciliumNode(["10.50.0.0/24", "fd00:50::/120"]));
  for (const id of PODS) expect((await run({ command: "ADD", containerID: id, stdin: base.conf() })).code).toBe(0);
  await checkpointNow(base.dataDir);
  for (const id of LATE) expect((await run({ command: "ADD", containerID: id, stdin: base.conf() })).code).toBe(0);
});
afterAll(() => {
  base?.cleanup();
  record("corrupted store: refuse, then repair", "1. no address held twice", {
    cases,
    "calls refused with 103": refused,
    "stores repaired": repaired,
    duplicates: 0,
    "files reset": 0,
  });
});

/** A copy of the world, but for the claims beside the node file (they name the original store, which holds the same addresses). */
function copy(): Sandbox {
  const sb = new Sandbox();
  cpSync(base.dir, sb.dir, { recursive: true, filter: (src) => !src.endsWith(".claims") });
  return sb;
}

function write(path: string, start: number, bytes: Buffer): Buffer {
  const file = readFileSync(path);
  bytes.copy(file, start);
  writeFileSync(path, file);
  return file;
}

describe.each(TARGETS)("damaged: $name", (target) => {
  it.each(Object.keys(MUTATIONS))(
    "%s: refused with 103 and a repair hint, left as it is, and repaired without a duplicate",
    async (mutation) => {
      cases++;
      const sb = copy();
      try {
        const part = target.find(sb);
        const original = readFileSync(part.path).subarray(part.start, part.start + part.length);
        const damagedPart = MUTATIONS[mutation]!(original);
        const damaged = write(part.path, part.start, damagedPart);

        // A call that reads the damaged part refuses it. (An ADD for another pod does not read p2's record.)
        const r = await run({ ...part.who, stdin: sb.conf() });
        expect(r.code).not.toBe(0);
        expect(r.json.code, r.stdout).toBe(103);
        expect(r.json.msg).toContain(target.section && "meta" in target.section ? join(sb.dataDir, "_store") : part.path);
        expect(r.json.details).toContain("podcidr-ipam repair");
        expect(readFileSync(part.path).equals(damaged)).toBe(true);
        refused++;

        const rep = await cli(["repair", "--json", "--data-dir", sb.dataDir, "--network", "podnet"]);
        expect(rep.code, rep.stderr).toBe(0);
        const quarantined: string[] = rep.json.quarantined.map((q: any) => q.file);
        expect(quarantined.length).toBeGreaterThan(0);
        for (const f of quarantined) expect(f.startsWith(part.path), f).toBe(true);
        expect(existsSync(join(sb.dataDir, "_store", "quarantine"))).toBe(true);
        repaired++;

        const v = await loadStore(sb);
        expect(duplicates(v)).toEqual([]);
        const held = recordsByContainer(v);
        // p5's record was in the damaged bytes: what of it is still legible stays taken (unowned), the rest is unknown.
        const survivors = target.log ? ALL.filter((p) => p !== "p5") : ALL;
        expect([...held.keys()].sort()).toEqual(survivors.map((p) => `${p}/eth0`));
        const unowned: string[] = rep.json.ranges.flatMap((x: any) => x.unowned);
        if (target.log) {
          const legible = ["10.50.0.7", "fd00:50::7"].filter((ip) => damagedPart.toString("latin1").includes(`","${ip}"]`));
          for (const ip of legible) expect(unowned, `${ip} is legible in the damaged record`).toContain(ip);
        } else if (target.section && "record" in target.section) {
          // The records of the damaged bucket (p2's, or all of them) come back from the checkpoint's history.
          expect(rep.json.recoveredRecords).toContain("podnet/p2/eth0");
          expect(rep.json.lostRecords).toEqual([]);
        }
        // The store works again and the newcomer gets an address nobody holds.
        const a = await run({ command: "ADD", containerID: "newcomer", stdin: sb.conf() });
        expect(a.code, a.stdout + a.stderr).toBe(0);
        const taken = new Set([...(await loadStore(sb)).holders.keys()]);
        expect(taken.size).toBe(2 * (survivors.length + 1));
        for (const ip of unowned) expect(a.json.ips.some((x: any) => x.address.startsWith(`${ip}/`))).toBe(false);
      } finally {
        sb.cleanup();
      }
    },
  );
});

describe("written by a newer release", () => {
  it.each([
    { name: "the checkpoint's meta line says version 3", newer: newerCheckpoint },
    { name: "a record of the log says version 3", newer: newerRecord },
  ])("$name: every call and repair refuse it with 103, and nothing is changed", async ({ newer }) => {
    cases++;
    const sb = copy();
    try {
      newer(sb);
      const before = snapshot(sb.dataDir);
      const r = await run({ command: "ADD", containerID: "newcomer", stdin: sb.conf() });
      expect(r.json?.code, r.stdout).toBe(103);
      expect(r.json.msg).toContain("written by a newer podcidr-ipam");
      refused++;
      const rep = await cli(["repair", "--json", "--data-dir", sb.dataDir, "--network", "podnet"]);
      expect(rep.code).not.toBe(0);
      expect(rep.stderr).toContain("written by a newer podcidr-ipam");
      expect(snapshot(sb.dataDir, { skip: (rel) => rel.startsWith("_store/lock") || rel === "_store/queue" })).toEqual(
        new Map([...before].filter(([rel]) => !rel.startsWith("_store/lock") && rel !== "_store/queue")),
      );
    } finally {
      sb.cleanup();
    }
  });

  /** The meta line as a newer release would write it: version 3, its CRC right. */
  function newerCheckpoint(sb: Sandbox): void {
    const s = section(sb.dataDir, { meta: true });
    const text = readFileSync(s.path).toString("latin1");
    const body = `${text
      .slice(0, s.length)
      .replace(/,"crc":\d+\}$/, "}")
      .replace('"version":2', '"version":3')}`;
    const meta = `${body.slice(0, -1)},"crc":${crc32(Buffer.from(body, "latin1"))}}`;
    writeFileSync(s.path, Buffer.from(meta + text.slice(s.length), "latin1"));
  }

  /** p5's record as a newer release would write it: version 3 in its header, its CRC right. */
  function newerRecord(sb: Sandbox): void {
    const r = p5(sb);
    const path = join(sb.dataDir, "_store", "log");
    const buf = readFileSync(path);
    buf.writeUInt16BE(3, r.offset + 4);
    const crc = crc32(buf.subarray(r.offset + 24, r.offset + r.length), crc32(buf.subarray(r.offset, r.offset + 20)));
    buf.writeUInt32BE(crc, r.offset + 20);
    writeFileSync(path, buf);
  }
});

describe("a torn tail of the log", () => {
  it.each([1, 2, 3, 4, 5])(
    "an append cut short (cut %i): ignored, every pod kept, nothing to repair, and the next append writes over it",
    async () => {
      cases++;
      const sb = copy();
      try {
        // The next record (p6's again, as seq 3) cut at a point within it, after p6's: an append a kill or power cut cut short.
        const recs = logRecords(sb.dataDir);
        const last = recs.at(-1)!;
        const path = join(sb.dataDir, "_store", "log");
        const buf = readFileSync(path);
        const torn = Buffer.from(buf.subarray(last.offset, last.offset + last.length));
        torn.writeUInt32BE(last.seq + 1, 12);
        const cut = 1 + Math.floor(rand() * (torn.length - 1));
        torn.copy(buf, last.offset + last.length, 0, cut);
        writeFileSync(path, buf);
        const rep = await cli(["repair", "--dry-run", "--data-dir", sb.dataDir, "--network", "podnet"]);
        expect(rep.code, rep.stderr).toBe(0);
        expect(rep.stdout).toContain("Nothing to repair.");
        const a = await run({ command: "ADD", containerID: "newcomer", stdin: sb.conf() });
        expect(a.code, a.stdout + a.stderr).toBe(0);
        const v = await loadStore(sb);
        expect(duplicates(v)).toEqual([]);
        expect([...recordsByContainer(v).keys()].sort()).toEqual([...ALL, "newcomer"].map((p) => `${p}/eth0`).sort());
        // The newcomer's record is where the torn one was, and no byte of the torn one is left after it.
        const after = logRecords(sb.dataDir);
        expect(after.at(-1)!.offset).toBe(last.offset + last.length);
        expect(after.at(-1)!.payload).toContain(',"newcomer",');
        const end = after.at(-1)!.offset + after.at(-1)!.length;
        expect(
          readFileSync(path)
            .subarray(end, last.offset + last.length + cut)
            .every((b) => b === 0),
        ).toBe(true);
      } finally {
        sb.cleanup();
      }
    },
  );
});

describe("repair on a healthy store", () => {
  it("finds nothing to repair and changes no byte", async () => {
    const before = readdirSync(join(base.dataDir, "_store"), { recursive: true }).map(String).sort();
    const bytes = snapshot(join(base.dataDir, "_store"));
    const rep = await cli(["repair", "--data-dir", base.dataDir, "--network", "podnet"]);
    expect(rep.code).toBe(0);
    expect(rep.stdout).toContain("Nothing to repair.");
    expect(readdirSync(join(base.dataDir, "_store"), { recursive: true }).map(String).sort()).toEqual(before);
    expect(snapshot(join(base.dataDir, "_store"))).toEqual(bytes);
    rmSync(join(base.dataDir, "_store", "quarantine"), { recursive: true, force: true });
  });
});
