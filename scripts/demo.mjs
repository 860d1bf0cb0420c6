// npm run demo: ADD, CHECK, status and DEL for a few pods against conf/ciliumnode.json,
// in a temporary data dir, printing each call the way an operator would type it.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const bin = join(root, "bin/podcidr-ipam");
const dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-demo-"));
const nodeFile = join(dir, "node.json");
const dataDir = join(dir, "data");
cpSync(join(root, "conf/ciliumnode.json"), nodeFile);

const conf = {
  cniVersion: "1.1.0",
  name: "podnet",
  type: "bridge",
  ipam: { type: "podcidr-ipam", nodeFile, dataDir, routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }] },
};
const pods = [
  { id: "3f1c0a9e5b7d", ns: "default", name: "nginx" },
  { id: "8d2e4f6a1c3b", ns: "default", name: "redis" },
  { id: "c7b9a1d3e5f2", ns: "kube-system", name: "coredns" },
];

function cni(command, pod, extra = {}) {
  const env = {
    PATH: process.env.PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.id,
    CNI_NETNS: `/var/run/netns/${pod.name}`,
    CNI_IFNAME: "eth0",
    CNI_PATH: "/opt/cni/bin",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.ns};K8S_POD_NAME=${pod.name}`,
  };
  console.log(
    `\n$ CNI_COMMAND=${command} CNI_CONTAINERID=${pod.id} CNI_IFNAME=eth0 CNI_ARGS='...K8S_POD_NAME=${pod.name}' podcidr-ipam < conf.json`,
  );
  const r = spawnSync(bin, [], { env, input: JSON.stringify({ ...conf, ...extra }), encoding: "utf8" });
  process.stdout.write(r.stdout || "(no output)\n");
  console.log(`exit ${r.status}`);
  return r.stdout ? JSON.parse(r.stdout) : undefined;
}

function status() {
  console.log(`\n$ podcidr-ipam status --all-addresses --data-dir ${dataDir} --network podnet --node-file ${nodeFile}`);
  const r = spawnSync(bin, ["status", "--all-addresses", "--data-dir", dataDir, "--network", "podnet", "--node-file", nodeFile], {
    encoding: "utf8",
  });
  process.stdout.write(r.stdout + r.stderr);
}

try {
  console.log(`podcidr-ipam demo: node file ${nodeFile} (a CiliumNode with podCIDRs 10.0.2.0/24 and fd00::200/120)`);
  const results = pods.map((p) => cni("ADD", p));
  cni("CHECK", pods[0], { prevResult: results[0] });
  status();
  for (const p of pods) cni("DEL", p);
  status();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
