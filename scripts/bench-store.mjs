// npm run bench -- --store: ADD and DEL latency of the built executable with an
// empty store versus a store holding many live allocations (default 4,096 on a
// /19), measured interleaved in one run so machine noise hits both alike.
//
//   npm run bench -- --store [--live 4096] [--prefix 19] [--rounds 40] [--quick: 1,024 live, 10 rounds]
//
// The live allocations are made by the real ADD handler, run in process (a
// bundle of src/ made on the fly), so the store is exactly what ADD writes.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { importSrc } from "./import-src.mjs";
import { TARGETS } from "./bench-targets.mjs";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const bin = join(root, "bin/podcidr-ipam");

function sandbox(work, prefix, name) {
  const dir = join(work, name);
  const nodeFile = join(dir, "node.json");
  spawnSync("mkdir", ["-p", dir]);
  writeFileSync(
    nodeFile,
    JSON.stringify({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNode",
      metadata: { name: "bench" },
      spec: { ipam: { podCIDRs: [`10.64.0.0/${prefix}`] } },
    }),
  );
  const conf = {
    cniVersion: "1.1.0",
    name: "podnet",
    type: "bridge",
    ipam: { type: "podcidr-ipam", nodeFile, dataDir: join(dir, "data"), waitForPodCIDRs: 0 },
  };
  return { dir, conf, stdin: JSON.stringify(conf) };
}

async function seed(work, sb, count) {
  // Bundle the dispatcher + handlers and drive them in process: same code as the executable.
  const { dispatch, handlers } = await importSrc(
    work,
    'export { dispatch } from "./src/cni/dispatch"; export { handlers } from "./src/commands/index";',
  );
  const stdin = Buffer.from(sb.stdin);
  for (let i = 0; i < count; i++) {
    const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: `seed-${i}`, CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: "/x" };
    let err = "";
    const code = await dispatch({ env, readStdin: async () => stdin, stdout: (s) => (err += s), stderr: () => {} }, handlers);
    if (code !== 0) throw new Error(`seeding ADD ${i} failed: ${err}`);
  }
}

function call(sb, command, id) {
  const env = { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: "/x" };
  const t = process.hrtime.bigint();
  const r = spawnSync(bin, [], { env, input: sb.stdin, encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${command} failed: ${r.stdout}${r.stderr}`);
  return ms;
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median: q(0.5), p10: q(0.1), p90: q(0.9) };
}

/** Measure; true when the worse ratio meets its goal (TARGETS.store). */
export async function benchStore({ live, prefix, rounds }) {
  const work = mkdtempSync(join(tmpdir(), "podcidr-ipam-bench-"));
  try {
    const empty = sandbox(work, prefix, "empty");
    const full = sandbox(work, prefix, "full");
    const t0 = Date.now();
    await seed(work, full, live);
    console.error(`seeded ${live} live allocations on 10.64.0.0/${prefix} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const times = { empty: { ADD: [], DEL: [] }, full: { ADD: [], DEL: [] } };
    const bare = [];
    for (let i = 0; i < rounds; i++) {
      const order =
        i % 2 === 0
          ? [
              ["empty", empty],
              ["full", full],
            ]
          : [
              ["full", full],
              ["empty", empty],
            ];
      for (const [name, sb] of order) {
        times[name].ADD.push(call(sb, "ADD", `bench-${i}`));
        times[name].DEL.push(call(sb, "DEL", `bench-${i}`));
      }
      const t = process.hrtime.bigint();
      spawnSync(process.execPath, ["-e", "0"], { env: { PATH: process.env.PATH } }); // the same clean env as the calls
      bare.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    const f = (x) => x.toFixed(1).padStart(7);
    const rows = [];
    console.log(
      `\npodcidr-ipam store benchmark: ${rounds} interleaved rounds, node ${process.version}, ${process.arch}, ${new Date().toISOString().slice(0, 10)}`,
    );
    console.log(`| call | live allocations | median ms | p10 ms | p90 ms | ratio to empty (median) |`);
    console.log(`|---|---:|---:|---:|---:|---:|`);
    for (const cmd of ["ADD", "DEL"]) {
      const e = stats(times.empty[cmd]);
      const u = stats(times.full[cmd]);
      for (const [label, s] of /** @type {[string, { median: number; p10: number; p90: number }][]} */ ([
        ["0", e],
        [String(live), u],
      ])) {
        console.log(`| ${cmd} | ${label} | ${f(s.median)} | ${f(s.p10)} | ${f(s.p90)} | ${(s.median / e.median).toFixed(3)} |`);
      }
      rows.push({ cmd, ratio: u.median / e.median });
    }
    const b = stats(bare);
    console.log(`| node -e 0 (bare start) | - | ${f(b.median)} | ${f(b.p10)} | ${f(b.p90)} | - |`);
    const worst = Math.max(...rows.map((r) => r.ratio));
    console.log(`\nworst ratio ${worst.toFixed(3)} (goal: at most ${TARGETS.store})`);
    return worst <= TARGETS.store;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
