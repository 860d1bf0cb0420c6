// npm run bench: what a pod start and stop costs with podcidr-ipam, against
// Debian's host-local and against the runtime's own floor, all measured
// interleaved in one run so machine noise hits every figure alike.
//
//   npm run bench -- [--rounds 30] [--sizes 0,1024,4096,65000] [--burst 64] [--quick] [--chart] [--baseline FILE]
//   npm run bench -- --store [--live 4096] [--prefix 19] [--rounds 40] [--quick]
//
// Two environments in the same rounds: a clean one (PATH only), as a runtime
// started by systemd passes to plugins, and this shell's own (on this project's
// machines it sets NODE_EXTRA_CA_CERTS, which makes every Node 20 start load a CA
// bundle). Prints markdown tables, the targets in both, and where the time goes;
// with --chart it also writes docs/bench.svg (call latency against live
// allocations), and without it no file of the repository is touched. The goals
// are in scripts/bench-targets.mjs. --store measures the store alone instead
// (scripts/bench-store.mjs): ADD and DEL at 0 and at --live allocations. Needs
// bin/podcidr-ipam (npm run build), /usr/lib/cni/host-local (apt-get install
// containernetworking-plugins) and python3 (peak memory via getrusage); uses
// bin/podcidr-ipam-standalone too when it has been built (npm run build:standalone).
// --baseline FILE adds another build (say, the last release's executable) to the
// same rounds, so "before and after" is one run's ratio, not two runs' guesses.
import { spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { cpus, homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { importSrc } from "./import-src.mjs";
import { parseArgs } from "node:util";
import { chart } from "./bench-chart.mjs";
import { benchStore } from "./bench-store.mjs";
import { TARGETS } from "./bench-targets.mjs";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string" },
    sizes: { type: "string" },
    burst: { type: "string" },
    quick: { type: "boolean" },
    chart: { type: "boolean" },
    store: { type: "boolean" },
    live: { type: "string" },
    prefix: { type: "string" },
    baseline: { type: "string" },
    "sync-calls": { type: "string" },
  },
});
const rounds = Number(o.rounds ?? (o.quick ? 5 : 30));
const sizes = (o.sizes ?? (o.quick ? "0,4096" : "0,1024,4096,65000")).split(",").map(Number);
const burstN = Number(o.burst ?? (o.quick ? 16 : 64));
const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
/** The run's scratch folder: made and removed by benchAll. */
let work;
const HOST_LOCAL = "/usr/lib/cni/host-local";
const standalone = join(root, "bin/podcidr-ipam-standalone");

// The environments a call is made in. CLEAN is the one the tables and the chart use.
/** @typedef {{ name: string; label: string; vars: Record<string, string | undefined> }} Env */
/** @type {Env} */
const CLEAN = { name: "clean", label: "a clean environment (PATH only)", vars: { PATH: process.env.PATH } };
/** @type {Env} */
const SHELL = { name: "shell", label: "this shell's environment", vars: { ...process.env } };
const extra = Object.keys(process.env).filter((k) => k.startsWith("NODE_"));

// --- worlds: one network per size and plugin, seeded with that many live allocations ---

const CIDR = { 0: "10.60.0.0/24", 1024: "10.61.0.0/21", 4096: "10.62.0.0/19", 65000: "10.63.0.0/16" };
const cidrFor = (n) =>
  CIDR[n] ??
  (() => {
    throw new Error(`no CIDR for size ${n}; use 0, 1024, 4096, 65000`);
  })();

async function seedTools() {
  return importSrc(
    work,
    `export { create } from "./src/store/create"; export { STORE } from "./src/store/disk"; export { parseCidr, addressAt } from "./src/ipam/cidr"; export { emptyRange, take } from "./src/ipam/allocator";`,
  );
}

