// The agent's metrics, from the built executable against the real API server:
// /metrics and the textfile parse with Prometheus's own parser and pass its
// linter (test/cluster/promlint: the checks of `promtool check metrics`), and
// every figure equals what the plugin's calls and the CiliumNode make it: capacity,
// reserved, allocated per network, orphaned when a podCIDR that still holds
// addresses leaves the node, the plugin calls by command and result, and the sync
// counters. The calls are counted from the calls log, which the plugin appends to
// without creating it.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { get } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BIN, run } from "../helpers/plugin";
import { BINARIES, type Cluster, freePort, waitFor } from "./harness";
import { clusterPerFile } from "./per-file";

const PROMLINT = join(BINARIES.kubectl, "..", "promlint");

let c: Cluster;
let dir: string;
const { suite, blocker } = clusterPerFile("podcidr-agent-metrics-", (cl, d) => {
  c = cl;
  dir = d;
});

function scrape(port: number, path = "/metrics"): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers["content-type"]) }));
    }).on("error", reject);
  });
}

/** Prometheus's parser and linter on an exposition: the problems it names (empty: clean). */
function promlint(text: string): string[] {
  const r = spawnSync(PROMLINT, [], { input: text, encoding: "utf8" });
  if (r.status === 2 || r.error) throw new Error(`promlint could not parse it: ${r.stdout}${r.stderr}${r.error ?? ""}\n${text}`);
  return r.stdout.split("\n").filter((l) => l.startsWith("problem "));
}

