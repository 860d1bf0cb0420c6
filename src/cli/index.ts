// The small CLI for people (no CNI_COMMAND): --help, --version, status.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { CniError } from "../errors.js";
import { DEFAULTS, parseIpamConfig } from "../ipam/config.js";
import { collectReport, formatReport } from "./report.js";
import { agent } from "../agent/agent.js";
import { install } from "./install.js";
import { KEPT, formatHistory, history, parseQuery } from "./history.js";
import { formatRepair, repairDisk } from "./repair.js";
import { NAME_RE } from "../cni/env.js";
import { SUPPORTED_VERSIONS } from "../cni/version.js";

declare const __VERSION__: string;
export const VERSION = typeof __VERSION__ === "string" ? __VERSION__ : "dev";

const HELP = `podcidr-ipam ${VERSION}: a CNI IPAM plugin that hands out pod addresses from the
pod CIDRs delegated to this node (CiliumNode spec.ipam.podCIDRs or v1 Node spec.podCIDRs).

As a CNI plugin it is run by a main plugin (bridge, ptp, ...) with CNI_COMMAND set
(ADD, DEL, CHECK, GC, STATUS, VERSION); CNI versions ${SUPPORTED_VERSIONS.join(", ")}.

Usage:
  podcidr-ipam --help | --version
  podcidr-ipam status [--all-addresses] [--json] --conf FILE
  podcidr-ipam status [--all-addresses] [--json] [--data-dir DIR] [--node-file FILE] [--network NAME]
  podcidr-ipam repair [--dry-run] [--release-unowned] [--json] (--conf FILE | --data-dir DIR)
  podcidr-ipam history [ADDRESS | --container ID | --pod NS/NAME] [--since T] [--json] (--conf FILE | --data-dir DIR)
  podcidr-ipam agent [--node-name NAME] [--source ciliumnode|node|auto] ...   (see agent --help)
  podcidr-ipam install [--cni-bin-dir DIR] [--cni-conf FILE] [--node-name NAME] ...   (see install --help)

status shows, per podCIDR, how many addresses are allocated and (with --all-addresses)
each address with its owner (network, container, interface, pod), like
cilium-dbg status --all-addresses. Every network on the node that uses the same
dataDir shares one store, so every network's pods are shown.
  --conf FILE       a .conf or .conflist; its plugin whose ipam.type is podcidr-ipam is used
  --data-dir DIR    store root (default ${DEFAULTS.dataDir})
  --node-file FILE  cached node object (default ${DEFAULTS.nodeFile})
  --network NAME    the network asked about (for the heading)
  --json            machine-readable output

repair rebuilds a store that fails to load (error 103): files that fail their checks
are moved to <dataDir>/_store/quarantine/, and every bitmap is rebuilt from the
attachment records. Addresses set in a bitmap that no record holds are kept (they may
belong to pods whose records were lost) unless --release-unowned is given.
--dry-run takes no lock and writes nothing.

history lists who held an address (or which addresses a container or a pod held),
and when: "held" at the ADD, "released" at the DEL, GC or release on reboot. The
store keeps ${KEPT} (the oldest dropped first), and always shows a live
attachment. --since takes a time (2026-12-01T08:00:00Z) or a duration (90s, 30m,
12h, 7d). It takes no lock and writes nothing.
Exit status: 0 healthy, 1 a problem is reported (missing node file, full pool, bad store), 2 usage error.
`;

export async function cli(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  if (argv[0] === "install") return install(argv.slice(1), out, err);
  if (argv[0] === "agent") return agent(argv.slice(1), out, err);
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(argv);
  } catch (e) {
    err(`podcidr-ipam: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  if (v.help || (positionals.length === 0 && !v.version)) {
    (v.help ? out : err)(HELP);
    return v.help ? 0 : 2;
  }
  if (v.version) {
    out(`podcidr-ipam ${VERSION} (CNI ${SUPPORTED_VERSIONS.join(", ")})\n`);
    return 0;
  }
  const cmd = positionals[0] ?? "";
  if (!["status", "repair", "history"].includes(cmd) || positionals.length > (cmd === "history" ? 2 : 1)) {
    err(`podcidr-ipam: unknown command ${JSON.stringify(positionals.join(" "))}; see --help\n`);
    return 2;
  }
  const say = (msg: string): void => err(`podcidr-ipam: ${msg}\n`);
  try {
    const target = v.conf ? fromConf(v.conf) : fromFlags(v["data-dir"], v.network, v["node-file"]);
    if (cmd === "history") {
      const q = parseQuery(positionals[1], { container: v.container, pod: v.pod, since: v.since });
      const lines = await history(target.ipam, q, say);
      out(v.json ? `${JSON.stringify(lines, null, 2)}\n` : formatHistory(lines, q));
      return 0;
    }
    if (cmd === "repair") {
      const rep = await repairDisk(target.ipam, { releaseUnowned: Boolean(v["release-unowned"]), dryRun: Boolean(v["dry-run"]) }, say);
      out(v.json ? `${JSON.stringify(rep, null, 2)}\n` : formatRepair(rep));
      return 0;
    }
    const report = await collectReport(target.name, target.ipam, say);
    out(v.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report, Boolean(v["all-addresses"])));
    return report.problems.length > 0 ? 1 : 0;
  } catch (e) {
    if (e instanceof CniError) {
      err(`podcidr-ipam: ${e.message}${e.details ? `\n  ${e.details}` : ""}\n`);
      return e.code === 7 || e.code === 2 ? 2 : 1;
    }
    throw e;
  }
}

// --- internal ---

function parseOptions(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
      "all-addresses": { type: "boolean" },
      json: { type: "boolean" },
      conf: { type: "string" },
      "data-dir": { type: "string" },
      network: { type: "string" },
      "node-file": { type: "string" },
      "dry-run": { type: "boolean" },
      "release-unowned": { type: "boolean" },
      container: { type: "string" },
      pod: { type: "string" },
      since: { type: "string" },
    },
  });
}

function fromConf(path: string): { name: string; ipam: ReturnType<typeof parseIpamConfig> } {
  let conf: Record<string, unknown>;
  try {
    conf = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new CniError(7, `cannot read --conf ${path}: ${(e as Error).message}`);
  }
  const plugins = Array.isArray(conf.plugins) ? (conf.plugins as Record<string, unknown>[]) : [conf];
  const plugin = plugins.find((p) => (p?.ipam as { type?: unknown } | undefined)?.type === "podcidr-ipam");
  if (!plugin) throw new CniError(7, `${path} has no plugin whose ipam.type is "podcidr-ipam"`);
  if (typeof conf.name !== "string") throw new CniError(7, `${path} has no "name"`);
  return { name: conf.name, ipam: parseIpamConfig(plugin.ipam) };
}

function fromFlags(dataDir?: string, network?: string, nodeFile?: string): { name: string; ipam: ReturnType<typeof parseIpamConfig> } {
  if (network !== undefined && !NAME_RE.test(network)) throw new CniError(7, `invalid network name ${JSON.stringify(network)}`);
  const abs = (p: string | undefined): string | undefined =>
    p === undefined ? undefined : p.startsWith("/") ? p : `${process.cwd()}/${p}`;
  return { name: network ?? "", ipam: parseIpamConfig({ dataDir: abs(dataDir), nodeFile: abs(nodeFile) }) };
}
