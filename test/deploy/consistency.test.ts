// deploy/podcidr-ipam.yaml and the Dockerfile agree with each other and with the executable:
// the commands run what the image holds, every flag exists, the probes hit the health
// server, the hostPath mounts hold every path the plugin and the agent use (at the same
// path as on the node), the ConfigMap's conflist is one the plugin takes once install has
// written the node's name into it, and RBAC is exactly read access to the two resources the
// agent watches. No container engine and no cluster here: the commands run on temp folders
// (test/cluster/deploy.test.ts runs the manifest against a real API server).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RESOURCES } from "../../src/agent/kube/watch-types";
import { CALLS_LOG } from "../../src/calls";
import { v1Node } from "../helpers/node";
import { BIN, ROOT, run } from "../helpers/plugin";
import { type K8sObject, MANIFEST, builtKubectl, containerArgv, flags, loadDockerfile, loadManifest, one, under } from "./manifest";

const objs = loadManifest();
const ds = one(objs, "DaemonSet");
const pod = ds.spec.template.spec;
const init = pod.initContainers.find((c: any) => c.name === "install");
const agent = pod.containers.find((c: any) => c.name === "agent");
const configMap = one(objs, "ConfigMap");
const stages = loadDockerfile();
const final = stages[stages.length - 1]!;
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
const NODE = "node-a.example";
const argv = (c: any) => containerArgv(c, NODE);

const installFlags = flags(argv(init).slice(2));
const agentFlags = flags(argv(agent).slice(2));
const conflistText: string = Object.values(configMap.data as Record<string, string>)[0]!;
const conflistName = Object.keys(configMap.data)[0]!;
const conflist = JSON.parse(conflistText);
const ipamOf = (c: any) => c.plugins.find((p: any) => p.ipam?.type === "podcidr-ipam").ipam;

/** The volume mount of `c` that holds `path`, and its volume. */
function mountFor(c: any, path: string): { mount: any; volume: any } | undefined {
  const mount = (c.volumeMounts ?? [])
    .filter((m: any) => path === m.mountPath || path.startsWith(`${m.mountPath}/`))
    .sort((a: any, b: any) => b.mountPath.length - a.mountPath.length)[0];
  return mount && { mount, volume: pod.volumes.find((v: any) => v.name === mount.name) };
}

/** Holds `path` from the node: a hostPath at the same path inside as outside, writable unless `readOnly`. */
function expectHostPath(c: any, path: string, readOnly = false): void {
  const m = mountFor(c, path);
  expect(m, `${c.name}: no volume mount holds ${path}`).toBeDefined();
  expect(m!.volume?.hostPath?.path, `${c.name}: ${path} is in ${m!.mount.name}, not a hostPath`).toBe(m!.mount.mountPath);
  expect(Boolean(m!.mount.readOnly), `${c.name}: ${m!.mount.mountPath} readOnly`).toBe(readOnly);
}

