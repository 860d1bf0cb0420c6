// Wrong values for the config's fields and the CNI_* variables: each one is
// refused by construction (the generators check their own output and retry).
import { HUGE, type Rng, clone, deepArr, deepObj, depth, raw } from "./bytes";
import { type Ctx, type Env, type Fault, IFNAME_OK, NAME_OK, type Target, VALID_DNS, VALID_ROUTES } from "./types";

// --- wrong values per kind of field ------------------------------------------------

export const WRONG_FOR_STRING: unknown[] = [5, 0, -1, 1.5, true, false, [], ["x"], {}, { x: "y" }];
export const WRONG_FOR_BOOL: unknown[] = [0, 1, "true", "false", "", "yes", [], [true], {}, { v: true }];
const WRONG_FOR_LIST: unknown[] = [5, "x", true, {}, { "0": "x" }];
const WRONG_FOR_OBJECT: unknown[] = [5, "x", true, [], [{}]];

/** A number outside [min, max] or not a number at all. */
export function badSeconds(r: Rng, min: number, max: number): unknown {
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

export function badPath(r: Rng, ctx: Ctx): unknown {
  return r.gen<unknown>([
    () => r.pick(WRONG_FOR_STRING),
    () =>
      r.pick([
        "",
        "node.json",
        "../node.json",
        "./data",
        "~/data",
        "data/../../etc",
        "..",
        ".",
        " /tmp/x",
        `${"../".repeat(r.int(1, 30))}etc/passwd`,
      ]),
    () => `${ctx.sb.dir}/a\u0000b`,
    () => `${ctx.sb.dir}/a\nb`,
    () => `${ctx.sb.dir}/\u0000/../etc`,
    () => `/${"p".repeat(4096 + r.int(0, 2000))}`,
    () => `/${HUGE}`,
    () => HUGE,
    () => deepArr(depth(r)),
  ]);
}

const BAD_DST = [
  "",
  "0.0.0.0",
  "0.0.0.0/",
  "/0",
  "0.0.0.0/33",
  "::/129",
  "0.0.0.0/-1",
  "0.0.0.0/1000",
  "10.0.0.0/8/8",
  "300.0.0.0/8",
  "010.0.0.0/8",
  "10.0.0.0 /8",
  "10.0.0.0/ 8",
  "10.0.0.0/8\n",
  "10.0.0.0/8\u0000",
  "\n10.0.0.0/8",
  "../10.0.0.0/8",
  "default",
  "fd00:::/64",
  "::ffff:10.0.0.0/104",
  "10.0.0.0/8x",
  "10.0.0.0/0x8",
  "fe80::1%eth0/64",
  "10.0.0.0\\8",
];
const BAD_IP = ["", "x", "10.0.0.1/24", "10.0.0.256", "../", "10.0.0.1\u0000", "10.0.0.1\n", "fe80::1%eth0", "10.0.0", "::g", "0x0a000001"];

export function badRoutes(r: Rng, ipam: Record<string, unknown>): Fault {
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
    const dst = r.gen<unknown>([
      () => r.pick(BAD_DST),
      () => r.pick([5, null, true, [], {}, ["0.0.0.0/0"]]),
      () => HUGE,
      () => deepArr(depth(r)),
      () => undefined,
    ]);
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

export function badDns(r: Rng, ipam: Record<string, unknown>): Fault {
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
export function badRequest(r: Rng, ctx: Ctx, target: Target, env: Env): { value: string; code: number; variant: string } {
  if (r.chance(0.5)) {
    const value = r.pick(
      [
        "not-an-ip",
        "10.0.2.500",
        "10.0.2",
        "../etc/passwd",
        "10.0.\n2.50",
        "10.0.2.5/24/24",
        "fd00::2:::1",
        "10.0.2.5%eth0",
        "0x0a000205",
        "10.0.2.50,10.0.2.51",
        "fd00::250,fd00::251",
        "IP",
        "/24",
      ].filter((s) => !(ctx.exe && s.includes("\u0000"))),
    );
    return { value, code: 7, variant: "malformed requested address" };
  }
  const others = ctx.seeds
    .filter((s) => s.id !== env.CNI_CONTAINERID || s.ifname !== env.CNI_IFNAME)
    .flatMap((s) => s.ips.map((a) => a.replace(/\/\d+$/, "")));
  const pool = ["192.168.7.7", "2001:db8::7", "10.0.2.0", "10.0.2.255", "fd00::200", "10.0.2.236", "10.0.2.48", "10.0.3.9"];
  // Held by another attachment (never by the one asking: that would be a valid repeated ADD).
  pool.push(...others);
  void target;
  return { value: r.pick(pool), code: 101, variant: "unavailable requested address" };
}

// --- env ----------------------------------------------------------------------------

const FORBIDDEN_ID_CHARS = [
  " ",
  "\n",
  "\t",
  "\r",
  "/",
  ":",
  "@",
  "%",
  "*",
  "ä",
  "é",
  "\u2028",
  "\u007f",
  "\u0001",
  "\\",
  "'",
  '"',
  "$",
  "`",
  "|",
  ";",
  ",",
  "+",
  "~",
];

export function badContainerID(r: Rng, ctx: Ctx): string {
  const valid = (n: number): string =>
    Array.from({ length: n }, (_, i) => r.pick([...`${i === 0 ? "" : "_.-"}abcdefABCDEF0123456789`])).join("");
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

export function badIfname(r: Rng, ctx: Ctx): string {
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

export function badArgsPair(r: Rng, ctx: Ctx): string {
  const bad = r.pick([
    "foo",
    "../",
    "..",
    "/etc/passwd",
    "\n",
    "K8S_POD_NAME",
    "=x",
    "=",
    "IgnoreUnknown",
    "a\nb",
    "x".repeat(ctx.exe ? 100_000 : 1_000_000),
  ]);
  const pairs = ["IgnoreUnknown=1", "K8S_POD_NAMESPACE=default", "K8S_POD_NAME=web-0", "K8S_POD_INFRA_CONTAINER_ID=abc"].filter(() =>
    r.chance(0.5),
  );
  pairs.splice(r.int(0, pairs.length + 1), 0, bad);
  return pairs.join(";");
}
