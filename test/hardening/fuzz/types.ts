// What a fuzz case is: a valid request (its twin) with one fault applied, the
// codes the fault must get and the words its message must contain; and the
// sandbox (context) it runs against.
import type { Sandbox } from "../../helpers/plugin";
import type { Rng } from "./bytes";

export type Env = Record<string, string | undefined>;
export type Target = "ADD-new" | "ADD-existing" | "DEL" | "CHECK" | "GC" | "STATUS";

export type NodeSetup =
  /** `namespaces`: the multi-pool namespaces' map written beside it (<path>.namespaces.json). */
  | { kind: "bytes"; bytes: Buffer; namespaces?: Buffer }
  | { kind: "missing" }
  | { kind: "fifo" }
  | { kind: "dir" }
  | { kind: "huge"; prefix: Buffer }
  | { kind: "symlink"; to: string }
  | { kind: "loop" };

export interface Spec {
  env: Env;
  conf: Record<string, unknown>;
  /** Replaces the encoded conf. */
  stdin?: Buffer;
  node?: { path: string; setup: NodeSetup };
}

export interface Fault {
  variant: string;
  codes: number[];
  /** Substrings the error's msg must contain: the problem's name. */
  mentions: string[];
}

export interface Case extends Fault {
  id: number;
  family: string;
  target: Target;
  ctx: Ctx;
  env: Env;
  stdin: Buffer;
  node?: { path: string; setup: NodeSetup };
  twin: { env: Env; stdin: Buffer };
}

export interface Seed {
  id: string;
  ifname: string;
  /** Result addresses, e.g. "10.0.2.2/24". */
  ips: string[];
}

export interface Ctx {
  name: "store" | "no-store";
  sb: Sandbox;
  nodesDir: string;
  seeds: Seed[];
  /** Executable tier: env strings cannot hold NUL and are at most 128 KiB each. */
  exe: boolean;
}

export const VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
export const VALID_ROUTES = [{ dst: "0.0.0.0/0" }, { dst: "::/0" }, { dst: "10.96.0.0/12", gw: "10.0.2.1" }, { dst: "fd00:1::/64" }];
export const VALID_DNS = {
  nameservers: ["10.96.0.10"],
  domain: "cluster.local",
  search: ["default.svc.cluster.local"],
  options: ["ndots:5"],
};
/** The README's rule for container IDs and network names. */
export const NAME_OK = (s: string): boolean => /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(s) && s.length <= 200;
/** The README's rule for interface names. */
// eslint-disable-next-line no-control-regex
export const IFNAME_OK = (s: string): boolean =>
  s.length >= 1 &&
  s.length <= 15 &&
  s !== "." &&
  s !== ".." &&
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what the rule refuses
  !/[/:\s\u0000-\u001f\u007f]/.test(s);

export function ipamOf(s: Spec): Record<string, unknown> {
  return s.conf.ipam as Record<string, unknown>;
}

export interface Family {
  name: string;
  weight: number;
  targets: readonly Target[];
  apply(r: Rng, s: Spec, x: { ctx: Ctx; id: number; target: Target }): Fault;
}
