// Keeping the node file equal to the node's object as the API server holds it:
// written only when something the plugin reads changed, never replaced by an
// object the plugin would refuse, kept as it is on a DELETED event or while the
// API is away. And the readiness that follows from it.
import { existsSync } from "node:fs";
import { type KubeObject, type ObjectReason, type WatchState, levelOf } from "./kube/watch.js";
import type { NodeMode } from "../ipam/config.js";
import { type NodeAddressConflict, nodeAddressConflicts, nodeAddressProblem } from "../ipam/node-file.js";
import type { Log } from "./log.js";
import type { Metrics } from "./metrics.js";
import { type Source, currentText, judge, kubectlJson, projection, writeNodeFile } from "./node-file.js";

/** How long a watch may be reconnecting before the agent is no longer ready (the file may be going stale). */
export const RECONNECT_GRACE_MS = 120_000;

export class NodeSync {
  private last = "";
  /** The object the node file holds now (parsed), for the occupancy metrics. */
  current: unknown = null;
  private synced = false;
  private cidrs = 0;
  /** podCIDRs of the node file that hold the node's own addresses (not ready while there are any). */
  conflicts: NodeAddressConflict[] = [];
  private problem = "";
  private state: WatchState | "starting" = "starting";
  private detail = "";
  private since = Date.now();
  private writtenAt = 0;

  constructor(
    private readonly path: string,
    private readonly source: Source,
    private readonly nodeName: string,
    private readonly log: Log,
    private readonly metrics: Metrics,
    private readonly now: () => number = Date.now,
    /** The plugin's ipam.mode: the agent judges an object as the plugin will read it. */
    private readonly mode: NodeMode | "auto" = "auto",
  ) {
    // A file already there (an agent restart): its content counts as written, so it is not rewritten for nothing.
    const text = currentText(path);
    if (text !== "") {
      const v = judge(text, path, nodeName, mode);
      if ("node" in v) {
        const obj = JSON.parse(text) as Record<string, unknown>;
        this.last = projection(obj);
        this.current = obj;
        this.cidrs = v.node.podCIDRs.length;
        this.conflicts = nodeAddressConflicts(v.node);
      }
    }
  }

  /** The watcher's onObject. */
  onObject(obj: KubeObject | null, info: { reason: ObjectReason; resourceVersion: string }): void {
    this.metrics.counter(
      "podcidr_ipam_sync_events_total",
      "Node object events the agent handled, by reason (list, added, modified, deleted).",
      {
        reason: info.reason,
      },
    );
    if (obj === null) {
      this.synced = false;
      this.problem =
        info.reason === "deleted"
          ? `the ${this.kind()} ${this.nodeName} was deleted; the node file is kept as it was`
          : `there is no ${this.kind()} ${this.nodeName} yet; the node file is left as it is`;
      this.log("warn", this.problem, { resourceVersion: info.resourceVersion });
      return;
    }
    const text = kubectlJson(obj as Record<string, unknown>, this.source);
    const verdict = judge(text, this.path, this.nodeName, this.mode);
    if ("error" in verdict) {
      this.synced = false;
      const why = verdict.error.message;
      this.problem = `the ${this.kind()}'s ${info.reason} object would be refused by the plugin, so the node file is kept: ${why}`;
      this.metrics.counter("podcidr_ipam_node_objects_refused_total", "Node objects not written because the plugin would refuse them.");
      this.log("error", this.problem, { resourceVersion: info.resourceVersion, details: verdict.error.details });
      return;
    }
    const proj = projection(JSON.parse(text) as Record<string, unknown>);
    this.synced = true;
    this.cidrs = verdict.node.podCIDRs.length;
    this.problem = this.cidrs === 0 ? `the ${this.kind()} ${this.nodeName} lists no podCIDRs yet` : "";
    const before = this.conflicts.map((c) => `${c.cidr} ${c.ip}`).join();
    this.conflicts = nodeAddressConflicts(verdict.node);
    if (this.conflicts.length > 0 && this.conflicts.map((c) => `${c.cidr} ${c.ip}`).join() !== before) {
      const p = nodeAddressProblem(this.conflicts);
      this.log("error", p.message, { details: p.details });
    }
    if (proj === this.last && existsSync(this.path)) return;
    const t0 = this.now();
    writeNodeFile(this.path, text);
    this.last = proj;
    this.current = JSON.parse(text);
    this.writtenAt = this.now();
    this.metrics.counter(
      "podcidr_ipam_node_file_writes_total",
      "Times the agent wrote the node file (only when something the plugin reads changed).",
    );
    this.metrics.gauge(
      "podcidr_ipam_last_sync_timestamp_seconds",
      "When the node file was last written from the API, Unix time.",
      this.writtenAt / 1000,
    );
    this.log("info", "node file written", {
      path: this.path,
      reason: info.reason,
      resourceVersion: info.resourceVersion,
      podCIDRs: verdict.node.podCIDRs.map((c) => c.text).join(","),
      ms: this.now() - t0,
    });
  }

  /** The watcher's onState. */
  onState(state: WatchState, detail: string): void {
    if (state !== this.state) this.since = this.now();
    this.state = state;
    this.detail = detail;
    this.log(levelOf(state), `watch ${state}`, { detail });
  }

  /**
   * Ready: a good node file from a successful sync, with podCIDRs none of which holds the node's own
   * addresses, and the watch connected (or reconnecting, briefly).
   */
  ready(): { ok: boolean; why: string } {
    if (!this.synced)
      return { ok: false, why: this.problem || (this.state === "error" ? `the watch fails: ${this.detail}` : "not synced yet") };
    if (this.cidrs === 0) return { ok: false, why: this.problem };
    if (this.conflicts.length > 0) return { ok: false, why: nodeAddressProblem(this.conflicts).message };
    if (this.state === "error") return { ok: false, why: `the watch fails: ${this.detail}` };
    if (this.state === "reconnecting" && this.now() - this.since > RECONNECT_GRACE_MS) {
      return { ok: false, why: `the watch has been reconnecting for ${Math.round((this.now() - this.since) / 1000)}s` };
    }
    return { ok: true, why: "ok" };
  }

  private kind(): string {
    return this.source === "ciliumnode" ? "CiliumNode" : "Node";
  }
}
