// Multi-pool's namespace annotations, which a CNI call is not given: every namespace's
// ipam.cilium.io pool keys, kept in the map beside the node file that the plugin reads
// (src/node/namespaces.ts), from a list-then-watch of all namespaces. Written atomically,
// only when a pool key changed, in namespace order; a namespace without one is left out.
import { POOL_ANNOTATION } from "../ipam/pool-choice.js";
import { namespacesFile } from "../node/namespaces.js";
import { type KubeObject, type ObjectReason, type WatchState, levelOf } from "./kube/watch.js";
import type { Log } from "./log.js";
import type { Metrics } from "./metrics.js";
import { currentText, writeNodeFile } from "./node-file.js";

const KEYS: readonly string[] = [POOL_ANNOTATION.any, POOL_ANNOTATION[4], POOL_ANNOTATION[6], POOL_ANNOTATION.require];
const RETRY_MS = 1000;

export class NamespaceSync {
  readonly path: string;
  private readonly map = new Map<string, Record<string, string>>();
  private written: string;
  private listed = false;
  private problem = "";
  private watch: { state: WatchState | "starting"; detail: string } = { state: "starting", detail: "" };
  private pending: ReturnType<typeof setTimeout> | null = null;

  constructor(
    nodeFile: string,
    private readonly log: Log,
    private readonly metrics: Metrics,
  ) {
    this.path = namespacesFile(nodeFile);
    this.written = currentText(this.path);
  }

  /** The watcher's onObject (every namespace: a list gives each, the first with `reset`). */
  onObject(obj: KubeObject | null, info: { reason: ObjectReason; resourceVersion: string; reset?: boolean }): void {
    if (info.reset) this.map.clear();
    if (obj) {
      const keys = info.reason === "deleted" ? null : poolKeys(obj.metadata.annotations);
      if (keys) this.map.set(obj.metadata.name, keys);
      else this.map.delete(obj.metadata.name);
    }
    if (info.reason === "list") {
      this.listed = true;
      // A list hands over every namespace one by one: write once, after the last.
      this.schedule(0);
    } else this.flush();
  }

  /** The watcher's onState. */
  onState(state: WatchState, detail: string): void {
    this.watch = { state, detail };
    this.log(levelOf(state), `namespaces watch ${state}`, { detail });
  }

  /** Ready once the namespaces were listed and the map written, and while the watch does not fail. */
  ready(): { ok: boolean; why: string } {
    if (this.watch.state === "error") return { ok: false, why: `the namespaces watch fails: ${this.watch.detail}` };
    if (!this.listed) return { ok: false, why: "the namespaces have not been listed yet" };
    if (this.pending && !this.problem) return { ok: false, why: "the namespaces' pool map is being written" };
    return this.problem ? { ok: false, why: this.problem } : { ok: true, why: "ok" };
  }

  stop(): void {
    if (this.pending) clearTimeout(this.pending);
  }

  // --- internal ---

  private schedule(ms: number): void {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.flush();
    }, ms);
    this.pending.unref();
  }

  private flush(): void {
    const names = [...this.map.keys()].sort();
    const text = `${JSON.stringify({ namespaces: Object.fromEntries(names.map((n) => [n, this.map.get(n)])) }, null, 2)}\n`;
    if (text === this.written) return;
    try {
      writeNodeFile(this.path, text);
    } catch (e) {
      this.problem = `cannot write the namespaces' pool map ${this.path}: ${(e as Error).message}`;
      this.log("error", this.problem);
      this.schedule(RETRY_MS);
      return;
    }
    this.written = text;
    this.problem = "";
    this.metrics.counter("podcidr_ipam_namespace_map_writes_total", "Times the agent wrote the namespaces' pool map (multi-pool).");
    this.log("info", "namespaces' pool map written", { path: this.path, namespaces: names.length });
  }
}

/** The pool keys of a namespace's annotations, or null when it has none. */
function poolKeys(annotations: unknown): Record<string, string> | null {
  if (typeof annotations !== "object" || annotations === null) return null;
  const out: Record<string, string> = {};
  for (const k of KEYS) {
    const v = (annotations as Record<string, unknown>)[k];
    if (typeof v === "string") out[k] = v;
  }
  return Object.keys(out).length > 0 ? out : null;
}
