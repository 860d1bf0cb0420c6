// The agent's figures (npm run bench:agent; not a test): against the real control
// plane of test/cluster, with the built executable,
//   - API change to node file: a CiliumNode's podCIDRs changed N times (default 50),
//     timed from the PATCH's response to the moment this process sees the renamed
//     file (inotify), and from before the PATCH was sent;
//   - the agent at idle for M seconds (default 300): CPU time, RSS (steady and peak)
//     from /proc, and every request it sent, from the API server's audit log (by
//     User-Agent) and from its own counter.
// Prints a markdown table. BENCH_CHANGES and BENCH_IDLE_S override the sizes.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileWatch, startAgent } from "./agent-helpers";
import { BINARIES, clusterBlocker, startCluster, waitFor } from "./harness";

const CHANGES = Number(process.env.BENCH_CHANGES ?? 50);
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 300);
const TICK = 100; // clock ticks per second (getconf CLK_TCK on Linux)

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN;
}

function proc(pid: number): { cpuS: number; rssMiB: number; hwmMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { cpuS: (Number(f[11]) + Number(f[12])) / TICK, rssMiB: kb("VmRSS") / 1024, hwmMiB: kb("VmHWM") / 1024 };
}

async function main(): Promise<void> {
  const blocker = clusterBlocker();
  if (blocker) throw new Error(`no control plane: ${blocker} (bash scripts/cluster-build.sh)`);
  const dir = mkdtempSync(join(tmpdir(), "podcidr-bench-agent-"));
  const audit = join(dir, "audit.log");
  const policy = join(dir, "audit-policy.yaml");
  writeFileSync(policy, "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n");
  const c = await startCluster({ extraApiServerFlags: [`--audit-policy-file=${policy}`, `--audit-log-path=${audit}`] });
  try {
    const name = "bench-1";
    const base = ["10.70.0.0/24"];
    await c.apply({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name }, spec: { ipam: { podCIDRs: base } } });
    const nodeFile = join(dir, "node.json");
    const a = await startAgent(c, { nodeName: name, nodeFile, source: "ciliumnode", dataDir: join(dir, "data") });
    await waitFor(() => readFileSafe(nodeFile).includes("10.70.0.0/24"), "the first sync", 30_000);
    const w = new FileWatch(nodeFile);
    const fromResponse: number[] = [];
    const fromRequest: number[] = [];
    for (let i = 1; i <= CHANGES; i++) {
      const cidrs = i % 2 === 1 ? [...base, `10.70.${i}.0/24`] : base;
      const sent = performance.now();
      const r = await c.api("PATCH", `/apis/cilium.io/v2/ciliumnodes/${name}`, {
        body: { spec: { ipam: { podCIDRs: cidrs } } },
        contentType: "application/merge-patch+json",
      });
      const answered = performance.now();
      if (r.status !== 200) throw new Error(`PATCH ${r.status}: ${r.text}`);
      const want = JSON.stringify(cidrs);
      const seen = await w.waitFor((s) => JSON.stringify(JSON.parse(s.text).spec.ipam.podCIDRs) === want, `change ${i}`, sent, 30_000);
      fromResponse.push(Math.max(0, seen.at - answered));
      fromRequest.push(seen.at - sent);
    }
    w.close();

    // Idle: nothing changes; the agent only keeps its watch.
    await new Promise((r) => setTimeout(r, 5000));
    const pid = a.child.pid!;
    const t0 = Date.now();
    const p0 = proc(pid);
    const requests0 = await a.metric("podcidr_ipam_api_requests_total");
    const rss: number[] = [];
    while (Date.now() - t0 < IDLE_S * 1000) {
      await new Promise((r) => setTimeout(r, 5000));
      rss.push(proc(pid).rssMiB);
    }
    const p1 = proc(pid);
    const t1 = Date.now();
    // The agent's own count of the window, read before the scrape below adds nothing (scrapes are not API requests).
    const requests1 = await a.metric("podcidr_ipam_api_requests_total");
    const audited = readFileSafe(audit)
      .split("\n")
      .filter((l) => l.includes('"userAgent":"podcidr-ipam-agent"'))
      .map((l) => JSON.parse(l) as { verb: string; requestURI: string; requestReceivedTimestamp: string })
      .filter((e) => {
        const at = Date.parse(e.requestReceivedTimestamp);
        return at >= t0 && at <= t1;
      });
    await a.stop();
    const f = (x: number) => x.toFixed(1);
    const idleS = (t1 - t0) / 1000;
    console.log(
      `\nAgent figures, ${new Date().toISOString().slice(0, 10)}, node ${process.version}, kube-apiserver ${BINARIES.kubeApiserver}\n`,
    );
    console.log("| figure | value |");
    console.log("|---|---:|");
    console.log(
      `| API change to node file, from the PATCH's response, median / p95 / max ms (${CHANGES} changes) | ${f(quantile(fromResponse, 0.5))} / ${f(quantile(fromResponse, 0.95))} / ${f(Math.max(...fromResponse))} |`,
    );
    console.log(
      `| the same from before the PATCH was sent, median / p95 ms | ${f(quantile(fromRequest, 0.5))} / ${f(quantile(fromRequest, 0.95))} |`,
    );
    console.log(
      `| idle CPU over ${f(idleS)} s (user + system) | ${((100 * (p1.cpuS - p0.cpuS)) / idleS).toFixed(3)} % of one core (${(p1.cpuS - p0.cpuS).toFixed(2)} s) |`,
    );
    console.log(
      `| idle RSS, median of ${rss.length} samples / peak since start (VmHWM) | ${f(quantile(rss, 0.5))} / ${f(p1.hwmMiB)} MiB |`,
    );
    console.log(
      `| requests to the API server over ${f(idleS)} s idle (audit log) | ${audited.length}${audited.length ? ` (${audited.map((e) => e.verb).join(", ")})` : ""} |`,
    );
    console.log(`| the agent's own count (podcidr_ipam_api_requests_total) over that window | ${requests1 - requests0} |`);
  } finally {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function readFileSafe(p: string): string {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error((e as Error).stack ?? String(e));
    process.exit(1);
  },
);