const tmp = mkdtempSync(join(tmpdir(), "podcidr-deploy-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("the manifest", () => {
  it("is what kubectl reads from it (the test's YAML reading is not the cluster's)", () => {
    const kubectl = builtKubectl();
    if (!kubectl) {
      process.stderr.write("consistency: the harness's kubectl is not built (scripts/cluster-build.sh); kubectl's reading not compared\n");
      return;
    }
    const out = execFileSync(kubectl, ["patch", "--local", "-f", MANIFEST, "--type", "merge", "-p", "{}", "-o", "json"], {
      encoding: "utf8",
      env: { PATH: process.env.PATH, HOME: tmp, KUBECONFIG: "" },
    });
    const fromKubectl = JSON.parse(`[${out.replace(/^}\n{/gm, "},\n{")}]`);
    expect(fromKubectl).toEqual(objs);
  });

  it("one ServiceAccount, ClusterRole, ClusterRoleBinding, ConfigMap, DaemonSet, all in the DaemonSet's namespace", () => {
    expect(objs.map((o) => o.kind).sort()).toEqual(["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "ServiceAccount"]);
    const ns = ds.metadata.namespace;
    for (const o of objs.filter((o) => !o.kind.startsWith("Cluster"))) expect(o.metadata.namespace, o.kind).toBe(ns);
  });

  it("RBAC: exactly get, list and watch on the two resources the agent watches, bound to the pod's ServiceAccount", () => {
    const role = one(objs, "ClusterRole");
    const rules = role.rules.map((r: any) => ({ ...r, verbs: [...r.verbs].sort() }));
    // The node objects; the namespaces (multi-pool only) are deploy/multi-pool.yaml's, below.
    const watched = [RESOURCES.ciliumnode, RESOURCES.node].map(ruleOf);
    expect(rules).toEqual(expect.arrayContaining(watched));
    expect(rules).toHaveLength(watched.length);
    for (const r of role.rules) expect(Object.keys(r).sort()).toEqual(["apiGroups", "resources", "verbs"]); // no resourceNames, no nonResourceURLs
    expect(objs.filter((o) => o.kind === "Role" || o.kind === "RoleBinding")).toEqual([]);
    const binding = one(objs, "ClusterRoleBinding");
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name });
    const sa: K8sObject = one(objs, "ServiceAccount");
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
  });

  it("deploy/multi-pool.yaml: namespaces get, list, watch and ciliumnodes patch for the same ServiceAccount, and the agent flags it names", () => {
    const extra = loadManifest(join(ROOT, "deploy/multi-pool.yaml"));
    const role = one(extra, "ClusterRole");
    expect(role.rules.map((r: any) => ({ ...r, verbs: [...r.verbs].sort() }))).toEqual([
      ruleOf(RESOURCES.namespace),
      { apiGroups: ["cilium.io"], resources: ["ciliumnodes"], verbs: ["patch"] },
    ]);
    const binding = one(extra, "ClusterRoleBinding");
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name });
    const sa: K8sObject = one(objs, "ServiceAccount");
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    const help = spawnSync(BIN, ["agent", "--help"], { encoding: "utf8" }).stdout;
    for (const flag of ["--namespace-pools", "--request-pools"]) {
      expect(readFileSync(join(ROOT, "deploy/multi-pool.yaml"), "utf8")).toContain(`"value": "${flag}"`);
      expect(help).toContain(flag);
    }
  });

  it("the DaemonSet: host network, node-critical, every taint tolerated, rolling updates, no hostPID", () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID ?? false).toBe(false);
    expect(pod.priorityClassName).toBe("system-node-critical");
    expect(pod.tolerations).toEqual([{ operator: "Exists" }]);
    expect(ds.spec.updateStrategy.type).toBe("RollingUpdate");
    expect(String(ds.spec.updateStrategy.rollingUpdate.maxUnavailable)).toMatch(/^([1-9][0-9]*|[1-9][0-9]?%)$/);
    for (const [k, v] of Object.entries(ds.spec.selector.matchLabels)) expect(ds.spec.template.metadata.labels[k], k).toBe(v);
    for (const c of [init, agent]) {
      expect(c.resources.requests).toEqual({ cpu: "10m", memory: "64Mi" });
      expect(c.resources.limits.memory, c.name).toMatch(/^[0-9]+Mi$/);
      expect(c.securityContext).toEqual(
        expect.objectContaining({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } }),
      );
    }
  });

  it("NODE_NAME comes from spec.nodeName in both containers, and install writes it into the conflist", () => {
    for (const c of [init, agent]) {
      expect(
        c.env.find((e: any) => e.name === "NODE_NAME"),
        c.name,
      ).toEqual({
        name: "NODE_NAME",
        valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } },
      });
    }
    expect(installFlags.get("node-name")).toBe(NODE);
    expect(agentFlags.has("node-name")).toBe(false); // the agent reads $NODE_NAME itself
  });

  it("the probes hit the health server on --health-addr: /healthz for liveness, /readyz for readiness", () => {
    const [, host, port] = /^(.*):(\d+)$/.exec(agentFlags.get("health-addr")!)!;
    const portOf = (p: number | string) => (typeof p === "number" ? p : agent.ports.find((x: any) => x.name === p)?.containerPort);
    for (const [probe, path] of [
      [agent.livenessProbe, "/healthz"],
      [agent.readinessProbe, "/readyz"],
    ] as const) {
      expect(probe.httpGet.path).toBe(path);
      expect(portOf(probe.httpGet.port)).toBe(Number(port));
      // With host networking the kubelet's default target is the node's address; the server is on `host` only.
      expect(probe.httpGet.host ?? "", `${path} probe host`).toBe(host === "" ? "" : host);
    }
    const metricsPort = Number(/:(\d+)$/.exec(agentFlags.get("metrics-addr")!)![1]);
    expect(agent.ports.find((p: any) => p.name === "metrics")?.containerPort).toBe(metricsPort);
    expect(metricsPort).not.toBe(Number(port));
  });

  it("the hostPath mounts hold every path the plugin and the agent use, each at its path on the node", () => {
    const ipam = ipamOf(conflist);
    expectHostPath(init, installFlags.get("cni-bin-dir")!);
    expectHostPath(init, installFlags.get("cni-conf-dir")!);
    const cm = mountFor(init, installFlags.get("cni-conf")!);
    expect(cm?.volume?.configMap?.name).toBe(configMap.metadata.name);
    expect(installFlags.get("cni-conf")).toBe(`${cm!.mount.mountPath}/${conflistName}`);

    expect(agentFlags.get("node-file")).toBe(ipam.nodeFile);
    expectHostPath(agent, agentFlags.get("node-file")!);
    expectHostPath(agent, ipam.dataDir);
    // The plugin appends to CALLS_LOG (the runtime sets no PODCIDR_IPAM_CALLS_LOG): the agent must read that file.
    expect(agentFlags.get("calls-log")).toBe(CALLS_LOG);
    expectHostPath(agent, CALLS_LOG);
    // The agent reads the conflist install wrote (it has the node's name), read only.
    expect(agentFlags.get("cni-conf")).toBe(`${installFlags.get("cni-conf-dir")}/${conflistName}`);
    expectHostPath(agent, agentFlags.get("cni-conf")!, true);
    for (const v of pod.volumes.filter((v: any) => v.hostPath)) expect(v.hostPath.type, v.name).toBe("DirectoryOrCreate");
  });

  it("every flag the containers pass is one the executable's help names", () => {
    for (const [sub, fl] of [
      ["install", installFlags],
      ["agent", agentFlags],
    ] as const) {
      const help = execFileSync(BIN, [sub, "--help"], { encoding: "utf8" });
      for (const f of fl.keys()) expect(help, `${sub} --help names --${f}`).toMatch(new RegExp(`--${f}\\b`));
    }
  });
});

