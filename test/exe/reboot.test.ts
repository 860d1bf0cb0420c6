// releaseOnReboot (ipam key, default false), through the executable, with the
// boot ID faked (PODCIDR_IPAM_BOOT_ID_FILE): the first call of a network in a new
// boot releases that network's attachments of earlier boots, once; other networks,
// and networks without the key, keep theirs; a record that does not know its boot
// (made by the release before the log store) is kept.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { addrs } from "../helpers/exe";
import { ciliumNode } from "../helpers/node";
import { type RunResult, Sandbox, run } from "../helpers/plugin";
import { logRecords, previousFormatStore, readStore } from "../helpers/store-state";
import { attachmentRecord } from "../helpers/records";

let sb: Sandbox;
let bootDir: string;
let bootFile: string;
beforeEach(() => {
  sb = new Sandbox();
  sb.writeNode(ciliumNode(["10.0.2.0/24"]));
  bootDir = mkdtempSync(join(tmpdir(), "podcidr-ipam-boot-"));
  bootFile = join(bootDir, "boot_id");
  boot("11111111-aaaa-4000-8000-000000000001");
});
afterEach(() => {
  sb.cleanup();
  rmSync(bootDir, { recursive: true, force: true });
});

/** The boot ID the executable sees from now on (a reboot, as far as it can tell). */
function boot(id: string): void {
  writeFileSync(bootFile, `${id}\n`);
}

function call(command: string, id: string, network = "podnet", ipam: Record<string, unknown> = { releaseOnReboot: true }) {
  return run({
    command,
    containerID: id,
    netns: `/var/run/netns/${id}`,
    env: { PODCIDR_IPAM_BOOT_ID_FILE: bootFile },
    stdin: sb.conf("1.1.0", ipam, { name: network }),
  });
}

function ok(r: RunResult, what: string): RunResult {
  expect(r.code, `${what}: ${r.stdout}${r.stderr}`).toBe(0);
  return r;
}

/** network/containerID -> boot ID of every record. */
async function records(): Promise<Record<string, string>> {
  return Object.fromEntries((await readStore(sb.dataDir)).records.map((r) => [`${r.network}/${r.containerID}`, r.boot ?? "(none)"]));
}

const sweeps = (): string[] =>
  logRecords(sb.dataDir)
    .map((r) => /"sw":(\{[^}]*\})/.exec(r.payload)?.[1])
    .filter((x): x is string => x !== undefined);

describe("releaseOnReboot", () => {
  it("the first call of the network in a new boot releases its attachments of the earlier boot, once, and only its own", async () => {
    const a = addrs(ok(await call("ADD", "p1"), "ADD p1").json);
    ok(await call("ADD", "p2"), "ADD p2");
    ok(await call("ADD", "o1", "other", {}), "ADD o1 (a network without releaseOnReboot)");
    expect(await records()).toEqual({
      "podnet/p1": "11111111-aaaa-4000-8000-000000000001",
      "podnet/p2": "11111111-aaaa-4000-8000-000000000001",
      "other/o1": "11111111-aaaa-4000-8000-000000000001",
    });

    boot("22222222-bbbb-4000-8000-000000000002");
    const r = ok(await call("ADD", "p3"), "ADD p3 after the reboot");
    expect(r.stderr).toMatch(
      /first call since a reboot: released 2 attachment\(s\) of an earlier boot: podnet\/p1\/eth0, podnet\/p2\/eth0/,
    );
    // p1's address is free again: p3, the next pod, may get it; nobody holds it twice.
    expect(await records()).toEqual({
      "podnet/p3": "22222222-bbbb-4000-8000-000000000002",
      "other/o1": "11111111-aaaa-4000-8000-000000000001",
    });
    const v4 = (await readStore(sb.dataDir)).ranges[0]!;
    expect(v4.allocated).toBe(2);
    expect(v4.addresses).not.toContain(a[0]);

    // Once per boot: the next calls release nothing more, and the log notes the sweep once.
    const r4 = ok(await call("ADD", "p4"), "ADD p4");
    expect(r4.stderr).not.toMatch(/first call since a reboot/);
    ok(await call("DEL", "p4"), "DEL p4");
    expect(Object.keys(await records()).sort()).toEqual(["other/o1", "podnet/p3"]);
    expect(sweeps()).toEqual(['{"podnet":"11111111-aaaa-4000-8000-000000000001"}', '{"podnet":"22222222-bbbb-4000-8000-000000000002"}']);

    // A DEL can be the first call of the boot too; it sweeps as well.
    boot("33333333-cccc-4000-8000-000000000003");
    const d = ok(await call("DEL", "nobody"), "DEL after another reboot");
    expect(d.stderr).toMatch(/released 1 attachment\(s\) of an earlier boot: podnet\/p3\/eth0/);
    expect(Object.keys(await records())).toEqual(["other/o1"]);
  });

  it("is off by default: a network without the key keeps its attachments across a reboot", async () => {
    ok(await call("ADD", "p1", "podnet", {}), "ADD p1");
    boot("22222222-bbbb-4000-8000-000000000002");
    const r = ok(await call("ADD", "p2", "podnet", {}), "ADD p2");
    expect(r.stderr).not.toMatch(/reboot/);
    expect(Object.keys(await records()).sort()).toEqual(["podnet/p1", "podnet/p2"]);
  });

  it("a record that does not know its boot (the release before the log store made it) is kept", async () => {
    previousFormatStore(sb.dataDir, [attachmentRecord("old", "10.0.2.2")]);
    ok(await call("ADD", "p1"), "ADD p1");
    boot("22222222-bbbb-4000-8000-000000000002");
    ok(await call("ADD", "p2"), "ADD p2");
    expect(await records()).toEqual({ "podnet/old": "(none)", "podnet/p2": "22222222-bbbb-4000-8000-000000000002" });
  });

  it("refuses a value that is not true or false (code 7)", async () => {
    const r = await call("ADD", "p1", "podnet", { releaseOnReboot: "yes" });
    expect(r.json?.code, r.stdout).toBe(7);
    expect(r.json.msg).toContain("ipam.releaseOnReboot must be true or false");
  });
});
