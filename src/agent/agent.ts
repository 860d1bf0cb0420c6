// `podcidr-ipam agent`: the DaemonSet's long-running process. It lists, then
// watches, this node's CiliumNode (or v1 Node) and keeps the node file equal to
// it; serves /healthz, /readyz and /metrics; counts the plugin's calls.
import { readFileSync, statSync } from "node:fs";
import type { Server } from "node:http";
import { parseArgs } from "node:util";
import { type IpamConfig, parseIpamConfig } from "../ipam/config.js";
import { CALLS_LOG } from "../calls.js";
import { CallsReader } from "./calls-reader.js";
import { KubeClient } from "./kube/client.js";
import { loadConfig } from "./kube/config.js";
import { KubeError, forbidden } from "./kube/errors.js";
import { ObjectWatcher, RESOURCES, type SourceKind, isNotServed } from "./kube/watch.js";
import { type Log, type LogFormat, makeLog } from "./log.js";
import { Metrics } from "./metrics.js";
import { updateOccupancy } from "./occupancy.js";
import { serve, writeTextfile } from "./serve.js";
import { NamespaceSync } from "./namespaces.js";
import { poolRequester } from "./pool-requests.js";
import { NodeSync } from "./sync.js";

export const AGENT_HELP = `podcidr-ipam agent: keep the node file in sync from the Kubernetes API.

  podcidr-ipam agent [--node-name NAME] [--source ciliumnode|node|auto] [--kubeconfig FILE]
                     [--node-file FILE] [--cni-conf FILE | --data-dir DIR]
                     [--health-addr HOST:PORT] [--metrics-addr HOST:PORT] [--metrics-textfile DIR]
                     [--calls-log FILE] [--log-format text|json] [--namespace-pools]
                     [--request-pools [--pre-allocate POOL=N,...] [--pool-request-interval S]]

  --node-name       this node (default $NODE_NAME; the DaemonSet sets it from spec.nodeName)
  --source          ciliumnode, node, or auto (default): the CiliumNode when cilium.io serves one
  --kubeconfig      out of cluster (else $KUBECONFIG, else the pod's ServiceAccount)
  --node-file       where the plugin reads the node (default /var/lib/podcidr-ipam/node.json)
  --cni-conf        the installed conflist: its ipam section names the store for the metrics
  --data-dir        the store's dataDir, when there is no conflist (default /var/lib/cni/podcidr-ipam)
  --health-addr     /healthz and /readyz (default 127.0.0.1:9868)
  --metrics-addr    /metrics in Prometheus's text format (default 127.0.0.1:9869; "" turns it off)
  --metrics-textfile  also write DIR/podcidr_ipam.prom for node_exporter's textfile collector
  --calls-log       where the plugin's calls are counted (default ${CALLS_LOG})
  --namespace-pools multi-pool: keep <node-file>.namespaces.json, every namespace's ipam.cilium.io
                    pool annotations, from a watch of all namespaces (RBAC: namespaces list, watch)
  --request-pools   multi-pool: patch the CiliumNode's spec.ipam.pools.requested with what each pool
                    needs, by Cilium's rule (RBAC: ciliumnodes patch)
  --pre-allocate    addresses kept ahead per pool (default default=8; other pools 0)
  --pool-request-interval  at most one such patch per this many seconds (default 15)
SIGTERM finishes the write in flight and exits 0.
`;

export async function agent(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({ args: argv, options: OPTIONS }).values;
  } catch (e) {
    err(`podcidr-ipam agent: ${(e as Error).message}\n\n${AGENT_HELP}`);
    return 2;
  }
  if (v.help) {
    out(AGENT_HELP);
    return 0;
  }
  const format = (v["log-format"] as string) === "json" ? "json" : "text";
  const log = makeLog(format as LogFormat, err);
  try {
    return await run(v, log);
  } catch (e) {
    const k = e instanceof KubeError ? e : null;
    log("error", (e as Error).message, k?.details ? { details: k.details } : {});
    return 1;
  }
}

// --- internal ---

