// Guarantee 4, "nothing is lost by a bad input": thousands of generated bad
// inputs (truncated and deeply nested JSON, wrong types for every config field,
// huge strings, invalid and overlapping CIDRs, non-UTF-8 bytes, hostile CNI_*
// values, broken node files up to 100 MB, FIFOs, folders) from a fixed seed.
// Each must get one CNI error object with the expected code and a message that
// names the problem, a non-zero exit, within a bounded time, with no stack trace
// on stdout, and must leave the store byte-for-byte as it was (or absent, when
// there was none).
//
// Two tiers: in process through dispatch() with the real handlers (fast, many
// cases) and through the built executable with run() (fewer cases).
//
// Every generated input is bad by construction: each case is a valid request
// (its "twin") with exactly one fault applied, and the generators check their own
// output (a value inside the allowed range, a name matching the README's rule, a
// mutation that still parses) and retry. The "controls" tests run the twins of a
// sample of cases and require them to succeed, so an error seen in the fuzz loop
// comes from the fault and not from a broken base request.
//
// A failing case does not stop the run: the violation is recorded, the store is
// restored from the snapshot, and the test fails at the end with one line per
// kind of violation and a reproducer.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Io, dispatch } from "../../src/cni/dispatch.js";
import { handlers } from "../../src/commands/index.js";
import { BIN, ROOT, type RunResult, Sandbox, collect, run } from "../helpers/plugin";
import { record, size } from "./report";

// ---------------------------------------------------------------------------
// Seeded PRNG (mulberry32)
// ---------------------------------------------------------------------------

const SEED = (Number(process.env.FUZZ_SEED ?? 0x9e3779b9) >>> 0) || 1;
process.stdout.write(`[fuzz] seed=${SEED} (set FUZZ_SEED to replay another)\n`);

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(0, a.length)]!;
  }
  /** Call one of the generators. */
  gen<T>(a: readonly (() => T)[]): T {
    return this.pick(a)();
  }
}

// ---------------------------------------------------------------------------
// JSON with raw pieces: deep nesting, 1e400, non-UTF-8 bytes go in as bytes
// ---------------------------------------------------------------------------

class Raw {
  readonly bytes: Buffer;
  constructor(b: Buffer | string) {
    this.bytes = typeof b === "string" ? Buffer.from(b, "utf8") : b;
  }
}
const raw = (b: Buffer | string): Raw => new Raw(b);

function encode(v: unknown): Buffer {
  const raws: Buffer[] = [];
  const text = JSON.stringify(v, (_k, x: unknown) => (x instanceof Raw ? `@@RAW${raws.push(x.bytes) - 1}@@` : x));
  const parts = text.split(/"@@RAW(\d+)@@"/);
  return Buffer.concat(parts.map((p, i) => (i % 2 ? raws[Number(p)]! : Buffer.from(p, "utf8"))));
}

