// The request configuration on stdin: the main plugin's whole config, with our
// settings under `ipam` and the runtime's additions at the top level.
import { Code, CniError, brief } from "../errors.js";
import { type Family, PREFIX_RE, parseIp } from "../ipam/cidr.js";
import { type IpamConfig, isPoolName, parseIpamConfig } from "../ipam/config.js";
import { type Annotations, annotationsOf } from "../ipam/pool-choice.js";
import { type Command, MAX_NAME, NAME_RE } from "./env.js";

export interface Attachment {
  readonly containerID: string;
  readonly ifname: string;
}

/** One requested address: parsed, with the text as written (trimmed) for messages. */
export interface RequestedAddress {
  readonly family: Family;
  readonly value: bigint;
  readonly text: string;
}

export interface NetConf {
  readonly name: string;
  readonly ipam: IpamConfig;
  /**
   * ADD: the addresses asked for via IP= in CNI_ARGS, args.cni.ips and runtimeConfig.ips,
   * merged as host-local does; at most one per family. Empty for other commands.
   */
  readonly requested: readonly RequestedAddress[];
  readonly prevResult: unknown;
  /** Multi-pool, ADD: args.cni.pool (Multus "cni-args"), "" when absent. */
  readonly argsPool: string;
  /** Multi-pool, ADD: runtimeConfig["io.kubernetes.cri.pod-annotations"], null when the runtime passed none. */
  readonly podAnnotations: Annotations | null;
  /** GC: cni.dev/valid-attachments (or the older cni.dev/attachments); null when neither key is present. */
  readonly validAttachments: readonly Attachment[] | null;
}

export const MAX_STDIN = 1 << 20;

/** Decode stdin to a JSON object (code 6 on failure). */
export function decodeStdin(buf: Buffer): Record<string, unknown> {
  // The reader stops soon after the limit, so buf.length is not the config's size.
  if (buf.length > MAX_STDIN)
    throw new CniError(
      Code.DecodingFailure,
      `network config on stdin is more than ${MAX_STDIN} bytes`,
      "that is the limit (1 MiB); a network config is a few kB",
    );
  const text = buf.toString("utf8");
  if (text.trim() === "")
    throw new CniError(
      Code.DecodingFailure,
      "no network config on stdin",
      "the runtime passes the network config as JSON on standard input",
    );
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new CniError(Code.DecodingFailure, "network config on stdin is not valid JSON", (err as Error).message);
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new CniError(
      Code.DecodingFailure,
      "network config on stdin must be a JSON object",
      `got ${Array.isArray(obj) ? "an array" : typeof obj}`,
    );
  }
  return obj as Record<string, unknown>;
}

/** The request config, validated once. `cniArgs` is CNI_ARGS as parsed by parseEnv (its IP= key). */
export function parseNetConf(obj: Record<string, unknown>, command: Command, cniArgs: ReadonlyMap<string, string> = new Map()): NetConf {
  const name = obj.name;
  if (typeof name !== "string" || name === "")
    throw new CniError(Code.InvalidNetworkConfig, "missing network name", 'the config needs a top-level "name"');
  if (!NAME_RE.test(name) || name.length > MAX_NAME) {
    throw new CniError(
      Code.InvalidNetworkConfig,
      `invalid characters found in network name ${JSON.stringify(name.slice(0, 80))}`,
      `the name must match ${NAME_RE.source} and be at most ${MAX_NAME} characters; it names the store folder`,
    );
  }
  const ipam = parseIpamConfig(obj.ipam);
  // Containers the runtime fills in must have their spec'd shape when present.
  mustBeObject(obj.runtimeConfig, "runtimeConfig");
  mustBeObject(obj.args, "args");
  mustBeObject((obj.args as Record<string, unknown> | undefined)?.cni, "args.cni");
  if (command === "CHECK") {
    mustBeObject(obj.prevResult, "prevResult");
    const ips = (obj.prevResult as Record<string, unknown> | undefined)?.ips;
    if (ips !== undefined && !Array.isArray(ips))
      throw new CniError(Code.InvalidNetworkConfig, "prevResult.ips must be a list", `got ${brief(ips)}`);
  }
  const requested = command === "ADD" ? requestedAddresses(obj, cniArgs) : Object.freeze([]);
  const runtime = obj.runtimeConfig as Record<string, unknown> | undefined;
  return Object.freeze({
    name,
    ipam,
    requested,
    prevResult: obj.prevResult,
    argsPool: command === "ADD" ? argsPool(obj.args) : "",
    podAnnotations: command === "ADD" ? annotationsOf(runtime?.[POD_ANNOTATIONS], `runtimeConfig["${POD_ANNOTATIONS}"]`) : null,
    validAttachments: command === "GC" ? attachments(obj) : null,
  });
}

/** The capability containerd and CRI-O fill with the pod's annotations, for a plugin whose conflist entry declares it. */
export const POD_ANNOTATIONS = "io.kubernetes.cri.pod-annotations";

// --- internal ---

function argsPool(args: unknown): string {
  const v = (args as { cni?: { pool?: unknown } } | undefined)?.cni?.pool;
  if (v === undefined || v === null || v === "") return "";
  if (!isPoolName(v)) {
    throw new CniError(
      Code.InvalidNetworkConfig,
      `args.cni.pool must be a pool name (a CiliumPodIPPool's name: lowercase letters, digits, "-" and "."), got ${brief(v)}`,
      'Multus passes a network-selection element\'s "cni-args" as args.cni: fix its "pool"',
    );
  }
  return v;
}