const OPTIONS = {
  "node-name": { type: "string" },
  source: { type: "string", default: "auto" },
  kubeconfig: { type: "string" },
  "node-file": { type: "string", default: "/var/lib/podcidr-ipam/node.json" },
  "cni-conf": { type: "string" },
  "data-dir": { type: "string" },
  "health-addr": { type: "string", default: "127.0.0.1:9868" },
  "metrics-addr": { type: "string", default: "127.0.0.1:9869" },
  "metrics-textfile": { type: "string" },
  "calls-log": { type: "string", default: CALLS_LOG },
  "log-format": { type: "string", default: "text" },
  "namespace-pools": { type: "boolean" },
  "request-pools": { type: "boolean" },
  "pre-allocate": { type: "string", default: "default=8" },
  "pool-request-interval": { type: "string", default: "15" },
  help: { type: "boolean", short: "h" },
} as const;

async function run(v: Record<string, string | boolean | undefined>, log: Log): Promise<number> {
  const nodeName = String(v["node-name"] ?? process.env.NODE_NAME ?? "");
  if (!nodeName) throw new Error("no node name: pass --node-name or set NODE_NAME (the DaemonSet sets it from spec.nodeName)");
  const source = String(v.source);
  if (!["ciliumnode", "node", "auto"].includes(source))
    throw new Error(`--source ${JSON.stringify(source)} must be ciliumnode, node or auto`);
  const ipam = storeConfig(v, String(v["node-file"]));
  const config = loadConfig({ kubeconfig: v.kubeconfig as string | undefined });
  for (const w of config.warnings) log("warn", w);
  const client = new KubeClient(config, { userAgent: "podcidr-ipam-agent" });
  const kind = source === "auto" ? await detect(client, nodeName, log) : (source as SourceKind);
  const metrics = new Metrics();
  const sync = new NodeSync(ipam.nodeFile, kind, nodeName, log, metrics, Date.now, ipam.mode);
  const watcher = new ObjectWatcher(client, {
    kind,
    name: nodeName,
    onObject: (o, i) => {
      sync.onObject(o, i);
      requester?.poke();
    },
    onState: (s, d) => sync.onState(s, d),
  });
  // Multi-pool: every namespace's pool annotations, into the map beside the node file.
  const ns = v["namespace-pools"] ? new NamespaceSync(ipam.nodeFile, log, metrics) : null;
  const nsWatcher = ns
    ? new ObjectWatcher(client, {
        kind: "namespace",
        name: "",
        onObject: (o, i) => ns.onObject(o, i),
        onState: (s, d) => ns.onState(s, d),
      })
    : null;
  const ready = (): { ok: boolean; why: string } => {
    const r = sync.ready();
    return r.ok && ns ? ns.ready() : r;
  };
  const requester = v["request-pools"] ? poolRequester(v, client, kind, nodeName, ipam, () => sync.current, log, metrics) : null;
  const calls = new CallsReader(String(v["calls-log"]), metrics, requester ? (c) => requester.call(c) : undefined);
  try {
    calls.open();
  } catch (e) {
    log("warn", `cannot make the calls log ${String(v["calls-log"])}: the plugin's calls are not counted`, { error: (e as Error).message });
  }
  const render = async (): Promise<string> => {
    calls.poll();
    exportCounters(metrics, watcher, sync, ipam.nodeFile, ready);
    try {
      await updateOccupancy(metrics, ipam, sync.current, () => {});
    } catch (e) {
      metrics.counter("podcidr_ipam_store_read_errors_total", "Times the store could not be read for the metrics.");
      log("warn", "cannot read the store for the metrics", { error: (e as Error).message });
    }
    return metrics.render();
  };
  const servers: Server[] = [await serve(String(v["health-addr"]), { ready, metrics: render })];
  if (v["metrics-addr"]) servers.push(await serve(String(v["metrics-addr"]), { ready, metrics: render }));
  const textfile = v["metrics-textfile"] as string | undefined;
  const tick = setInterval(() => {
    calls.poll();
    if (textfile)
      render().then(
        (t) => writeTextfile(textfile, t),
        (e: unknown) => log("warn", `cannot write the metrics textfile: ${(e as Error).message}`),
      );
  }, 15_000);
  // Refused pods are pending demand: look at the calls log every second, and again each minute to let them expire.
  const looks = requester ? [setInterval(() => calls.poll(), 1000), setInterval(() => requester.poke(), 60_000)] : [];
  log("info", "agent started", { node: nodeName, source: kind, nodeFile: ipam.nodeFile, server: config.server });
  const stopped = new Promise<void>((resolve) => {
    for (const sig of ["SIGTERM", "SIGINT"] as const) {
      process.once(sig, () => {
        log("info", `${sig}: stopping`);
        resolve();
      });
    }
  });
  const watching = Promise.race([watcher.start(), ...(nsWatcher ? [nsWatcher.start()] : [])]);
  await Promise.race([stopped, watching]);
  clearInterval(tick);
  for (const t of looks) clearInterval(t);
  requester?.stop();
  await Promise.all([watcher.stop(), nsWatcher?.stop()]);
  ns?.stop();
  for (const s of servers) await new Promise((r) => s.close(r));
  log("info", "agent stopped");
  return 0;
}

