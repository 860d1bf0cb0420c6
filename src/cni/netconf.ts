// The request configuration on stdin: the main plugin's whole config, with our
// settings under `ipam` and the runtime's additions at the top level.
import { Code, CniError, brief } from "../errors.js";
import { type IpamConfig, parseIpamConfig } from "../ipam/config.js";
import { type Command, MAX_NAME, NAME_RE } from "./env.js";

export interface Attachment {
  readonly containerID: string;
  readonly ifname: string;
}

export interface NetConf {
  readonly name: string;
  readonly ipam: IpamConfig;
  /** Addresses asked for via runtimeConfig.ips and args.cni.ips (CNI_ARGS IP= is added by the caller). */
  readonly requestedIps: readonly string[];
  readonly prevResult: unknown;
  /** GC: cni.dev/valid-attachments (or the older cni.dev/attachments); null when neither key is present. */
  readonly validAttachments: readonly Attachment[] | null;
}

export const MAX_STDIN = 1 << 20;

/** Decode stdin to a JSON object (code 6 on failure). */
export function decodeStdin(buf: Buffer): Record<string, unknown> {
  if (buf.length > MAX_STDIN) throw new CniError(Code.DecodingFailure, `network config on stdin is ${buf.length} bytes; the limit is ${MAX_STDIN}`);
  const text = buf.toString("utf8");
  if (text.trim() === "") throw new CniError(Code.DecodingFailure, "no network config on stdin", "the runtime passes the network config as JSON on standard input");
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new CniError(Code.DecodingFailure, "network config on stdin is not valid JSON", (err as Error).message);
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new CniError(Code.DecodingFailure, "network config on stdin must be a JSON object", `got ${Array.isArray(obj) ? "an array" : typeof obj}`);
  }
  return obj as Record<string, unknown>;
}

export function parseNetConf(obj: Record<string, unknown>, command: Command): NetConf {
  const name = obj.name;
  if (typeof name !== "string" || name === "") throw new CniError(Code.InvalidNetworkConfig, "missing network name", 'the config needs a top-level "name"');
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
    if (ips !== undefined && !Array.isArray(ips)) throw new CniError(Code.InvalidNetworkConfig, "prevResult.ips must be a list", `got ${brief(ips)}`);
  }
  const requestedIps = command === "ADD" ? [...ipList(obj.runtimeConfig, ["ips"], "runtimeConfig.ips"), ...ipList(obj.args, ["cni", "ips"], "args.cni.ips")] : [];
  return Object.freeze({
    name,
    ipam,
    requestedIps,
    prevResult: obj.prevResult,
    validAttachments: command === "GC" ? attachments(obj) : null,
  });
}

// --- internal ---

function mustBeObject(v: unknown, label: string): void {
  if (v !== undefined && (typeof v !== "object" || v === null || Array.isArray(v))) {
    throw new CniError(Code.InvalidNetworkConfig, `${label} must be an object`, `got ${brief(v)}`);
  }
}

function ipList(root: unknown, path: string[], label: string): string[] {
  let v: unknown = root;
  for (const key of path) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return [];
    v = (v as Record<string, unknown>)[key];
  }
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
    throw new CniError(Code.InvalidNetworkConfig, `${label} must be a list of address strings such as "10.0.2.50" or "10.0.2.50/24"`, `got ${brief(v, 200)}`);
  }
  return v as string[];
}

function attachments(obj: Record<string, unknown>): Attachment[] | null {
  const key = "cni.dev/valid-attachments" in obj ? "cni.dev/valid-attachments" : "cni.dev/attachments" in obj ? "cni.dev/attachments" : null;
  if (key === null) return null;
  const list = obj[key];
  if (!Array.isArray(list)) throw new CniError(Code.InvalidNetworkConfig, `${key} must be a list of {"containerID", "ifname"}`, `got ${brief(list, 200)}`);
  return list.map((a, i) => {
    const e = a as { containerID?: unknown; ifname?: unknown };
    if (typeof a !== "object" || a === null || typeof e.containerID !== "string" || typeof e.ifname !== "string") {
      throw new CniError(Code.InvalidNetworkConfig, `${key}[${i}] must be {"containerID": string, "ifname": string}`, `got ${brief(a, 200)}`);
    }
    return { containerID: e.containerID, ifname: e.ifname };
  });
}
