// Reading deploy/podcidr-ipam.yaml and the Dockerfile for the deploy tests. The manifest is
// several YAML documents; each is read by the agent's own YAML subset (yaml-lite) after its
// `key: |` block scalars are turned into JSON strings, the one construct of this file that
// yaml-lite refuses. consistency.test.ts checks the result against kubectl's own reading.
import { accessSync, constants, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseYaml } from "../../src/agent/kube/yaml-lite";
import { ROOT } from "../helpers/plugin";

export const MANIFEST = join(ROOT, "deploy/podcidr-ipam.yaml");
export const DOCKERFILE = join(ROOT, "Dockerfile");

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any };

/** The manifest's objects, in file order. */
export function loadManifest(path = MANIFEST): K8sObject[] {
  return readFileSync(path, "utf8")
    .split(/^---[ \t]*$/m)
    .map((doc) => parseYaml(literalBlocksToJson(doc)))
    .filter((o): o is K8sObject => o !== null);
}

/** The one object of `kind` (and `name`); throws when there is not exactly one. */
export function one(objs: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ""} in the manifest, found ${found.length}`);
  return found[0]!;
}

/** What the kubelet runs: command + args, $(VAR) expanded from env (a fieldRef spec.nodeName is `nodeName`). */
export function containerArgv(c: any, nodeName: string): string[] {
  const env = new Map<string, string>();
  for (const e of c.env ?? []) env.set(e.name, e.value ?? (e.valueFrom?.fieldRef?.fieldPath === "spec.nodeName" ? nodeName : ""));
  return [...c.command, ...(c.args ?? [])].map((a: string) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, k) => env.get(k) ?? m));
}

/** `--flag=value` / `--flag value` pairs of an argv after the subcommand. */
export function flags(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(args[i]!);
    if (!m) throw new Error(`not a --flag: ${args[i]}`);
    out.set(m[1]!, m[2] ?? args[++i] ?? "");
  }
  return out;
}

/** A node's paths under a temp folder: each argument's absolute path (`/x` or `--flag=/x`) moved under `root`. */
export function under(root: string, args: string[]): string[] {
  return args.map((a) => a.replace(/(=|^)\//, `$1${root}/`));
}

/** `key: |` followed by more-indented lines -> `key: "<the text as JSON>"` (clip chomping: one final newline). */
export function literalBlocksToJson(doc: string): string {
  const lines = doc.split("\n");
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*(?:- )?[^\s#][^:]*):\s*\|\s*$/.exec(lines[i]!);
    if (!m) {
      out.push(lines[i]!);
      continue;
    }
    const keyIndent = lines[i]!.length - lines[i]!.trimStart().length;
    const body: string[] = [];
    let indent = -1;
    for (; i + 1 < lines.length; i++) {
      const next = lines[i + 1]!;
      if (next.trim() === "") {
        body.push("");
        continue;
      }
      const ind = next.length - next.trimStart().length;
      if (ind <= keyIndent) break;
      if (indent < 0) indent = ind;
      body.push(next.slice(indent));
    }
    while (body.length > 0 && body[body.length - 1] === "") body.pop();
    out.push(`${m[1]}: ${JSON.stringify(`${body.join("\n")}\n`)}`);
  }
  return out.join("\n");
}

/** The harness's kubectl (scripts/cluster-build.sh), or null when it is not built here. */
export function builtKubectl(): string | null {
  const cache = process.env.PODCIDR_CACHE || join(homedir(), ".cache/podcidr-ipam");
  const gomod = readFileSync(join(ROOT, "test/cluster/go.mod"), "utf8");
  const version = /^\s*(?:require\s+)?k8s\.io\/kubernetes\s+(v\S+)/m.exec(gomod)?.[1];
  const bin = join(process.env.PODCIDR_K8S_BIN || join(cache, `k8s-${version}`), "kubectl");
  try {
    accessSync(bin, constants.X_OK);
    return bin;
  } catch {
    return null;
  }
}

export interface DockerStage {
  from: string;
  name?: string;
  /** Instructions after FROM, continuation lines joined: [keyword, rest]. */
  steps: [string, string][];
}

/** The Dockerfile's stages (comments dropped, `\` continuations joined). */
export function loadDockerfile(path = DOCKERFILE): DockerStage[] {
  const text = readFileSync(path, "utf8").replace(/\\\n/g, " ");
  const stages: DockerStage[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [, keyword = "", rest = ""] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const kw = keyword.toUpperCase();
    if (kw === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!m) throw new Error(`Dockerfile: cannot read FROM ${rest}`);
      stages.push({ from: m[1]!, ...(m[2] ? { name: m[2] } : {}), steps: [] });
    } else {
      const stage = stages[stages.length - 1];
      if (!stage) throw new Error(`Dockerfile: ${kw} before any FROM`);
      stage.steps.push([kw, rest]);
    }
  }
  return stages;
}