/** The store and node file the metrics read: the conflist's ipam section, or the flags. */
function storeConfig(v: Record<string, string | boolean | undefined>, nodeFile: string): IpamConfig {
  const conf = v["cni-conf"] as string | undefined;
  if (!conf) return parseIpamConfig({ nodeFile, ...(v["data-dir"] ? { dataDir: v["data-dir"] } : {}) });
  const obj = JSON.parse(readFileSync(conf, "utf8")) as { plugins?: { ipam?: Record<string, unknown> }[]; ipam?: Record<string, unknown> };
  const plugin = (Array.isArray(obj.plugins) ? obj.plugins : [obj]).find((p) => p?.ipam?.type === "podcidr-ipam");
  if (!plugin?.ipam) throw new Error(`${conf} has no plugin whose ipam.type is "podcidr-ipam"`);
  return parseIpamConfig({ ...plugin.ipam, nodeFile });
}

/** --source auto: the CiliumNode when the cilium.io API serves one for this node, else the v1 Node. */
async function detect(client: KubeClient, name: string, log: Log): Promise<SourceKind> {
  try {
    const r = await client.request("GET", `${RESOURCES.ciliumnode.path}?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`);
    const items = (JSON.parse(r.body) as { items?: unknown[] }).items ?? [];
    if (items.length > 0) {
      log("info", `source auto: the cilium.io API serves a CiliumNode ${name}; using it`);
      return "ciliumnode";
    }
    log("info", `source auto: the cilium.io API serves no CiliumNode ${name}; using the v1 Node`);
  } catch (e) {
    if (e instanceof KubeError && e.status === 403)
      throw forbidden(e, RESOURCES.ciliumnode.resource, "--source auto looks for a CiliumNode first");
    if (!(e instanceof KubeError) || !isNotServed(e)) throw e;
    log("info", "source auto: the cilium.io API is not served (no Cilium); using the v1 Node");
  }
  return "node";
}

function exportCounters(m: Metrics, w: ObjectWatcher, sync: NodeSync, nodeFile: string, ready: () => { ok: boolean }): void {
  const c = w.counters;
  m.setCounter("podcidr_ipam_api_requests_total", "Requests the agent sent to the API server.", c.requests);
  m.setCounter("podcidr_ipam_watch_restarts_total", "Watches the agent opened after its first one.", c.watchRestarts);
  m.setCounter("podcidr_ipam_relists_total", "Lists after the first one (after an expired resourceVersion).", c.relists);
  for (const [code, n] of Object.entries(c.apiErrors)) {
    m.setCounter("podcidr_ipam_api_errors_total", "Failed API requests by HTTP status, or network, or timeout.", n, { code });
  }
  if (c.lastSyncTime !== null)
    m.gauge(
      "podcidr_ipam_last_watch_event_timestamp_seconds",
      "When the watch last heard from the API server, Unix time.",
      c.lastSyncTime / 1000,
    );
  m.gauge("podcidr_ipam_ready", "1 when the agent is ready (see /readyz).", ready().ok ? 1 : 0);
  m.clear("podcidr_ipam_node_address_in_podcidr");
  for (const c of sync.conflicts) {
    m.gauge(
      "podcidr_ipam_node_address_in_podcidr",
      "1 for each of the node's own addresses (InternalIP, ExternalIP) that lies in one of its podCIDRs: the node loses connectivity.",
      1,
      { cidr: c.cidr, address: c.ip },
    );
  }
  const age = nodeFileAge(nodeFile);
  if (age !== null) m.gauge("podcidr_ipam_node_file_age_seconds", "Seconds since the node file was last written.", age);
}

function nodeFileAge(path: string): number | null {
  try {
    return Math.max(0, (Date.now() - statSync(path).mtimeMs) / 1000);
  } catch {
    return null;
  }
}
