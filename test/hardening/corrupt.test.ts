// A damaged store: bytes flipped, truncated, replaced with garbage, or from
// another version. The plugin must refuse (103) with a hint, never reset the
// file, and `podcidr-ipam repair` must bring the store back without handing any
// live address out twice.
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ciliumNode } from "../helpers/node";
import { prng } from "../helpers/prng";
import { Sandbox, cli, run } from "../helpers/plugin";
import { duplicates, loadStore, recordsByContainer } from "./invariants";
import { record } from "./report";

const PODS = ["p0", "p1", "p2", "p3", "p4"];
let base: Sandbox;
let cases = 0;
let refused = 0;
let repaired = 0;

const rand = prng(7);

const MUTATIONS: Record<string, (b: Buffer) => Buffer> = {
  "one byte flipped": (b) => {
    const c = Buffer.from(b);
    const i = 10 + Math.floor(rand() * (c.length - 20));
    c[i] = c[i]! ^ (1 + Math.floor(rand() * 254));
    return c;
  },
  truncated: (b) => b.subarray(0, 1 + Math.floor(rand() * (b.length - 2))),
  emptied: () => Buffer.alloc(0),
  "random garbage": (b) => Buffer.from(Array.from({ length: b.length }, () => Math.floor(rand() * 256))),
  "a future version": (b) => Buffer.from(b.toString("utf8").replace(/"version":(\d+)/, (_m, v) => `"version":${Number(v) + 1}`)),
};

beforeAll(async () => {
  base = new Sandbox();
  base.writeNode(ciliumNode(["10.50.0.0/24", "fd00:50::/120"]));
  for (const id of PODS) expect((await run({ command: "ADD", containerID: id, stdin: base.conf() })).code).toBe(0);
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

const TARGETS = ["range-10.50.0.0_24.json", "range-fd00-50--_120.json", "attachments/podnet/p2@eth0.json", "journal-1-dead.json"];

describe.each(TARGETS)("damaged %s", (target) => {
  it.each(Object.keys(MUTATIONS))(
    "%s: refused with 103 and a repair hint, left as it is, and repaired without a duplicate",
    async (mutation) => {
      cases++;
      const sb = new Sandbox();
      try {
        // A copy of the world, but for the claims beside the node file: those name the original store,
        // which still holds the same addresses, so the copy would rightly be refused as a second store.
        cpSync(base.dir, sb.dir, { recursive: true, filter: (src) => !src.endsWith(".claims") });
        const net = join(sb.dataDir, "_store");
        const file = join(net, target);
        const original = target.startsWith("journal-") ? readFileSync(join(net, "range-10.50.0.0_24.json")) : readFileSync(file);
        const damaged = MUTATIONS[mutation]!(original);
        writeFileSync(file, damaged);

        // A call that reads the damaged file refuses it. (An ADD for another pod does not read p2's record.)
        const who = target.startsWith("attachments/") ? { command: "DEL", containerID: "p2" } : { command: "ADD", containerID: "newcomer" };
        const r = await run({ ...who, stdin: sb.conf() });
        expect(r.code).not.toBe(0);
        expect(r.json.code, r.stdout).toBe(103);
        expect(r.json.msg).toContain(file);
        expect(r.json.details).toContain("podcidr-ipam repair");
        expect(readFileSync(file).equals(damaged)).toBe(true);
        refused++;

        const rep = await cli(["repair", "--json", "--data-dir", sb.dataDir, "--network", "podnet"]);
        expect(rep.code, rep.stderr).toBe(0);
        expect(rep.json.quarantined.map((q: any) => q.file)).toEqual([file]);
        expect(existsSync(join(net, "quarantine"))).toBe(true);
        repaired++;

        const v = await loadStore(sb);
        expect(duplicates(v)).toEqual([]);
        const held = recordsByContainer(v);
        const survivors = target.startsWith("attachments/") ? PODS.filter((p) => p !== "p2") : PODS;
        expect([...held.keys()].sort()).toEqual(survivors.map((p) => `${p}/eth0`));
        if (target.startsWith("attachments/")) {
          // p2's record is lost but its bits were intact: its addresses stay taken, unowned, until an operator frees them.
          expect(rep.json.lostRecords).toEqual(["podnet/p2/eth0"]);
          expect(rep.json.ranges.flatMap((x: any) => x.unowned)).toEqual(["10.50.0.4", "fd00:50::4"]);
        }
        // The store works again and the newcomer gets an address nobody holds.
        const a = await run({ command: "ADD", containerID: "newcomer", stdin: sb.conf() });
        expect(a.code, a.stdout + a.stderr).toBe(0);
        const taken = new Set([...(await loadStore(sb)).holders.keys()]);
        expect(taken.size).toBe(2 * (survivors.length + 1));
        expect(
          ["10.50.0.4", "fd00:50::4"].some((ip) => a.json.ips.some((x: any) => x.address.startsWith(`${ip}/`))) &&
            target.startsWith("attachments/"),
        ).toBe(false);
      } finally {
        sb.cleanup();
      }
    },
  );
});

describe("repair on a healthy store", () => {
  it("finds nothing to repair and changes no byte", async () => {
    const before = readdirSync(join(base.dataDir, "_store"), { recursive: true }).map(String).sort();
    const rep = await cli(["repair", "--data-dir", base.dataDir, "--network", "podnet"]);
    expect(rep.code).toBe(0);
    expect(rep.stdout).toContain("Nothing to repair.");
    expect(readdirSync(join(base.dataDir, "_store"), { recursive: true }).map(String).sort()).toEqual(before);
    rmSync(join(base.dataDir, "_store", "quarantine"), { recursive: true, force: true });
  });
});
