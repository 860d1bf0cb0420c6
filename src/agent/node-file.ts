// The agent's half of the node file: what of a node object the plugin reads (so
// that a resourceVersion bump or a status-only update does not rewrite the
// file), the text `kubectl get ... -o json` would print for it, the plugin's own
// parser as the judge of a new object (a file the plugin would refuse never
// replaces a good one), and the atomic, durable write.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CniError } from "../errors.js";
import type { NodeMode } from "../ipam/config.js";
import { type NodeInfo, nodeFromJson } from "../ipam/node-file.js";

export type Source = "ciliumnode" | "node";

const KIND: Record<Source, { apiVersion: string; kind: string }> = {
  ciliumnode: { apiVersion: "cilium.io/v2", kind: "CiliumNode" },
  node: { apiVersion: "v1", kind: "Node" },
};

/**
 * The parts of a node object the plugin reads, as one string: podCIDRs (and the
 * multi-pool and CRD-mode fields), the node's own addresses, annotations, and the
 * operator's status. Two objects with the same projection make the same node file
 * as far as the plugin can tell.
 */
export function projection(obj: Record<string, unknown>): string {
  const o = obj as { metadata?: Record<string, unknown>; spec?: Record<string, unknown>; status?: Record<string, unknown> };
  const spec = o.spec ?? {};
  const status = (o.status ?? {}) as { ipam?: Record<string, unknown>; addresses?: unknown };
  return JSON.stringify({
    kind: obj.kind,
    name: o.metadata?.name,
    annotations: o.metadata?.annotations,
    podCIDR: spec.podCIDR,
    podCIDRs: spec.podCIDRs,
    ipam: spec.ipam,
    addresses: spec.addresses,
    health: spec.health,
    ingress: spec.ingress,
    statusAddresses: status.addresses,
    statusIpam: status.ipam,
  });
}

/**
 * What kubectl get -o json prints for the object: apiVersion and kind set, managedFields
 * left out, and written as Go's json.MarshalIndent(obj, "", "    ") writes the unstructured
 * object kubectl holds: every object's keys sorted by their bytes (integer-like keys
 * included, which a JS object would put first), <, >, &, U+2028 and U+2029 escaped.
 */
export function kubectlJson(obj: Record<string, unknown>, source: Source): string {
  const { apiVersion, kind, ...rest } = obj;
  const metadata = { ...((rest.metadata as Record<string, unknown> | undefined) ?? {}) };
  delete metadata.managedFields;
  return `${goJson({ ...rest, apiVersion: apiVersion ?? KIND[source].apiVersion, kind: kind ?? KIND[source].kind, metadata }, "")}\n`;
}

/** Go's encoding/json with indent "    ": sorted keys, HTML-safe strings. */
function goJson(v: unknown, indent: string): string {
  if (typeof v === "string")
    return JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
  if (typeof v !== "object" || v === null) return JSON.stringify(v) ?? "null";
  const inner = `${indent}    `;
  if (Array.isArray(v)) return v.length === 0 ? "[]" : `[\n${v.map((x) => inner + goJson(x, inner)).join(",\n")}\n${indent}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  if (keys.length === 0) return "{}";
  return `{\n${keys.map((k) => `${inner}${goJson(k, inner)}: ${goJson(o[k], inner)}`).join(",\n")}\n${indent}}`;
}

/** The plugin's verdict on a node object: its parsed view, or the CniError the plugin would answer with. */
export function judge(
  text: string,
  path: string,
  nodeName: string,
  mode: NodeMode | "auto" = "auto",
): { node: NodeInfo } | { error: CniError } {
  try {
    const node = nodeFromJson(JSON.parse(text), path, mode);
    if (nodeName && node.name !== nodeName)
      throw new CniError(102, `the object is for node ${JSON.stringify(node.name)}, not ${JSON.stringify(nodeName)}`);
    return { node };
  } catch (err) {
    if (err instanceof CniError) return { error: err };
    throw err;
  }
}

/** Read what is there now ("" when there is nothing). */
export function currentText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** Write the node file as a reader never sees half of it: temp file in its folder, fsync, rename, fsync the folder; 0644. */
export function writeNodeFile(path: string, text: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}`);
  const fd = openSync(tmp, "w", 0o644);
  try {
    const buf = Buffer.from(text);
    let n = 0;
    while (n < buf.length) n += writeSync(fd, buf, n);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const d = openSync(dir, "r");
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}
