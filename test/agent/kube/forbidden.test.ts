// A 403 from the API server, as the agent reports it: who may not do what, the RBAC rule that
// allows it, deploy/podcidr-ipam.yaml, and the kubectl auth can-i to check. The watcher's
// error state carries it, and so does /readyz (NodeSync.ready). The real server's 403 is in
// test/cluster/deploy.test.ts.
import { describe, expect, it } from "vitest";
import { KubeError, forbidden } from "../../../src/agent/kube/errors";
import type { KubeApi } from "../../../src/agent/kube/client";
import { ObjectWatcher, type WatchState } from "../../../src/agent/kube/watch";
import { NodeSync } from "../../../src/agent/sync";
import { Metrics } from "../../../src/agent/metrics";

const SA = "system:serviceaccount:kube-system:podcidr-ipam";
const status403 = (resource: string, group: string) =>
  new KubeError(
    `GET /x: 403 Forbidden: ${resource} "n1" is forbidden: User "${SA}" cannot list resource "${resource.split(".")[0]}" in API group "${group}" at the cluster scope`,
    { status: 403, reason: "Forbidden" },
  );

describe("forbidden()", () => {
  it("nodes: the core group's rule, the manifest, the can-i check, and the server's own words", () => {
    const e = forbidden(status403("nodes", ""), "nodes");
    expect(e.status).toBe(403);
    expect(e.message).toContain(`forbidden: ${SA} may not list nodes`);
    expect(e.message).toContain('{apiGroups: [""], resources: [nodes], verbs: [get, list, watch]}');
    expect(e.message).toContain("deploy/podcidr-ipam.yaml");
    expect(e.message).toContain(`kubectl auth can-i list nodes --as=${SA}`);
    expect(e.message).toContain('cannot list resource "nodes" in API group ""');
  });

  it("ciliumnodes.cilium.io: the cilium.io group, and the context when given", () => {
    const e = forbidden(status403("ciliumnodes.cilium.io", "cilium.io"), "ciliumnodes.cilium.io", "--source auto looks first");
    expect(e.message).toContain(`may not list ciliumnodes.cilium.io (--source auto looks first)`);
    expect(e.message).toContain('{apiGroups: ["cilium.io"], resources: [ciliumnodes], verbs: [get, list, watch]}');
  });

  it("a 403 without the usual Status message (a proxy's) still names the resource and the rule", () => {
    const e = forbidden(new KubeError("GET /x: 403 Forbidden: <html>denied</html>", { status: 403 }), "nodes");
    expect(e.message).toContain("does not let these credentials read nodes");
    expect(e.message).not.toContain("can-i");
    expect(e.message).toContain("resources: [nodes]");
  });
});

describe("a watch refused with 403", () => {
  it("is in the error state with the rule, and /readyz says so (not 'not synced yet')", async () => {
    let calls = 0;
    const api: KubeApi = {
      counters: { requests: 0, errors: {} },
      request: async () => {
        calls++;
        throw status403("nodes", "");
      },
      stream: async () => ({ end: "aborted" }),
    };
    const log: string[] = [];
    const sync = new NodeSync(
      "/nonexistent/node.json",
      "node",
      "n1",
      (level, msg, f) => log.push(`${level} ${msg} ${JSON.stringify(f)}`),
      new Metrics(),
    );
    const states: [WatchState, string][] = [];
    const w = new ObjectWatcher(api, {
      kind: "node",
      name: "n1",
      onObject: (o, i) => sync.onObject(o, i),
      onState: (s, d) => {
        states.push([s, d]);
        sync.onState(s, d);
      },
      backoff: { initialMs: 1, maxMs: 1 },
    });
    const running = w.start();
    while (states.length === 0) await new Promise((r) => setTimeout(r, 10));
    await w.stop();
    await running;
    expect(calls).toBeGreaterThan(0);
    expect(states[0]![0]).toBe("error");
    expect(states[0]![1]).toContain("resources: [nodes], verbs: [get, list, watch]");
    const ready = sync.ready();
    expect(ready.ok).toBe(false);
    expect(ready.why).toContain(`the watch fails: forbidden: ${SA} may not list nodes`);
    expect(log.join("\n")).toContain("deploy/podcidr-ipam.yaml");
  });
});