/** The value of one sample (name and labels exactly as rendered), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

suite("agent metrics", () => {
  const name = "metrics-1";
  let agent: ChildProcess;
  let log = "";
  let port = 0;
  let nodeFile: string;
  let dataDir: string;
  let callsLog: string;
  let textDir: string;
  const conf = (network: string) => ({
    cniVersion: "1.1.0",
    name: network,
    type: "bridge",
    ipam: { type: "podcidr-ipam", nodeFile, dataDir, nodeName: name, waitForPodCIDRs: 0 },
  });
  const call = (command: string, network: string, id: string, stdin?: object) =>
    run({
      command,
      containerID: id,
      netns: `/var/run/netns/${id}`,
      stdin: stdin ?? conf(network),
      env: { PODCIDR_IPAM_CALLS_LOG: callsLog },
    });

  beforeAll(async () => {
    if (blocker) return;
    nodeFile = join(dir, "node.json");
    dataDir = join(dir, "data");
    callsLog = join(dir, "run", "calls.log");
    textDir = join(dir, "textfile");
    // A /29 and a /30 (capacity 6 and 2 once the network and broadcast addresses are left out), router on the first.
    await c.apply({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNode",
      metadata: { name },
      spec: { addresses: [{ type: "CiliumInternalIP", ip: "10.9.0.1" }], ipam: { podCIDRs: ["10.9.0.0/29", "10.9.1.0/30"] } },
    });
    // With no agent yet, a call does not make the calls log (the plugin opens it without O_CREAT).
    expect(existsSync(callsLog)).toBe(false);
    port = await freePort();
    agent = spawn(
      BIN,
      [
        "agent",
        ...["--kubeconfig", c.kubeconfig, "--node-name", name, "--source", "ciliumnode", "--node-file", nodeFile],
        ...["--data-dir", dataDir, "--calls-log", callsLog, "--health-addr", "127.0.0.1:0", "--metrics-addr", `127.0.0.1:${port}`],
        ...["--metrics-textfile", textDir],
      ],
      { env: { PATH: process.env.PATH }, stdio: ["ignore", "ignore", "pipe"] },
    );
    agent.stderr!.on("data", (d) => (log += d));
    await waitFor(() => existsSync(nodeFile) && existsSync(callsLog), "the node file and the calls log", 30_000);
  }, 60_000);
  afterAll(async () => {
    if (!agent) return;
    agent.kill("SIGTERM");
    await new Promise((r) => (agent.exitCode !== null || agent.signalCode !== null ? r(null) : agent.on("close", r)));
  });

  it("counts the plugin's calls and the store's occupancy, in an exposition Prometheus's parser and linter accept", async () => {
    for (const id of ["a1", "a2", "a3"]) expect((await call("ADD", "neta", id)).code).toBe(0);
    expect((await call("ADD", "netb", "b1")).code).toBe(0);
    expect((await call("DEL", "neta", "a3")).code).toBe(0);
    // A refused call is counted by its code (another node's name: 102).
    const bad = await call("ADD", "neta", "x", { ...conf("neta"), ipam: { type: "podcidr-ipam", nodeFile, dataDir, nodeName: "another" } });
    expect(bad.code).not.toBe(0);
    const badCode = String(bad.json.code);

    const m = await scrape(port);
    expect(m.status).toBe(200);
    expect(m.type).toContain("text/plain");
    expect(m.type).toContain("version=0.0.4");
    expect(promlint(m.body), m.body).toEqual([]);
    expect(m.body).not.toMatch(/^[a-z_]+(\{[^}]*\})? \S+ \d+$/m); // no timestamps

    const l = (cidr: string) => `cidr="${cidr}",family="4"`;
    expect(sample(m.body, `podcidr_ipam_capacity_addresses{${l("10.9.0.0/29")}}`)).toBe(6);
    expect(sample(m.body, `podcidr_ipam_capacity_addresses{${l("10.9.1.0/30")}}`)).toBe(2);
    // The gateway (.1 is also the router) is reserved in the /29; the /30's gateway too.
    expect(sample(m.body, `podcidr_ipam_reserved_addresses{${l("10.9.0.0/29")}}`)).toBeGreaterThanOrEqual(1);
    const allocated = (net: string, cidr: string) => sample(m.body, `podcidr_ipam_allocated_addresses{${l(cidr)},network="${net}"}`) ?? 0;
    const held = (net: string) => allocated(net, "10.9.0.0/29") + allocated(net, "10.9.1.0/30");
    expect(held("neta")).toBe(2);
    expect(held("netb")).toBe(1);
    expect(sample(m.body, 'podcidr_ipam_plugin_calls_total{command="ADD",result="ok"}')).toBe(4);
    expect(sample(m.body, 'podcidr_ipam_plugin_calls_total{command="DEL",result="ok"}')).toBe(1);
    expect(sample(m.body, `podcidr_ipam_plugin_calls_total{command="ADD",result="${badCode}"}`)).toBe(1);
    expect(sample(m.body, 'podcidr_ipam_plugin_call_duration_seconds_count{command="ADD"}')).toBe(5);
    expect(sample(m.body, 'podcidr_ipam_plugin_call_duration_seconds_bucket{command="ADD",le="+Inf"}')).toBe(5);
    expect(sample(m.body, 'podcidr_ipam_plugin_call_duration_seconds_count{command="GC"}')).toBe(0);
    expect(sample(m.body, "podcidr_ipam_ready")).toBe(1);
    expect(sample(m.body, "podcidr_ipam_node_file_writes_total")).toBe(1);
    expect(sample(m.body, "podcidr_ipam_relists_total")).toBe(0);
    expect(sample(m.body, "podcidr_ipam_api_requests_total")).toBeGreaterThanOrEqual(2); // the list and the watch
    expect(sample(m.body, "podcidr_ipam_node_file_age_seconds")).toBeGreaterThanOrEqual(0);
    expect(sample(m.body, "podcidr_ipam_last_sync_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 600);
  });

  it("reports the addresses a podCIDR gone from the node still holds as orphaned", async () => {
    // Fill the /29 so the /30 surely holds one.
    for (let i = 0; i < 6; i++) await call("ADD", "neta", `fill${i}`);
    const before = await scrape(port);
    const small =
      (sample(before.body, 'podcidr_ipam_allocated_addresses{cidr="10.9.1.0/30",family="4",network="neta"}') ?? 0) +
      (sample(before.body, 'podcidr_ipam_allocated_addresses{cidr="10.9.1.0/30",family="4",network="netb"}') ?? 0);
    expect(small).toBeGreaterThan(0);
    const cn = (await c.api("GET", `/apis/cilium.io/v2/ciliumnodes/${name}`)).json;
    cn.spec.ipam.podCIDRs = ["10.9.0.0/29"];
    expect((await c.api("PUT", `/apis/cilium.io/v2/ciliumnodes/${name}`, { body: cn })).status).toBe(200);
    await waitFor(() => !readFileSync(nodeFile, "utf8").includes("10.9.1.0/30"), "the node file without the /30", 10_000);
    const after = await scrape(port);
    expect(sample(after.body, 'podcidr_ipam_orphaned_addresses{cidr="10.9.1.0/30",family="4"}')).toBe(small);
    expect(sample(after.body, 'podcidr_ipam_orphaned_addresses{cidr="10.9.0.0/29",family="4"}')).toBe(0);
    expect(sample(after.body, "podcidr_ipam_node_file_writes_total")).toBe(2);
    expect(promlint(after.body)).toEqual([]);
  });

  it("writes the same families to node_exporter's textfile, whole (renamed into place), without timestamps", async () => {
    const file = join(textDir, "podcidr_ipam.prom");
    await waitFor(() => existsSync(file), "the textfile", 40_000);
    const text = readFileSync(file, "utf8");
    expect(promlint(text), text).toEqual([]);
    const families = (t: string) =>
      t
        .split("\n")
        .filter((x) => x.startsWith("# TYPE "))
        .sort();
    expect(families(text)).toEqual(families((await scrape(port)).body));
    expect(text.endsWith("\n")).toBe(true);
  }, 60_000);

  it("serves health apart from the metrics and stops with exit 0 on SIGTERM", async () => {
    expect((await scrape(port, "/readyz")).status).toBe(200);
    agent.kill("SIGTERM");
    const code = await new Promise<number | null>((r) => (agent.exitCode !== null ? r(agent.exitCode) : agent.on("close", (x) => r(x))));
    expect(code, log).toBe(0);
  });
});
