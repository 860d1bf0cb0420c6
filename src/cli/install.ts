// `podcidr-ipam install`: put this executable into the CNI bin folder and the
// network config into the CNI config folder, as an init container does on every
// node (Cilium's install-plugin.sh, Calico's install-cni). Each file is written to
// a temp file in the target folder, fsynced and renamed over the old one: a
// runtime may be executing the old binary right now, so it is never truncated in
// place. Idempotent (an identical file is left alone). `--uninstall` removes only
// what it installed, as recorded with each file's sha256.
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { parseIpamConfig } from "../ipam/config.js";

export const INSTALL_HELP = `podcidr-ipam install: copy this executable and a network config into place.

  podcidr-ipam install [--cni-bin-dir DIR] [--cni-conf FILE] [--cni-conf-dir DIR] [--conf-name NAME]
                       [--node-name NAME] [--uninstall]

  --cni-bin-dir DIR   where runtimes find CNI plugins (default /opt/cni/bin)
  --cni-conf FILE     a .conflist to install (optional); it must name podcidr-ipam as an ipam type
  --cni-conf-dir DIR  where runtimes find network configs (default /etc/cni/net.d)
  --conf-name NAME    its name there (default the file's own name); containerd uses the
                      first file by name, so a "05-" or "10-" prefix decides which is used
  --node-name NAME    write ipam.nodeName NAME into the installed conflist (default $NODE_NAME), so
                      that a node file of another node is refused; one ConfigMap serves every node
  --uninstall         remove what an earlier install put there (files that changed since are kept)
`;

const MANIFEST = ".podcidr-ipam-installed.json";

interface Installed {
  readonly path: string;
  readonly sha256: string;
}

/** The running executable: the script Node runs (the bundle), or the binary itself (the standalone build: argv[1] is it too). */
export function selfPath(): string {
  return realpathSync(process.argv[1] ?? process.execPath);
}

export function install(
  argv: string[],
  out: (s: string) => void,
  err: (s: string) => void,
  self = selfPath(),
  env: Record<string, string | undefined> = process.env,
): number {
  let v: { [k: string]: string | boolean | undefined };
  try {
    v = parseArgs({
      args: argv,
      options: {
        "cni-bin-dir": { type: "string", default: "/opt/cni/bin" },
        "cni-conf": { type: "string" },
        "cni-conf-dir": { type: "string", default: "/etc/cni/net.d" },
        "conf-name": { type: "string" },
        "node-name": { type: "string" },
        uninstall: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    err(`podcidr-ipam install: ${(e as Error).message}\n\n${INSTALL_HELP}`);
    return 2;
  }
  if (v.help) {
    out(INSTALL_HELP);
    return 0;
  }
  const binDir = String(v["cni-bin-dir"]);
  const confDir = String(v["cni-conf-dir"]);
  // Beside the binary, not among the configs: runtimes load every *.json of the config folder,
  // a dot-file included (libcni lists by extension), and use the first by name.
  const manifest = join(binDir, MANIFEST);
  if (typeof v["node-name"] === "string" && typeof v["cni-conf"] !== "string") {
    err(`podcidr-ipam install: --node-name sets ipam.nodeName in the --cni-conf conflist, and there is none\n\n${INSTALL_HELP}`);
    return 2;
  }
  const nodeName = typeof v["node-name"] === "string" ? v["node-name"] : (env.NODE_NAME ?? "");
  try {
    if (v.uninstall) return uninstall(manifest, out);
    // The conflist is read and checked before anything is written: a bad one leaves the folders as they were.
    const conf = typeof v["cni-conf"] === "string" ? prepareConflist(v["cni-conf"], v["conf-name"], nodeName, out) : undefined;
    const files: Installed[] = [place({ file: self }, join(binDir, "podcidr-ipam"), 0o755, out)];
    if (conf) files.push(place(Buffer.from(conf.text), join(confDir, conf.name), 0o644, out));
    const before = readManifest(manifest).filter((f) => !files.some((g) => g.path === f.path));
    writeAtomic(manifest, Buffer.from(`${JSON.stringify({ files: [...before, ...files] }, null, 2)}\n`), 0o644);
    return 0;
  } catch (e) {
    err(`podcidr-ipam install: ${(e as Error).message}\n`);
    return 1;
  }
}

// --- internal ---

/** The conflist to install (ipam.nodeName set when a node name is given) and its file name in the config folder. */
function prepareConflist(file: string, confName: unknown, nodeName: string, out: (s: string) => void): { text: string; name: string } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`cannot read --cni-conf ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); nothing was installed`);
  }
  checkConflist(text, file);
  const name = typeof confName === "string" ? confName : basename(file);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*\.(conflist|conf|json)$/.test(name)) {
    throw new Error(`--conf-name ${JSON.stringify(name)} must be a file name ending in .conflist, .conf or .json`);
  }
  return { text: nodeName === "" ? text : withNodeName(text, nodeName, out), name };
}