describe("the Dockerfile", () => {
  const copies = final.steps.filter(([k]) => k === "COPY").map(([, rest]) => rest.split(/\s+/));
  const inImage = (path: string) => copies.some((c) => c[c.length - 1] === path);
  const source = (path: string) => copies.find((c) => c[c.length - 1] === path)?.at(-2);

  it("builds on Node the package supports, the same Node in both stages (the bundle's code cache is that V8's)", () => {
    const min = Number(/>=\s*(\d+)/.exec(pkg.engines.node)![1]);
    for (const s of stages) expect(Number(/^node:(\d+)/.exec(s.from)?.[1]), s.from).toBeGreaterThanOrEqual(min);
    expect(new Set(stages.map((s) => s.from)).size).toBe(1);
    const runs = stages[0]!.steps.filter(([k]) => k === "RUN").map(([, r]) => r);
    for (const script of ["build", "build:standalone"]) {
      expect(pkg.scripts[script], script).toBeDefined();
      expect(
        runs.some((r) => r.includes(`npm run -s ${script}`) || r.includes(`npm run ${script}`)),
        script,
      ).toBe(true);
    }
    const ignore = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n");
    expect(ignore).toEqual(expect.arrayContaining(["node_modules", "bin", ".git"]));
  });

  it("holds what the manifest's commands run: the agent the bundle, the install the standalone build", () => {
    expect(final.steps.find(([k]) => k === "ENTRYPOINT")?.[1]).toBe(JSON.stringify([agent.command[0]]));
    expect(source(agent.command[0])).toBe("/src/bin/podcidr-ipam");
    // What install copies to the node is itself: it must run without a Node on the host.
    expect(source(init.command[0])).toBe("/src/bin/podcidr-ipam-standalone");
    expect(readFileSync(join(ROOT, "scripts/build-standalone.mjs"), "utf8")).toContain('"bin/podcidr-ipam-standalone"');
    for (const c of [init, agent]) {
      expect(inImage(c.command[0]), `${c.name} runs ${c.command[0]}`).toBe(true);
      expect(c.image).toBe(`podcidr-ipam:${pkg.version}`);
    }
    expect(argv(init)[1]).toBe("install");
    expect(argv(agent)[1]).toBe("agent");
  });
});

