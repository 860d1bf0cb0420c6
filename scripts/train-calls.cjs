// The CNI calls a training run makes, against a throwaway store in `scratch`:
// VERSION, ADD, CHECK, STATUS, GC, DEL and a refused ADD, as a node makes them.
// Shared by scripts/train-cache.cjs (the bundle's V8 code cache) and
// scripts/snapshot-main.mjs (the standalone's startup snapshot, where this file's
// text is inlined: a snapshot's main script can require only Node's own modules).
//
// `runOnce()` runs the plugin's CNI mode once, in this process. Its stdin and stdout
// are files put on fds 0 and 1 (Linux hands out the lowest free fd), and
// process.exit only records the code while training runs.
"use strict";
const trainCalls = async (scratch, runOnce) => {
  const fs = require("node:fs");
  const path = require("node:path");
  fs.mkdirSync(scratch, { recursive: true });
  const nodeFile = path.join(scratch, "node.json");
  fs.writeFileSync(
    nodeFile,
    JSON.stringify({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNode",
      metadata: { name: "train" },
      spec: { ipam: { podCIDRs: ["10.244.0.0/24", "fd00:10:244::/120"] }, addresses: [{ type: "CiliumInternalIP", ip: "10.244.0.1" }] },
    }),
  );
  const conf = {
    cniVersion: "1.0.0",
    name: "train",
    type: "bridge",
    ipam: { type: "podcidr-ipam", nodeFile, dataDir: path.join(scratch, "data") },
  };
  const stdinFile = path.join(scratch, "stdin.json");
  const stdoutFile = path.join(scratch, "stdout.json");
  const names = ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"];
  const exit = process.exit;
  process.exit = /** @type {(code?: string | number | null) => never} */ (
    (code) => {
      process.exitCode = code ?? 0;
      return /** @type {never} */ (undefined);
    }
  );
  /** @param {string} command @param {unknown} input @param {number} want */
  const call = async (command, input, want) => {
    fs.writeFileSync(stdinFile, JSON.stringify(input));
    fs.closeSync(0);
    if (fs.openSync(stdinFile, "r") !== 0) throw new Error("stdin did not land on fd 0");
    fs.closeSync(1);
    if (fs.openSync(stdoutFile, "w") !== 1) throw new Error("stdout did not land on fd 1");
    Object.assign(process.env, {
      CNI_COMMAND: command,
      CNI_CONTAINERID: "train-1",
      CNI_NETNS: "/var/run/netns/train",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/opt/cni/bin",
    });
    process.exitCode = undefined;
    runOnce();
    for (let i = 0; process.exitCode === undefined; i++) {
      if (i > 500) throw new Error(`${command} did not finish`);
      await new Promise((r) => setTimeout(r, 2));
    }
    const out = fs.readFileSync(stdoutFile, "utf8");
    if (process.exitCode !== want) throw new Error(`training ${command} exited ${process.exitCode}, expected ${want}: ${out}`);
    return out;
  };
  try {
    await call("VERSION", conf, 0);
    const added = JSON.parse(await call("ADD", conf, 0));
    await call("CHECK", { ...conf, prevResult: added }, 0);
    await call("STATUS", { ...conf, cniVersion: "1.1.0" }, 0);
    await call("GC", { ...conf, cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: "train-1", ifname: "eth0" }] }, 0);
    await call("DEL", conf, 0);
    await call("ADD", { ...conf, ipam: { ...conf.ipam, nodeFile: path.join(scratch, "missing.json"), waitForPodCIDRs: 0 } }, 1);
  } finally {
    process.exit = exit;
    process.exitCode = 0;
    for (const n of names) delete process.env[n];
  }
};
if (typeof module !== "undefined") module.exports = trainCalls;
