// Broken node files: bad, overlapping or missing podCIDRs, the wrong kind, YAML,
// truncated or non-UTF-8 JSON, an empty file, a FIFO, a folder, 100 MB, links;
// and putting one in place for a case.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ciliumNode, v1Node } from "../../helpers/node";
import { HUGE, INVALID_UTF8, MiB, Raw, type Rng, badUtf8String, clone, deepArr, deepObj, depth, encode, throwsJson } from "./bytes";
import { type Case, type Ctx, type Fault, type NodeSetup, type Spec, type Target, ipamOf } from "./types";

const V4_LISTS = [["10.0.2.0/24"], ["10.0.2.0/24", "fd00::200/120"], ["10.0.2.0/24", "10.0.3.0/24", "fd00::200/120"], ["fd00::200/120"]];

/** A node object (CiliumNode, v1 Node, or v1 Node with the legacy single spec.podCIDR) with `list` where its podCIDRs go. */
function nodeObject(r: Rng, list: unknown, allowSingle = true): { obj: Record<string, unknown>; field: string } {
  if (r.chance(0.6)) {
    const spec = { addresses: [{ ip: "10.0.2.236", type: "CiliumInternalIP" }], health: { ipv4: "10.0.2.48" } };
    return { obj: ciliumNode(list, { name: "fz-node", spec }), field: "spec.ipam.podCIDRs" };
  }
  if (!allowSingle || r.chance(0.8)) {
    return { obj: v1Node({ podCIDRs: list }, { "io.cilium.network.ipv4-cilium-host": "10.0.2.236" }, "fz-node"), field: "spec.podCIDRs" };
  }
  // Legacy single spec.podCIDR: the list holds one entry.
  const single = Array.isArray(list) && list.length === 1 ? list[0] : list;
  return { obj: v1Node({ podCIDRs: [], podCIDR: single }, undefined, "fz-node"), field: "spec.podCIDR" };
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
      value: r.pick([
        "10.0.0.0/33",
        "10.0.0.0/64",
        "10.0.0.0/255",
        "10.0.0.0/999",
        "fd00::/129",
        "fd00::/200",
        "fd00::/999",
        "10.0.0.0/-1",
        "fd00::/-1",
        "10.0.0.0/+8",
        "10.0.0.0/ 24",
        "10.0.0.0/24 ",
        "10.0.0.0/2 4",
        "10.0.0.0/24.0",
        "10.0.0.0/0x18",
        "10.0.0.0/1e1",
        "10.0.0.0/",
        "10.0.0.0//24",
        "10.0.2.0/24/24",
        "10.0.0.0/\u0662\u0664",
        "fd00::/0120",
        "10.0.0.0/0/",
      ]),
      variant: "absurd prefix",
    }),
    () => ({
      value: r.pick(["10.0.0.0/08", "10.0.0.0/008", "10.1.0.0/016", "10.0.2.0/024", "fd00::/064", "fd00::/096"]),
      variant: "leading-zero prefix",
    }),
    () => ({ value: r.pick(["10.0.0.0/0", "10.0.0.0/1", "fd00::/0", "255.255.255.255/0"]), variant: "absurd prefix with host bits" }),
    () => ({
      value: r.pick([
        "256.0.0.0/8",
        "10.0.2/24",
        "10.0.2.0.0/24",
        "010.0.2.0/24",
        "10.00.2.0/24",
        "0x0a.0.2.0/24",
        "10.0.2.0",
        "fd00::200",
        "fd00:::/64",
        "fd00::g/64",
        "fd00::200::1/120",
        "::ffff:10.0.2.0/120",
        "10.0.2.0%eth0/24",
        "fd00::200%eth0/120",
        " 10.0.2.0/24",
        "10.0.2.0/24\n",
        "10.0.2.0/24\u0000",
        "\u000010.0.2.0/24",
        "../10.0.2.0/24",
        "10.0.2.0\\24",
        "10.0.2.0/24,10.0.3.0/24",
        "",
        "localhost/24",
        "10.0.2.0/24;rm -rf /",
      ]),
      variant: "not a CIDR",
    }),
    () => ({
      value: r.pick<unknown>([5, null, true, {}, [], ["10.0.2.0/24"], { cidr: "10.0.2.0/24" }, 24]),
      variant: "entry of the wrong kind",
    }),
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

export const YAML = [
  "apiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata:\n  name: n1\nspec:\n  ipam:\n    podCIDRs:\n    - 10.0.2.0/24\n",
  "---\napiVersion: v1\nkind: Node\nspec:\n  podCIDRs: [10.0.2.0/24]\n",
  "kind: CiliumNode\n",
  "metadata: {name: n1}\n",
];

export function nodeFault(r: Rng, s: Spec, ctx: Ctx, id: number, target: Target): Fault {
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
      const v = r.gen<Buffer>([
        () => Buffer.from(r.pick(["[]", "5", '"CiliumNode"', "null", "true", "[{}]"])),
        () => deepArr(depth(r) * 10).bytes,
      ]);
      return bad("not an object", bytes(v));
    },
    () => bad("deeply nested object", bytes(deepObj(depth(r) * 10).bytes)),
    () => {
      const text = encode(nodeObject(r, clone(r.pick(V4_LISTS))).obj);
      for (let tries = 0; tries < 20; tries++) {
        const i = r.int(0, text.length);
        if (!'{}[],:"'.includes(String.fromCharCode(text[i]!))) continue;
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

export function prepareNode(c: Case): void {
  if (!c.node) return;
  const { path, setup } = c.node;
  rmSync(path, { recursive: true, force: true });
  switch (setup.kind) {
    case "bytes":
      writeFileSync(path, setup.bytes);
      rmSync(`${path}.namespaces.json`, { force: true });
      if (setup.namespaces) writeFileSync(`${path}.namespaces.json`, setup.namespaces);
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

export function cleanupNode(c: Case): void {
  if (c.node) rmSync(c.node.path, { recursive: true, force: true });
  if (c.node) rmSync(`${c.node.path}.namespaces.json`, { force: true });
}