describe("the ConfigMap's conflist, through install, to the plugin", () => {
  // A node under tmp/node: install and the agent run with every absolute path moved under it.
  const root = join(tmp, "node");
  const installedPath = () => `${root}${agentFlags.get("cni-conf")}`;

  it("parses, names podcidr-ipam, leaves nodeName to install, and the plugin answers VERSION", async () => {
    expect(ipamOf(conflist)).toBeDefined();
    expect(ipamOf(conflist).nodeName).toBeUndefined();
    const r = await run({ command: "VERSION", stdin: { cniVersion: conflist.cniVersion } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.supportedVersions).toContain(conflist.cniVersion);
  });

  it("install, with the init container's arguments, puts the executable and the conflist with this node's name in place", () => {
    const cmFile = `${root}${installFlags.get("cni-conf")}`;
    mkdirSync(dirname(cmFile), { recursive: true });
    writeFileSync(cmFile, conflistText);
    const r = spawnSync(BIN, under(root, argv(init).slice(1)), { encoding: "utf8", env: { PATH: process.env.PATH } });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(`${root}${installFlags.get("cni-bin-dir")}/podcidr-ipam`)).toEqual(readFileSync(BIN));
    const installed = JSON.parse(readFileSync(installedPath(), "utf8"));
    expect(ipamOf(installed).nodeName).toBe(NODE);
  });

  it("the agent, with its container's arguments, reads the installed conflist and gets as far as the API credentials", () => {
    const r = spawnSync(BIN, [...under(root, argv(agent).slice(1)), "--health-addr=127.0.0.1:0", "--metrics-addr="], {
      encoding: "utf8",
      env: { PATH: process.env.PATH, HOME: tmp, NODE_NAME: NODE },
      timeout: 60_000,
    });
    // 2 would be a usage error; a conflist it cannot read would be named in the error.
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain("no Kubernetes API credentials");
  });

  it("the plugin takes the installed conflist: ADD from this node's file, 102 for another node's", async () => {
    const installed = JSON.parse(readFileSync(installedPath(), "utf8"));
    const ipam = ipamOf(installed);
    const nodeFile = `${root}${ipam.nodeFile}`;
    mkdirSync(dirname(nodeFile), { recursive: true });
    const plugin = installed.plugins.find((p: any) => p.ipam?.type === "podcidr-ipam");
    const stdin = {
      cniVersion: installed.cniVersion,
      name: installed.name,
      ...plugin,
      ipam: { ...ipam, nodeFile, dataDir: `${root}${ipam.dataDir}` },
    };
    writeFileSync(nodeFile, JSON.stringify(v1Node({ podCIDRs: ["10.244.7.0/24"] }, undefined, NODE)));
    const ok = await run({ command: "ADD", containerID: "c1", stdin });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.json.ips[0].address).toMatch(/^10\.244\.7\.\d+\/24$/);
    expect(existsSync(`${root}${ipam.dataDir}`)).toBe(true);
    writeFileSync(nodeFile, JSON.stringify(v1Node({ podCIDRs: ["10.244.8.0/24"] }, undefined, "node-b")));
    const other = await run({ command: "ADD", containerID: "c2", stdin });
    expect(other.code).not.toBe(0);
    expect(other.json.code).toBe(102);
  });
});

/** The RBAC rule that lets the agent list and watch a resource it follows. */
function ruleOf(r: { path: string }): { apiGroups: string[]; resources: string[]; verbs: string[] } {
  const m = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)\/([^/]+)$/.exec(r.path)!;
  return { apiGroups: [m[1] ?? ""], resources: [m[2]!], verbs: ["get", "list", "watch"] };
}
