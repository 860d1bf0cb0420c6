// `podcidr-ipam history`, from the executable: who held an address and when, what
// a container or a pod held, --since, --json; kept across checkpoints (the
// checkpoint's history line); a live attachment always shown; usage errors exit 2.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { addOk, addrs, delOk } from "../helpers/exe";
import { ciliumNode } from "../helpers/node";
import { Sandbox, cli } from "../helpers/plugin";
import { checkpointNow } from "../helpers/store-state";

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
  sb.writeNode(ciliumNode(["10.0.2.0/24", "fd00::200/120"]));
});
afterEach(() => sb.cleanup());

const where = (): string[] => ["--data-dir", sb.dataDir];

async function historyJson(...args: string[]): Promise<any[]> {
  const r = await cli(["history", ...args, "--json", ...where()]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r.json;
}

/** [event, containerID, live] of each line. */
const brief = (lines: any[]): [string, string, boolean][] => lines.map((l) => [l.event, l.containerID, l.live]);

describe("history", () => {
  it("says who held an address and when, across a checkpoint, and what a container or a pod held", async () => {
    const web = addrs(await addOk(sb, "c1", { pod: ["shop", "web-1"] }));
    await addOk(sb, "c2", { pod: ["shop", "web-2"] });
    await delOk(sb, "c1");
    // The history so far goes into a checkpoint; what follows is in the log.
    await checkpointNow(sb.dataDir);
    const again = addrs(await addOk(sb, "c3", { args: `IP=${web[0]}`, pod: ["shop", "web-3"] }));
    expect(again[0]).toBe(web[0]);

    const byAddress = await historyJson(web[0]!);
    expect(brief(byAddress)).toEqual([
      ["held", "c1", false],
      ["released", "c1", false],
      ["held", "c3", true],
    ]);
    expect(byAddress[0]).toMatchObject({ network: "podnet", ifname: "eth0", namespace: "shop", pod: "web-1", addresses: web });
    // Times in order, as ISO 8601.
    const times = byAddress.map((l) => Date.parse(l.time));
    expect(times.every((t, i) => Number.isFinite(t) && (i === 0 || t >= times[i - 1]!))).toBe(true);

    expect(brief(await historyJson("--container", "c1"))).toEqual([
      ["held", "c1", false],
      ["released", "c1", false],
    ]);
    expect(brief(await historyJson("--pod", "shop/web-2"))).toEqual([["held", "c2", true]]);
    // The IPv6 address in another spelling is the same address.
    const v6 = web[1]!.replace("::", ":0::");
    expect(brief(await historyJson(v6)).map((x) => x[1])).toEqual(["c1", "c1"]);

    // --since: what happened since then, and every live attachment.
    expect(brief(await historyJson("--since", "0s"))).toEqual([
      ["held", "c2", true],
      ["held", "c3", true],
    ]);
    expect((await historyJson("--since", new Date(Date.now() - 3600_000).toISOString())).length).toBe(4);

    const text = await cli(["history", web[0]!, ...where()]);
    expect(text.code).toBe(0);
    const lines = text.stdout.trim().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^\\S+Z  held      ${web.join(", ")}  podnet/c1/eth0  shop/web-1$`));
    expect(lines[2]).toMatch(/podnet\/c3\/eth0 {2}shop\/web-3 {2}\(holds it now\)$/);
    expect(lines.at(-1)).toBe("(The store keeps the last 30 days, at most 10,000 events, and every live attachment.)");
  });

  it("an empty or missing store has no events; usage errors exit 2", async () => {
    const none = await cli(["history", "10.0.2.9", ...where()]);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toContain("No events.");
    for (const args of [
      ["10.0.2.9", "--container", "c1"],
      ["not-an-ip"],
      ["--pod", "web-1"],
      ["--since", "yesterday"],
      ["10.0.2.9", "10.0.2.8"],
    ]) {
      const r = await cli(["history", ...args, ...where()]);
      expect(r.code, `history ${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/^podcidr-ipam: /);
    }
    const help = await cli(["--help"]);
    expect(help.stdout).toContain("podcidr-ipam history [ADDRESS | --container ID | --pod NS/NAME] [--since T] [--json]");
    expect(help.stdout).toContain("the last 30 days, at most 10,000 events");
  });
});
