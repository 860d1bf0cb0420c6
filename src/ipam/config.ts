// The `ipam` section of the network config: validated once, returned frozen.
// Messages name the key, the bad value and the expected form.
import { Code, CniError, brief } from "../errors.js";
import { PREFIX_RE, parseIp } from "./cidr.js";

/** Cilium's IPAM modes that give a node its own addresses (crd is read but not served yet). */
export type NodeMode = "cluster-pool" | "multi-pool" | "crd" | "kubernetes";
export const NODE_MODES: readonly NodeMode[] = ["cluster-pool", "multi-pool", "crd", "kubernetes"];

/** A pool's name: a Kubernetes object name (CiliumPodIPPool), a lowercase RFC 1123 subdomain. */
export const POOL_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const isPoolName = (v: unknown): v is string => typeof v === "string" && v.length <= 253 && POOL_NAME_RE.test(v);

export interface Route {
  readonly dst: string;
  readonly gw?: string;
  readonly [extra: string]: unknown;
}

export interface IpamConfig {
  readonly nodeFile: string;
  /** When set, a node file for another node (metadata.name) is refused: it would hand out that node's addresses. */
  readonly nodeName: string;
  readonly dataDir: string;
  /** Seconds to wait for the node file / its podCIDRs. */
  readonly waitForPodCIDRs: number;
  /** Reserve the first address of each podCIDR and return it as gateway. */
  readonly gateway: boolean;
  /** Seconds a released address rests before it is handed out again (while others are free). */
  readonly reuseCooldown: number;
  /** Seconds to wait for the store lock. */
  readonly lockTimeout: number;
  /** The first call of this network in a new boot releases its attachments made in an earlier boot. */
  readonly releaseOnReboot: boolean;
  /**
   * Which of the node file's IPAM fields to read: "auto" (the default) tells them apart and refuses
   * a node object that mixes them; see NodeMode.
   */
  readonly mode: "auto" | NodeMode;
  /** Multi-pool: the pool this network takes its addresses from (a Multus network pinned to one pool); "" when not set. */
  readonly pool: string;
  readonly routes: readonly Route[];
  readonly dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

export const DEFAULTS = {
  nodeFile: "/var/lib/podcidr-ipam/node.json",
  dataDir: "/var/lib/cni/podcidr-ipam",
  waitForPodCIDRs: 10,
  gateway: true,
  reuseCooldown: 0,
  lockTimeout: 60,
  releaseOnReboot: false,
} as const;

export function parseIpamConfig(ipam: unknown): IpamConfig {
  if (typeof ipam !== "object" || ipam === null || Array.isArray(ipam)) {
    throw invalid("IPAM config missing 'ipam' key", 'the plugin config needs "ipam": {"type": "podcidr-ipam", ...}');
  }
  const o = ipam as Record<string, unknown>;
  return Object.freeze({
    nodeFile: absPath(o, "nodeFile", DEFAULTS.nodeFile),
    nodeName: nodeName(o.nodeName),
    dataDir: absPath(o, "dataDir", DEFAULTS.dataDir),
    waitForPodCIDRs: seconds(o, "waitForPodCIDRs", DEFAULTS.waitForPodCIDRs, 0, 600),
    gateway: bool(o, "gateway", DEFAULTS.gateway),
    reuseCooldown: seconds(o, "reuseCooldown", DEFAULTS.reuseCooldown, 0, 86400),
    lockTimeout: seconds(o, "lockTimeout", DEFAULTS.lockTimeout, 0.001, 3600),
    releaseOnReboot: bool(o, "releaseOnReboot", DEFAULTS.releaseOnReboot),
    mode: mode(o.mode),
    pool: pool(o.pool),
    routes: routes(o.routes),
    ...(o.dns === undefined ? {} : { dns: dns(o.dns) }),
  });
}

// --- internal ---

function invalid(msg: string, details = ""): CniError {
  return new CniError(Code.InvalidNetworkConfig, msg, details);
}

const show = (v: unknown): string => brief(v);

function absPath(o: Record<string, unknown>, key: string, dflt: string): string {
  const v = o[key];
  if (v === undefined) return dflt;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a NUL or newline in a path is what this refuses
  if (typeof v !== "string" || !v.startsWith("/") || v.length > 4096 || /[\u0000\n]/.test(v)) {
    throw invalid(`ipam.${key} must be an absolute path, got ${show(v)}`, `for example "${dflt}"`);
  }
  return v.replace(/\/+$/, "") || "/";
}

/** A Kubernetes node name: a lowercase RFC 1123 subdomain. */
function nodeName(v: unknown): string {
  if (v === undefined) return "";
  if (typeof v !== "string" || v.length > 253 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(v)) {
    throw invalid(`ipam.nodeName must be a Kubernetes node name (lowercase letters, digits, "-" and "."), got ${show(v)}`);
  }
  return v;
}

function mode(v: unknown): IpamConfig["mode"] {
  if (v === undefined || v === "auto") return "auto";
  if (typeof v === "string" && (NODE_MODES as readonly string[]).includes(v)) return v as NodeMode;
  throw invalid(
    `ipam.mode must be one of auto, ${NODE_MODES.join(", ")}, got ${show(v)}`,
    "auto (the default) reads whichever of spec.ipam.podCIDRs, spec.ipam.pools and spec.ipam.pool the node object has",
  );
}

function pool(v: unknown): string {
  if (v === undefined) return "";
  if (!isPoolName(v)) {
    throw invalid(
      `ipam.pool must be a pool name (a CiliumPodIPPool's name: lowercase letters, digits, "-" and "."), got ${show(v)}`,
      'for example "default"; it pins this network to one pool of a multi-pool node',
    );
  }
  return v;
}

function seconds(o: Record<string, unknown>, key: string, dflt: number, min: number, max: number): number {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
    throw invalid(`ipam.${key} must be a number of seconds from ${min} to ${max}, got ${show(v)}`);
  }
  return v;
}

