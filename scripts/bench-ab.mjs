// node scripts/bench-ab.mjs A B [ROUNDS]: ADD+DEL cycles of two executables (two builds of
// podcidr-ipam), in random order each round, and the ratio A/B per round, so that
// both see the same machine noise (docs/performance.md). Each has its own store over
// one node file (a cycle leaves nothing held, so neither store claims the podCIDR).
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const [a, b, roundsArg] = process.argv.slice(2);
if (!a || !b) throw new Error("usage: node scripts/bench-ab.mjs EXECUTABLE_A EXECUTABLE_B [ROUNDS]");
const rounds = Number(roundsArg ?? 150);
const dir = mkdtempSync(join(tmpdir(), "podcidr-ab-"));
writeFileSync(
  join(dir, "node.json"),
  JSON.stringify({
    apiVersion: "cilium.io/v2",
    kind: "CiliumNode",
    metadata: { name: "ab" },
    spec: { ipam: { podCIDRs: ["10.9.0.0/16"] } },
  }),
);
/** @type {Record<string, string>} */
const exes = { A: a, B: b };
/** @type {Record<string, number[]>} */
const t = { A: [], B: [] };
const A = t.A ?? [];
const B = t.B ?? [];
for (let i = 0; i < rounds; i++) {
  for (const k of Math.random() < 0.5 ? ["A", "B"] : ["B", "A"]) {
    const conf = JSON.stringify({
      cniVersion: "1.0.0",
      name: "ab",
      type: "bridge",
      ipam: { type: "podcidr-ipam", nodeFile: join(dir, "node.json"), dataDir: join(dir, k), waitForPodCIDRs: 0 },
    });
    const env = (/** @type {string} */ c) => ({
      PATH: process.env.PATH,
      CNI_COMMAND: c,
      CNI_CONTAINERID: `c${i}`,
      CNI_NETNS: "/var/run/netns/x",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/opt/cni/bin",
    });
    const t0 = performance.now();
    const exe = exes[k] ?? "";
    const r1 = spawnSync(exe, [], { input: conf, env: env("ADD") });
    const r2 = spawnSync(exe, [], { input: conf, env: env("DEL") });
    const ms = performance.now() - t0;
    if (r1.status || r2.status) throw new Error(`${k}: ${r1.stdout}${r2.stdout}`);
    if (i >= 5) (k === "A" ? A : B).push(ms);
  }
}
const med = (/** @type {number[]} */ x) => {
  const s = [...x].sort((p, q) => p - q);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};
// paired ratio per round (same instant, same noise)
const ratios = A.map((x, i) => x / (B[i] ?? Number.NaN)).sort((p, q) => p - q);
const q = (/** @type {number} */ p) => ratios[Math.floor(p * (ratios.length - 1))] ?? Number.NaN;
console.log(
  JSON.stringify({
    rounds: A.length,
    medianA: med(A).toFixed(1),
    medianB: med(B).toFixed(1),
    ratioOfMedians: (med(A) / med(B)).toFixed(3),
    pairedRatioMedian: q(0.5).toFixed(3),
    pairedRatioIQR: [q(0.25).toFixed(3), q(0.75).toFixed(3)],
  }),
);