function mustBeObject(v: unknown, label: string): void {
  if (v !== undefined && (typeof v !== "object" || v === null || Array.isArray(v))) {
    throw new CniError(Code.InvalidNetworkConfig, `${label} must be an object`, `got ${brief(v)}`);
  }
}

const REQUEST_FORM =
  "expected an address with an optional prefix, such as 10.0.2.50 or 10.0.2.50/24 (the prefix is ignored: the podCIDR's is used)";

/**
 * IP= in CNI_ARGS, then args.cni.ips, then runtimeConfig.ips (host-local's order), merged:
 * the same address from several sources counts once, two of one family is an error.
 */
function requestedAddresses(obj: Record<string, unknown>, cniArgs: ReadonlyMap<string, string>): readonly RequestedAddress[] {
  // Go matches CNI_ARGS keys exactly; a near miss would be dropped with the other unknown keys.
  for (const key of cniArgs.keys()) {
    if (key !== "IP" && key.trim().toUpperCase() === "IP") {
      throw new CniError(
        Code.InvalidEnvironmentVariables,
        `CNI_ARGS key ${JSON.stringify(key)} is not IP: write IP=<address>, in upper case with no spaces`,
        "keys are matched exactly (as host-local does) and unknown keys are ignored, so this request would have been dropped",
      );
    }
  }
  const sources: { where: string; text: string }[] = [];
  for (const text of cniArgs.get("IP")?.split(",") ?? []) sources.push({ where: "CNI_ARGS IP=", text });
  for (const [i, text] of ipList(obj.args, ["cni", "ips"], "args.cni.ips").entries()) sources.push({ where: `args.cni.ips[${i}]`, text });
  for (const [i, text] of ipList(obj.runtimeConfig, ["ips"], "runtimeConfig.ips").entries())
    sources.push({ where: `runtimeConfig.ips[${i}]`, text });
  const out = new Map<Family, RequestedAddress>();
  for (const s of sources) {
    const text = s.text.trim();
    if (text === "") continue;
    const want = requestedAddress(text, s.where);
    const prev = out.get(want.family);
    if (prev && prev.value !== want.value) {
      throw new CniError(
        Code.InvalidNetworkConfig,
        `more than one IPv${want.family} address requested (${prev.text}, ${text})`,
        "an attachment gets one address per family",
      );
    }
    if (!prev) out.set(want.family, want);
  }
  return Object.freeze([...out.values()]);
}

/** "10.0.2.50" or "10.0.2.50/24": the prefix must be valid for the family (as Go's ParseCIDR has it), and is then ignored. */
function requestedAddress(text: string, where: string): RequestedAddress {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addr);
  if (!ip) throw new CniError(Code.InvalidNetworkConfig, `requested address ${brief(text)} (${where}) is not an IP address`, REQUEST_FORM);
  if (slash >= 0) {
    const prefix = text.slice(slash + 1);
    // The written form decides: ::ffff:10.0.2.50/120 is an IPv6 text with an IPv6 prefix.
    const bits = addr.includes(":") ? 128 : 32;
    if (!PREFIX_RE.test(prefix) || Number(prefix) > bits) {
      throw new CniError(
        Code.InvalidNetworkConfig,
        `requested address ${brief(text)} (${where}) has prefix ` +
          `/${JSON.stringify(prefix.length > 20 ? `${prefix.slice(0, 20)}...` : prefix).slice(1, -1)}, expected /0 to /${bits} written ` +
          `without a sign or leading zero`,
        REQUEST_FORM,
      );
    }
  }
  return Object.freeze({ family: ip.family, value: ip.value, text });
}

function ipList(root: unknown, path: string[], label: string): string[] {
  let v: unknown = root;
  for (const key of path) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return [];
    v = (v as Record<string, unknown>)[key];
  }
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
    throw new CniError(
      Code.InvalidNetworkConfig,
      `${label} must be a list of address strings such as "10.0.2.50" or "10.0.2.50/24"`,
      `got ${brief(v, 200)}`,
    );
  }
  return v as string[];
}

function attachments(obj: Record<string, unknown>): Attachment[] | null {
  const key =
    "cni.dev/valid-attachments" in obj ? "cni.dev/valid-attachments" : "cni.dev/attachments" in obj ? "cni.dev/attachments" : null;
  if (key === null) return null;
  const list = obj[key];
  // libcni marshals a nil Go slice as null, and CRI-O passes nil for a network with no live pod:
  // the key is there, so the runtime did send its list, and it is empty.
  if (list === null) return [];
  if (!Array.isArray(list))
    throw new CniError(Code.InvalidNetworkConfig, `${key} must be a list of {"containerID", "ifname"}`, `got ${brief(list, 200)}`);
  return list.map((a, i) => {
    const e = a as { containerID?: unknown; ifname?: unknown };
    if (typeof a !== "object" || a === null || typeof e.containerID !== "string" || typeof e.ifname !== "string") {
      throw new CniError(
        Code.InvalidNetworkConfig,
        `${key}[${i}] must be {"containerID": string, "ifname": string}`,
        `got ${brief(a, 200)}`,
      );
    }
    return { containerID: e.containerID, ifname: e.ifname };
  });
}