const MiB = 1 << 20;
/** A "1 MB" string that still fits in the 1 MiB stdin limit with the rest of a config, so the field's own check runs. */
const HUGE = "h".repeat(1_000_000);
const deepArr = (n: number): Raw => raw("[".repeat(n) + "]".repeat(n));
const deepObj = (n: number): Raw => raw('{"a":'.repeat(n) + "0" + "}".repeat(n));
/** Thousands deep; at most 60,000 so a config stays under 1 MiB. */
const depth = (r: Rng): number => r.int(2_000, 60_000);
/** A string token holding bytes that are not UTF-8. */
const INVALID_UTF8: readonly number[][] = [[0xff], [0xfe, 0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc3], [0xf4, 0x90, 0x80, 0x80]];
function badUtf8String(r: Rng, before: string, after: string): Raw {
  return raw(Buffer.concat([Buffer.from(`"${before}`), Buffer.from(r.pick(INVALID_UTF8)), Buffer.from(`${after}"`)]));
}
function throwsJson(b: Buffer): boolean {
  try {
    JSON.parse(b.toString("utf8"));
    return false;
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

type Env = Record<string, string | undefined>;
type Target = "ADD-new" | "ADD-existing" | "DEL" | "CHECK" | "GC" | "STATUS";

type NodeSetup =
  | { kind: "bytes"; bytes: Buffer }
  | { kind: "missing" }
  | { kind: "fifo" }
  | { kind: "dir" }
  | { kind: "huge"; prefix: Buffer }
  | { kind: "symlink"; to: string }
  | { kind: "loop" };

interface Spec {
  env: Env;
  conf: Record<string, unknown>;
  /** Replaces the encoded conf. */
  stdin?: Buffer;
  node?: { path: string; setup: NodeSetup };
}

interface Fault {
  variant: string;
  codes: number[];
  /** Substrings the error's msg must contain: the problem's name. */
  mentions: string[];
}

interface Case extends Fault {
  id: number;
  family: string;
  target: Target;
  ctx: Ctx;
  env: Env;
  stdin: Buffer;
  node?: { path: string; setup: NodeSetup };
  twin: { env: Env; stdin: Buffer };
}

interface Seed {
  id: string;
  ifname: string;
  /** Result addresses, e.g. "10.0.2.2/24". */
  ips: string[];
}

interface Ctx {
  name: "store" | "no-store";
  sb: Sandbox;
  nodesDir: string;
  seeds: Seed[];
  /** Executable tier: env strings cannot hold NUL and are at most 128 KiB each. */
  exe: boolean;
}

const VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const VALID_ROUTES = [{ dst: "0.0.0.0/0" }, { dst: "::/0" }, { dst: "10.96.0.0/12", gw: "10.0.2.1" }, { dst: "fd00:1::/64" }];
const VALID_DNS = { nameservers: ["10.96.0.10"], domain: "cluster.local", search: ["default.svc.cluster.local"], options: ["ndots:5"] };
/** The README's rule for container IDs and network names. */
const NAME_OK = (s: string): boolean => /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(s) && s.length <= 200;
/** The README's rule for interface names. */
// eslint-disable-next-line no-control-regex
const IFNAME_OK = (s: string): boolean => s.length >= 1 && s.length <= 15 && s !== "." && s !== ".." && !/[/:\s\u0000-\u001f\u007f]/.test(s);

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function baseSpec(r: Rng, id: number, ctx: Ctx, target: Target): Spec {
  const cmd = target.startsWith("ADD") ? "ADD" : target;
  const useSeed = ctx.seeds.length > 0 && (target === "ADD-existing" || cmd === "DEL" || cmd === "CHECK");
  const seed = useSeed ? r.pick(ctx.seeds) : undefined;
  const version = cmd === "CHECK" ? r.pick(["0.4.0", "1.0.0", "1.1.0"]) : cmd === "GC" || cmd === "STATUS" ? "1.1.0" : r.pick(VERSIONS);
  const env: Env = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: seed?.id ?? `fz-${ctx.name}-${id}`,
    CNI_NETNS: `/var/run/netns/fz-${id}`,
    CNI_IFNAME: seed?.ifname ?? r.pick(["eth0", "net1", "eth1"]),
    CNI_PATH: "/opt/cni/bin",
  };
  if (cmd === "ADD" && r.chance(0.5)) env.CNI_ARGS = `IgnoreUnknown=1;K8S_POD_NAMESPACE=fuzz;K8S_POD_NAME=p${id}`;
  const ipam: Record<string, unknown> = { type: "podcidr-ipam", nodeFile: ctx.sb.nodeFile, dataDir: ctx.sb.dataDir, waitForPodCIDRs: 0, lockTimeout: 10 };
  if (r.chance(0.5)) ipam.routes = VALID_ROUTES.filter(() => r.chance(0.6));
  if (r.chance(0.3)) ipam.dns = VALID_DNS;
  if (r.chance(0.3)) ipam.gateway = r.chance(0.5);
  if (r.chance(0.3)) ipam.reuseCooldown = r.int(0, 131);
  const conf: Record<string, unknown> = { cniVersion: version, name: "podnet", type: "bridge", bridge: "cni0", isGateway: true, ipam };
  if (r.chance(0.2)) conf.unknownKey = { nested: [1, "two", null] };
  if (cmd === "CHECK" && seed) conf.prevResult = { cniVersion: version, ips: seed.ips.map((address) => ({ address })) };
  if (cmd === "GC") conf["cni.dev/valid-attachments"] = ctx.seeds.map((s) => ({ containerID: s.id, ifname: s.ifname }));
  return { env, conf };
}

function ipamOf(s: Spec): Record<string, unknown> {
  return s.conf.ipam as Record<string, unknown>;
}

interface Family {
  name: string;
  weight: number;
  targets: readonly Target[];
  apply(r: Rng, s: Spec, x: { ctx: Ctx; id: number; target: Target }): Fault;
}

// --- wrong values per kind of field ------------------------------------------------

const WRONG_FOR_STRING: unknown[] = [5, 0, -1, 1.5, true, false, [], ["x"], {}, { x: "y" }];
const WRONG_FOR_BOOL: unknown[] = [0, 1, "true", "false", "", "yes", [], [true], {}, { v: true }];
const WRONG_FOR_LIST: unknown[] = [5, "x", true, {}, { "0": "x" }];
const WRONG_FOR_OBJECT: unknown[] = [5, "x", true, [], [{}]];

/** A number outside [min, max] or not a number at all. */
function badSeconds(r: Rng, min: number, max: number): unknown {
  const v = r.gen<unknown>([
    () => min - r.pick([1, 0.5, 1e-3 * (min || 1), 1e6]) * (min > 0 ? min : 1),
    () => -r.int(1, 1e9),
    () => max + r.pick([0.001, 0.5, 1, 1000, 1e9]),
    () => r.pick([1e308, -1e308]),
    () => r.pick([raw("1e400"), raw("-1e400")]),
    () => r.pick([String(min), String(max), "10", "", "NaN", "Infinity"]),
    () => r.pick([true, false, [], [min], {}, { seconds: 1 }]),
    () => r.pick([deepArr(depth(r)), deepObj(depth(r))]),
  ]);
  if (typeof v === "number" && v >= min && v <= max) throw new Error(`generator bug: ${v} is in [${min}, ${max}]`);
  return v;
}

function badPath(r: Rng, ctx: Ctx): unknown {
  return r.gen<unknown>([
    () => r.pick(WRONG_FOR_STRING),
    () => r.pick(["", "node.json", "../node.json", "./data", "~/data", "data/../../etc", "..", ".", " /tmp/x", "../".repeat(r.int(1, 30)) + "etc/passwd"]),
    () => `${ctx.sb.dir}/a\u0000b`,
    () => `${ctx.sb.dir}/a\nb`,
    () => `${ctx.sb.dir}/\u0000/../etc`,
    () => "/" + "p".repeat(4096 + r.int(0, 2000)),
    () => "/" + HUGE,
    () => HUGE,
    () => deepArr(depth(r)),
  ]);
}

const BAD_DST = [
  "", "0.0.0.0", "0.0.0.0/", "/0", "0.0.0.0/33", "::/129", "0.0.0.0/-1", "0.0.0.0/1000", "10.0.0.0/8/8", "300.0.0.0/8", "010.0.0.0/8",
  "10.0.0.0 /8", "10.0.0.0/ 8", "10.0.0.0/8\n", "10.0.0.0/8\u0000", "\n10.0.0.0/8", "../10.0.0.0/8", "default", "fd00:::/64", "::ffff:10.0.0.0/104",
  "10.0.0.0/8x", "10.0.0.0/0x8", "fe80::1%eth0/64", "10.0.0.0\\8",
];
const BAD_IP = ["", "x", "10.0.0.1/24", "10.0.0.256", "../", "10.0.0.1\u0000", "10.0.0.1\n", "fe80::1%eth0", "10.0.0", "::g", "0x0a000001"];

function badRoutes(r: Rng, ipam: Record<string, unknown>): Fault {
  const list: unknown[] = clone(VALID_ROUTES.filter(() => r.chance(0.5)));
  const i = r.int(0, list.length + 1);
  const kind = r.int(0, 4);
  if (kind === 0) {
    ipam.routes = r.pick([...WRONG_FOR_LIST, { dst: "0.0.0.0/0" }, "0.0.0.0/0", deepObj(depth(r))]);
    return { variant: "ipam.routes wrong type", codes: [7], mentions: ["ipam.routes"] };
  }
  if (kind === 1) {
    list.splice(i, 0, r.pick<unknown>([5, "0.0.0.0/0", null, true, [], [{ dst: "0.0.0.0/0" }], deepArr(depth(r))]));
    ipam.routes = list;
    return { variant: "ipam.routes[i] wrong type", codes: [7], mentions: [`ipam.routes[${i}]`] };
  }
  if (kind === 2) {
    const route: Record<string, unknown> = r.chance(0.5) ? {} : { gw: "10.0.2.1" };
    const dst = r.gen<unknown>([() => r.pick(BAD_DST), () => r.pick([5, null, true, [], {}, ["0.0.0.0/0"]]), () => HUGE, () => deepArr(depth(r)), () => undefined]);
    if (dst !== undefined) route.dst = dst;
    list.splice(i, 0, route);
    ipam.routes = list;
    return { variant: "ipam.routes[i].dst invalid", codes: [7], mentions: [`ipam.routes[${i}].dst`] };
  }
  const gw = r.gen<unknown>([() => r.pick(BAD_IP), () => r.pick([5, true, [], {}, ["10.0.2.1"]]), () => HUGE, () => deepArr(depth(r))]);
  list.splice(i, 0, { dst: "0.0.0.0/0", gw });
  ipam.routes = list;
  return { variant: "ipam.routes[i].gw invalid", codes: [7], mentions: [`ipam.routes[${i}].gw`] };
}

function badDns(r: Rng, ipam: Record<string, unknown>): Fault {
  const kind = r.int(0, 3);
  if (kind === 0) {
    ipam.dns = r.pick([...WRONG_FOR_OBJECT, ["10.96.0.10"], deepArr(depth(r))]);
    return { variant: "ipam.dns wrong type", codes: [7], mentions: ["ipam.dns"] };
  }
  const dns: Record<string, unknown> = clone(VALID_DNS);
  if (kind === 1) {
    const key = r.pick(["nameservers", "search", "options"]);
    dns[key] = r.pick<unknown>([5, "10.96.0.10", true, {}, [5], [null], [["x"]], [{}], deepArr(depth(r)), deepObj(depth(r))]);
    ipam.dns = dns;
    return { variant: `ipam.dns.${key} wrong type`, codes: [7], mentions: [`ipam.dns.${key}`] };
  }
  dns.domain = r.pick<unknown>([5, true, [], {}, ["cluster.local"], deepArr(depth(r))]);
  ipam.dns = dns;
  return { variant: "ipam.dns.domain wrong type", codes: [7], mentions: ["ipam.dns.domain"] };
}

/** Requested addresses that are malformed (7) or never available (101). */
function badRequest(r: Rng, ctx: Ctx, target: Target, env: Env): { value: string; code: number; variant: string } {
  if (r.chance(0.5)) {
    const value = r.pick(["not-an-ip", "10.0.2.500", "10.0.2", "../etc/passwd", "10.0.\n2.50", "10.0.2.5/24/24", "fd00::2:::1", "10.0.2.5%eth0", "0x0a000205", "10.0.2.50,10.0.2.51", "fd00::250,fd00::251", "IP", "/24"].filter((s) => !(ctx.exe && s.includes("\u0000"))));
    return { value, code: 7, variant: "malformed requested address" };
  }
  const others = ctx.seeds.filter((s) => s.id !== env.CNI_CONTAINERID || s.ifname !== env.CNI_IFNAME).flatMap((s) => s.ips.map((a) => a.replace(/\/\d+$/, "")));
  const pool = ["192.168.7.7", "2001:db8::7", "10.0.2.0", "10.0.2.255", "fd00::200", "10.0.2.236", "10.0.2.48", "10.0.3.9"];
  // Held by another attachment (never by the one asking: that would be a valid repeated ADD).
  pool.push(...others);
  void target;
  return { value: r.pick(pool), code: 101, variant: "unavailable requested address" };
}

// --- node files -------------------------------------------------------------------

const V4_LISTS = [["10.0.2.0/24"], ["10.0.2.0/24", "fd00::200/120"], ["10.0.2.0/24", "10.0.3.0/24", "fd00::200/120"], ["fd00::200/120"]];

function nodeObject(r: Rng, list: unknown, allowSingle = true): { obj: Record<string, unknown>; field: string } {
  if (r.chance(0.6)) {
    return {
      obj: {
        apiVersion: "cilium.io/v2",
        kind: "CiliumNode",
        metadata: { name: "fz-node" },
        spec: { addresses: [{ ip: "10.0.2.236", type: "CiliumInternalIP" }], health: { ipv4: "10.0.2.48" }, ipam: { podCIDRs: list } },
      },
      field: "spec.ipam.podCIDRs",
    };
  }
  if (!allowSingle || r.chance(0.8)) {
    return { obj: { apiVersion: "v1", kind: "Node", metadata: { name: "fz-node", annotations: { "io.cilium.network.ipv4-cilium-host": "10.0.2.236" } }, spec: { podCIDRs: list } }, field: "spec.podCIDRs" };
  }
  // Legacy single spec.podCIDR: the list holds one entry.
  const single = Array.isArray(list) && list.length === 1 ? list[0] : list;
  return { obj: { apiVersion: "v1", kind: "Node", metadata: { name: "fz-node" }, spec: { podCIDRs: [], podCIDR: single } }, field: "spec.podCIDR" };
}

function v4text(n: number, p: number): string {
  return `${[24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".")}/${p}`;
}
function v6text(n: bigint, p: number): string {
  const g: string[] = [];
  for (let i = 7; i >= 0; i--) g.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  return `${g.join(":")}/${p}`;
}
function randV4(r: Rng): number {
  return ((r.int(1, 224) << 24) | r.int(0, 1 << 24)) >>> 0;
}
function randV6(r: Rng): bigint {
  let v = 0xfdn;
  for (let i = 0; i < 15; i++) v = (v << 8n) | BigInt(r.int(0, 256));
  return v;
}
const maskV4 = (n: number, p: number): number => (p === 0 ? 0 : (n & (~0 << (32 - p))) >>> 0);
const maskV6 = (n: bigint, p: number): bigint => (n >> BigInt(128 - p)) << BigInt(128 - p);

/** A podCIDR entry that must be refused, with a variant name. */
function badCidrEntry(r: Rng): { value: unknown; variant: string } {
  return r.gen<{ value: unknown; variant: string }>([
    () => {
      // host bits set
      if (r.chance(0.5)) {
        const p = r.int(0, 31);
        let n = randV4(r);
        if (maskV4(n, p) === n) n = (n | 1) >>> 0;
        return { value: v4text(n, p), variant: "host bits" };
      }
      const p = r.int(0, 127);
      let n = randV6(r);
      if (maskV6(n, p) === n) n |= 1n;
      return { value: v6text(n, p), variant: "host bits" };
    },
    () => {
      // too small to allocate from
      if (r.chance(0.5)) {
        const p = r.pick([31, 32]);
        return { value: v4text(maskV4(randV4(r), p), p), variant: "too small" };
      }
      const p = r.pick([127, 128]);
      return { value: v6text(maskV6(randV6(r), p), p), variant: "too small" };
    },
    () => ({
      value: r.pick(["10.0.0.0/33", "10.0.0.0/64", "10.0.0.0/255", "10.0.0.0/999", "fd00::/129", "fd00::/200", "fd00::/999", "10.0.0.0/-1", "fd00::/-1", "10.0.0.0/+8", "10.0.0.0/ 24", "10.0.0.0/24 ", "10.0.0.0/2 4", "10.0.0.0/24.0", "10.0.0.0/0x18", "10.0.0.0/1e1", "10.0.0.0/", "10.0.0.0//24", "10.0.2.0/24/24", "10.0.0.0/\u0662\u0664", "fd00::/0120", "10.0.0.0/0/"]),
      variant: "absurd prefix",
    }),
    () => ({ value: r.pick(["10.0.0.0/08", "10.0.0.0/008", "10.1.0.0/016", "10.0.2.0/024", "fd00::/064", "fd00::/096"]), variant: "leading-zero prefix" }),
    () => ({ value: r.pick(["10.0.0.0/0", "10.0.0.0/1", "fd00::/0", "255.255.255.255/0"]), variant: "absurd prefix with host bits" }),
    () => ({
      value: r.pick([
        "256.0.0.0/8", "10.0.2/24", "10.0.2.0.0/24", "010.0.2.0/24", "10.00.2.0/24", "0x0a.0.2.0/24", "10.0.2.0", "fd00::200", "fd00:::/64", "fd00::g/64",
        "fd00::200::1/120", "::ffff:10.0.2.0/120", "10.0.2.0%eth0/24", "fd00::200%eth0/120", " 10.0.2.0/24", "10.0.2.0/24\n", "10.0.2.0/24\u0000", "\u000010.0.2.0/24",
        "../10.0.2.0/24", "10.0.2.0\\24", "10.0.2.0/24,10.0.3.0/24", "", "localhost/24", "10.0.2.0/24;rm -rf /",
      ]),
      variant: "not a CIDR",
    }),
    () => ({ value: r.pick<unknown>([5, null, true, {}, [], ["10.0.2.0/24"], { cidr: "10.0.2.0/24" }, 24]), variant: "entry of the wrong kind" }),
    () => ({ value: deepArr(depth(r)), variant: "deeply nested entry" }),
    () => ({ value: `10.0.2.0/${HUGE}`, variant: "huge entry" }),
    () => ({ value: badUtf8String(r, "10.0.2.0/2", ""), variant: "non-UTF-8 entry" }),
  ]);
}

function overlapping(r: Rng): [string, string] {
  if (r.chance(0.5)) {
    const p = r.int(8, 29);
    const a = maskV4(randV4(r), p);
    const q = r.int(p + 1, 31);
    const b = maskV4((a + r.int(0, 2 ** (32 - p))) >>> 0, q);
    return [v4text(a, p), v4text(b, q)];
  }
  const p = r.int(64, 125);
  const a = maskV6(randV6(r), p);
  const q = r.int(p + 1, 127);
  const b = maskV6(a + BigInt(r.int(0, 2 ** Math.min(30, 128 - p))), q);
  return [v6text(a, p), v6text(b, q)];
}

const YAML = [
  "apiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata:\n  name: n1\nspec:\n  ipam:\n    podCIDRs:\n    - 10.0.2.0/24\n",
  "---\napiVersion: v1\nkind: Node\nspec:\n  podCIDRs: [10.0.2.0/24]\n",
  "kind: CiliumNode\n",
  "metadata: {name: n1}\n",
];

function nodeFault(r: Rng, s: Spec, ctx: Ctx, id: number, target: Target): Fault {
  const path = join(ctx.nodesDir, `node-${id}.json`);
  ipamOf(s).nodeFile = path;
  const status = target === "STATUS";
  const bad = (variant: string, setup: NodeSetup, mentions: string[] = [], notReady = false): Fault => {
    s.node = { path, setup };
    return { variant, codes: status ? [50] : notReady ? [11] : [102], mentions: [`node file ${path}`, ...mentions] };
  };
  const bytes = (b: Buffer | string): NodeSetup => ({ kind: "bytes", bytes: typeof b === "string" ? Buffer.from(b, "utf8") : b });
  return r.gen<Fault>([
    () => {
      const list = clone(r.pick(V4_LISTS)) as unknown[];
      const e = badCidrEntry(r);
      const i = r.int(0, list.length + 1);
      list.splice(i, 0, e.value);
      const { obj, field } = nodeObject(r, list);
      const idx = field === "spec.podCIDR" ? 0 : i;
      if (field === "spec.podCIDR" && list.length > 1) (obj.spec as Record<string, unknown>).podCIDR = e.value;
      if (field === "spec.podCIDR" && e.value === "") return bad(`podCIDR: ${e.variant}`, bytes(encode(obj)), [], true); // "" means none yet
      return bad(`podCIDRs: ${e.variant}`, bytes(encode(obj)), [`${field}[${idx}]`]);
    },
    () => {
      const [a, b] = overlapping(r);
      const pair = r.chance(0.5) ? [a, b] : [b, a];
      const { obj, field } = nodeObject(r, pair, false);
      return bad("podCIDRs: overlapping", bytes(encode(obj)), [`${field}[1]`, "overlaps"]);
    },
    () => {
      const v = r.pick<unknown>(["10.0.2.0/24", 5, true, {}, { "0": "10.0.2.0/24" }, deepObj(depth(r))]);
      const { obj, field } = nodeObject(r, v, false);
      return bad(`podCIDRs: wrong type${v instanceof Raw ? " (deeply nested)" : ""}`, bytes(encode(obj)), [field]);
    },
    () => {
      const { obj } = nodeObject(r, r.pick([[], null]), false);
      const spec = obj.spec as Record<string, unknown>;
      if (r.chance(0.3)) delete obj.spec;
      else if (spec.ipam && r.chance(0.5)) delete spec.ipam;
      return bad("no podCIDRs", bytes(encode(obj)), [], true);
    },
    () => {
      const valid = nodeObject(r, ["10.0.2.0/24"]).obj;
      const o = r.gen<unknown>([
        () => ({ ...valid, kind: r.pick(["Pod", "ciliumnode", "CiliumNodes", "node", "", "List"]) }),
        () => ({ apiVersion: "v1", kind: "List", items: [valid] }),
        () => ({ apiVersion: "cilium.io/v2", kind: "CiliumNodeList", items: [valid] }),
        () => {
          const c = { ...valid };
          delete c.kind;
          return c;
        },
        () => ({ ...valid, kind: r.pick<unknown>([5, null, ["CiliumNode"], { k: 1 }]) }),
        () => ({ ...valid, kind: "CiliumNode", apiVersion: r.pick<unknown>(["v1", "cilium.io", "", "cilium.iov2", "v2", 2, null]) }),
        () => ({ ...valid, kind: "Node", apiVersion: r.pick<unknown>(["v2", "apps/v1", "core/v1", "cilium.io/v2", "", 1, null]) }),
        () => ({ ...valid, kind: deepArr(depth(r)) }),
      ]);
      return bad("wrong kind", bytes(encode(o)));
    },
    () => bad("YAML", bytes(r.pick(YAML)), ["not JSON", "details:YAML"]),
    () => {
      const text = encode(nodeObject(r, clone(r.pick(V4_LISTS))).obj);
      return bad("truncated JSON", bytes(text.subarray(0, r.int(1, text.length))), ["JSON"]);
    },
    () => {
      const v = r.gen<Buffer>([() => Buffer.from(r.pick(["[]", "5", '"CiliumNode"', "null", "true", "[{}]"])), () => deepArr(depth(r) * 10).bytes]);
      return bad("not an object", bytes(v));
    },
    () => bad("deeply nested object", bytes(deepObj(depth(r) * 10).bytes)),
    () => {
      const text = encode(nodeObject(r, clone(r.pick(V4_LISTS))).obj);
      for (let tries = 0; tries < 20; tries++) {
        const i = r.int(0, text.length);
        if (!"{}[],:\"".includes(String.fromCharCode(text[i]!))) continue;
        const b = Buffer.concat([text.subarray(0, i), Buffer.from(r.pick(INVALID_UTF8)), text.subarray(i + 1)]);
        if (throwsJson(b)) return bad("non-UTF-8 bytes in the JSON", bytes(b));
      }
      return bad("non-UTF-8 bytes only", bytes(Buffer.from([0xff, 0xfe, 0x00, 0x7b])));
    },
    () => {
      const text = encode(nodeObject(r, ["10.0.2.0/24"]).obj);
      const b = r.chance(0.5) ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text]) : Buffer.from(text.toString("utf8"), "utf16le");
      if (!throwsJson(b)) throw new Error("generator bug: BOM/UTF-16 node file parses");
      return bad("BOM or UTF-16", bytes(b));
    },
    () => bad("empty file", bytes(""), [], true),
    () => bad("missing file", { kind: "missing" }, [], true),
    () => bad("FIFO", { kind: "fifo" }),
    () => bad("directory", { kind: "dir" }),
    () => bad("100 MB file", { kind: "huge", prefix: encode(nodeObject(r, ["10.0.2.0/24"]).obj) }),
    () => bad("symlink to /dev/zero", { kind: "symlink", to: "/dev/zero" }),
    () => bad("symlink loop", { kind: "loop" }),
  ]);
}

