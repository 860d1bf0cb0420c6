// The two sandboxes every case runs against: a store with real allocations
// (and a release), and one with no store at all; and the generators' control.
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { ROOT, Sandbox } from "../../helpers/plugin";
import { containers } from "../../helpers/store-state";
import { Rng } from "./bytes";
import { makeCase } from "./cases";
import { type Exec, type Outcome, runExe, runInProcess } from "./run";
import { type Baseline, baseline, finalChecks, resetStores } from "./store";
import type { Ctx, Env } from "./types";

export interface World {
  store: Ctx;
  noStore: Ctx;
  /** The store sandbox's data dir after the seeding: what every case must leave. */
  base: Baseline;
  rootListing: string[];
}

const SEEDS: { id: string; ifname: string; args?: string }[] = [
  { id: "seed-a", ifname: "eth0" },
  { id: "seed-b", ifname: "eth0", args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0" },
  { id: "seed-b", ifname: "net1" },
  { id: "seed-c", ifname: "eth0", args: "IP=10.0.2.77,fd00::277" },
  { id: "seed-d", ifname: "eth0" },
];

export async function makeWorld(exe: boolean): Promise<World> {
  const mk = (name: Ctx["name"]): Ctx => {
    const sb = new Sandbox("ciliumnode-cluster-pool.json");
    const nodesDir = join(sb.dir, "nodes");
    mkdirSync(nodesDir);
    return { name, sb, nodesDir, seeds: [], exe };
  };
  const store = mk("store");
  const noStore = mk("no-store");
  try {
    return await seedWorld(store, noStore, exe);
  } catch (err) {
    store.sb.cleanup();
    noStore.sb.cleanup();
    throw err;
  }
}

async function seedWorld(store: Ctx, noStore: Ctx, exe: boolean): Promise<World> {
  const call = async (command: string, s: { id: string; ifname: string; args?: string }): Promise<Outcome> => {
    const env: Env = {
      CNI_COMMAND: command,
      CNI_CONTAINERID: s.id,
      CNI_NETNS: "/var/run/netns/seed",
      CNI_IFNAME: s.ifname,
      CNI_PATH: "/opt/cni/bin",
      CNI_ARGS: s.args,
    };
    const stdin = Buffer.from(JSON.stringify(store.sb.conf("1.1.0", { routes: [{ dst: "0.0.0.0/0" }] })));
    return exe ? runExe(env, stdin) : runInProcess(env, stdin);
  };
  for (const s of SEEDS) {
    const o = await call("ADD", s);
    expect(o.exit, o.stdout).toBe(0);
    const res = JSON.parse(o.stdout) as { ips: { address: string }[] };
    store.seeds.push({ id: s.id, ifname: s.ifname, ips: res.ips.map((i) => i.address) });
  }
  // One released attachment, so the bitmaps carry a release history too.
  const o = await call("DEL", SEEDS[4]!);
  expect(o.exit, o.stdout).toBe(0);
  store.seeds.pop();
  const base = baseline(store.sb.dataDir);
  expect(await containers(store.sb.dataDir, "podnet")).toHaveLength(4);
  expect(existsSync(noStore.sb.dataDir)).toBe(false);
  return { store, noStore, base, rootListing: readdirSync(ROOT).sort() };
}

export function pickCtx(r: Rng, w: World): Ctx {
  return r.chance(0.25) ? w.noStore : w.store;
}

/**
 * The generators' control: the un-faulted twin of n sampled cases must succeed
 * through `run`, or the fuzzer would be counting its own mistakes as refusals.
 */
export async function twinControl(w: World, seed: number, n: number, firstId: number, run: Exec): Promise<void> {
  const r = new Rng(seed);
  const failed: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = makeCase(r, firstId + i, pickCtx(r, w));
    const o = await run(c.twin.env, c.twin.stdin);
    if (o.exit !== 0) failed.push(`${c.family}/${c.variant}/${c.target}: ${o.stdout.slice(0, 200)}`);
    // The twin is a real call: put the stores back.
    resetStores(w);
  }
  expect(failed).toEqual([]);
  finalChecks(w);
}