function bool(o: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") throw invalid(`ipam.${key} must be true or false, got ${show(v)}`);
  return v;
}

function routes(v: unknown): Route[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalid(`ipam.routes must be a list of {"dst": CIDR, "gw": IP}, got ${show(v)}`);
  return v.map((r, i) => {
    if (typeof r !== "object" || r === null || Array.isArray(r)) throw invalid(`ipam.routes[${i}] must be an object, got ${show(r)}`);
    const rt = r as Record<string, unknown>;
    const dst = rt.dst;
    const slash = typeof dst === "string" ? dst.indexOf("/") : -1;
    const ip = slash > 0 ? parseIp((dst as string).slice(0, slash)) : null;
    const prefix = slash > 0 ? Number((dst as string).slice(slash + 1)) : NaN;
    if (!ip || !PREFIX_RE.test((dst as string).slice(slash + 1)) || prefix > (ip.family === 4 ? 32 : 128)) {
      throw invalid(`ipam.routes[${i}].dst must be a CIDR such as "0.0.0.0/0" or "::/0", got ${show(dst)}`);
    }
    if (rt.gw !== undefined && (typeof rt.gw !== "string" || !parseIp(rt.gw))) {
      throw invalid(`ipam.routes[${i}].gw must be an IP address, got ${show(rt.gw)}`);
    }
    // CNI 1.1.0 route fields: Go's types.Route decodes MTU, AdvMSS, Priority as int and
    // Table, Scope as *int, so a bad value would fail the main plugin, not this config.
    for (const key of ["mtu", "advmss", "priority", "table", "scope"] as const) {
      const n = rt[key];
      if (n === undefined) continue;
      const max = key === "scope" ? 255 : Number.MAX_SAFE_INTEGER;
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0 || n > max) {
        throw invalid(
          `ipam.routes[${i}].${key} must be ${key === "scope" ? "an integer from 0 to 255" : "a non-negative integer"}, got ${show(n)}`,
          "the main plugin reads a route's mtu, advmss, priority and table as integers and its scope as 0-255 (0 universe, 253 link, " +
            "254 host)",
        );
      }
    }
    return Object.freeze({ ...rt, dst: dst as string }) as Route;
  });
}

function dns(v: unknown): NonNullable<IpamConfig["dns"]> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw invalid(`ipam.dns must be an object, got ${show(v)}`);
  const d = v as Record<string, unknown>;
  const out: NonNullable<IpamConfig["dns"]> = {};
  for (const key of ["nameservers", "search", "options"] as const) {
    const list = d[key];
    if (list === undefined) continue;
    if (!Array.isArray(list) || !list.every((s) => typeof s === "string"))
      throw invalid(`ipam.dns.${key} must be a list of strings, got ${show(list)}`);
    out[key] = list as string[];
  }
  if (d.domain !== undefined) {
    if (typeof d.domain !== "string") throw invalid(`ipam.dns.domain must be a string, got ${show(d.domain)}`);
    out.domain = d.domain;
  }
  return out;
}
