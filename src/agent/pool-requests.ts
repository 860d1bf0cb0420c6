// Multi-pool: what this node asks Cilium's operator for, in its CiliumNode's
// spec.ipam.pools.requested, as Cilium's agent does (pkg/ipam/multipool_manager.go):
// per pool and family, needed = roundUp(inUse + pending + preAllocate, preAllocate), where
// inUse is what the store holds in the pool's CIDRs, pending the pods refused for want of a
// CIDR in the last 5 minutes (the plugin's code 11 with a note in the calls log), and
// preAllocate the flag's value (default=8, other pools 0). Patched only when it changes,
// at most once per interval, sorted by pool name as Cilium writes it.
import type { IpamConfig } from "../ipam/config.js";
import { nodeFromJson } from "../ipam/node-file.js";
import { type PoolRequest, poolOfCidr } from "../ipam/node-pools.js";
import { openStore } from "../store/open.js";
import type { KubeApi } from "./kube/client.js";
import type { SourceKind } from "./kube/watch.js";
import type { Log } from "./log.js";
import type { Metrics } from "./metrics.js";

/** How long a refused pod counts as pending (Cilium's pending allocation TTL). */
export const PENDING_TTL_MS = 5 * 60_000;

export interface Request {
  pool: string;
  needed: { "ipv4-addrs"?: number; "ipv6-addrs"?: number };
}

/** Cilium's neededIPCeil: the next multiple of preAllocate above inUse + pending (preAllocate 0: exactly that). */
export function needed(inUse: number, pending: number, preAllocate: number): number {
  const n = inUse + pending + preAllocate;
  return preAllocate > 0 ? Math.ceil(n / preAllocate) * preAllocate : n;
}

/** The requests for every pool with demand, sorted by name; families with nothing needed are left out. */
export function requests(
  pools: readonly string[],
  inUse: ReadonlyMap<string, number>,
  pending: ReadonlyMap<string, number>,
  preAllocate: ReadonlyMap<string, number>,
  families: readonly (4 | 6)[],
): Request[] {
  const names = new Set([...pools, ...[...pending.keys()].map((k) => k.split("/")[0]!), ...preAllocate.keys()]);
  const out: Request[] = [];
  for (const pool of [...names].sort()) {
    const r: Request = { pool, needed: {} };
    for (const f of families) {
      const n = needed(inUse.get(`${pool}/${f}`) ?? 0, pending.get(`${pool}/${f}`) ?? 0, preAllocate.get(pool) ?? 0);
      if (n > 0) r.needed[`ipv${f}-addrs`] = n;
    }
    if (Object.keys(r.needed).length > 0) out.push(r);
  }
  return out;
}

/** `--pre-allocate default=8,blue=16` as a map; throws naming the bad entry. */
export function parsePreAllocate(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of text.split(",").filter((p) => p !== "")) {
    const m = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)=(0|[1-9]\d{0,5})$/.exec(part);
    if (!m) throw new Error(`--pre-allocate ${JSON.stringify(part)} must be POOL=COUNT (a pool name, a count up to 999999)`);
    out.set(m[1]!, Number(m[3]));
  }
  return out;
}

