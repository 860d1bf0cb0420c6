// The watcher's vocabulary: the two resources it can follow, the object, the events and
// states it reports, its options and its counters (watch.ts is the loop).
import type { BackoffOptions } from "./backoff.js";
import type { KubeError } from "./errors.js";

export type SourceKind = "ciliumnode" | "node";
/** What can be watched: a node object (one, by name), or every namespace (multi-pool's namespace annotations). */
export type WatchKind = SourceKind | "namespace";

export const RESOURCES: Record<WatchKind, { readonly path: string; readonly resource: string; readonly kind: string }> = {
  ciliumnode: { path: "/apis/cilium.io/v2/ciliumnodes", resource: "ciliumnodes.cilium.io", kind: "CiliumNode" },
  node: { path: "/api/v1/nodes", resource: "nodes", kind: "Node" },
  namespace: { path: "/api/v1/namespaces", resource: "namespaces", kind: "Namespace" },
};

/**
 * The idle bound: no byte on a watch for 150 s and it is taken for dead. kube-apiserver's
 * watch cache sends a BOOKMARK to every watcher that asked for them about once a minute
 * (cacher.go defaultBookmarkFrequency), even when nothing changes, and 2 s before the
 * watch's own timeout; 150 s is two and a half of those periods, so a live stream never
 * trips it, while a stream a dead peer or a hung server left half-open is found within
 * 2.5 min rather than after the whole timeoutSeconds (up to 10 min). On a server that sends
 * no bookmarks (watch cache off) a quiet watch is reopened every 150 s from the same
 * resourceVersion: one cheap request, nothing missed.
 */
export const IDLE_TIMEOUT_MS = 150_000;

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export type ObjectReason = "list" | "added" | "modified" | "deleted";
/**
 * connected: a list or watch works (said at start and after any problem, not at each routine re-watch);
 * reconnecting: a passing problem (the stream broke or went silent, the server is away, 429, 5xx, 410);
 * error: one a person must fix (401, 403, 404, other 4xx, a bad token file): retried all the same.
 */
export type WatchState = "connected" | "reconnecting" | "error";

/** The log level a watch's state is said at. */
export const levelOf = (state: WatchState): "info" | "warn" | "error" =>
  state === "connected" ? "info" : state === "reconnecting" ? "warn" : "error";

export interface WatchHandlers {
  /**
   * The object now: after each list (null: there is none) and each event (null: deleted). A throw forces a relist.
   * Watching every object of the resource (no name), each event's object, and after a list each listed one
   * with reason "list", the first of them (or a null, when the list is empty) with `reset` set.
   */
  onObject(obj: KubeObject | null, info: { reason: ObjectReason; resourceVersion: string; reset?: boolean; name?: string }): void;
  onState?(state: WatchState, detail: string, error?: KubeError): void;
}

export interface WatchOptions extends WatchHandlers {
  kind: WatchKind;
  /** The one object to follow; "" follows every object of the resource. */
  name: string;
  /** Each watch asks the server to end it after a time picked uniformly in this range (default [300, 600] s). */
  timeoutSeconds?: readonly [number, number];
  /** Default IDLE_TIMEOUT_MS. */
  idleTimeoutMs?: number;
  /** For the response headers of each list and watch (default 30 s). */
  requestTimeoutMs?: number;
  backoff?: BackoffOptions;
  random?: () => number;
  now?: () => number;
}

/** For the agent's metrics. */
export interface WatchCounters {
  /** HTTP requests sent by the client (all of them, retries included). */
  requests: number;
  lists: number;
  /** Lists after the first (after a 410 or a failed handler). */
  relists: number;
  /** Watches the server accepted (200). */
  watches: number;
  /** Watches after the first: every re-watch, routine or not. */
  watchRestarts: number;
  events: number;
  bookmarks: number;
  idleTimeouts: number;
  /** By HTTP status or ERROR event code ("403", "410", ...), "network" or "timeout". */
  apiErrors: Record<string, number>;
  /** When the copy was last known current (ms since the epoch): a list, a watch opened, any event. Null before the first. */
  lastSyncTime: number | null;
}