function ipOf(cidrText, offset) {
  const [net] = cidrText.split("/");
  const n = net.split(".").reduce((a, b) => a * 256 + Number(b), 0) + 1 + offset;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

function world(plugin, n, t, env = CLEAN, tag = env.name) {
  const dir = join(work, `${plugin.name.replace(/[^a-z0-9-]/g, "_")}-${n}-${tag}`);
  mkdirSync(dir, { recursive: true });
  const cidr = cidrFor(n);
  const nodeFile = join(dir, "node.json");
  writeFileSync(
    nodeFile,
    JSON.stringify({ apiVersion: "cilium.io/v2", kind: "CiliumNode", metadata: { name: "bench" }, spec: { ipam: { podCIDRs: [cidr] } } }),
  );
  const dataDir = join(dir, "data");
  const ipam =
    plugin.kind === "ours"
      ? { type: "podcidr-ipam", nodeFile, dataDir, waitForPodCIDRs: 0 }
      : { type: "host-local", dataDir, ranges: [[{ subnet: cidr }]] };
  const conf = { cniVersion: "1.0.0", name: "bench", type: "bridge", ipam };
  // Live allocations at offsets 1..n (offset 0 is the gateway), as n ADDs would leave them.
  if (plugin.kind === "ours") {
    // The store every network of the dataDir shares, <dataDir>/_store/, made by the store's own code as
    // generation 1 (a checkpoint holding every record and the bitmap; the log empty), as n ADDs and a checkpoint leave it.
    const store = join(dataDir, t.STORE);
    mkdirSync(store, { recursive: true, mode: 0o700 });
    const r = t.emptyRange(t.parseCidr(cidr).cidr);
    const now = new Date().toISOString();
    const records = [];
    for (let i = 1; i <= n; i++) {
      t.take(r, i);
      records.push({
        network: conf.name,
        containerID: `seed-${i}`,
        ifname: "eth0",
        netns: "/var/run/netns/bench",
        netnsId: "",
        namespace: "bench",
        pod: `seed-${i}`,
        createdAt: now,
        ips: [{ cidr, address: t.addressAt(r.cidr, i) }],
      });
    }
    r.next = n + 1;
    t.create(store, { gen: 1, at: Date.now(), ranges: [r], records, history: [], sw: {} });
  } else {
    const net = join(dataDir, conf.name);
    mkdirSync(net, { recursive: true, mode: 0o700 });
    for (let i = 1; i <= n; i++) writeFileSync(join(net, ipOf(cidr, i)), `seed-${i}\r\neth0`);
    if (n > 0) writeFileSync(join(net, "last_reserved_ip.0"), ipOf(cidr, n));
  }
  const key = `${plugin.name} ${n}${env === CLEAN ? "" : ` ${env.name}`}`;
  const callEnv = { ...env.vars, CNI_NETNS: "/var/run/netns/bench", CNI_IFNAME: "eth0", CNI_PATH: "/usr/lib/cni" };
  return { plugin, n, conf, stdin: JSON.stringify(conf), env: callEnv, key };
}

// --- calls ---

function timed(cmd, args, env, input) {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, input, encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${env.CNI_COMMAND ?? args.join(" ")} failed: ${r.stdout}${r.stderr}`);
  return ms;
}

const call = (w, command, id, input = w.stdin) => timed(w.plugin.bin, [], { ...w.env, CNI_COMMAND: command, CNI_CONTAINERID: id }, input);

/** CHECK of a pod just added (ADD and DEL around it are not timed), with its result as prevResult. */
function check(w, id) {
  const add = spawnSync(w.plugin.bin, [], { env: { ...w.env, CNI_COMMAND: "ADD", CNI_CONTAINERID: id }, input: w.stdin, encoding: "utf8" });
  if (add.status !== 0) throw new Error(`${w.plugin.name} ADD failed: ${add.stdout}`);
  const ms = call(w, "CHECK", id, JSON.stringify({ ...w.conf, prevResult: JSON.parse(add.stdout) }));
  call(w, "DEL", id);
  return ms;
}

function runAsync(bin, env, input, args = []) {
  return new Promise(
    /** @param {(v?: unknown) => void} res @param {(e: Error) => void} rej */ (res, rej) => {
      const c = spawn(bin, args, { env, stdio: ["pipe", "ignore", "pipe"] });
      let err = "";
      c.stderr.on("data", (d) => (err += d));
      c.on("close", (code) => (code === 0 ? res() : rej(new Error(err))));
      c.stdin.end(input);
    },
  );
}

/** The burst's floor: `burstN` bare `node -e 0` starts, at once or one after another (ms). */
async function bareBurst(parallel) {
  const t = process.hrtime.bigint();
  const one = () => runAsync(process.execPath, CLEAN.vars, "", ["-e", "0"]);
  if (parallel) await Promise.all(Array.from({ length: burstN }, one));
  else for (let i = 0; i < burstN; i++) await one();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function burst(w, parallel, tag) {
  const ids = Array.from({ length: burstN }, (_, i) => `burst-${tag}-${i}`);
  const t = process.hrtime.bigint();
  if (parallel) await Promise.all(ids.map((id) => runAsync(w.plugin.bin, { ...w.env, CNI_COMMAND: "ADD", CNI_CONTAINERID: id }, w.stdin)));
  else for (const id of ids) call(w, "ADD", id);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  for (const id of ids) call(w, "DEL", id);
  return ms;
}

/** Peak resident memory (KiB) of one run, from getrusage of the child. */
function peakKiB(cmd, args, env, input) {
  const py =
    "import resource,subprocess,sys\nsubprocess.run(sys.argv[1:],input=sys.stdin.buffer.read(),stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)\nprint(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
  const r = spawnSync("python3", ["-c", py, cmd, ...args], { env, input: input ?? "", encoding: "utf8" });
  return Number(r.stdout.trim());
}

/**
 * fsync, fdatasync and renames of `n` ADDs then `n` DELs on one world, each call under `strace -f -c`: per call on
 * average, checkpoints included (240 ADDs and DELs pass the log's 64 KiB at least twice: two checkpoints), on a store
 * that exists.
 */
function syncCounts(w, n) {
  const names = ["fsync", "fdatasync", "rename", "renameat", "renameat2"];
  /** @type {Record<string, Record<string, number>>} */
  const out = { ADD: {}, DEL: {} };
  const file = join(work, `strace-${w.key.replace(/\W/g, "_")}.txt`);
  // The store made first (a node's first pod makes it once: its creation's syncs are not a per-call cost).
  call(w, "ADD", "sync-first");
  call(w, "DEL", "sync-first");
  for (const command of ["ADD", "DEL"]) {
    for (let i = 0; i < n; i++) {
      const r = spawnSync("strace", ["-f", "-qq", "-c", "-o", file, "-e", `trace=${names.join(",")}`, w.plugin.bin], {
        env: { ...w.env, CNI_COMMAND: command, CNI_CONTAINERID: `sync-${i}` },
        input: w.stdin,
        encoding: "utf8",
      });
      if (r.status !== 0) throw new Error(`${w.plugin.name} ${command} under strace failed: ${r.stdout}${r.stderr}`);
      for (const line of readFileSync(file, "utf8").split("\n")) {
        const t = line.trim().split(/\s+/);
        const name = t.at(-1) ?? "";
        const counts = /** @type {Record<string, number>} */ (out[command]);
        if (!names.includes(name) || t.length < 5) continue;
        const key = name.startsWith("rename") ? "rename" : name;
        counts[key] = (counts[key] ?? 0) + Number(t[3]);
      }
    }
  }
  /** @param {string} c @param {string} k */
  const per = (c, k) => (out[c]?.[k] ?? 0) / n;
  return {
    n,
    ADD: { sync: per("ADD", "fsync") + per("ADD", "fdatasync"), rename: per("ADD", "rename") },
    DEL: { sync: per("DEL", "fsync") + per("DEL", "fdatasync"), rename: per("DEL", "rename") },
  };
}

/** What one fsync costs on the disk the stores are on: a small file written and fsynced, and a folder. */
function fsyncCost() {
  const dir = join(work, "fsync");
  mkdirSync(dir);
  const file = [],
    folder = [];
  for (let i = 0; i < 100; i++) {
    const tmp = join(dir, `.tmp-${i}`);
    let t = process.hrtime.bigint();
    const fd = openSync(tmp, "wx");
    writeSync(fd, "x".repeat(200));
    fsyncSync(fd);
    closeSync(fd);
    file.push(Number(process.hrtime.bigint() - t) / 1e6);
    renameSync(tmp, join(dir, "f"));
    t = process.hrtime.bigint();
    const dfd = openSync(dir, "r");
    fsyncSync(dfd);
    closeSync(dfd);
    folder.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return { file: median(file), folder: median(folder) };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// --- run ---

async function benchAll() {
  const plugins = [{ name: "podcidr-ipam", bin: join(root, "bin/podcidr-ipam"), kind: "ours" }];
  if (existsSync(standalone)) plugins.push({ name: "podcidr-ipam-standalone", bin: standalone, kind: "ours" });
  // --baseline FILE: another build of ours (an older commit's bin/podcidr-ipam), measured in the same rounds.
  if (o.baseline) plugins.push({ name: "podcidr-ipam (baseline)", bin: resolve(o.baseline), kind: "ours" });
  if (existsSync(HOST_LOCAL)) plugins.push({ name: "host-local", bin: HOST_LOCAL, kind: "host-local" });
  else console.error(`${HOST_LOCAL} not found: host-local is left out (apt-get install containernetworking-plugins)`);
  for (const p of plugins) if (!existsSync(p.bin)) throw new Error(`${p.bin} is missing: run npm run build first`);
  work = mkdtempSync(join(tmpdir(), "podcidr-ipam-bench-"));
  // The same executable without its V8 code cache, to show what the cache saves (empty store only).
  const noCache = { name: "podcidr-ipam, no code cache", bin: join(work, "podcidr-ipam-no-cache"), kind: "ours" };
  try {
    const nc = spawnSync(process.execPath, [join(root, "scripts/build.mjs"), "--quiet", "--no-code-cache", "--out", noCache.bin], {
      stdio: "inherit",
    });
    if (nc.status !== 0) throw new Error(`building ${noCache.name} failed`);
    const t = await seedTools();
    const t0 = Date.now();
    const worlds = plugins.flatMap((p) => sizes.map((n) => world(p, n, t)));
    // The empty store again in this shell's environment, and the build without its code cache.
    const shellWorlds = plugins.map((p) => world(p, sizes[0], t, SHELL));
    const noCacheWorld = world(noCache, sizes[0], t);
    console.error(`seeded ${worlds.length + shellWorlds.length + 1} networks in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const emptyJs = join(work, "empty.js");
    writeFileSync(emptyJs, "");
    const node26 = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "podcidr-ipam", "node-26.10.0", "package/bin/node");
    const floors = [
      { key: "node -e 0", cmd: process.execPath, args: ["-e", "0"] },
      { key: "node empty.js", cmd: process.execPath, args: [emptyJs] },
      ...(existsSync(standalone) && existsSync(node26)
        ? [{ key: "node 26 -e 0 (standalone's runtime)", cmd: node26, args: ["-e", "0"] }]
        : []),
    ];
    const samples = new Map();
    const push = (k, v) => samples.set(k, [...(samples.get(k) ?? []), v]);
    const rand = prng(5);
    const ours = [...worlds, noCacheWorld].filter((w) => w.plugin.kind === "ours" && w.n === sizes[0]);
    for (let r = 0; r < rounds; r++) {
      const tasks = [
        ...floors.map((f) => () => push(f.key, timed(f.cmd, f.args, CLEAN.vars))),
        ...floors.map((f) => () => push(`${f.key} shell`, timed(f.cmd, f.args, SHELL.vars))),
        ...[...worlds, ...shellWorlds, noCacheWorld].map((w) => () => {
          const add = call(w, "ADD", `bench-${r}`);
          const del = call(w, "DEL", `bench-${r}`);
          push(`cycle ${w.key}`, add + del);
          push(`add ${w.key}`, add);
          push(`del ${w.key}`, del);
        }),
        ...worlds.map((w) => () => push(`check ${w.key}`, check(w, `check-${r}`))),
        ...ours.map((w) => () => push(`version ${w.key}`, call(w, "VERSION", "v"))),
      ];
      for (let i = tasks.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        const swap = /** @type {() => void} */ (tasks[i]);
        tasks[i] = /** @type {() => void} */ (tasks[j]);
        tasks[j] = swap;
      }
      for (const task of tasks) task();
      if (r % 5 === 4) console.error(`round ${r + 1}/${rounds}`);
    }
    // Burst: a node booting starts many pods at once. 6 alternations (median), each order 3 times.
    const bursts = new Map();
    for (let k = 0; k < 6; k++) {
      for (const w of worlds.filter((x) => x.n === sizes[0])) {
        for (const parallel of k % 2 ? [true, false] : [false, true]) {
          const key = `${w.plugin.name} ${parallel ? "parallel" : "sequential"}`;
          bursts.set(key, [...(bursts.get(key) ?? []), await burst(w, parallel, `${k}-${parallel}`)]);
        }
      }
      // The floor in the same alternations: what 2 cores make of that many bare Node starts.
      for (const parallel of k % 2 ? [true, false] : [false, true]) {
        const key = `node -e 0 ${parallel ? "parallel" : "sequential"}`;
        bursts.set(key, [...(bursts.get(key) ?? []), await bareBurst(parallel)]);
      }
    }
    // Peak memory of one call (median of 5).
    const mem = new Map();
    const havePython = spawnSync("python3", ["-c", "0"]).status === 0;
    if (!havePython) console.error("python3 not found: peak memory is left out (apt-get install python3)");
    for (let k = 0; k < (havePython ? 5 : 0); k++) {
      mem.set("node -e 0", [...(mem.get("node -e 0") ?? []), peakKiB(process.execPath, ["-e", "0"], CLEAN.vars)]);
      for (const w of worlds.filter((x) => x.n === sizes[0])) {
        const v = peakKiB(w.plugin.bin, [], { ...w.env, CNI_COMMAND: "ADD", CNI_CONTAINERID: `mem-${k}` }, w.stdin);
        call(w, "DEL", `mem-${k}`);
        mem.set(`${w.plugin.name} ADD`, [...(mem.get(`${w.plugin.name} ADD`) ?? []), v]);
      }
    }
    const sync = fsyncCost();
    // Syncs per call, counted on fresh empty-store worlds (ours and host-local) so the timed ones keep their state.
    const haveStrace = spawnSync("strace", ["-V"]).status === 0;
    if (!haveStrace) console.error("strace not found: syncs per call are left out (apt-get install strace)");
    const syncN = Number(o["sync-calls"] ?? (o.quick ? 40 : 240));
    const syncs = haveStrace
      ? plugins
          .filter((p) => !p.name.includes("baseline"))
          .map((p) => ({ name: p.name, ...syncCounts(world(p, sizes[0], t, CLEAN, "sync"), syncN) }))
      : [];

    // --- report ---
    const f = (x) => x.toFixed(1);
    const m = (k) => median(samples.get(k));
    const cpu = cpus()[0]?.model ?? "?";
    console.log(
      `\npodcidr-ipam benchmark, ${new Date().toISOString().slice(0, 10)}: ${rounds} interleaved rounds, ${cpus().length} cores (${cpu}), node ${process.version}`,
    );
    console.log(`\n#### In ${CLEAN.label}\n`);
    console.log("| what | live allocations | median ms | p10 ms | p90 ms |");
    console.log("|---|---:|---:|---:|---:|");
    const row = (what, n, s) => console.log(`| ${what} | ${n} | ${f(median(s))} | ${f(pct(s, 0.1))} | ${f(pct(s, 0.9))} |`);
    for (const fl of floors) row(`floor: ${fl.key}`, "-", samples.get(fl.key));
    for (const p of plugins)
      for (const what of ["cycle", "check"])
        for (const n of sizes) row(`${p.name} ${what === "cycle" ? "ADD+DEL" : "CHECK"}`, n, samples.get(`${what} ${p.name} ${n}`));
    row(`${noCache.name} ADD+DEL`, sizes[0], samples.get(`cycle ${noCacheWorld.key}`));
    console.log(`\n#### In ${SHELL.label}${extra.length ? ` (it sets ${extra.join(", ")})` : ""}, the same rounds\n`);
    console.log("| what | live allocations | median ms | p10 ms | p90 ms |");
    console.log("|---|---:|---:|---:|---:|");
    for (const fl of floors) row(`floor: ${fl.key}`, "-", samples.get(`${fl.key} shell`));
    for (const w of shellWorlds) row(`${w.plugin.name} ADD+DEL`, w.n, samples.get(`cycle ${w.key}`));

    console.log(`\n#### Burst of ${burstN} ADDs on one network, and peak memory (clean environment)\n`);
    console.log(`| burst of ${burstN} ADDs | parallel ms | sequential ms | ratio |`);
    console.log("|---|---:|---:|---:|");
    for (const name of ["node -e 0 (the floor)", ...plugins.map((p) => p.name)]) {
      const key = name.replace(" (the floor)", "");
      const par = median(bursts.get(`${key} parallel`));
      const seq = median(bursts.get(`${key} sequential`));
      console.log(`| ${name} | ${f(par)} | ${f(seq)} | ${(par / seq).toFixed(2)} |`);
    }
    console.log("\n| peak memory of one call | median KiB |");
    console.log("|---|---:|");
    for (const [k, v] of mem) console.log(`| ${k} | ${median(v)} |`);

    // --- where the time goes ---
    const floor = m("node -e 0");
    console.log(`\n#### Where a call's time goes (clean environment, medians, ms)\n`);
    console.log(
      "| executable | floor | VERSION (start + load) | ADD | DEL | load: VERSION - floor | store work: ADD - VERSION | store work: DEL - VERSION |",
    );
    console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (const w of ours) {
      const fl =
        w.plugin.name.includes("standalone") && samples.has("node 26 -e 0 (standalone's runtime)")
          ? m("node 26 -e 0 (standalone's runtime)")
          : floor;
      const v = m(`version ${w.key}`),
        a = m(`add ${w.key}`),
        d = m(`del ${w.key}`);
      console.log(`| ${w.plugin.name} | ${f(fl)} | ${f(v)} | ${f(a)} | ${f(d)} | ${f(v - fl)} | ${f(a - v)} | ${f(d - v)} |`);
    }
    console.log(
      `\nOne fsync on this disk: ${sync.file.toFixed(2)} ms for a small new file (open, write, fsync, close), ${sync.folder.toFixed(2)} ms for a folder. An ADD makes one fdatasync (its record written in place in the preallocated log), a DEL one: about ${f(2 * sync.file)} ms per ADD+DEL at most (an fdatasync of a write in place costs no more than an fsync of a new file).`,
    );

    if (syncs.length) {
      console.log(
        `\n#### Syncs and renames per call (strace -f -c, ${syncN} ADDs then ${syncN} DELs on an empty store made beforehand, checkpoints included)\n`,
      );
      console.log("| executable | fsync + fdatasync per ADD | per DEL | renames per ADD | per DEL |");
      console.log("|---|---:|---:|---:|---:|");
      for (const x of syncs)
        console.log(
          `| ${x.name} | ${x.ADD.sync.toFixed(2)} | ${x.DEL.sync.toFixed(2)} | ${x.ADD.rename.toFixed(2)} | ${x.DEL.rename.toFixed(2)} |`,
        );
    }

    // --- targets ---
    const targets = [];
    const node26Key = "node 26 -e 0 (standalone's runtime)";
    targets.push(["ADD+DEL / two bare starts (node -e 0), clean", m(`cycle podcidr-ipam ${sizes[0]}`) / (2 * floor), TARGETS.cycle]);
    if (existsSync(standalone) && samples.has(node26Key))
      targets.push([
        "standalone ADD+DEL / two bare starts of its own Node, clean",
        m(`cycle podcidr-ipam-standalone ${sizes[0]}`) / (2 * m(node26Key)),
        TARGETS.cycle,
      ]);
    for (const x of syncs.filter((y) => y.name.startsWith("podcidr-ipam")))
      for (const c of ["ADD", "DEL"]) targets.push([`fsync + fdatasync per ${c}, ${x.name}`, x[c].sync, TARGETS.syncs]);
    const ours0 = m(`cycle podcidr-ipam ${sizes[0]}`);
    if (o.baseline)
      for (const n of sizes)
        targets.push([
          `ADD+DEL at ${n} live: this build / baseline`,
          m(`cycle podcidr-ipam ${n}`) / m(`cycle podcidr-ipam (baseline) ${n}`),
          TARGETS.baseline,
        ]);
    if (sizes.includes(4096)) targets.push(["ADD+DEL at 4,096 live / at 0", m("cycle podcidr-ipam 4096") / ours0, TARGETS.at4096]);
    if (sizes.includes(65000)) targets.push(["ADD+DEL at 65,000 live / at 0", m("cycle podcidr-ipam 65000") / ours0, TARGETS.at65000]);
    const burstFloor = median(bursts.get("node -e 0 parallel")) / median(bursts.get("node -e 0 sequential"));
    targets.push([
      `burst of ${burstN}: parallel / sequential (bare node -e 0: ${burstFloor.toFixed(3)})`,
      median(bursts.get("podcidr-ipam parallel")) / median(bursts.get("podcidr-ipam sequential")),
      TARGETS.burst,
    ]);
    if (havePython)
      targets.push([
        "peak memory of one ADD / node -e 0",
        median(mem.get("podcidr-ipam ADD")) / median(mem.get("node -e 0")),
        TARGETS.memory,
      ]);
    console.log(
      `\n(own work against an empty script's start instead, clean: ${(((ours0 - 2 * m("node empty.js")) / m("node empty.js")) * 100).toFixed(1)}%; the code cache saves ${f(m(`cycle ${noCacheWorld.key}`) - ours0)} ms per ADD+DEL)`,
    );
    for (const env of [CLEAN, SHELL]) {
      const sfx = env === CLEAN ? "" : " shell";
      console.log(
        `ADD+DEL / two bare starts, ${env.label}: ${(m(`cycle podcidr-ipam ${sizes[0]}${sfx}`) / (2 * m(`node -e 0${sfx}`))).toFixed(3)} (${env === CLEAN ? "the target" : "reported"})`,
      );
    }
    console.log("\n| target | measured | goal | |\n|---|---:|---:|---|");
    let ok = true;
    for (const [name, v, goal] of targets) {
      const pass = v <= goal;
      ok &&= pass;
      console.log(`| ${name} | ${v.toFixed(3)} | <= ${goal} | ${pass ? "met" : "MISSED"} |`);
    }

    // --- chart: only when asked, as docs/bench.svg is tracked ---
    if (o.chart) {
      const series = plugins.map((p) => ({ name: p.name, pts: sizes.map((n) => [n, m(`cycle ${p.name} ${n}`)]) }));
      mkdirSync(join(root, "docs"), { recursive: true });
      writeFileSync(join(root, "docs/bench.svg"), chart(series, floor, sizes));
      console.log("\nchart: docs/bench.svg");
    } else console.log("\nchart: not written (--chart writes docs/bench.svg)");
    process.exitCode = ok ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (o.store) {
  const ok = await benchStore({
    live: Number(o.live ?? (o.quick ? 1024 : 4096)),
    prefix: Number(o.prefix ?? 19),
    rounds: Number(o.rounds ?? (o.quick ? 10 : 40)),
  });
  process.exitCode = ok ? 0 : 1;
} else await benchAll();
