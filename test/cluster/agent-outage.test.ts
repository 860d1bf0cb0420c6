// `podcidr-ipam agent` through what the control plane does to it: the API server away
// for 30 s, history compacted while the agent was cut off (410, relist), and its
// ServiceAccount token file replaced while the old token stops working. kube-apiserver
// writes an audit log here, so that the test can see which identity each of the
// agent's requests used.
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Agent,
  type AgentOptions,
  addOk,
  fileCIDRs,
  fileState,
  nodeConflist,
  startAgent,
  waitForFileCIDRs,
  waitForFileEqualsObject,
} from "./agent-helpers";
import { type Cluster, announceClusterSkip, clusterBlocker, startCluster, waitFor } from "./harness";

const blocker = clusterBlocker();
if (blocker) announceClusterSkip(blocker);
const suite = blocker ? describe.skip : describe;

let c: Cluster;
let dir: string;
let auditLog: string;
const agents: Agent[] = [];
beforeAll(async () => {
  if (blocker) return;
  dir = mkdtempSync(join(tmpdir(), "podcidr-agent-outage-"));
  auditLog = join(dir, "audit.log");
  const policy = join(dir, "audit-policy.yaml");
  // Every request on nodes and ciliumnodes, at Metadata level (who, what, the status code).
  writeFileSync(
    policy,
    [
      "apiVersion: audit.k8s.io/v1",
      "kind: Policy",
      "omitStages: [RequestReceived]",
      "rules:",
      "  - level: Metadata",
      "    resources:",
      '      - group: ""',
      "        resources: [nodes]",
      "      - group: cilium.io",
      "        resources: [ciliumnodes]",
      "  - level: None",
      "",
    ].join("\n"),
  );
  c = await startCluster({
    extraApiServerFlags: [`--audit-policy-file=${policy}`, `--audit-log-path=${auditLog}`, "--audit-log-mode=blocking"],
  });
}, 300_000);
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop(5000)));
  await c?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const CN = "/apis/cilium.io/v2/ciliumnodes";
const say = (s: string) => process.stdout.write(`[agent-outage] ${s}\n`);

async function agent(o: Omit<AgentOptions, "nodeFile">): Promise<Agent & { nodeFile: string }> {
  const nodeFile = join(dir, o.nodeName, "node.json");
  const a = await startAgent(c, { ...o, nodeFile });
  agents.push(a);
  return Object.assign(a, { nodeFile });
}

async function stopOk(a: Agent): Promise<void> {
  expect(await a.stop(), a.log()).toEqual({ code: 0, signal: null });
}

async function createCiliumNode(name: string, podCIDRs: string[]): Promise<any> {
  return c.apply({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name }, spec: { ipam: { podCIDRs } } });
}

async function appendCIDR(name: string, cidr: string): Promise<any> {
  const r = await c.api("PATCH", `${CN}/${name}`, {
    body: [{ op: "add", path: "/spec/ipam/podCIDRs/-", value: cidr }],
    contentType: "application/json-patch+json",
  });
  if (r.status !== 200) throw new Error(`PATCH ${name}: ${r.status} ${r.text}`);
  return r.json;
}

/** etcd's JSON gateway (the API server stores custom resources as JSON under /registry/<group>/<plural>/<name>). */
function etcd(path: string, body: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${c.etcdURL}${path}`, { method: "POST", agent: false, timeout: 10_000 }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString("utf8")));
      res.on("end", () =>
        res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`etcd ${path}: ${res.statusCode} ${text}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`etcd ${path}: no answer in 10 s`)));
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}
const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

/** Change a stored CiliumNode in etcd itself, as another API server would while this one is down. */
async function editStoredCiliumNode(name: string, edit: (o: any) => void): Promise<number> {
  const key = b64(`/registry/cilium.io/ciliumnodes/${name}`);
  const got = await etcd("/v3/kv/range", { key });
  const kv = got.kvs?.[0];
  if (!kv) throw new Error(`etcd has no CiliumNode ${name}`);
  const obj = JSON.parse(Buffer.from(kv.value, "base64").toString("utf8"));
  edit(obj);
  const put = await etcd("/v3/kv/put", { key, value: b64(JSON.stringify(obj)) });
  return Number(put.header.revision);
}