// --- env ----------------------------------------------------------------------------

const FORBIDDEN_ID_CHARS = [" ", "\n", "\t", "\r", "/", ":", "@", "%", "*", "ä", "é", "\u2028", "\u007f", "\u0001", "\\", "'", '"', "$", "`", "|", ";", ",", "+", "~"];

function badContainerID(r: Rng, ctx: Ctx): string {
  const valid = (n: number): string => Array.from({ length: n }, (_, i) => r.pick([...((i === 0 ? "" : "_.-") + "abcdefABCDEF0123456789")])).join("");
  for (;;) {
    const v = r.gen<string>([
      () => r.pick(["../", "..", ".", "../..", "/", "/etc/passwd", "-x", "_x", ".x", "../../etc/cron.d/x", "a/../../b", "..\\x"]),
      () => `../${valid(r.int(1, 40))}`,
      () => `${valid(r.int(1, 40))}/../x`,
      () => {
        const s = valid(r.int(1, 60));
        const i = r.int(0, s.length + 1);
        return s.slice(0, i) + r.pick(FORBIDDEN_ID_CHARS) + s.slice(i);
      },
      () => valid(r.int(201, 300)),
      () => valid(ctx.exe ? 100_000 : 1_000_000),
      () => (ctx.exe ? "" : `${valid(8)}\u0000../x`),
    ]);
    if (v !== "" && !NAME_OK(v)) return v;
  }
}

