// The small CLI for people (no CNI_COMMAND): --help, --version, status.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { CniError } from "../errors.js";
import { DEFAULTS, parseIpamConfig } from "../ipam/config.js";
import { collectReport, formatReport } from "./report.js";
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
Exit status: 0 healthy, 1 a problem is reported (missing node file, full pool, bad store), 2 usage error.
`;

export async function cli(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
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
  if (!["status", "repair"].includes(positionals[0] ?? "") || positionals.length > 1) {
    err(`podcidr-ipam: unknown command ${JSON.stringify(positionals.join(" "))}; see --help\n`);
    return 2;
  }
  const say = (msg: string): void => err(`podcidr-ipam: ${msg}\n`);
  try {
    const target = v.conf ? fromConf(v.conf) : fromFlags(v["data-dir"], v.network, v["node-file"]);
    if (positionals[0] === "repair") {
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
      return e.code === 7 ? 2 : 1;
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