interface AuditEvent {
  stage: string;
  verb: string;
  requestURI: string;
  userAgent?: string;
  user?: { username?: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp: string;
}

/** The audit log's events of the agent's requests (its User-Agent) received since `since` (ms since the epoch). */
function agentAudit(since: number): AuditEvent[] {
  let text = "";
  try {
    text = readFileSync(auditLog, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as AuditEvent)
    .filter((e) => e.userAgent === "podcidr-ipam-agent" && Date.parse(e.requestReceivedTimestamp) >= since);
}

suite("agent: API server outages, compaction and token rotation", () => {
  it("API server down for 30 s: the file stays, ADDs work, /readyz stays ready; a change made at the restart arrives", async () => {
    await createCiliumNode("outage", ["10.60.0.0/28"]);
    const a = await agent({ nodeName: "outage", source: "ciliumnode" });
    await waitForFileEqualsObject(c, "ciliumnode", "outage", a.nodeFile, { agent: a });
    const conf = nodeConflist(join(dir, "outage", "cni"), {
      nodeFile: a.nodeFile,
      dataDir: join(dir, "outage", "data"),
      nodeName: "outage",
    });
    expect((await addOk(conf, "before"))[0]).toMatch(/^10\.60\.0\./);
    const before = fileState(a.nodeFile);
    const mark = a.log().length;

    await c.stopApiServer();
    const down = performance.now();
    await a.waitLog(/warn watch reconnecting/, "the agent to notice the outage", 30_000, mark);
    // Through the whole outage: ready (within its reconnect grace), the file as it was, ADDs served.
    let probes = 0;
    let adds = 0;
    while (performance.now() - down < 30_000) {
      const r = await a.readyz();
      expect(r.status, `/readyz ${((performance.now() - down) / 1000).toFixed(1)} s into the outage: ${r.text}`).toBe(200);
      expect(fileState(a.nodeFile)).toEqual(before);
      if (probes++ % 5 === 0) expect((await addOk(conf, `during-${adds++}`))[0]).toMatch(/^10\.60\.0\./);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const errorsDuring = await a.metric("podcidr_ipam_api_errors_total", { code: "network" });
    expect(errorsDuring, "the agent kept trying").toBeGreaterThan(0);
    await c.startApiServer();
    const up = performance.now();
    const reconnectedBeforeChange = /info watch connected/.test(a.log().slice(mark));
    await appendCIDR("outage", "10.60.1.0/28");
    await waitForFileCIDRs(a.nodeFile, ["10.60.0.0/28", "10.60.1.0/28"], "the change made at the restart", 120_000, a);
    say(
      `API server down ${((up - down) / 1000).toFixed(1)} s (${adds} ADDs and ${probes} /readyz probes during it, all fine); ` +
        `the change made right after the restart ${reconnectedBeforeChange ? "(agent already reconnected)" : "(agent not yet reconnected)"} ` +
        `reached the file ${((performance.now() - up) / 1000).toFixed(1)} s after the restart`,
    );
    await waitForFileEqualsObject(c, "ciliumnode", "outage", a.nodeFile, { agent: a });
    expect((await a.readyz()).status).toBe(200);
    expect(await a.metric("podcidr_ipam_watch_restarts_total")).toBeGreaterThan(0);
    await stopOk(a);
  }, 300_000);

  it("history compacted while the agent was cut off: the 410 makes it list again, and the file ends equal to the object", async () => {
    await createCiliumNode("compact", ["10.61.0.0/28"]);
    const a = await agent({ nodeName: "compact", source: "ciliumnode" });
    await waitForFileEqualsObject(c, "ciliumnode", "compact", a.nodeFile, { agent: a });
    const relists = await a.metric("podcidr_ipam_relists_total");
    const rv = Number(JSON.parse(readFileSync(a.nodeFile, "utf8")).metadata.resourceVersion);
    const mark = a.log().length;

    await c.stopApiServer();
    // Two changes the agent cannot see (no API server), then the history behind them compacted away.
    await editStoredCiliumNode("compact", (o) => o.spec.ipam.podCIDRs.push("10.61.1.0/28"));
    await editStoredCiliumNode("compact", (o) => {
      o.spec.ipam.podCIDRs.push("10.61.2.0/28");
      o.metadata.labels = { "podcidr-test/edited": "in-etcd" };
    });
    const compacted = await c.compactEtcd({ restartApiServer: false });
    expect(compacted).toBeGreaterThan(rv + 1);
    await c.startApiServer();

    await waitForFileCIDRs(a.nodeFile, ["10.61.0.0/28", "10.61.1.0/28", "10.61.2.0/28"], "the relisted object", 120_000, a);
    const printed = JSON.parse(await waitForFileEqualsObject(c, "ciliumnode", "compact", a.nodeFile, { agent: a }));
    expect(printed.metadata.labels).toEqual({ "podcidr-test/edited": "in-etcd" });
    expect(Number(printed.metadata.resourceVersion)).toBeGreaterThan(rv);
    const after = await a.metric("podcidr_ipam_relists_total");
    expect(after).toBeGreaterThan(relists);
    const line = await a.waitLog(/resourceVersion too old \(410/, "the 410 in the log", 30_000, mark);
    say(`compacted at revision ${compacted} (the agent had ${rv}); relists ${relists} -> ${after}; ${line.replace(/^\S+ /, "")}`);
    expect((await a.readyz()).status).toBe(200);
    await stopOk(a);
  }, 300_000);

  it("the token file replaced and the old token revoked: the agent's next requests use the new token", async () => {
    const ns = "default";
    await waitFor(async () => (await c.api("GET", `/api/v1/namespaces/${ns}`)).status === 200, "the default namespace");
    await c.apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "podcidr-ipam-agent" },
      rules: [
        { apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch"] },
        { apiGroups: ["cilium.io"], resources: ["ciliumnodes"], verbs: ["get", "list", "watch"] },
      ],
    });
    for (const sa of ["agent-a", "agent-b"])
      await c.apply({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: sa, namespace: ns } });
    await c.apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "podcidr-ipam-agent" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "podcidr-ipam-agent" },
      subjects: ["agent-a", "agent-b"].map((name) => ({ kind: "ServiceAccount", name, namespace: ns })),
    });
    await createCiliumNode("token", ["10.62.0.0/28"]);
    const t1 = await c.serviceAccountToken(ns, "agent-a", { duration: "1h" });
    await waitFor(async () => (await c.api("GET", `${CN}/token`, { token: t1 })).status === 200, "agent-a's RBAC to work");

    // A kubeconfig whose user reads its token from a file (as a projected token is mounted).
    const tokenFile = join(dir, "sa-token");
    writeFileSync(tokenFile, `${t1}\n`);
    const kubeconfig = join(dir, "token.kubeconfig");
    const admin = JSON.parse(readFileSync(c.kubeconfig, "utf8"));
    admin.users = [{ name: "user", user: { tokenFile } }];
    writeFileSync(kubeconfig, JSON.stringify(admin, null, 2));

    const started = Date.now();
    const a = await agent({ nodeName: "token", source: "ciliumnode", kubeconfig });
    await waitForFileEqualsObject(c, "ciliumnode", "token", a.nodeFile, { agent: a });
    const first = agentAudit(started).filter((e) => e.responseStatus?.code === 200);
    expect(first.map((e) => e.user?.username)).toContain(`system:serviceaccount:${ns}:agent-a`);

    // Rotate: the new token in place (by rename, as the kubelet does), the old one revoked.
    const t2 = await c.serviceAccountToken(ns, "agent-b", { duration: "1h" });
    writeFileSync(`${tokenFile}.new`, `${t2}\n`);
    renameSync(`${tokenFile}.new`, tokenFile);
    const rotated = Date.now();
    const del = await c.api("DELETE", `/api/v1/namespaces/${ns}/serviceaccounts/agent-a`);
    expect(del.status, del.text).toBe(200);
    await waitFor(async () => (await c.api("GET", `${CN}/token`, { token: t1 })).status === 401, "agent-a's token to be refused (401)");

    // The open watch was authenticated when it opened; an API server restart makes the agent ask again.
    await c.stopApiServer();
    await c.startApiServer();
    await appendCIDR("token", "10.62.1.0/28");
    await waitForFileCIDRs(a.nodeFile, ["10.62.0.0/28", "10.62.1.0/28"], "the change after the rotation", 120_000, a);
    expect((await a.readyz()).status).toBe(200);

    const later = agentAudit(rotated);
    const ok = later.filter((e) => e.responseStatus?.code === 200);
    const users = [...new Set(ok.map((e) => e.user?.username))];
    expect(users, JSON.stringify(later, null, 1)).toEqual([`system:serviceaccount:${ns}:agent-b`]);
    expect(ok.some((e) => e.verb === "watch")).toBe(true);
    const refused = later.filter((e) => e.responseStatus?.code === 401).length;
    // The agent read the file at its start and keeps a read for 60 s (as client-go does): a request
    // sooner than that went out with the old token, so its 401 must be there, and the re-read after it.
    const firstAfter = Math.min(...later.map((e) => Date.parse(e.requestReceivedTimestamp)));
    if (firstAfter < started + 55_000) expect(refused, "the old token's 401, then the file re-read").toBeGreaterThan(0);
    say(
      `token rotation: after the rotation ${ok.length} accepted requests, all as agent-b (${ok.map((e) => e.verb).join(", ")}); ` +
        `${refused} refused with 401 (the old token, ${refused > 0 ? "re-read after the 401" : "the file re-read by age before any 401"})`,
    );
    expect(fileCIDRs(a.nodeFile)).toEqual(["10.62.0.0/28", "10.62.1.0/28"]);
    await stopOk(a);
  }, 300_000);
});
