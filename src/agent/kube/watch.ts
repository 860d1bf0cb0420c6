// List, then watch, one object (this node's CiliumNode or v1 Node), or every namespace, as
// client-go's reflector does for a whole resource (api-concepts "Efficient detection of changes"):
//
//   LIST ?fieldSelector=metadata.name=N            -> the object (or none) and the list's resourceVersion R
//   WATCH ?...&watch=1&resourceVersion=R&allowWatchBookmarks=true&timeoutSeconds=T   (T in [300, 600], random)
//     every event, BOOKMARK included, moves R on
//     the server ends the stream after T          -> watch again from R (no relist, nothing replayed)
//     no byte for idleTimeoutMs                    -> the stream is dead (half-open): watch again from R
//     410 (HTTP, or an ERROR event in the stream) -> R is too old: LIST again, then watch
//     401 (after the client's token re-read), 403, 404, 429, 5xx, network errors -> back off, try again
// Never polls, never gives up: stop() is the only way out.
import { Backoff, sleep } from "./backoff.js";
import { type KubeApi, countError } from "./client.js";
import { KubeError, configError, forbidden } from "./errors.js";
import {
  IDLE_TIMEOUT_MS,
  type KubeObject,
  type ObjectReason,
  RESOURCES,
  type WatchCounters,
  type WatchOptions,
  type WatchState,
} from "./watch-types.js";

export * from "./watch-types.js";