function badIfname(r: Rng, ctx: Ctx): string {
  const ws = ["\t", "\n", "\r", " ", "\u000b", "\u000c", "\u00a0", "\u2028", "\u3000"];
  for (;;) {
    const v = r.gen<string>([
      () => r.pick([".", "..", "../", "a/b", "../eth0", "/", "eth0:1", ":", "eth0/../x"]),
      () => {
        const s = r.pick(["eth0", "net1", "veth12345"]);
        const i = r.int(0, s.length + 1);
        return s.slice(0, i) + r.pick([...ws, "/", ":", "\u0001", "\u001f", "\u007f"]) + s.slice(i);
      },
      () => "e".repeat(r.int(16, 64)),
      () => "e".repeat(ctx.exe ? 100_000 : 1_000_000),
      () => (ctx.exe ? "." : `eth\u00000`),
    ]);
    if (!IFNAME_OK(v)) return v;
  }
}

function badArgsPair(r: Rng, ctx: Ctx): string {
  const bad = r.pick(["foo", "../", "..", "/etc/passwd", "\n", "K8S_POD_NAME", "=x", "=", "IgnoreUnknown", "a\nb", "x".repeat(ctx.exe ? 100_000 : 1_000_000)]);
  const pairs = ["IgnoreUnknown=1", "K8S_POD_NAMESPACE=default", "K8S_POD_NAME=web-0", "K8S_POD_INFRA_CONTAINER_ID=abc"].filter(() => r.chance(0.5));
  pairs.splice(r.int(0, pairs.length + 1), 0, bad);
  return pairs.join(";");
}

// --- families -----------------------------------------------------------------------

const ALL: readonly Target[] = ["ADD-new", "ADD-existing", "DEL", "CHECK", "GC", "STATUS"];
const PER_CONTAINER: readonly Target[] = ["ADD-new", "ADD-existing", "DEL", "CHECK"];

const FAMILIES: Family[] = [
  {
    name: "stdin",
    weight: 14,
    targets: ALL,
    apply(r, s) {
      const text = encode(s.conf);
      const six = (variant: string, b: Buffer): Fault => {
        s.stdin = b;
        return { variant, codes: [6], mentions: ["stdin"] };
      };
      return r.gen<Fault>([
        () => six("truncated JSON", text.subarray(0, r.int(0, text.length))),
        () => six("empty or blank", Buffer.from(r.pick(["", " ", "\n", "\t \r\n", " ".repeat(1000)]))),
        () => six("not an object", Buffer.from(r.pick(["[]", "null", "42", '"podnet"', "true", "[{}]", `[${text.toString("utf8")}]`]))),
        () => six("deeply nested array", deepArr(r.int(2_000, 500_000)).bytes),
        () => {
          const n = r.int(1, 4096);
          const b = Buffer.alloc(n);
          for (let i = 0; i < n; i++) b[i] = r.int(0, 256);
          b[0] = r.pick([0x80, 0xbf, 0xc0, 0xc1, 0xf5, 0xfe, 0xff]);
          return six("random non-UTF-8 bytes", b);
        },
        () => {
          for (let tries = 0; tries < 50; tries++) {
            const i = r.int(0, text.length);
            if (!"{}[],:\"".includes(String.fromCharCode(text[i]!))) continue;
            const b = Buffer.concat([text.subarray(0, i), Buffer.from(r.pick(INVALID_UTF8)), text.subarray(i + 1)]);
            if (throwsJson(b)) return six("non-UTF-8 bytes in place of JSON syntax", b);
          }
          return six("random non-UTF-8 bytes", Buffer.from([0xff, 0xff]));
        },
        () => {
          const b = r.chance(0.5) ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text]) : Buffer.from(text.toString("utf8"), "utf16le");
          if (!throwsJson(b)) throw new Error("generator bug: BOM/UTF-16 stdin parses");
          return six("BOM or UTF-16", b);
        },
        () => {
          const b = Buffer.concat([text, Buffer.from(r.pick(["}", "x", "{}", ",", "\u0000", "]", "\""]))]);
          if (!throwsJson(b)) throw new Error("generator bug: trailing garbage parses");
          return six("trailing garbage", b);
        },
        () => six("over 1 MiB", encode({ ...s.conf, padding: "p".repeat(MiB + r.int(0, MiB)) })),
        () => {
          // Keeps the config's cniVersion, so CHECK/GC/STATUS pass the version check and reach the name.
          const v = s.conf.cniVersion as string;
          s.stdin = Buffer.concat([Buffer.from(`{"cniVersion":"${v}","a":`), deepObj(r.int(2_000, 150_000)).bytes, Buffer.from("}")]);
          return { variant: "deeply nested object without a name", codes: [7], mentions: ["name"] };
        },
      ]);
    },
  },
  {
    name: "non-UTF-8 in a value",
    weight: 3,
    targets: ALL,
    apply(r, s) {
      const which = r.int(0, 3);
      if (which === 0) {
        s.conf.name = badUtf8String(r, "pod", "net");
        return { variant: "name", codes: [7], mentions: ["network name"] };
      }
      if (which === 1) {
        s.conf.cniVersion = badUtf8String(r, "1.", "0");
        return { variant: "cniVersion", codes: [1], mentions: ["version"] };
      }
      ipamOf(s).routes = [{ dst: badUtf8String(r, "0.0.0.0/", "") }];
      return { variant: "ipam.routes[0].dst", codes: [7], mentions: ["ipam.routes[0].dst"] };
    },
  },
  {
    name: "name",
    weight: 6,
    targets: ALL,
    apply(r, s) {
      for (;;) {
        const v = r.gen<unknown>([
          () => r.pick([...WRONG_FOR_STRING, null]),
          () => r.pick(["", "../podnet", "pod/net", "..", ".", "-podnet", "_podnet", ".podnet", "pod net", "pod\nnet", "pod\u0000net", "pod\tnet", "pödnet", "pod:net", "/etc", "pod@net", "../../../../tmp/x"]),
          () => "a".repeat(r.int(201, 5000)),
          () => HUGE,
          () => deepArr(depth(r)),
          () => deepObj(depth(r)),
          () => undefined,
        ]);
        if (typeof v === "string" && NAME_OK(v)) continue;
        if (v === undefined) delete s.conf.name;
        else s.conf.name = v;
        return { variant: v === undefined ? "missing" : typeof v === "string" ? "invalid string" : v instanceof Raw ? "deeply nested" : "wrong type", codes: [7], mentions: ["network name"] };
      }
    },
  },
  {
    name: "cniVersion",
    weight: 6,
    targets: ALL,
    apply(r, s, { target }) {
      const floor = target === "CHECK" ? VERSIONS.slice(0, 4) : target === "GC" || target === "STATUS" ? VERSIONS.slice(0, 6) : [];
      if (floor.length > 0 && r.chance(0.3)) {
        const v = r.chance(0.2) ? undefined : r.pick(floor);
        if (v === undefined) delete s.conf.cniVersion;
        else s.conf.cniVersion = v;
        return { variant: "below the command's floor", codes: [1], mentions: ["version"] };
      }
      const v = r.gen<unknown>([
        () => r.pick([1, 1.1, 0, true, [], ["1.1.0"], {}, { v: "1.1.0" }]),
        () => r.pick(["1.2.0", "2.0.0", "0.0.0", "v1.0.0", "1.0", "1", "1.1.0 ", " 1.1.0", "1.1.0\n", "1.1.0\u0000", "../1.1.0", "1.1.0-rc1", "01.1.0", "latest"]),
        () => HUGE,
        () => deepArr(depth(r)),
        () => deepObj(depth(r)),
      ]);
      s.conf.cniVersion = v;
      // An unsupported string is code 1; anything but a string (or null) cannot be decoded: 6, as skel gives.
      return { variant: v instanceof Raw ? "deeply nested" : typeof v === "string" ? "unsupported string" : "wrong type", codes: [typeof v === "string" ? 1 : 6], mentions: ["version"] };
    },
  },
  {
    name: "ipam",
    weight: 3,
    targets: ALL,
    apply(r, s) {
      const v = r.pick<unknown>([undefined, null, 5, "podcidr-ipam", true, [], [{ type: "podcidr-ipam" }], deepArr(depth(r))]);
      if (v === undefined) delete s.conf.ipam;
      else s.conf.ipam = v;
      return { variant: v === undefined ? "missing" : v instanceof Raw ? "deeply nested" : "wrong type", codes: [7], mentions: ["ipam"] };
    },
  },
  {
    name: "ipam key",
    weight: 24,
    targets: ALL,
    apply(r, s, { ctx }) {
      const ipam = ipamOf(s);
      const key = r.pick(["nodeFile", "dataDir", "waitForPodCIDRs", "reuseCooldown", "lockTimeout", "gateway", "routes", "dns"]);
      const simple = (v: unknown): Fault => {
        ipam[key] = v;
        const kind = v instanceof Raw ? (/^[[{]/.test(v.bytes.subarray(0, 1).toString()) ? "deeply nested" : "out of range") : typeof v === "string" && v.length >= 4096 ? "huge" : "invalid";
        return { variant: `ipam.${key} ${kind}`, codes: [7], mentions: [`ipam.${key}`] };
      };
      switch (key) {
        case "nodeFile":
        case "dataDir":
          return simple(badPath(r, ctx));
        case "waitForPodCIDRs":
          return simple(badSeconds(r, 0, 600));
        case "reuseCooldown":
          return simple(badSeconds(r, 0, 86400));
        case "lockTimeout":
          return simple(badSeconds(r, 0.001, 3600));
        case "gateway":
          return simple(r.chance(0.15) ? deepArr(depth(r)) : r.pick(WRONG_FOR_BOOL));
        case "routes":
          return badRoutes(r, ipam);
        default:
          return badDns(r, ipam);
      }
    },
  },
  {
    name: "runtimeConfig/args",
    weight: 7,
    targets: ["ADD-new", "ADD-existing"],
    apply(r, s) {
      const badIps = (): unknown => r.pick<unknown>([5, "10.0.2.50", true, {}, [5], [null], [["10.0.2.50"]], [{}], deepArr(depth(r)), deepObj(depth(r))]);
      return r.gen<Fault>([
        () => {
          s.conf.runtimeConfig = r.pick<unknown>([5, "ips", true, [], ["10.0.2.50"], deepArr(depth(r))]);
          return { variant: "runtimeConfig wrong type", codes: [7], mentions: ["runtimeConfig"] };
        },
        () => {
          s.conf.runtimeConfig = { ips: badIps() };
          return { variant: "runtimeConfig.ips wrong type", codes: [7], mentions: ["runtimeConfig.ips"] };
        },
        () => {
          s.conf.args = r.pick<unknown>([5, "cni", true, [], deepArr(depth(r))]);
          return { variant: "args wrong type", codes: [7], mentions: ["args"] };
        },
        () => {
          s.conf.args = { cni: r.pick<unknown>([5, "ips", true, [], deepArr(depth(r))]) };
          return { variant: "args.cni wrong type", codes: [7], mentions: ["args.cni"] };
        },
        () => {
          s.conf.args = { cni: { ips: badIps() } };
          return { variant: "args.cni.ips wrong type", codes: [7], mentions: ["args.cni.ips"] };
        },
      ]);
    },
  },
  {
    name: "requested address",
    weight: 7,
    targets: ["ADD-new", "ADD-existing"],
    apply(r, s, { ctx, target }) {
      const q = badRequest(r, ctx, target, s.env);
      const where = r.int(0, 3);
      if (where === 0) {
        const v = q.value.replace(/;/g, "");
        s.env.CNI_ARGS = [s.env.CNI_ARGS, `IP=${v}`].filter(Boolean).join(";");
      } else if (where === 1) s.conf.runtimeConfig = { ips: q.value.split(",") };
      else s.conf.args = { cni: { ips: q.value.split(",") } };
      return { variant: `${q.variant} (${["CNI_ARGS IP=", "runtimeConfig.ips", "args.cni.ips"][where]})`, codes: [q.code], mentions: ["request"] };
    },
  },
  {
    name: "prevResult",
    weight: 2,
    targets: ["CHECK"],
    apply(r, s) {
      if (r.chance(0.5)) {
        s.conf.prevResult = r.pick<unknown>([5, "10.0.2.2/24", true, [], ["10.0.2.2/24"], deepArr(depth(r))]);
        return { variant: "prevResult wrong type", codes: [7], mentions: ["prevResult"] };
      }
      s.conf.prevResult = { cniVersion: s.conf.cniVersion, ips: r.pick<unknown>([5, "10.0.2.2/24", true, {}, deepObj(depth(r))]) };
      return { variant: "prevResult.ips wrong type", codes: [7], mentions: ["prevResult.ips"] };
    },
  },
  {
    name: "GC attachments",
    weight: 3,
    targets: ["GC"],
    apply(r, s) {
      const key = r.chance(0.7) ? "cni.dev/valid-attachments" : "cni.dev/attachments";
      const list = s.conf["cni.dev/valid-attachments"] as unknown[];
      delete s.conf["cni.dev/valid-attachments"];
      if (r.chance(0.4)) {
        s.conf[key] = r.pick<unknown>([5, "seed-a", true, {}, { containerID: "seed-a", ifname: "eth0" }, deepObj(depth(r))]);
        return { variant: "list wrong type", codes: [7], mentions: [key] };
      }
      const i = r.int(0, list.length + 1);
      list.splice(i, 0, r.pick<unknown>([5, "seed-a", null, true, [], {}, { containerID: 5, ifname: "eth0" }, { containerID: "seed-a" }, { ifname: "eth0" }, { containerID: "seed-a", ifname: [] }, deepArr(depth(r))]));
      s.conf[key] = list;
      return { variant: "entry wrong type", codes: [7], mentions: [`${key}[${i}]`] };
    },
  },
  {
    name: "env",
    weight: 16,
    targets: ALL,
    apply(r, s, { ctx, target }) {
      const cmd = s.env.CNI_COMMAND!;
      const options: (() => Fault)[] = [
        () => {
          s.env.CNI_COMMAND = r.pick(["add", "Add", "ADD ", " ADD", "ADD\n", "../ADD", "ADD;DEL", "", "DELETE", "VERSIONS", "C".repeat(ctx.exe ? 100_000 : 1_000_000), ...(ctx.exe ? [] : ["ADD\u0000"])]);
          return { variant: "CNI_COMMAND unknown", codes: [4], mentions: ["CNI_COMMAND"] };
        },
      ];
      const required = { ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"], CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"], DEL: ["CNI_CONTAINERID", "CNI_IFNAME"], GC: ["CNI_PATH"], STATUS: [] as string[] }[cmd] ?? [];
      if (required.length > 0) {
        options.push(() => {
          const v = r.pick(required);
          s.env[v] = r.chance(0.5) ? undefined : "";
          return { variant: "required variable missing or empty", codes: [4], mentions: [v] };
        });
      }
      if (PER_CONTAINER.includes(target)) {
        options.push(
          () => {
            s.env.CNI_CONTAINERID = badContainerID(r, ctx);
            return { variant: "CNI_CONTAINERID invalid", codes: [4], mentions: ["CNI_CONTAINERID"] };
          },
          () => {
            s.env.CNI_IFNAME = badIfname(r, ctx);
            return { variant: "CNI_IFNAME invalid", codes: [4], mentions: ["CNI_IFNAME"] };
          },
          () => {
            s.env.CNI_ARGS = badArgsPair(r, ctx);
            return { variant: "CNI_ARGS pair without =", codes: [4], mentions: ["CNI_ARGS"] };
          },
        );
      }
      return r.gen(options);
    },
  },
  {
    name: "node file",
    weight: 20,
    targets: ["ADD-new", "ADD-existing", "STATUS"],
    apply(r, s, { ctx, id, target }) {
      return nodeFault(r, s, ctx, id, target);
    },
  },
];

