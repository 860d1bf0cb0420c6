// The namespaces' pool map the agent keeps for multi-pool (src/agent/namespaces.ts), driven
// as the watcher drives it: a list hands over every namespace (the first with reset), then
// events; only pool keys of namespaces that have one are written, once per change, and
// /readyz follows the list, the write and the watch.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Metrics } from "../../src/agent/metrics.js";
import { NamespaceSync } from "../../src/agent/namespaces.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "podcidr-ns-"));
  dirs.push(dir);
  const lines: string[] = [];
  const sync = new NamespaceSync(join(dir, "node.json"), (level, msg) => lines.push(`${level} ${msg}`), new Metrics());
  const map = () => JSON.parse(readFileSync(join(dir, "node.json.namespaces.json"), "utf8")).namespaces;
  return { dir, sync, lines, map };
}

const ns = (name: string, annotations?: Record<string, string>) => ({ metadata: { name, ...(annotations ? { annotations } : {}) } });
const tick = () => new Promise((r) => setTimeout(r, 5));

describe("NamespaceSync", () => {
  it("writes the pool keys of the namespaces that have one, after the whole list, and follows events", async () => {
    const { sync, map, dir } = setup();
    expect(sync.ready()).toEqual({ ok: false, why: "the namespaces have not been listed yet" });
    sync.onObject(ns("a", { "ipam.cilium.io/ip-pool": "blue", "other.example/x": "y" }), {
      reason: "list",
      resourceVersion: "1",
      reset: true,
    });
    sync.onObject(ns("b"), { reason: "list", resourceVersion: "1" });
    sync.onObject(ns("c", { "ipam.cilium.io/require-pool-match": "true" }), { reason: "list", resourceVersion: "1" });
    // Written once, after the list (not per namespace), then ready.
    expect(sync.ready().ok).toBe(false);
    await tick();
    expect(map()).toEqual({ a: { "ipam.cilium.io/ip-pool": "blue" }, c: { "ipam.cilium.io/require-pool-match": "true" } });
    expect(sync.ready()).toEqual({ ok: true, why: "ok" });
    const ino = statSync(join(dir, "node.json.namespaces.json")).ino;
    // A change that touches no pool key writes nothing.
    sync.onObject(ns("b", { "other.example/x": "z" }), { reason: "modified", resourceVersion: "2" });
    expect(statSync(join(dir, "node.json.namespaces.json")).ino).toBe(ino);
    // Added, removed, deleted.
    sync.onObject(ns("b", { "ipam.cilium.io/ipv6-pool": "v6" }), { reason: "modified", resourceVersion: "3" });
    sync.onObject(ns("a", {}), { reason: "modified", resourceVersion: "4" });
    sync.onObject(ns("c", { "ipam.cilium.io/require-pool-match": "true" }), { reason: "deleted", resourceVersion: "5" });
    expect(map()).toEqual({ b: { "ipam.cilium.io/ipv6-pool": "v6" } });
  });

  it("a relist replaces the map whole: a namespace deleted while the watch was away is gone", async () => {
    const { sync, map } = setup();
    sync.onObject(ns("gone", { "ipam.cilium.io/ip-pool": "x" }), { reason: "list", resourceVersion: "1", reset: true });
    await tick();
    expect(Object.keys(map())).toEqual(["gone"]);
    sync.onObject(null, { reason: "list", resourceVersion: "9", reset: true });
    await tick();
    expect(map()).toEqual({});
  });

  it("is not ready while the watch fails (a 403 from missing RBAC), with the watcher's words", () => {
    const { sync, lines } = setup();
    sync.onState("error", 'forbidden: cannot list resource "namespaces"');
    expect(sync.ready()).toEqual({ ok: false, why: 'the namespaces watch fails: forbidden: cannot list resource "namespaces"' });
    expect(lines).toContain("error namespaces watch error");
  });
});