const TYPES = new Set(["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]);
const NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export class ObjectWatcher {
  private rv: string | undefined;
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly res: (typeof RESOURCES)[WatchOptions["kind"]];
  private readonly selector: string;
  private state: WatchState | undefined;
  private goneInRow = 0;
  private readonly c = { lists: 0, watches: 0, events: 0, bookmarks: 0, idleTimeouts: 0, lastSyncTime: null as number | null };

  constructor(
    private readonly api: KubeApi,
    private readonly opts: WatchOptions,
  ) {
    if (opts.name !== "" && !NAME_RE.test(opts.name)) {
      throw configError(`node name ${JSON.stringify(opts.name)} is not a Kubernetes object name (lowercase letters, digits, '-' and '.')`);
    }
    const res = RESOURCES[opts.kind];
    if (!res) throw configError(`source ${JSON.stringify(opts.kind)} must be "ciliumnode" or "node"`);
    this.res = res;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.backoff = new Backoff({ random: this.random, ...opts.backoff });
    this.selector = opts.name === "" ? "" : `fieldSelector=${encodeURIComponent(`metadata.name=${opts.name}`)}&`;
  }

  get counters(): WatchCounters {
    const { lists, watches } = this.c;
    const api = this.api.counters;
    return {
      ...this.c,
      requests: api.requests,
      relists: Math.max(0, lists - 1),
      watchRestarts: Math.max(0, watches - 1),
      apiErrors: { ...api.errors },
    };
  }

  /** Run until stop(); the promise resolves then. Calling it again returns the same promise. */
  start(): Promise<void> {
    this.running ??= this.run();
    return this.running;
  }

  /** End the current request and the loop (for SIGTERM); resolves when the loop is out. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  // --- internal ---

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        if (this.rv === undefined) await this.list();
        await this.watch();
      } catch (e) {
        if (!signal.aborted) await this.failed(e);
      }
    }
  }

  private async list(): Promise<void> {
    const path = `${this.res.path}?${this.selector}`;
    const r = await this.api.request("GET", path, { signal: this.abort.signal, ...this.timeout() });
    let list: { metadata?: { resourceVersion?: unknown }; items?: unknown } | undefined;
    try {
      list = JSON.parse(r.body) as typeof list;
    } catch {
      /* checked below */
    }
    const rv = list?.metadata?.resourceVersion;
    const items = list?.items;
    if (typeof rv !== "string" || rv === "" || !Array.isArray(items)) {
      throw new KubeError(`GET ${path}: the answer is not a ${this.res.kind}List (${r.body.slice(0, 100)})`, { reason: "BadResponse" });
    }
    this.c.lists++;
    // Handed over first: a handler that keeps failing (an unwritable node file) must not reset
    // the backoff with each list, or the agent would list every 250 ms for as long as it fails.
    const all = this.opts.name === "";
    const mine = (items as KubeObject[]).filter((i) =>
      all ? typeof i?.metadata?.name === "string" : i?.metadata?.name === this.opts.name,
    );
    if (!all || mine.length === 0) this.deliver(mine[0] ?? null, "list", rv, all);
    else for (const [i, o] of mine.entries()) this.deliver(o, "list", rv, i === 0);
    this.synced(rv);
    this.setState("connected", `listed ${this.what()} at resourceVersion ${rv}${mine.length ? "" : " (there is none)"}`);
  }

  private async watch(): Promise<void> {
    const [lo, hi] = this.opts.timeoutSeconds ?? [300, 600];
    const timeout = lo + Math.floor(this.random() * (hi - lo + 1));
    const idle = Math.min(this.opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS, (timeout + 30) * 1000);
    const from = this.rv ?? "";
    const query = `watch=1&resourceVersion=${encodeURIComponent(from)}&allowWatchBookmarks=true&timeoutSeconds=${timeout}`;
    const path = `${this.res.path}?${this.selector}${query}`;
    const t0 = this.now();
    let lines = 0;
    const end = await this.api.stream(path, {
      idleTimeoutMs: idle,
      ...(this.opts.requestTimeoutMs ? { headersTimeoutMs: this.opts.requestTimeoutMs } : {}),
      signal: this.abort.signal,
      onOpen: () => {
        this.c.watches++;
        this.c.lastSyncTime = this.now();
        this.setState("connected", `watching ${this.what()} from resourceVersion ${from}`);
      },
      onLine: (line) => {
        lines++;
        this.event(line);
      },
    });
    if (end.end === "error") throw end.error;
    if (end.end === "idle") {
      this.c.idleTimeouts++;
      this.setState("reconnecting", `no byte on the watch for ${idle / 1000} s (a half-open connection?): watching again from ${this.rv}`);
    } else if (end.end === "closed" && lines === 0 && this.now() - t0 < 1000) {
      // Closed at once with nothing in it: not the server's timeout; do not spin.
      await sleep(this.backoff.next(), this.abort.signal);
    }
  }

  private event(line: string): void {
    let ev: { type?: unknown; object?: Record<string, unknown> & { metadata?: { resourceVersion?: unknown; name?: unknown } } };
    try {
      ev = JSON.parse(line) as typeof ev;
    } catch {
      throw new KubeError(`watch ${this.what()}: an event that is not JSON: ${line.slice(0, 100)}`, { reason: "BadResponse" });
    }
    const obj = ev?.object;
    if (ev?.type === "ERROR") {
      const code = typeof obj?.code === "number" ? obj.code : 500;
      const reason = typeof obj?.reason === "string" ? obj.reason : "";
      countError(this.api.counters, String(code));
      throw new KubeError(`watch ${this.what()}: ERROR event ${code} ${reason}: ${String(obj?.message ?? "")}`, { status: code, reason });
    }
    const rv = obj?.metadata?.resourceVersion;
    if (typeof ev?.type !== "string" || !TYPES.has(ev.type) || typeof rv !== "string") {
      throw new KubeError(`watch ${this.what()}: an event of no known shape: ${line.slice(0, 100)}`, { reason: "BadResponse" });
    }
    this.synced(rv);
    if (ev.type === "BOOKMARK") {
      this.c.bookmarks++;
      return;
    }
    this.c.events++;
    const all = this.opts.name === "";
    const name = obj?.metadata?.name;
    if (all ? typeof name !== "string" : name !== this.opts.name) return; // the field selector keeps others out
    this.deliver(ev.type === "DELETED" && !all ? null : (obj as KubeObject), ev.type.toLowerCase() as ObjectReason, rv);
  }

  private deliver(obj: KubeObject | null, reason: ObjectReason, rv: string, reset?: boolean): void {
    try {
      this.opts.onObject(obj, { reason, resourceVersion: rv, ...(reset ? { reset } : {}) });
    } catch (e) {
      this.rv = undefined; // the handler may not have kept it: list again
      throw new KubeError(`the onObject handler failed on ${reason} at resourceVersion ${rv}: ${(e as Error)?.message ?? e}`, {
        reason: "HandlerError",
        cause: e,
      });
    }
  }

  private async failed(e: unknown): Promise<void> {
    const err =
      e instanceof KubeError ? e : new KubeError(`watch ${this.what()}: ${(e as Error)?.message ?? e}`, { reason: "Internal", cause: e });
    if (err.status === 410) {
      this.rv = undefined;
      this.setState("reconnecting", `resourceVersion too old (410 ${err.reason}): listing ${this.what()} again`, err);
      if (this.goneInRow++ === 0) return; // the usual case (after an API server restart): relist at once
    } else {
      const [state, detail] = this.describe(err);
      this.setState(state, detail, err);
      if (!(e instanceof KubeError)) this.rv = undefined;
    }
    await sleep(this.backoff.next(err.retryAfterMs), this.abort.signal);
  }

  private describe(err: KubeError): [WatchState, string] {
    const s = err.status;
    if (s === 401) return ["error", `unauthorized: the API server does not accept the credentials (${err.message})`];
    if (s === 403) return ["error", forbidden(err, this.res.resource).message];
    if (s === 404 && this.opts.kind === "ciliumnode") {
      return ["error", `the cilium.io/v2 CiliumNode API is not served (is the ciliumnodes.cilium.io CRD installed?): ${err.message}`];
    }
    if (err.reason === "BadConfig" || err.reason === "HandlerError" || (s >= 400 && s < 500 && s !== 429)) return ["error", err.message];
    return ["reconnecting", `${err.message}; trying again`];
  }

  private synced(rv: string): void {
    this.rv = rv;
    this.goneInRow = 0;
    this.backoff.reset();
    this.c.lastSyncTime = this.now();
  }

  private setState(state: WatchState, detail: string, err?: KubeError): void {
    if (state === "connected" && this.state === "connected") return;
    this.state = state;
    this.opts.onState?.(state, detail, err);
  }

  private timeout(): { timeoutMs?: number } {
    return this.opts.requestTimeoutMs ? { timeoutMs: this.opts.requestTimeoutMs } : {};
  }

  private what(): string {
    return this.opts.name === "" ? `every ${this.res.kind}` : `${this.res.kind} ${JSON.stringify(this.opts.name)}`;
  }
}

/** True for the error a watch on an API that is not served gets (the CiliumNode CRD is not installed). */
export function isNotServed(err: KubeError | undefined): boolean {
  return err?.status === 404;
}