function targetsOf(ctx: Ctx): readonly Target[] {
  return ctx.seeds.length > 0 ? ALL : ["ADD-new", "DEL", "GC", "STATUS"];
}

function makeCase(r: Rng, id: number, ctx: Ctx, only?: { family: string; variant?: RegExp }): Case {
  const avail = targetsOf(ctx);
  for (let tries = 0; ; tries++) {
    if (tries > 10_000) throw new Error(`generator: cannot make a case for ${JSON.stringify(only)}`);
    const fams = FAMILIES.filter((f) => (!only || f.name === only.family) && f.targets.some((t) => avail.includes(t)));
    let w = r.next() * fams.reduce((a, f) => a + f.weight, 0);
    const fam = fams.find((f) => (w -= f.weight) < 0) ?? fams[fams.length - 1]!;
    const target = r.pick(fam.targets.filter((t) => avail.includes(t)));
    const base = baseSpec(r, id, ctx, target);
    const spec: Spec = { env: { ...base.env }, conf: clone(base.conf) };
    const fault = fam.apply(r, spec, { ctx, id, target });
    if (only?.variant && !only.variant.test(fault.variant)) continue;
    return {
      ...fault,
      id,
      family: fam.name,
      target,
      ctx,
      env: spec.env,
      stdin: spec.stdin ?? encode(spec.conf),
      ...(spec.node ? { node: spec.node } : {}),
      twin: { env: base.env, stdin: encode(base.conf) },
    };
  }
}

// ---------------------------------------------------------------------------
// Node file set-up
// ---------------------------------------------------------------------------

function prepareNode(c: Case): void {
  if (!c.node) return;
  const { path, setup } = c.node;
  rmSync(path, { recursive: true, force: true });
  switch (setup.kind) {
    case "bytes":
      writeFileSync(path, setup.bytes);
      break;
    case "missing":
      break;
    case "fifo": {
      const r = spawnSync("mkfifo", [path]);
      if (r.status !== 0) throw new Error(`mkfifo ${path}: ${r.stderr}`);
      break;
    }
    case "dir":
      mkdirSync(path);
      writeFileSync(join(path, "node.json"), "{}");
      break;
    case "huge":
      writeFileSync(path, setup.prefix);
      truncateSync(path, 100 * MiB);
      break;
    case "symlink":
      symlinkSync(setup.to, path);
      break;
    case "loop":
      symlinkSync(path, path);
      break;
  }
}