export class PoolRequester {
  /** "pool/family" -> container ID -> when last refused. */
  private readonly refused = new Map<string, Map<string, number>>();
  private lastPatch = 0;
  private warned = false;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly api: KubeApi,
    private readonly nodeName: string,
    private readonly ipam: IpamConfig,
    private readonly current: () => unknown,
    private readonly opts: { preAllocate: ReadonlyMap<string, number>; intervalMs: number },
    private readonly log: Log,
    private readonly metrics: Metrics,
    private readonly now: () => number = Date.now,
  ) {}

  /** A call from the calls log: an ADD or DEL changes what is in use; a refusal with a pool note is pending demand. */
  call(c: { command: string; code: string; note: string; id: string; at: number }): void {
    // Served at last: no longer pending.
    if (c.command === "ADD" && c.code === "0" && c.id) for (const ids of this.refused.values()) ids.delete(c.id);
    const m = /^pool=([^/]+)\/([46])$/.exec(c.note);
    if (m && c.id) {
      const key = `${m[1]}/${m[2]}`;
      if (!this.refused.has(key)) this.refused.set(key, new Map());
      this.refused.get(key)!.set(c.id, Number.isFinite(c.at) ? c.at : this.now());
    }
    if (m || c.command === "ADD" || c.command === "DEL" || c.command === "GC") this.poke();
  }

  /** Look again (after a node event, a calls poll): patch when the requests changed, no sooner than the interval allows. */
  poke(): void {
    if (this.timer) return;
    const wait = Math.max(0, this.lastPatch + this.opts.intervalMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.evaluate().catch((e: unknown) => {
        this.metrics.counter("podcidr_ipam_pool_request_errors_total", "Failed patches of spec.ipam.pools.requested.");
        this.log("warn", `cannot patch spec.ipam.pools.requested: ${(e as Error).message}`);
        this.lastPatch = this.now();
        this.poke();
      });
    }, wait);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  // --- internal ---

  private async evaluate(): Promise<void> {
    const obj = this.current() as { spec?: { ipam?: { pools?: { requested?: unknown } } } } | null;
    if (!obj) return;
    // Only a node the plugin reads as multi-pool: requests on a cluster-pool CiliumNode would
    // make it mix modes, and the plugin would then refuse it.
    const node = nodeFromJson(obj, this.ipam.nodeFile, this.ipam.mode);
    if (node.mode !== "multi-pool") {
      if (!this.warned) this.log("warn", `--request-pools: the CiliumNode is read as ${node.mode}, not multi-pool; nothing is requested`);
      this.warned = true;
      return;
    }
    this.warned = false;
    const cutoff = this.now() - PENDING_TTL_MS;
    const pending = new Map<string, number>();
    for (const [key, ids] of this.refused) {
      for (const [id, at] of ids) if (at < cutoff) ids.delete(id);
      if (ids.size > 0) pending.set(key, ids.size);
    }
    const { value: inUse } = await openStore(this.ipam, () => {}).transact({ create: false, unlocked: true, skipDamaged: true }, (tx) => {
      const out = new Map<string, number>();
      for (const r of tx.storedRanges()) {
        const pool = poolOfCidr(node, r.cidr.text);
        if (pool) out.set(`${pool}/${r.cidr.family}`, (out.get(`${pool}/${r.cidr.family}`) ?? 0) + r.allocated);
      }
      return out;
    });
    const fams = new Set<4 | 6>(node.podCIDRs.map((c) => c.family));
    for (const key of pending.keys()) fams.add(Number(key.split("/")[1]) as 4 | 6);
    if (fams.size === 0) fams.add(4);
    const want = requests(
      node.pools.map((p) => p.name),
      inUse,
      pending,
      this.opts.preAllocate,
      [...fams].sort(),
    );
    // Compared by content: the API server hands the object back with its keys in its own order.
    const asRead = (r: Request): PoolRequest => ({ pool: r.pool, ipv4: r.needed["ipv4-addrs"] ?? 0, ipv6: r.needed["ipv6-addrs"] ?? 0 });
    if (JSON.stringify(want.map(asRead)) === JSON.stringify(node.requested)) return;
    this.lastPatch = this.now();
    await this.api.request("PATCH", `/apis/cilium.io/v2/ciliumnodes/${this.nodeName}`, {
      body: { spec: { ipam: { pools: { requested: want } } } },
      contentType: "application/merge-patch+json",
    });
    this.metrics.counter("podcidr_ipam_pool_request_patches_total", "Patches of spec.ipam.pools.requested (multi-pool).");
    this.log("info", "spec.ipam.pools.requested patched", { requested: JSON.stringify(want) });
  }
}

/** The requester `--request-pools` asks for, from its flags; throws naming a bad one. */
export function poolRequester(
  v: Record<string, string | boolean | undefined>,
  client: KubeApi,
  kind: SourceKind,
  nodeName: string,
  ipam: IpamConfig,
  current: () => unknown,
  log: Log,
  metrics: Metrics,
): PoolRequester {
  if (kind !== "ciliumnode") throw new Error("--request-pools needs a CiliumNode (multi-pool): the v1 Node has no spec.ipam.pools");
  const seconds = Number(v["pool-request-interval"]);
  if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 3600)
    throw new Error(`--pool-request-interval ${JSON.stringify(v["pool-request-interval"])} must be seconds from 0.1 to 3600`);
  const opts = { preAllocate: parsePreAllocate(String(v["pre-allocate"])), intervalMs: seconds * 1000 };
  return new PoolRequester(client, nodeName, ipam, current, opts, log, metrics);
}
