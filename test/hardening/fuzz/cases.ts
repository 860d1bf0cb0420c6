// Making a case: a valid base request for a command and sandbox, then one fault
// from a family picked by weight; and the targeted cases' fixed faults.
import { join } from "node:path";
import { Rng, clone, encode } from "./bytes";
import { ALL, FAMILIES } from "./families";
import { type Case, type Ctx, type Env, type NodeSetup, type Spec, type Target, VALID_DNS, VALID_ROUTES, VERSIONS } from "./types";
import type { World } from "./world";

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
  const ipam: Record<string, unknown> = {
    type: "podcidr-ipam",
    nodeFile: ctx.sb.nodeFile,
    dataDir: ctx.sb.dataDir,
    waitForPodCIDRs: 0,
    lockTimeout: 10,
  };
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

function targetsOf(ctx: Ctx): readonly Target[] {
  return ctx.seeds.length > 0 ? ALL : ["ADD-new", "DEL", "GC", "STATUS"];
}

export function makeCase(r: Rng, id: number, ctx: Ctx, only?: { family: string; variant?: RegExp }): Case {
  const avail = targetsOf(ctx);
  for (let tries = 0; ; tries++) {
    if (tries > 10_000) throw new Error(`generator: cannot make a case for ${JSON.stringify(only)}`);
    const fams = FAMILIES.filter((f) => (!only || f.name === only.family) && f.targets.some((t) => avail.includes(t)));
    let w = r.next() * fams.reduce((a, f) => a + f.weight, 0);
    const fam =
      fams.find((f) => {
        w -= f.weight;
        return w < 0;
      }) ?? fams[fams.length - 1]!;
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

/** A hand-written case: one fault, the codes it must get and the words its message must name. */
export interface Targeted {
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

/** The case of a targeted fault, on a plain twin (no optional extras the fault might collide with). */
export function targetedCase(t: Targeted, w: World, id: number, seed: number): Case {
  const ctx = t.ctx === "store" ? w.store : w.noStore;
  const r = new Rng(seed ^ id);
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