function cleanupNode(c: Case): void {
  if (c.node) rmSync(c.node.path, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------
// Store snapshots
// ---------------------------------------------------------------------------

interface Entry {
  kind: "dir" | "file" | "other";
  mode: number;
  data?: Buffer;
  link?: string;
}
type Snap = Map<string, Entry>;

function snap(dir: string): Snap {
  const out: Snap = new Map();
  if (!existsSync(dir)) return out;
  const walk = (rel: string): void => {
    const abs = rel ? join(dir, rel) : dir;
    const st = lstatSync(abs);
    const mode = st.mode & 0o7777;
    if (st.isDirectory()) {
      out.set(rel || ".", { kind: "dir", mode });
      for (const n of readdirSync(abs).sort()) walk(rel ? join(rel, n) : n);
    } else if (st.isFile()) out.set(rel, { kind: "file", mode, data: readFileSync(abs) });
    else out.set(rel, { kind: "other", mode });
  };
  walk("");
  return out;
}

function diff(a: Snap, b: Snap): string[] {
  const out: string[] = [];
  for (const [k, e] of a) {
    const f = b.get(k);
    if (!f) out.push(`- ${k}`);
    else if (f.kind !== e.kind || f.mode !== e.mode || (e.data && !e.data.equals(f.data!))) out.push(`~ ${k}`);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`+ ${k}`);
  return out;
}

/** Put the data dir back exactly as the snapshot has it (after a violation, so the next cases start clean). */
function restore(dir: string, s: Snap): void {
  rmSync(dir, { recursive: true, force: true });
  for (const [rel, e] of s) {
    const abs = rel === "." ? dir : join(dir, rel);
    if (e.kind === "dir") mkdirSync(abs, { recursive: true });
    else if (e.kind === "file") writeFileSync(abs, e.data!);
  }
  for (const [rel, e] of [...s].reverse()) chmodSync(rel === "." ? dir : join(dir, rel), e.mode);
}

// ---------------------------------------------------------------------------
// Running a case and judging the outcome
// ---------------------------------------------------------------------------

/** Only bounds a hang (a case takes milliseconds; maxMs is reported): nothing here is killed on purpose. */
const BOUND_MS = 10_000;
/** vitest's own limit for the long tests (the full size runs for minutes). */
const TEST_TIMEOUT = size(60_000, 1_200_000);

interface Outcome {
  exit: number | null;
  signal: string | null;
  stdout: string;
  ms: number;
}

async function runInProcess(env: Env, stdin: Buffer): Promise<Outcome> {
  const out: string[] = [];
  const io: Io = { env, readStdin: async () => stdin, stdout: (t) => void out.push(t), stderr: () => {} };
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([dispatch(io, handlers), new Promise<null>((res) => (timer = setTimeout(() => res(null), BOUND_MS)))]);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  return { exit, signal: exit === null ? "timeout" : null, stdout: out.join(""), ms };
}

function fullEnv(env: Env): Env {
  const all: Env = { CNI_COMMAND: undefined, CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined, CNI_PATH: undefined, CNI_ARGS: undefined };
  return { ...all, ...env };
}

async function runExe(env: Env, stdin: Buffer): Promise<Outcome> {
  const t0 = performance.now();
  let res: RunResult;
  const text = stdin.toString("utf8");
  if (Buffer.from(text, "utf8").equals(stdin)) {
    res = await run({ command: env.CNI_COMMAND ?? "", env: fullEnv(env), stdin: text, killAfterMs: BOUND_MS });
  } else {
    // run() takes text; bytes that are not UTF-8 go through the same spawn by hand.
    const e: Record<string, string> = { PATH: process.env.PATH ?? "" };
    for (const [k, v] of Object.entries(env)) if (v !== undefined) e[k] = v;
    const child: ChildProcess = spawn(BIN, [], { env: e, stdio: ["pipe", "pipe", "pipe"] });
    const timer = setTimeout(() => child.kill("SIGKILL"), BOUND_MS);
    child.stdin!.on("error", () => {});
    child.stdin!.end(stdin);
    res = await collect(child).finally(() => clearTimeout(timer));
  }
  return { exit: res.code, signal: res.signal, stdout: res.stdout, ms: performance.now() - t0 };
}

interface Judged {
  problems: string[];
  code?: number;
}

function judge(c: Case, o: Outcome): Judged {
  const p: string[] = [];
  if (o.signal) return { problems: [`did not finish within ${BOUND_MS} ms (${o.signal})`] };
  if (o.exit === 0) return { problems: [`exit 0: the bad input was accepted${o.stdout ? `, stdout ${o.stdout.slice(0, 160).trim()}` : ""}`] };
  if (/^\s+at /m.test(o.stdout)) p.push("stack trace on stdout");
  if (!o.stdout.endsWith("\n") || o.stdout.indexOf("\n") !== o.stdout.length - 1) p.push("stdout is not exactly one line");
  let obj: Record<string, unknown> | undefined;
  try {
    obj = JSON.parse(o.stdout) as Record<string, unknown>;
  } catch {
    p.push(`stdout is not JSON: ${JSON.stringify(o.stdout.slice(0, 120))}`);
  }
  if (!obj) return { problems: p };
  const keys = Object.keys(obj).sort().join(",");
  if (keys !== "cniVersion,code,details,msg") p.push(`error object keys ${keys}`);
  if (typeof obj.code !== "number" || !Number.isInteger(obj.code)) p.push(`code is not an integer: ${JSON.stringify(obj.code)}`);
  if (typeof obj.msg !== "string" || obj.msg === "") p.push("msg is not a non-empty string");
  if (typeof obj.details !== "string") p.push("details is not a string");
  if (typeof obj.cniVersion !== "string" || !VERSIONS.includes(obj.cniVersion)) p.push(`cniVersion ${JSON.stringify(obj.cniVersion)}`);
  if (o.exit !== 1) p.push(`exit status ${o.exit}, expected 1`);
  const code = obj.code as number;
  const msg = String(obj.msg);
  if (code === 999) p.push(`code 999 (internal error): ${msg.slice(0, 100)}`);
  else if (!c.codes.includes(code)) p.push(`code ${code}, expected ${c.codes.join("/")}: ${msg.slice(0, 100)}`);
  else {
    for (const m of c.mentions) {
      const [text, where] = m.startsWith("details:") ? [m.slice(8), String(obj.details)] : [m, msg];
      if (!where.includes(text)) p.push(`${m.startsWith("details:") ? "details do" : "msg does"} not name ${JSON.stringify(text.length > 60 ? "the node file" : text)}: ${msg.slice(0, 120)}`);
    }
  }
  return { problems: p, code };
}

// ---------------------------------------------------------------------------
// The fuzz loop, shared by both tiers
// ---------------------------------------------------------------------------

interface Violation {
  c: Case;
  problems: string[];
}

interface Tally {
  cases: number;
  errors: number;
  accepted: number;
  maxMs: number;
  totalMs: number;
  storeChanges: number;
  dirCreated: number;
  killed: number;
  codes: Map<number, number>;
  families: Map<string, number>;
  violations: Violation[];
  maxStdin: number;
}

function newTally(): Tally {
  return { cases: 0, errors: 0, accepted: 0, maxMs: 0, totalMs: 0, storeChanges: 0, dirCreated: 0, killed: 0, codes: new Map(), families: new Map(), violations: [], maxStdin: 0 };
}

function show(s: string, max = 160): string {
  const j = JSON.stringify(s);
  return j.length > max ? `${j.slice(0, max)}..." (${s.length} chars)` : j;
}

function repro(c: Case): string {
  const env = Object.entries(c.env)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${show(v!, 80)}`)
    .join(" ");
  const text = c.stdin.toString("utf8");
  const stdin = Buffer.from(text, "utf8").equals(c.stdin) ? show(text, 400) : `bytes ${c.stdin.subarray(0, 200).toString("hex")}${c.stdin.length > 200 ? "..." : ""} (${c.stdin.length} bytes)`;
  const node = c.node ? ` node file: ${c.node.setup.kind === "bytes" ? show(c.node.setup.bytes.toString("utf8"), 300) : c.node.setup.kind}` : "";
  return `${env} stdin=${stdin}${node}`;
}

/** One line per kind of violation (family, variant, first problem), with the commands and stores it hit and one reproducer. */
function summary(violations: Violation[]): string {
  const groups = new Map<string, Violation[]>();
  for (const v of violations) {
    const k = `${v.c.family} / ${v.c.variant.replace(/\[\d+\]/g, "[i]")}: ${v.problems[0]!.replace(/ \(.*|:.*$/, "")}`;
    groups.set(k, [...(groups.get(k) ?? []), v]);
  }
  return [...groups]
    .sort((a, b) => b[1].length - a[1].length)
    .map(([k, vs]) => {
      const where = [...new Set(vs.map((v) => `${v.c.target}@${v.c.ctx.name}`))].sort().join(", ");
      const ex = vs.reduce((a, b) => (b.c.stdin.length < a.c.stdin.length ? b : a));
      return `${vs.length} x ${k}\n    in ${where}\n    e.g. case ${ex.c.id}: ${ex.problems.join("; ")}\n    ${repro(ex.c)}`;
    })
    .join("\n");
}

function note(t: Tally, c: Case, o: Outcome, j: Judged): void {
  t.cases++;
  t.maxMs = Math.max(t.maxMs, o.ms);
  t.totalMs += o.ms;
  t.maxStdin = Math.max(t.maxStdin, c.stdin.length);
  t.families.set(c.family, (t.families.get(c.family) ?? 0) + 1);
  if (o.signal) t.killed++;
  if (o.exit === 0) t.accepted++;
  else if (j.code !== undefined) {
    t.errors++;
    t.codes.set(j.code, (t.codes.get(j.code) ?? 0) + 1);
  }
  if (j.problems.length > 0) t.violations.push({ c, problems: j.problems });
}

/** After one case: the store is byte-for-byte the baseline, and the absent one is still absent. Puts them back if not. */
function checkStores(t: Tally, c: Case, store: { dir: string; base: Snap }, noStoreDir: string): void {
  const d = diff(store.base, snap(store.dir));
  if (d.length > 0) {
    t.storeChanges++;
    t.violations.push({ c, problems: [`store changed: ${d.slice(0, 6).join(", ")}`] });
    restore(store.dir, store.base);
  }
  if (existsSync(noStoreDir)) {
    t.dirCreated++;
    t.violations.push({ c, problems: [`data dir created: ${[...snap(noStoreDir).keys()].slice(0, 6).join(", ")}`] });
    rmSync(noStoreDir, { recursive: true, force: true });
  }
}

/** After a batch run in parallel: true when either store differs from what it should be. */
function storesDirty(store: { dir: string; base: Snap }, noStoreDir: string): boolean {
  return diff(store.base, snap(store.dir)).length > 0 || existsSync(noStoreDir);
}

/** True when the run left the store and the data dir exactly as they were. */
function unchangedAfter(t: Tally, w: World): boolean {
  return t.storeChanges === 0 && t.dirCreated === 0 && diff(w.base, snap(w.store.sb.dataDir)).length === 0;
}

/** The figures both fuzz tiers report first: what the cases did to the plugin and the store. */
function outcomeFigures(t: Tally, unchanged: boolean): Record<string, string | number> {
  return {
    cases: t.cases,
    seed: SEED,
    errors: t.errors,
    accepted: t.accepted,
    violations: t.violations.length,
    unchanged: unchanged ? "yes" : "no",
    storeChanges: t.storeChanges,
    dataDirCreated: t.dirCreated,
    maxMs: Math.round(t.maxMs),
  };
}

/** The figures both tiers report last: how long, how big, which codes. */
function runFigures(t: Tally, started: number): Record<string, string | number> {
  return { totalS: Number(((performance.now() - started) / 1000).toFixed(1)), maxStdinBytes: t.maxStdin, codes: codesText(t) };
}

function codesText(t: Tally): string {
  return [...t.codes].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`).join(" ");
}

// ---------------------------------------------------------------------------
// Sandboxes: a store with real allocations, and one with no store at all
// ---------------------------------------------------------------------------

interface World {
  store: Ctx;
  noStore: Ctx;
  base: Snap;
  rootListing: string[];
}

const SEEDS: { id: string; ifname: string; args?: string }[] = [
  { id: "seed-a", ifname: "eth0" },
  { id: "seed-b", ifname: "eth0", args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0" },
  { id: "seed-b", ifname: "net1" },
  { id: "seed-c", ifname: "eth0", args: "IP=10.0.2.77,fd00::277" },
  { id: "seed-d", ifname: "eth0" },
];

async function makeWorld(exe: boolean): Promise<World> {
  const mk = (name: Ctx["name"]): Ctx => {
    const sb = new Sandbox("ciliumnode-cluster-pool.json");
    const nodesDir = join(sb.dir, "nodes");
    mkdirSync(nodesDir);
    return { name, sb, nodesDir, seeds: [], exe };
  };
  const store = mk("store");
  const noStore = mk("no-store");
  try {
    return await seedWorld(store, noStore, exe);
  } catch (err) {
    store.sb.cleanup();
    noStore.sb.cleanup();
    throw err;
  }
}

async function seedWorld(store: Ctx, noStore: Ctx, exe: boolean): Promise<World> {
  const call = async (command: string, s: { id: string; ifname: string; args?: string }): Promise<Outcome> => {
    const env: Env = { CNI_COMMAND: command, CNI_CONTAINERID: s.id, CNI_NETNS: "/var/run/netns/seed", CNI_IFNAME: s.ifname, CNI_PATH: "/opt/cni/bin", CNI_ARGS: s.args };
    const stdin = Buffer.from(JSON.stringify(store.sb.conf("1.1.0", { routes: [{ dst: "0.0.0.0/0" }] })));
    return exe ? runExe(env, stdin) : runInProcess(env, stdin);
  };
  for (const s of SEEDS) {
    const o = await call("ADD", s);
    expect(o.exit, o.stdout).toBe(0);
    const res = JSON.parse(o.stdout) as { ips: { address: string }[] };
    store.seeds.push({ id: s.id, ifname: s.ifname, ips: res.ips.map((i) => i.address) });
  }
  // One released attachment, so the bitmaps carry a release history too.
  const o = await call("DEL", SEEDS[4]!);
  expect(o.exit, o.stdout).toBe(0);
  store.seeds.pop();
  const base = snap(store.sb.dataDir);
  expect([...base.keys()].filter((k) => /^_store\/attachments\/podnet\/./.test(k)).length).toBe(4);
  expect(existsSync(noStore.sb.dataDir)).toBe(false);
  return { store, noStore, base, rootListing: readdirSync(ROOT).sort() };
}

function pickCtx(r: Rng, w: World): Ctx {
  return r.chance(0.25) ? w.noStore : w.store;
}

/**
 * The generators' control: the un-faulted twin of n sampled cases must succeed
 * through `run`, or the fuzzer would be counting its own mistakes as refusals.
 */
async function twinControl(w: World, seed: number, n: number, firstId: number, run: (env: Env, stdin: Buffer) => Promise<Outcome>): Promise<void> {
  const r = new Rng(seed);
  const failed: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = makeCase(r, firstId + i, pickCtx(r, w));
    const o = await run(c.twin.env, c.twin.stdin);
    if (o.exit !== 0) failed.push(`${c.family}/${c.variant}/${c.target}: ${o.stdout.slice(0, 200)}`);
    // The twin is a real call: put the stores back.
    restore(w.store.sb.dataDir, w.base);
    rmSync(w.noStore.sb.dataDir, { recursive: true, force: true });
  }
  expect(failed).toEqual([]);
  finalChecks(w);
}

function finalChecks(w: World): void {
  expect(diff(w.base, snap(w.store.sb.dataDir)), "store after the run").toEqual([]);
  expect(existsSync(w.noStore.sb.dataDir), "no-store sandbox's data dir after the run").toBe(false);
  expect(readdirSync(ROOT).sort(), "nothing created in the repository root (relative paths)").toEqual(w.rootListing);
}

// ---------------------------------------------------------------------------
// Targeted cases: the message names the problem
// ---------------------------------------------------------------------------

interface Targeted {
  name: string;
  ctx: "store" | "no-store";
  target: Target;
  env?: Env;
  conf?: (c: Record<string, unknown>, ipam: Record<string, unknown>) => void;
  stdin?: Buffer;
  node?: NodeSetup;
  codes: number[];
  mentions: string[];
}

const node = (obj: unknown): NodeSetup => ({ kind: "bytes", bytes: encode(obj) });
const cn = (podCIDRs: unknown): Record<string, unknown> => ({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name: "n" }, spec: { ipam: { podCIDRs } } });

const TARGETED: Targeted[] = [
  { name: "ipam.routes[0].dst not a CIDR", ctx: "store", target: "ADD-new", conf: (_c, i) => (i.routes = [{ dst: "0.0.0.0/33" }]), codes: [7], mentions: ["ipam.routes[0].dst", "0.0.0.0/33"] },
  { name: "ipam.routes[2].gw not an IP", ctx: "store", target: "DEL", conf: (_c, i) => (i.routes = [{ dst: "0.0.0.0/0" }, { dst: "::/0" }, { dst: "10.96.0.0/12", gw: "10.0.2.1/24" }]), codes: [7], mentions: ["ipam.routes[2].gw"] },
  { name: "ipam.waitForPodCIDRs -1", ctx: "store", target: "ADD-new", conf: (_c, i) => (i.waitForPodCIDRs = -1), codes: [7], mentions: ["ipam.waitForPodCIDRs", "-1"] },
  { name: "ipam.dataDir relative", ctx: "no-store", target: "ADD-new", conf: (_c, i) => (i.dataDir = "../data"), codes: [7], mentions: ["ipam.dataDir", "../data"] },
  { name: "ipam.nodeFile with a NUL", ctx: "store", target: "ADD-existing", conf: (_c, i) => (i.nodeFile = "/tmp/a\u0000b"), codes: [7], mentions: ["ipam.nodeFile"] },
  { name: "network name with ../", ctx: "store", target: "DEL", conf: (c) => (c.name = "../podnet"), codes: [7], mentions: ["network name", "../podnet"] },
  { name: "node CIDR /33", ctx: "store", target: "ADD-new", node: node(cn(["fd00::200/120", "10.0.2.0/33"])), codes: [102], mentions: ["spec.ipam.podCIDRs[1]", "10.0.2.0/33"] },
  { name: "node CIDR /129", ctx: "store", target: "ADD-new", node: node(cn(["fd00::/129"])), codes: [102], mentions: ["spec.ipam.podCIDRs[0]", "/129"] },
  { name: "node CIDR /-1", ctx: "store", target: "ADD-existing", node: node(cn(["10.0.2.0/-1"])), codes: [102], mentions: ["spec.ipam.podCIDRs[0]", "10.0.2.0/-1"] },
  { name: "node CIDR with host bits", ctx: "store", target: "ADD-new", node: node(cn(["10.0.2.5/24"])), codes: [102], mentions: ["spec.ipam.podCIDRs[0]", "the network is 10.0.2.0/24"] },
  { name: "node CIDRs overlapping", ctx: "no-store", target: "ADD-new", node: node(cn(["10.0.0.0/16", "10.0.2.0/24"])), codes: [102], mentions: ["spec.ipam.podCIDRs[1]", "overlaps 10.0.0.0/16"] },
  { name: "node CIDR /0 with host bits", ctx: "store", target: "ADD-new", node: node(cn(["10.0.0.0/0"])), codes: [102], mentions: ["spec.ipam.podCIDRs[0]", "host bits"] },
  { name: "node CIDR 10.0.0.0/08 (leading zero)", ctx: "store", target: "ADD-new", node: node(cn(["10.0.0.0/08"])), codes: [102], mentions: ["spec.ipam.podCIDRs[0]", "10.0.0.0/08"] },
  { name: "node file in YAML", ctx: "store", target: "ADD-new", node: { kind: "bytes", bytes: Buffer.from(YAML[0]!) }, codes: [102], mentions: ["not JSON", "details:YAML", "details:-o json"] },
  { name: "node file of 100 MB", ctx: "store", target: "ADD-new", node: { kind: "huge", prefix: encode(cn(["10.0.2.0/24"])) }, codes: [102], mentions: ["104857600 bytes"] },
  { name: "node file is a FIFO", ctx: "store", target: "ADD-new", node: { kind: "fifo" }, codes: [102], mentions: ["not a regular file"] },
  { name: "node file is a directory", ctx: "no-store", target: "ADD-new", node: { kind: "dir" }, codes: [102], mentions: ["not a regular file"] },
  { name: "node podCIDRs deeply nested", ctx: "store", target: "ADD-new", node: { kind: "bytes", bytes: encode(cn(deepObj(50_000))) }, codes: [102], mentions: ["spec.ipam.podCIDRs"] },
  { name: "CNI_IFNAME with a slash", ctx: "store", target: "ADD-new", env: { CNI_IFNAME: "../eth0" }, codes: [4], mentions: ["CNI_IFNAME", "../eth0"] },
  { name: "CNI_IFNAME 16 characters", ctx: "store", target: "DEL", env: { CNI_IFNAME: "eth0123456789abc" }, codes: [4], mentions: ["CNI_IFNAME"] },
  { name: "CNI_CONTAINERID with ../", ctx: "store", target: "DEL", env: { CNI_CONTAINERID: "../seed-a" }, codes: [4], mentions: ["CNI_CONTAINERID", "../seed-a"] },
  { name: "CNI_CONTAINERID with a newline", ctx: "store", target: "CHECK", env: { CNI_CONTAINERID: "seed-a\n" }, codes: [4], mentions: ["CNI_CONTAINERID"] },
  { name: "CNI_ARGS pair without =", ctx: "store", target: "ADD-new", env: { CNI_ARGS: "IgnoreUnknown=1;../etc" }, codes: [4], mentions: ["CNI_ARGS", "../etc"] },
  { name: "CNI_ARGS IP= not an address", ctx: "store", target: "ADD-new", env: { CNI_ARGS: "IP=../etc" }, codes: [7], mentions: ["requested address", "../etc"] },
  { name: "cniVersion 1.2.0", ctx: "store", target: "ADD-new", conf: (c) => (c.cniVersion = "1.2.0"), codes: [1], mentions: ["incompatible CNI versions"] },
  { name: "stdin truncated", ctx: "store", target: "DEL", stdin: Buffer.from('{"cniVersion":"1.1.0","name":"pod'), codes: [6], mentions: ["not valid JSON"] },
  { name: "stdin not UTF-8", ctx: "store", target: "ADD-new", stdin: Buffer.from([0xff, 0xfe, 0x7b, 0x7d]), codes: [6], mentions: ["stdin"] },
  { name: "ipam.gateway deeply nested", ctx: "store", target: "ADD-new", conf: (_c, i) => (i.gateway = deepArr(50_000)), codes: [7], mentions: ["ipam.gateway"] },
  { name: "ipam.routes[0].dst deeply nested", ctx: "store", target: "ADD-new", conf: (_c, i) => (i.routes = [{ dst: deepArr(50_000) }]), codes: [7], mentions: ["ipam.routes[0].dst"] },
  { name: "cniVersion deeply nested", ctx: "store", target: "DEL", conf: (c) => (c.cniVersion = deepArr(50_000)), codes: [6], mentions: ["version"] },
  { name: "runtimeConfig a number", ctx: "store", target: "ADD-new", conf: (c) => (c.runtimeConfig = 5), codes: [7], mentions: ["runtimeConfig"] },
  { name: "args a list", ctx: "store", target: "ADD-new", conf: (c) => (c.args = ["IP=10.0.2.50"]), codes: [7], mentions: ["args"] },
  { name: "CHECK with prevResult a number", ctx: "store", target: "CHECK", conf: (c) => (c.prevResult = 5), codes: [7], mentions: ["prevResult"] },
  { name: "requested address outside the podCIDRs, no store yet", ctx: "no-store", target: "ADD-new", env: { CNI_ARGS: "IP=192.168.9.9" }, codes: [101], mentions: ["requested address 192.168.9.9"] },
  { name: "requested address reserved (router), no store yet", ctx: "no-store", target: "ADD-new", conf: (c) => (c.runtimeConfig = { ips: ["10.0.2.236"] }), codes: [101], mentions: ["10.0.2.236", "reserved"] },
];

function targetedCase(t: Targeted, w: World, id: number): Case {
  const ctx = t.ctx === "store" ? w.store : w.noStore;
  const r = new Rng(SEED ^ id);
  const base = baseSpec(r, id, ctx, t.target);
  const conf = clone(base.conf);
  const ipam = conf.ipam as Record<string, unknown>;
  // Keep the twin plain: no optional extras that the case might collide with.
  for (const k of ["routes", "dns", "gateway", "reuseCooldown"]) delete ipam[k];
  delete conf.unknownKey;
  const twinConf = clone(conf);
  t.conf?.(conf, ipam);
  let nodeSpec: Case["node"];
  if (t.node) {
    nodeSpec = { path: join(ctx.nodesDir, `targeted-${id}.json`), setup: t.node };
    ipam.nodeFile = nodeSpec.path;
  }
  const env = { ...base.env, ...(t.env ?? {}) };
  if (t.target === "ADD-new") delete env.CNI_ARGS;
  if (t.env?.CNI_ARGS) env.CNI_ARGS = t.env.CNI_ARGS;
  return {
    id,
    family: "targeted",
    variant: t.name,
    target: t.target,
    ctx,
    codes: t.codes,
    mentions: t.mentions,
    env,
    stdin: t.stdin ?? encode(conf),
    ...(nodeSpec ? { node: nodeSpec } : {}),
    twin: { env: base.env, stdin: encode(twinConf) },
  };
}

// ---------------------------------------------------------------------------
// Tier (a): in process
// ---------------------------------------------------------------------------

describe("fuzz (in process): bad inputs through dispatch() and the real handlers", () => {
  let w: World;
  beforeAll(async () => {
    w = await makeWorld(false);
  });
  afterAll(() => {
    w?.store.sb.cleanup();
    w?.noStore.sb.cleanup();
  });

  it("generator control: the un-faulted twin of sampled cases succeeds", () => twinControl(w, SEED ^ 0xc0ffee, size(150, 1000), 900_000, runInProcess), TEST_TIMEOUT);

  it.each(TARGETED.map((t, i) => ({ ...t, i })))("names the problem: $name", async (t) => {
    const c = targetedCase(t, w, 800_000 + t.i);
    prepareNode(c);
    try {
      const twin = await runInProcess(c.twin.env, c.twin.stdin);
      expect(twin.exit, `the twin must succeed: ${twin.stdout}`).toBe(0);
      restore(w.store.sb.dataDir, w.base);
      rmSync(w.noStore.sb.dataDir, { recursive: true, force: true });
      const o = await runInProcess(c.env, c.stdin);
      const j = judge(c, o);
      const tally = newTally();
      checkStores(tally, c, { dir: w.store.sb.dataDir, base: w.base }, w.noStore.sb.dataDir);
      expect([...j.problems, ...tally.violations.flatMap((v) => v.problems)], o.stdout).toEqual([]);
    } finally {
      cleanupNode(c);
    }
  });

  it(`${size(2000, 20000)} generated bad inputs: each an error naming the problem, the store unchanged`, async () => {
    const r = new Rng(SEED);
    const n = size(2000, 20000);
    const t = newTally();
    const started = performance.now();
    for (let i = 0; i < n; i++) {
      const c = makeCase(r, i, pickCtx(r, w));
      prepareNode(c);
      try {
        const o = await runInProcess(c.env, c.stdin);
        note(t, c, o, judge(c, o));
      } finally {
        cleanupNode(c);
      }
      checkStores(t, c, { dir: w.store.sb.dataDir, base: w.base }, w.noStore.sb.dataDir);
    }
    record("fuzz (in process)", "4. bad input changes nothing", {
      ...outcomeFigures(t, unchangedAfter(t, w)),
      meanMs: Number((t.totalMs / t.cases).toFixed(2)),
      ...runFigures(t, started),
    });
    expect(t.violations.length, `violations (seed ${SEED}):\n${summary(t.violations)}`).toBe(0);
    expect(t.maxMs).toBeLessThan(BOUND_MS);
    finalChecks(w);
  }, TEST_TIMEOUT);
});

// ---------------------------------------------------------------------------
// Tier (b): the built executable
// ---------------------------------------------------------------------------

describe("fuzz (executable): bad inputs through bin/podcidr-ipam", () => {
  let w: World;
  beforeAll(async () => {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run node scripts/build.mjs first`);
    w = await makeWorld(true);
  });
  afterAll(() => {
    w?.store.sb.cleanup();
    w?.noStore.sb.cleanup();
  });

  it("a NUL cannot be passed in an env var at all: spawn refuses it", () => {
    for (const k of ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_ARGS", "CNI_COMMAND"]) {
      expect(() => run({ command: "ADD", env: { [k]: "a\u0000b" }, stdin: "{}" })).toThrow(/null bytes/);
    }
  });

  it("generator control: the un-faulted twin of sampled cases succeeds", () => twinControl(w, SEED ^ 0xbadf00d, size(12, 60), 700_000, runExe), TEST_TIMEOUT);

  const EXE_TARGETED = TARGETED.filter((t) => /100 MB|FIFO|directory|YAML|CNI_IFNAME with|\/33|deeply nested|not UTF-8|outside the podCIDRs/.test(t.name));
  it.each(EXE_TARGETED.map((t) => ({ ...t, i: TARGETED.indexOf(t) })))("names the problem: $name", async (t) => {
    const c = targetedCase(t, w, 600_000 + t.i);
    prepareNode(c);
    try {
      const o = await runExe(c.env, c.stdin);
      const j = judge(c, o);
      const tally = newTally();
      checkStores(tally, c, { dir: w.store.sb.dataDir, base: w.base }, w.noStore.sb.dataDir);
      expect([...j.problems, ...tally.violations.flatMap((v) => v.problems)], o.stdout).toEqual([]);
    } finally {
      cleanupNode(c);
    }
  });

  it(`${size(150, 1500)} generated bad inputs: bounded, one error object on stdout, the store unchanged`, async () => {
    const r = new Rng(SEED ^ 0x5a5a5a5a);
    const n = size(150, 1500);
    const t = newTally();
    const started = performance.now();
    // Always include the special node files, then random cases; 3 processes at a time.
    const forced: { family: string; variant: RegExp }[] = [/100 MB/, /FIFO/, /directory/, /symlink loop/, /YAML/, /truncated/, /not an object/].map((v) => ({ family: "node file", variant: v }));
    const cases: Case[] = [];
    for (let i = 0; i < n; i++) {
      const ctx = pickCtx(r, w);
      const only = forced[i];
      cases.push(makeCase(r, i, only ? w.store : ctx, only));
    }
    const BATCH = 3;
    for (let i = 0; i < cases.length; i += BATCH) {
      const batch = cases.slice(i, i + BATCH);
      for (const c of batch) prepareNode(c);
      try {
        const outs = await Promise.all(batch.map((c) => runExe(c.env, c.stdin)));
        batch.forEach((c, k) => note(t, c, outs[k]!, judge(c, outs[k]!)));
      } finally {
        for (const c of batch) cleanupNode(c);
      }
      const store = { dir: w.store.sb.dataDir, base: w.base };
      if (storesDirty(store, w.noStore.sb.dataDir)) {
        // Something in this batch changed a store: put it back and run the batch's cases one at a time to name the culprit.
        restore(store.dir, store.base);
        rmSync(w.noStore.sb.dataDir, { recursive: true, force: true });
        const before = t.storeChanges + t.dirCreated;
        for (const c of batch) {
          prepareNode(c);
          try {
            await runExe(c.env, c.stdin);
          } finally {
            cleanupNode(c);
          }
          checkStores(t, c, store, w.noStore.sb.dataDir);
        }
        if (t.storeChanges + t.dirCreated === before) {
          t.storeChanges++;
          for (const c of batch) t.violations.push({ c, problems: ["a store changed while this case ran in a batch (not reproduced alone)"] });
        }
      }
    }
    record("fuzz (executable)", "4. bad input changes nothing", {
      ...outcomeFigures(t, unchangedAfter(t, w)),
      meanMs: Math.round(t.totalMs / t.cases),
      boundMs: BOUND_MS,
      killed: t.killed,
      ...runFigures(t, started),
    });
    expect(t.violations.length, `violations (seed ${SEED}):\n${summary(t.violations)}`).toBe(0);
    expect(t.maxMs).toBeLessThan(BOUND_MS);
    finalChecks(w);
  }, TEST_TIMEOUT);
});