/** What to install: bytes, or a file copied as it is (the executable: 117 MB for the standalone build, never read whole). */
type Content = Buffer | { readonly file: string };

/** Write `content` to `path` unless it is already there, byte for byte. */
function place(content: Content, path: string, mode: number, out: (s: string) => void): Installed {
  const sha256 = Buffer.isBuffer(content) ? hash(content) : hashFile(content.file);
  if (existsSync(path) && hashFile(path) === sha256) {
    chmodSync(path, mode);
    out(`${path}: up to date\n`);
  } else {
    writeAtomic(path, content, mode);
    out(`${path}: installed\n`);
  }
  return { path, sha256 };
}

function writeAtomic(path: string, content: Content, mode: number): void {
  mkdirSync(join(path, ".."), { recursive: true, mode: 0o755 });
  const tmp = join(path, "..", `.${basename(path)}.tmp-${process.pid}`);
  if (!Buffer.isBuffer(content)) copyFileSync(content.file, tmp);
  const fd = openSync(tmp, Buffer.isBuffer(content) ? "w" : "r+", mode);
  try {
    let n = 0;
    while (Buffer.isBuffer(content) && n < content.length) n += writeSync(fd, content, n);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, path);
  const dir = openSync(join(path, ".."), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function uninstall(manifest: string, out: (s: string) => void): number {
  for (const f of readManifest(manifest)) {
    if (!existsSync(f.path)) continue;
    if (hashFile(f.path) !== f.sha256) {
      out(`${f.path}: changed since it was installed, kept\n`);
      continue;
    }
    unlinkSync(f.path);
    out(`${f.path}: removed\n`);
  }
  if (existsSync(manifest)) unlinkSync(manifest);
  return 0;
}

function readManifest(path: string): Installed[] {
  if (!existsSync(path)) return [];
  const o = JSON.parse(readFileSync(path, "utf8")) as { files?: Installed[] };
  return Array.isArray(o.files) ? o.files.filter((f) => typeof f?.path === "string" && typeof f?.sha256 === "string") : [];
}

/** A config a runtime will load: JSON, with a plugin whose ipam.type is podcidr-ipam. */
function checkConflist(text: string, file: string): void {
  let conf: { plugins?: { ipam?: { type?: unknown } }[]; ipam?: { type?: unknown } };
  try {
    conf = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not JSON: ${(e as Error).message}`);
  }
  const plugins = Array.isArray(conf.plugins) ? conf.plugins : [conf];
  if (!plugins.some((p) => p?.ipam?.type === "podcidr-ipam")) throw new Error(`${file} has no plugin whose ipam.type is "podcidr-ipam"`);
}

/** The conflist with ipam.nodeName set in each podcidr-ipam plugin (re-serialized; checked by checkConflist first). */
function withNodeName(text: string, name: string, out: (s: string) => void): string {
  try {
    parseIpamConfig({ nodeName: name });
  } catch (e) {
    throw new Error(`--node-name (or $NODE_NAME): ${(e as Error).message.replace(/^ipam\.nodeName /, "")}`);
  }
  const conf = JSON.parse(text) as { plugins?: { ipam?: Record<string, unknown> }[]; ipam?: Record<string, unknown> };
  for (const p of Array.isArray(conf.plugins) ? conf.plugins : [conf]) {
    if (p?.ipam?.type !== "podcidr-ipam") continue;
    const was = p.ipam.nodeName;
    if (typeof was === "string" && was !== name) out(`ipam.nodeName ${JSON.stringify(was)} replaced by ${JSON.stringify(name)}\n`);
    p.ipam.nodeName = name;
  }
  return `${JSON.stringify(conf, null, 2)}\n`;
}

function hash(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

/** A file's sha256, read 1 MiB at a time. */
function hashFile(path: string): string {
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 20);
  const fd = openSync(path, "r");
  try {
    for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}
